"""The C int8 kernels (csrc/kernels) are bit-exact with the NumPy model ``int8_ops``, and
``int8_ops`` is bit-exact with the TFLite Micro interpreter.

* Fuzz: hypothesis draws shapes, strides, dilations, paddings, depth multipliers, zero
  points, (per-channel) scales and fused activations for every kernel, computes the
  parameters with ``int8_ops`` as the generator does, and runs each case through a driver
  built once with ASan + UBSan, so every case is also an undefined-behaviour check.
* TFLM: one small Keras model holding every op type is converted to int8 and run in the
  TFLM interpreter with all intermediate tensors kept; each op's output is recomputed
  from its TFLM input with parameters read from the ``.tflite``, by ``int8_ops`` and by
  the C kernels, and compared bit for bit.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import PipeDriver
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keras_prune.export.cgen import kernel_library
from keras_prune.export.int8 import reference as int8_ops
from keras_prune.mcu import toolchain as cbuild

DRIVER_SRC = Path(__file__).parent / "csrc" / "kp_kernel_driver.c"
(
    OP_CHECKS,
    OP_CONV,
    OP_DW_CONV,
    OP_FC,
    OP_MAX_POOL,
    OP_AVG_POOL,
    OP_MEAN,
    OP_ADD,
    OP_SOFTMAX,
    OP_PAD,
) = range(10)
KP_OK, KP_ERR_ARG = 0, -1
GCC_HINT = "needs a host C compiler: sudo apt-get install gcc"
# KP_FUZZ_SCALE=50 fuzzes 50 times longer (the default keeps the file within its budget)
FUZZ_SCALE = float(os.environ.get("KP_FUZZ_SCALE", "1"))


def fuzz(n: int):
    return settings(
        max_examples=max(1, int(n * FUZZ_SCALE)),
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )


# ------------------------------------------------------------------ the driver
@pytest.fixture(scope="session")
def driver(tmp_path_factory):
    if cbuild.find_cc() is None:
        pytest.skip(GCC_HINT)
    exe = cbuild.compile_host(
        [*kernel_library.kernel_sources(), DRIVER_SRC],
        [kernel_library.KERNEL_DIR],
        tmp_path_factory.mktemp("kp_driver") / "kp_kernel_driver",
        sanitize=True,
    )
    d = PipeDriver(exe)
    yield d
    d.close()


def _flat(value) -> list[int]:
    """A params dict's leaves in struct field order (how the generator emits them)."""
    if isinstance(value, dict):
        return [v for x in value.values() for v in _flat(x)]
    if isinstance(value, (list, tuple)):
        return [v for x in value for v in _flat(x)]
    return [int(value)]


def encode(op: int, params: list[int], arrays: list[np.ndarray], out_len: int) -> bytes:
    parts = [
        struct.pack("<ii", op, len(params)),
        struct.pack(f"<{len(params)}i", *params),
        struct.pack("<i", len(arrays)),
    ]
    for a in arrays:
        parts.append(struct.pack("<ii", a.dtype.itemsize, a.size))
        parts.append(np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<")).tobytes())
    parts.append(struct.pack("<i", out_len))
    return b"".join(parts)


def run_c(driver: PipeDriver, op: int, params: list[int], arrays, out_shape) -> np.ndarray | None:
    """The kernel's output, or None when it returned KP_ERR_ARG."""
    out_len = int(np.prod(out_shape))
    status, out = driver.run(encode(op, params, list(arrays), out_len), out_len)
    assert status in (KP_OK, KP_ERR_ARG), status
    return out.reshape(out_shape) if status == KP_OK else None


def _i8(a) -> np.ndarray:
    return np.asarray(a, np.int8)


def _i32(a) -> np.ndarray:
    return np.asarray(a, np.int32).reshape(-1)


def c_conv(driver, x, w, bias, params, mult, shift, out_shape):
    eff = int8_ops.effective_bias(bias, w, params["input_offset"])
    ints = _flat(params) + [int(np.size(mult) > 1), *x.shape, *w.shape, *out_shape]
    return run_c(driver, OP_CONV, ints, [_i8(x), _i8(w), eff, _i32(mult), _i32(shift)], out_shape)


def c_dw_conv(driver, x, w, bias, params, mult, shift, out_shape):
    rows = np.asarray(w).reshape(-1, w.shape[3]).T  # taps of each output channel
    eff = int8_ops.effective_bias(bias, rows, params["input_offset"])
    ints = _flat(params) + [int(np.size(mult) > 1), *x.shape, *w.shape, *out_shape]
    return run_c(
        driver, OP_DW_CONV, ints, [_i8(x), _i8(w), eff, _i32(mult), _i32(shift)], out_shape
    )


def c_fc(driver, x, w, bias, params, mult, shift):
    eff = int8_ops.effective_bias(bias, w, params["input_offset"])
    (b, k), o = x.shape, w.shape[0]
    ints = _flat(params) + [int(np.size(mult) > 1), b, k, o]
    return run_c(driver, OP_FC, ints, [_i8(x), _i8(w), eff, _i32(mult), _i32(shift)], (b, o))


def c_pool(driver, op, x, params, filter_hw, out_shape):
    ints = _flat(params) + [*filter_hw, *x.shape, *out_shape]
    return run_c(driver, op, ints, [_i8(x)], out_shape)


def c_mean(driver, x, params):
    return run_c(driver, OP_MEAN, _flat(params) + list(x.shape), [_i8(x)], (x.shape[0], x.shape[3]))


def c_add(driver, x1, x2, params):
    return run_c(
        driver, OP_ADD, _flat(params) + [x1.size], [_i8(x1).ravel(), _i8(x2).ravel()], x1.shape
    )


def c_softmax(driver, x, params):
    rows = x.reshape(-1, x.shape[-1])
    return run_c(driver, OP_SOFTMAX, _flat(params) + list(rows.shape), [_i8(rows).ravel()], x.shape)


def c_pad(driver, x, params, out_shape):
    return run_c(
        driver, OP_PAD, _flat(params) + [*x.shape, *out_shape], [_i8(x).ravel()], out_shape
    )


def expect(model, *args):
    """int8_ops' output, or None where TFLM would refuse the case (ValueError)."""
    try:
        return model(*args)
    except ValueError:
        return None


def assert_same(c_out, expected) -> None:
    if expected is None:
        assert c_out is None, "the kernel accepted a case TFLM refuses"
        return
    assert c_out is not None, "the kernel refused a case TFLM runs"
    assert c_out.shape == expected.shape
    bad = np.flatnonzero(c_out != expected)
    assert bad.size == 0, (
        f"{bad.size}/{expected.size} differ; first at "
        f"{np.unravel_index(bad[0], expected.shape)}: C "
        f"{c_out.flat[bad[0]]}, int8_ops {expected.flat[bad[0]]}"
    )


# ------------------------------------------------------------------ strategies
def _log_uniform(rng, lo: float, hi: float, size=None):
    return np.float32(np.exp(rng.uniform(np.log(lo), np.log(hi), size))).astype(np.float32)


@st.composite
def quantization(draw, taps: int, channels: int, per_channel: bool):
    """Zero points, float32 scales and a fused activation giving outputs that span the
    int8 range without all saturating."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    zin, zout = draw(st.integers(-128, 127)), draw(st.integers(-128, 127))
    s_in = _log_uniform(rng, 1e-3, 0.1)
    s_w = _log_uniform(rng, 1e-4, 0.05, channels if per_channel else 1)
    spread = 2.0 ** draw(st.floats(-3, 3))
    s_out = np.float32(s_in * float(np.mean(s_w)) * np.sqrt(taps) * 40 * spread)
    act = draw(st.sampled_from(("NONE", "RELU", "RELU6")))
    return zin, zout, s_in, s_w, s_out, int8_ops.activation_range(act, s_out, zout)


@st.composite
def window(draw, in_size: int, filter_size: int, stride: int, dilation: int):
    """(out_size, pad_before): TFLM's SAME/VALID, or any padding below the filter."""
    scheme = draw(st.sampled_from(("SAME", "VALID", "custom")))
    eff = (filter_size - 1) * dilation + 1
    if scheme == "VALID" and in_size < eff:
        scheme = "SAME"
    if scheme != "custom":
        return int8_ops.padding(in_size, filter_size, stride, dilation, scheme)
    pad = draw(st.integers(0, filter_size - 1))
    return max(1, (in_size + 2 * pad - eff) // stride + 1), pad


@st.composite
def conv_cases(draw, depthwise: bool):
    n = draw(st.integers(1, 2))
    h, w = draw(st.integers(1, 8)), draw(st.integers(1, 8))
    c = draw(st.integers(1, 5))
    mult = draw(st.integers(1, 3)) if depthwise else 1
    o = c * mult if depthwise else draw(st.integers(1, 7))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dh, dw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    oh, ph = draw(window(h, kh, sh, dh))
    ow, pw = draw(window(w, kw, sw, dw))
    per_channel = draw(st.booleans())
    taps = kh * kw * (1 if depthwise else c)
    zin, zout, s_in, s_w, s_out, act = draw(quantization(taps, o, per_channel))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.integers(-128, 128, (n, h, w, c)).astype(np.int8)
    wshape = (1, kh, kw, o) if depthwise else (o, kh, kw, c)
    weights = rng.integers(-128, 128, wshape).astype(np.int8)
    bias = rng.integers(-(1 << 16), 1 << 16, o).astype(np.int32) if draw(st.booleans()) else None
    m, s = int8_ops.conv_quant(s_in, s_w, s_out)
    if depthwise:
        params = int8_ops.dw_conv_params(zin, zout, mult, (sh, sw), (ph, pw), (dh, dw), act)
    else:
        params = int8_ops.conv_params(zin, zout, (sh, sw), (ph, pw), (dh, dw), act)
    return x, weights, bias, params, m, s, (n, oh, ow, o)


@given(conv_cases(depthwise=False))
@fuzz(40)
def test_convolve_s8(driver, case):
    x, w, bias, params, m, s, out_shape = case
    expected = int8_ops.conv2d(x, w, bias, params, m, s, out_shape[1:3])
    assert_same(c_conv(driver, x, w, bias, params, m, s, out_shape), expected)


@given(conv_cases(depthwise=True))
@fuzz(40)
def test_depthwise_conv_s8(driver, case):
    x, w, bias, params, m, s, out_shape = case
    expected = int8_ops.depthwise_conv2d(x, w, bias, params, m, s, out_shape[1:3])
    assert_same(c_dw_conv(driver, x, w, bias, params, m, s, out_shape), expected)


@given(st.data())
@fuzz(30)
def test_fully_connected_s8(driver, data):
    b, k, o = (
        data.draw(st.integers(1, 3)),
        data.draw(st.integers(1, 48)),
        data.draw(st.integers(1, 12)),
    )
    per_channel = data.draw(st.booleans())
    zin, zout, s_in, s_w, s_out, act = data.draw(quantization(k, o, per_channel))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    x = rng.integers(-128, 128, (b, k)).astype(np.int8)
    w = rng.integers(-128, 128, (o, k)).astype(np.int8)
    bias = rng.integers(-(1 << 16), 1 << 16, o) if data.draw(st.booleans()) else None
    m, s = int8_ops.fc_quant(s_in, s_w, s_out)
    params = int8_ops.fc_params(zin, zout, act)
    expected = int8_ops.fully_connected(x, w, bias, params, m, s)
    assert_same(c_fc(driver, x, w, bias, params, m, s), expected)


@st.composite
def pool_cases(draw):
    n, h, w, c = (
        draw(st.integers(1, 2)),
        draw(st.integers(1, 8)),
        draw(st.integers(1, 8)),
        draw(st.integers(1, 6)),
    )
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    oh, ph = draw(window(h, kh, sh, 1))
    ow, pw = draw(window(w, kw, sw, 1))
    scale = float(np.float32(2.0 ** draw(st.floats(-8, 0))))
    act = int8_ops.activation_range(
        draw(st.sampled_from(("NONE", "RELU", "RELU6"))), scale, draw(st.integers(-128, 127))
    )
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.integers(-128, 128, (n, h, w, c)).astype(np.int8)
    return x, int8_ops.pool_params((sh, sw), (ph, pw), act), (kh, kw), (n, oh, ow, c)


@given(pool_cases())
@fuzz(30)
def test_max_pool_s8(driver, case):
    x, params, k, out_shape = case
    expected = int8_ops.max_pool2d(x, params, k, out_shape[1:3])
    assert_same(c_pool(driver, OP_MAX_POOL, x, params, k, out_shape), expected)


@given(pool_cases())
@fuzz(30)
def test_avg_pool_s8(driver, case):
    x, params, k, out_shape = case
    expected = expect(int8_ops.avg_pool2d, x, params, k, out_shape[1:3])
    assert_same(c_pool(driver, OP_AVG_POOL, x, params, k, out_shape), expected)


@given(st.data())
@fuzz(25)
def test_mean_s8(driver, data):
    shape = tuple(data.draw(st.integers(1, n)) for n in (2, 9, 9, 8))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    s_in = float(_log_uniform(rng, 1e-3, 0.5))
    same = data.draw(st.booleans())
    s_out = s_in if same else float(np.float32(s_in * 2.0 ** data.draw(st.floats(-3, 3))))
    zin = data.draw(st.integers(-128, 127))
    zout = zin if same else data.draw(st.integers(-128, 127))
    params = int8_ops.mean_params(shape, s_in, zin, s_out, zout)
    x = rng.integers(-128, 128, shape).astype(np.int8)
    assert_same(c_mean(driver, x, params), int8_ops.mean_hw(x, params))


@given(st.data())
@fuzz(25)
def test_elementwise_add_s8(driver, data):
    size = data.draw(st.integers(1, 300))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    s1, s2 = (float(v) for v in _log_uniform(rng, 1e-3, 1.0, 2))
    s_out = float(np.float32(max(s1, s2) * 2.0 ** data.draw(st.floats(-1, 2))))
    z1, z2, zo = (data.draw(st.integers(-128, 127)) for _ in range(3))
    act = int8_ops.activation_range(
        data.draw(st.sampled_from(("NONE", "RELU", "RELU6"))), s_out, zo
    )
    params = int8_ops.add_params(s1, z1, s2, z2, s_out, zo, *act)
    x1 = rng.integers(-128, 128, size).astype(np.int8)
    x2 = rng.integers(-128, 128, size).astype(np.int8)
    assert_same(c_add(driver, x1, x2, params), int8_ops.add(x1, x2, params))


@given(st.data())
@fuzz(40)
def test_softmax_s8(driver, data):
    rows, depth = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 40))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    beta = data.draw(st.sampled_from((1.0, 0.5, 2.0, float(_log_uniform(rng, 0.1, 4)))))
    params = int8_ops.softmax_params(beta, float(_log_uniform(rng, 1e-3, 0.5)))
    spread = data.draw(st.integers(0, 255))  # narrow rows exercise sums of many exps
    lo = data.draw(st.integers(-128, 127 - spread))
    x = rng.integers(lo, lo + spread + 1, (rows, depth)).astype(np.int8)
    if depth > 3 and data.draw(st.booleans()):  # values on and around the diff_min cut
        x[:, 0] = 127
        cut = 127 + params["diff_min"]
        x[:, 1:4] = np.clip([cut - 1, cut, cut + 1], -128, 127)
    assert_same(c_softmax(driver, x, params), expect(int8_ops.softmax, x, params))


@given(st.data())
@fuzz(25)
def test_pad_s8(driver, data):
    shape = tuple(data.draw(st.integers(1, 4)) for _ in range(4))
    paddings = [(data.draw(st.integers(0, 3)), data.draw(st.integers(0, 3))) for _ in range(4)]
    params = int8_ops.pad_params(paddings, data.draw(st.integers(-128, 127)))
    x = (
        np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
        .integers(-128, 128, shape)
        .astype(np.int8)
    )
    expected = int8_ops.pad(x, params)
    assert_same(c_pad(driver, x, params, expected.shape), expected)


# ------------------------------------------------------------------ edges and refusals
def test_null_pointers_are_refused(driver):
    status, _ = driver.run(encode(OP_CHECKS, [], [], 0), 0)
    assert status == 0, f"{status} null-pointer checks failed (see the driver's stderr)"


def test_edges_match_tflm_semantics(driver):
    # a lone conv pixel takes the odd-pixel path; 1x1 everything
    x = np.array([[[[-128]]]], np.int8)
    w = np.array([[[[127]]]], np.int8)
    m, s = int8_ops.conv_quant(0.5, [0.5], 0.25)
    p = int8_ops.conv_params(-128, 5, (1, 1), (0, 0), (1, 1), (-128, 127))
    assert_same(
        c_conv(driver, x, w, [7], p, m, s, (1, 1, 1, 1)),
        int8_ops.conv2d(x, w, [7], p, m, s, (1, 1)),
    )
    # an average-pool window wholly in the padding: TFLM fails, so must the kernel
    x = np.zeros((1, 2, 2, 1), np.int8)
    p = int8_ops.pool_params((1, 1), (3, 0))
    assert expect(int8_ops.avg_pool2d, x, p, (2, 2), (3, 1)) is None
    assert c_pool(driver, OP_AVG_POOL, x, p, (2, 2), (1, 3, 1, 1)) is None
    # 600 equal logits sum past 2^28: TFLM's softmax exponent CHECK fails
    p = int8_ops.softmax_params(1.0, 0.1)
    x = np.zeros((1, 600), np.int8)
    assert expect(int8_ops.softmax, x, p) is None
    assert c_softmax(driver, x, p) is None
    # a mean over one pixel is a plain requantization
    x = np.arange(-128, 128, 32, dtype=np.int8).reshape(1, 1, 1, 8)
    p = int8_ops.mean_params(x.shape, 0.1, 3, 0.2, -7)
    assert_same(c_mean(driver, x, p), int8_ops.mean_hw(x, p))


def test_bad_arguments_are_refused(driver):
    x = np.zeros((1, 3, 3, 2), np.int8)
    w = np.zeros((2, 1, 1, 2), np.int8)
    m, s = np.array([1 << 30], np.int32), np.array([-1], np.int32)
    good = int8_ops.conv_params(0, 0, (1, 1), (0, 0), (1, 1), (-128, 127))
    assert c_conv(driver, x, w, None, good, m, s, (1, 3, 3, 2)) is not None
    for key, value in (
        ("stride", {"h": 0, "w": 1}),
        ("dilation", {"h": 1, "w": 0}),
        ("padding", {"h": -1, "w": 0}),
        ("activation", {"min": 5, "max": 4}),
        ("input_offset", 129),
        ("output_offset", 128),
    ):
        assert c_conv(driver, x, w, None, {**good, key: value}, m, s, (1, 3, 3, 2)) is None
    for shift in (-32, 31):
        assert c_conv(driver, x, w, None, good, m, [shift], (1, 3, 3, 2)) is None
    # filter depth != input depth (grouped) and output channels != filters
    assert (
        c_conv(driver, x, np.zeros((2, 1, 1, 1), np.int8), None, good, m, s, (1, 3, 3, 2)) is None
    )
    assert c_conv(driver, x, w, None, good, m, s, (1, 3, 3, 3)) is None
    add = int8_ops.add_params(0.1, 0, 0.1, 0, 0.2, 0)
    for key, value in (("left_shift", 21), ("input1_shift", 1), ("output_shift", -32)):
        assert c_add(driver, x, x, {**add, key: value}) is None
    sm = int8_ops.softmax_params(1.0, 0.1)
    for key, value in (("input_left_shift", 31), ("diff_min", 1), ("diff_min", -(1 << 31))):
        assert c_softmax(driver, x, {**sm, key: value}) is None
    pad = int8_ops.pad_params([(0, 0), (1, 0), (0, 0), (0, 0)], 0)
    assert c_pad(driver, x, pad, (1, 3, 3, 2)) is None  # output dims don't add up


# ------------------------------------------------------------------ builds
def test_kernels_build_warning_free(tmp_path):
    if cbuild.find_cc() is None:
        pytest.skip(GCC_HINT)
    # -O2 (not the fuzz build's -O1) turns on the flow-dependent warnings
    exe = cbuild.compile_host(
        [*kernel_library.kernel_sources(), DRIVER_SRC],
        [kernel_library.KERNEL_DIR],
        tmp_path / "driver_o2",
    )
    done = subprocess.run([str(exe)], input=encode(OP_CHECKS, [], [], 0), capture_output=True)
    assert done.returncode == 0 and done.stdout[:4] == b"\0\0\0\0", done.stderr.decode()
    arm = shutil.which("arm-none-eabi-gcc")
    if arm is None:
        return
    flags = [
        "-mcpu=cortex-m4",
        "-mthumb",
        "-O2",
        "-std=c99",
        "-Wall",
        "-Wextra",
        "-Werror",
        "-c",
        f"-I{kernel_library.KERNEL_DIR}",
    ]
    for extra, out in (([], "dsp"), (["-DKP_NO_DSP"], "portable")):
        (tmp_path / out).mkdir()
        done = subprocess.run(
            [arm, *flags, *extra, *map(str, kernel_library.kernel_sources())],
            cwd=tmp_path / out,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr


# ------------------------------------------------------------------ against TFLM
@pytest.fixture(scope="module")
def tflm_run():
    """Every op type in one int8 model, run in TFLM with all intermediates kept."""
    pytest.importorskip("tflite_micro", reason="pip install 'keras-prune[tflm]'")
    import keras

    from keras_prune.export.int8.convert import convert_int8
    from keras_prune.export.int8.flatbuffer import read_tflite
    from keras_prune.export.int8.runtime import quantize_input, run_tflm_raw

    L = keras.layers
    keras.utils.set_random_seed(1)
    inp = keras.Input((9, 9, 3))
    x = L.ZeroPadding2D(((1, 0), (2, 1)))(inp)
    x = L.Conv2D(8, 3, strides=2, padding="same", activation="relu")(x)
    y = L.DepthwiseConv2D(3, depth_multiplier=2, padding="same", activation="relu6")(x)
    z = L.Conv2D(16, 1, strides=1)(x)
    d = L.Conv2D(16, 3, dilation_rate=2, padding="same")(x)
    s = L.Add()([L.Add()([y, z]), d])
    m = L.MaxPooling2D(2, strides=1)(s)
    a = L.AveragePooling2D(3, strides=2, padding="same")(m)
    g = L.Concatenate()(
        [L.GlobalAveragePooling2D()(a), L.Flatten()(L.GlobalAveragePooling2D(keepdims=True)(m))]
    )
    h = L.Dense(12, activation="relu")(g)
    probs = L.Softmax()(L.Dense(10)(h))
    # one output channel: per-tensor CONV_2D and FULLY_CONNECTED quantization
    t = L.Dense(1)(L.Flatten()(L.Conv2D(1, 2, strides=3, padding="valid")(x)))
    model = keras.Model(inp, [probs, t])
    rng = np.random.default_rng(0)
    for layer in model.layers:  # nonzero biases and varied weights
        layer.set_weights(
            [rng.normal(0, 0.3, v.shape).astype(np.float32) for v in layer.get_weights()]
        )
    data = rng.normal(size=(64, 9, 9, 3)).astype(np.float32)
    model_bytes = convert_int8(model, data)
    graph = read_tflite(model_bytes)
    inp_t = graph.tensors[graph.inputs[0]]
    xq = quantize_input(
        rng.normal(size=(16, 9, 9, 3)).astype(np.float32) * 1.5,
        float(inp_t.scale[0]),
        int(inp_t.zero_point[0]),
    )
    acts = sorted(
        {
            i
            for op in graph.operators
            for i in (*op.inputs, *op.outputs)
            if i >= 0 and graph.tensors[i].data is None
        }
        - set(graph.inputs)
    )
    raw = run_tflm_raw(model_bytes, xq, extra=tuple(acts))[len(graph.outputs) :]
    values = {graph.inputs[0]: xq}
    for i, r in zip(acts, raw, strict=True):
        values[i] = r.reshape(len(xq), *graph.tensors[i].shape[1:])
    return graph, values


def _ops(graph, name: str):
    ops = [op for op in graph.operators if op.name == name]
    assert ops, f"the converter emitted no {name}"
    return ops


def _maybe_c(request, fn, *args):
    if cbuild.find_cc() is None:
        return None
    return fn(request.getfixturevalue("driver"), *args)


def _conv_like(graph, values, op, depthwise: bool, request) -> None:
    t = graph.tensors
    inp, w, out = t[op.inputs[0]], t[op.inputs[1]], t[op.outputs[0]]
    bias = t[op.inputs[2]].data if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
    o = op.options
    kh, kw = w.shape[1:3]
    stride, dil = (o["stride_h"], o["stride_w"]), (o["dilation_h_factor"], o["dilation_w_factor"])
    geo = [
        int8_ops.padding(inp.shape[1 + a], (kh, kw)[a], stride[a], dil[a], o["padding"])
        for a in range(2)
    ]
    assert tuple(g[0] for g in geo) == out.shape[1:3]
    pad = [
        int8_ops.padding(inp.shape[1 + a], (kh, kw)[a], stride[a], dil[a], out.shape[1 + a])
        for a in range(2)
    ]
    assert pad == [g[1] for g in geo]
    m, s = int8_ops.conv_quant(float(inp.scale[0]), w.scale, float(out.scale[0]))
    act = int8_ops.activation_range(
        o["fused_activation_function"], float(out.scale[0]), int(out.zero_point[0])
    )
    zin, zout = int(inp.zero_point[0]), int(out.zero_point[0])
    x, want = values[op.inputs[0]], values[op.outputs[0]]
    if depthwise:
        p = int8_ops.dw_conv_params(zin, zout, o["depth_multiplier"], stride, pad, dil, act)
        got = int8_ops.depthwise_conv2d(x, w.data, bias, p, m, s, out.shape[1:3])
        c = _maybe_c(request, c_dw_conv, x, w.data, bias, p, m, s, want.shape)
    else:
        p = int8_ops.conv_params(zin, zout, stride, pad, dil, act)
        got = int8_ops.conv2d(x, w.data, bias, p, m, s, out.shape[1:3])
        c = _maybe_c(request, c_conv, x, w.data, bias, p, m, s, want.shape)
    np.testing.assert_array_equal(got, want)
    if c is not None:
        np.testing.assert_array_equal(c, want)


def test_tflm_conv_2d(tflm_run, request):
    graph, values = tflm_run
    ops = _ops(graph, "CONV_2D")
    options = {
        (
            o.options["stride_h"],
            o.options["dilation_h_factor"],
            o.options["padding"],
            graph.tensors[o.inputs[1]].scale.size > 1,
        )
        for o in ops
    }
    assert {(2, 1, "SAME", True), (1, 2, "SAME", True), (3, 1, "VALID", False)} <= options
    for op in ops:
        _conv_like(graph, values, op, False, request)


def test_tflm_depthwise_conv_2d(tflm_run, request):
    graph, values = tflm_run
    for op in _ops(graph, "DEPTHWISE_CONV_2D"):
        assert op.options["depth_multiplier"] == 2
        _conv_like(graph, values, op, True, request)


def test_tflm_fully_connected(tflm_run, request):
    graph, values = tflm_run
    ops = _ops(graph, "FULLY_CONNECTED")
    assert {graph.tensors[o.inputs[1]].scale.size > 1 for o in ops} == {True, False}
    for op in ops:
        inp, w, out = (graph.tensors[i] for i in (op.inputs[0], op.inputs[1], op.outputs[0]))
        bias = graph.tensors[op.inputs[2]].data if op.inputs[2] >= 0 else None
        m, s = int8_ops.fc_quant(float(inp.scale[0]), w.scale, float(out.scale[0]))
        act = int8_ops.activation_range(
            op.options["fused_activation_function"], float(out.scale[0]), int(out.zero_point[0])
        )
        p = int8_ops.fc_params(int(inp.zero_point[0]), int(out.zero_point[0]), act)
        x = values[op.inputs[0]].reshape(-1, w.shape[1])
        want = values[op.outputs[0]].reshape(len(x), -1)
        np.testing.assert_array_equal(int8_ops.fully_connected(x, w.data, bias, p, m, s), want)
        c = _maybe_c(request, c_fc, x, w.data, bias, p, m, s)
        if c is not None:
            np.testing.assert_array_equal(c, want)


@pytest.mark.parametrize("name", ["MAX_POOL_2D", "AVERAGE_POOL_2D"])
def test_tflm_pooling(tflm_run, request, name):
    graph, values = tflm_run
    for op in _ops(graph, name):
        inp, out = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
        o = op.options
        k, stride = (o["filter_height"], o["filter_width"]), (o["stride_h"], o["stride_w"])
        geo = [
            int8_ops.padding(inp.shape[1 + a], k[a], stride[a], 1, o["padding"]) for a in range(2)
        ]
        assert tuple(g[0] for g in geo) == out.shape[1:3]
        act = int8_ops.activation_range(
            o["fused_activation_function"], float(out.scale[0]), int(out.zero_point[0])
        )
        p = int8_ops.pool_params(stride, [g[1] for g in geo], act)
        x, want = values[op.inputs[0]], values[op.outputs[0]]
        model = int8_ops.max_pool2d if name == "MAX_POOL_2D" else int8_ops.avg_pool2d
        np.testing.assert_array_equal(model(x, p, k, out.shape[1:3]), want)
        c = _maybe_c(
            request,
            c_pool,
            OP_MAX_POOL if name == "MAX_POOL_2D" else OP_AVG_POOL,
            x,
            p,
            k,
            want.shape,
        )
        if c is not None:
            np.testing.assert_array_equal(c, want)


def test_tflm_mean(tflm_run, request):
    graph, values = tflm_run
    ops = _ops(graph, "MEAN")
    assert {o.options["keep_dims"] for o in ops} == {True, False}
    for op in ops:
        inp, out = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
        assert sorted(graph.tensors[op.inputs[1]].data.tolist()) == [1, 2]
        p = int8_ops.mean_params(
            inp.shape,
            float(inp.scale[0]),
            int(inp.zero_point[0]),
            float(out.scale[0]),
            int(out.zero_point[0]),
        )
        x = values[op.inputs[0]]
        want = values[op.outputs[0]].reshape(len(x), -1)
        np.testing.assert_array_equal(int8_ops.mean_hw(x, p), want)
        c = _maybe_c(request, c_mean, x, p)
        if c is not None:
            np.testing.assert_array_equal(c, want)


def test_tflm_add(tflm_run, request):
    graph, values = tflm_run
    for op in _ops(graph, "ADD"):
        a, b, out = (graph.tensors[i] for i in (*op.inputs[:2], op.outputs[0]))
        act = int8_ops.activation_range(
            op.options["fused_activation_function"], float(out.scale[0]), int(out.zero_point[0])
        )
        p = int8_ops.add_params(
            float(a.scale[0]),
            int(a.zero_point[0]),
            float(b.scale[0]),
            int(b.zero_point[0]),
            float(out.scale[0]),
            int(out.zero_point[0]),
            *act,
        )
        x1, x2, want = (values[i] for i in (*op.inputs[:2], op.outputs[0]))
        np.testing.assert_array_equal(int8_ops.add(x1, x2, p), want)
        c = _maybe_c(request, c_add, x1, x2, p)
        if c is not None:
            np.testing.assert_array_equal(c, want)


def test_tflm_softmax(tflm_run, request):
    graph, values = tflm_run
    for op in _ops(graph, "SOFTMAX"):
        inp, out = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
        assert int(out.zero_point[0]) == -128 and float(out.scale[0]) == 1 / 256
        p = int8_ops.softmax_params(op.options["beta"], float(inp.scale[0]))
        x, want = values[op.inputs[0]], values[op.outputs[0]]
        np.testing.assert_array_equal(int8_ops.softmax(x, p), want)
        c = _maybe_c(request, c_softmax, x, p)
        if c is not None:
            np.testing.assert_array_equal(c, want)


def test_tflm_pad(tflm_run, request):
    graph, values = tflm_run
    for op in _ops(graph, "PAD"):
        out = graph.tensors[op.outputs[0]]
        p = int8_ops.pad_params(graph.tensors[op.inputs[1]].data, int(out.zero_point[0]))
        x, want = values[op.inputs[0]], values[op.outputs[0]]
        np.testing.assert_array_equal(int8_ops.pad(x, p), want)
        c = _maybe_c(request, c_pad, x, p, want.shape)
        if c is not None:
            np.testing.assert_array_equal(c, want)
