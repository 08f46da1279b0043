"""The SIMD-group sparse CONV_2D kernel (csrc/kp_sparse_convolve_s8.c): built with ASan +
UBSan with exactly its scratch, the portable kernel equals ``reference.conv2d`` on the
dense pruned filter bit for bit over random windows (hypothesis: strides, dilations,
padding, 1x1 and first-layer filters, channel counts off the 4-byte grid, pixel counts
off the 4- and 16-pixel passes, every index stream); the Cortex-M4 DSP kernel under
unicorn equals it on ResNet-8-, MobileNet- and DS-CNN-shaped layers."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from conftest import group_pruned as pruned
from conftest import sanitized_driver
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keras_prune.export.cgen import cost_model as sparse_cost
from keras_prune.export.cgen import kernel_library
from keras_prune.export.cgen.sparse_format import INDEX_KINDS, depthwise_rows, encode_groups
from keras_prune.export.int8 import reference as int8_ops
from keras_prune.mcu import profiler as m4_profile

DRIVER_SRC = Path(__file__).parent / "csrc" / "kp_sparse_conv_driver.c"
SOURCES = [kernel_library.KERNEL_DIR / "kp_sparse_convolve_s8.c"]


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    d = sanitized_driver(tmp_path_factory, [*SOURCES, DRIVER_SRC], "kp_sparse_conv_driver")
    yield d
    d.close()


def make_case(rng, shape, sparsity, per_channel, kind=None):
    """shape: (n, h, w, cin, oc, kh, kw, stride, dilation, padding scheme)."""
    n, h, w, cin, oc, kh, kw, st_, dil, scheme = shape
    (oh, ph), (ow, pw) = (
        int8_ops.padding(h, kh, st_[0], dil[0], scheme),
        int8_ops.padding(w, kw, st_[1], dil[1], scheme),
    )
    k = kh * kw * cin
    wt = pruned(rng, oc, k, sparsity, contiguous=bool(rng.integers(2)))
    zin, zout = int(rng.integers(-128, 128)), int(rng.integers(-128, 128))
    s_in = np.float32(10 ** rng.uniform(-3, -1))
    s_w = (10 ** rng.uniform(-4, -1.3, oc if per_channel else 1)).astype(np.float32)
    s_out = np.float32(s_in * float(np.mean(s_w)) * np.sqrt(k) * 40 * 2.0 ** rng.uniform(-3, 3))
    act = int8_ops.activation_range(["NONE", "RELU", "RELU6"][int(rng.integers(3))], s_out, zout)
    m, s = int8_ops.conv_quant(float(s_in), s_w, float(s_out))
    params = int8_ops.conv_params(zin, zout, st_, (ph, pw), dil, act)
    x = rng.integers(-128, 128, (n, h, w, cin)).astype(np.int8)
    bias = rng.integers(-(1 << 16), 1 << 16, oc) if rng.integers(2) else None
    eff = int8_ops.effective_bias(bias, wt, params["input_offset"])
    sg = encode_groups(wt, index=kind)
    m, s = np.asarray(m, np.int32).ravel(), np.asarray(s, np.int32).ravel()
    expected = int8_ops.conv2d(x, wt.reshape(oc, kh, kw, cin), bias, params, m, s, (oh, ow))
    return x, sg, eff, params, m, s, (kh, kw), expected


def host_run(driver, x, sg, eff, params, m, s, window, expected_shape):
    n, h, w, cin = x.shape
    _, oh, ow, oc = expected_shape
    p = params
    header = [
        n, h, w, cin, oc, *window, oh, ow,
        p["stride"]["h"], p["stride"]["w"], p["padding"]["h"], p["padding"]["w"],
        p["dilation"]["h"], p["dilation"]["w"], p["input_offset"], p["output_offset"],
        p["activation"]["min"], p["activation"]["max"], int(m.size > 1),
        INDEX_KINDS[sg.index_kind], sg.n_groups, sg.index.size, m.size,
    ]  # fmt: skip
    case = b"".join(
        [
            struct.pack("<24i", *header),
            x.tobytes(),
            sg.counts.astype("<u2").tobytes(),
            sg.words.astype("<u4").tobytes(),
            sg.index.tobytes(),
            eff.astype("<i4").tobytes(),
            m.astype("<i4").tobytes(),
            s.astype("<i4").tobytes(),
        ]
    )
    status, out = driver.run(case, int(np.prod(expected_shape)))
    return status, out.reshape(expected_shape)


@pytest.fixture(scope="module")
def rows_driver(tmp_path_factory):
    sources = [
        kernel_library.KERNEL_DIR / "kp_sparse_convolve_rows_s8.c",
        DRIVER_SRC.with_name("kp_sparse_conv_rows_driver.c"),
    ]
    d = sanitized_driver(tmp_path_factory, sources, "kp_sparse_conv_rows_driver")
    yield d
    d.close()


@pytest.mark.parametrize("variant", ["quads", "rows"])
@given(data=st.data())
@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
def test_portable_kernel_equals_reference(driver, rows_driver, variant, data):
    """Both sparse convolutions: kp_sparse_convolve_s8 (quads) and the block-of-rows
    variant the cost model picks for few-channel layers."""
    if variant == "rows":
        driver = rows_driver
    kh, kw = data.draw(st.sampled_from([(1, 1), (3, 3), (5, 5), (3, 1), (2, 4)]))
    shape = (
        data.draw(st.integers(1, 2)),
        data.draw(st.integers(2 * kh - 1, 11)),  # room for a dilated VALID window
        data.draw(st.integers(2 * kw - 1, 11)),
        data.draw(st.sampled_from([1, 2, 3, 4, 5, 8, 12, 16])),
        data.draw(st.integers(1, 9)),
        kh,
        kw,
        (data.draw(st.integers(1, 2)), data.draw(st.integers(1, 2))),
        data.draw(st.sampled_from([(1, 1), (2, 1), (1, 2)])),
        data.draw(st.sampled_from(["SAME", "VALID"])),
    )
    sparsity = data.draw(st.sampled_from([0.0, 0.5, 0.7, 0.9, 1.0]))
    kind = data.draw(st.sampled_from([None, *INDEX_KINDS]))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    x, sg, eff, params, m, s, window, expected = make_case(
        rng, shape, sparsity, data.draw(st.booleans()), kind
    )
    status, out = host_run(driver, x, sg, eff, params, m, s, window, expected.shape)
    assert status == 0
    np.testing.assert_array_equal(out, expected)


def test_portable_kernel_rejects(driver):
    rng = np.random.default_rng(1)
    shape = (1, 6, 6, 4, 3, 3, 3, (1, 1), (1, 1), "SAME")
    x, sg, eff, params, m, s, window, expected = make_case(rng, shape, 0.5, False)
    assert host_run(driver, x, sg, eff, params, m, s, window, expected.shape)[0] == 0
    bad = dict(params, activation={"min": 5, "max": 4})
    assert host_run(driver, x, sg, eff, bad, m, s, window, expected.shape)[0] == -1
    bad = dict(params, stride={"h": 0, "w": 1})
    assert host_run(driver, x, sg, eff, bad, m, s, window, expected.shape)[0] == -1


# ---------------------------------------------------------------- the DSP kernel
# (n, h, w, cin, oc, kh, kw, stride, dilation, padding)
M4_SHAPES = [
    ((1, 12, 12, 16, 16, 3, 3, (1, 1), (1, 1), "SAME"), 0.7, "abs16"),  # ResNet-8 block
    ((1, 9, 9, 16, 32, 3, 3, (2, 2), (1, 1), "SAME"), 0.5, "delta8"),  # ResNet-8 stride 2
    ((1, 8, 8, 16, 32, 1, 1, (2, 2), (1, 1), "VALID"), 0.9, "runs"),  # its shortcut
    ((1, 13, 13, 3, 8, 3, 3, (2, 2), (1, 1), "SAME"), 0.7, None),  # MobileNet stem
    ((1, 6, 6, 64, 64, 1, 1, (1, 1), (1, 1), "VALID"), 0.7, "abs16"),  # pointwise
    ((1, 3, 3, 128, 128, 1, 1, (1, 1), (1, 1), "VALID"), 0.9, "delta8"),  # 9 pixels
    ((1, 13, 5, 1, 12, 5, 4, (2, 2), (1, 1), "SAME"), 0.5, None),  # DS-CNN stem
    ((2, 7, 7, 8, 6, 3, 3, (1, 1), (2, 2), "SAME"), 0.0, "runs"),  # dilated, 2 images
]


@pytest.fixture(scope="module")
def m4(tmp_path_factory):
    if not m4_profile.available():
        pytest.skip(f"{m4_profile.INSTALL_HINT}; {m4_profile.UNICORN_HINT}")
    d = tmp_path_factory.mktemp("sparse_conv_m4")
    elf = m4_profile.build_library_elf(
        [*SOURCES, kernel_library.KERNEL_DIR / "kp_sparse_convolve_rows_s8.c"],
        d / "kp_sparse_conv.elf",
        include_dirs=[kernel_library.KERNEL_DIR],
    )
    return m4_profile.M4Emulator(elf)


def m4_run(emu, x, sg, eff, params, m, s, window, expected_shape, variant="quads"):
    n, h, w, cin = x.shape
    _, oh, ow, oc = expected_shape
    p = params
    emu.reset_heap()
    pa = emu.put_words(
        p["input_offset"], p["output_offset"], p["stride"]["h"], p["stride"]["w"],
        p["padding"]["h"], p["padding"]["w"], p["dilation"]["h"], p["dilation"]["w"],
        p["activation"]["min"], p["activation"]["max"],
    )  # fmt: skip
    qa = emu.put_words(emu.put(m), emu.put(s), int(m.size > 1))
    wa = emu.put_words(
        sg.rows,
        sg.k,
        INDEX_KINDS[sg.index_kind],
        sg.n_groups,
        emu.put(sg.counts.astype("<u2")),
        emu.put(sg.words.astype("<u4")) if sg.n_groups else 0,
        emu.put(sg.index) if sg.index.size else 0,
    )
    p_ = params
    shape = sparse_cost.ConvShape(
        oh, ow, *window, cin,
        (p_["stride"]["h"], p_["stride"]["w"]), (p_["dilation"]["h"], p_["dilation"]["w"]),
        (p_["padding"]["h"], p_["padding"]["w"]),
    )  # fmt: skip
    scratch = (
        sparse_cost.conv_rows_scratch_bytes(shape)
        if variant == "rows"
        else sparse_cost.conv_scratch_bytes(shape)
    )
    out = emu.alloc(int(np.prod(expected_shape)))
    status, prof = emu.call(
        "kp_sparse_convolve_rows_s8" if variant == "rows" else "kp_sparse_convolve_s8",
        pa,
        qa,
        emu.put_words(n, h, w, cin),
        emu.put(x),
        emu.put_words(oc, *window, cin),
        wa,
        emu.put(eff),
        emu.put_words(n, oh, ow, oc),
        out,
        emu.alloc(scratch),
    )
    got = emu.read_array(out, np.int8, int(np.prod(expected_shape))).reshape(expected_shape)
    return status, got, prof


@pytest.mark.slow  # unicorn
@pytest.mark.parametrize("variant", ["quads", "rows"])
@pytest.mark.parametrize("shape,sparsity,kind", M4_SHAPES)
def test_dsp_kernel_equals_reference(m4, driver, shape, sparsity, kind, variant):
    rng = np.random.default_rng(shape[1] * 31 + shape[3])
    for trial in range(2):
        x, sg, eff, params, m, s, window, expected = make_case(
            rng, shape, sparsity, trial == 0, kind
        )
        status, host = host_run(driver, x, sg, eff, params, m, s, window, expected.shape)
        assert status == 0
        np.testing.assert_array_equal(host, expected)
        status, arm, _ = m4_run(m4, x, sg, eff, params, m, s, window, expected.shape, variant)
        assert status == 0
        np.testing.assert_array_equal(arm, expected)


# ---------------------------------------------------------------- depthwise
DW_DRIVER_SRC = Path(__file__).parent / "csrc" / "kp_sparse_dw_driver.c"
DW_SOURCES = [kernel_library.KERNEL_DIR / "kp_sparse_depthwise_conv_s8.c"]


@pytest.fixture(scope="module")
def dw_driver(tmp_path_factory):
    d = sanitized_driver(tmp_path_factory, [*DW_SOURCES, DW_DRIVER_SRC], "kp_sparse_dw_driver")
    yield d
    d.close()


def make_dw_case(rng, shape, sparsity, per_channel, kind=None):
    """shape: (n, h, w, c, kh, kw, stride, dilation, padding scheme); SIMD groups of 4
    channels at one tap pruned at random."""
    n, h, w, c, kh, kw, st_, dil, scheme = shape
    (oh, ph), (ow, pw) = (
        int8_ops.padding(h, kh, st_[0], dil[0], scheme),
        int8_ops.padding(w, kw, st_[1], dil[1], scheme),
    )
    taps = kh * kw
    keep = np.repeat(rng.random((taps, c // 4)) >= sparsity, 4, axis=1)
    wt = np.where(keep, rng.integers(-128, 128, (taps, c)), 0).astype(np.int8)
    zin, zout = int(rng.integers(-128, 128)), int(rng.integers(-128, 128))
    s_in = np.float32(10 ** rng.uniform(-3, -1))
    s_w = (10 ** rng.uniform(-4, -1.3, c if per_channel else 1)).astype(np.float32)
    s_out = np.float32(s_in * float(np.mean(s_w)) * 3 * 40 * 2.0 ** rng.uniform(-3, 3))
    act = int8_ops.activation_range(["NONE", "RELU", "RELU6"][int(rng.integers(3))], s_out, zout)
    m, s = int8_ops.conv_quant(float(s_in), s_w, float(s_out))
    params = int8_ops.dw_conv_params(zin, zout, 1, st_, (ph, pw), dil, act)
    x = rng.integers(-128, 128, (n, h, w, c)).astype(np.int8)
    bias = rng.integers(-(1 << 16), 1 << 16, c) if rng.integers(2) else None
    eff = int8_ops.effective_bias(bias, wt.T, params["input_offset"])
    sg = encode_groups(depthwise_rows(wt), index=kind)
    m, s = np.asarray(m, np.int32).ravel(), np.asarray(s, np.int32).ravel()
    expected = int8_ops.depthwise_conv2d(x, wt.reshape(1, kh, kw, c), bias, params, m, s, (oh, ow))
    return x, sg, eff, params, m, s, (kh, kw), expected


@given(st.data())
@settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
def test_portable_depthwise_equals_reference(dw_driver, data):
    kh, kw = data.draw(st.sampled_from([(3, 3), (5, 5), (3, 1), (1, 1)]))
    shape = (
        data.draw(st.integers(1, 2)),
        data.draw(st.integers(2 * kh - 1, 10)),
        data.draw(st.integers(2 * kw - 1, 10)),
        data.draw(st.sampled_from([4, 8, 12, 32])),
        kh,
        kw,
        (data.draw(st.integers(1, 2)), data.draw(st.integers(1, 2))),
        data.draw(st.sampled_from([(1, 1), (2, 1), (1, 2)])),
        data.draw(st.sampled_from(["SAME", "VALID"])),
    )
    sparsity = data.draw(st.sampled_from([0.0, 0.5, 0.7, 0.9, 1.0]))
    kind = data.draw(st.sampled_from([None, *INDEX_KINDS]))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    x, sg, eff, params, m, s, window, expected = make_dw_case(
        rng, shape, sparsity, data.draw(st.booleans()), kind
    )
    status, out = host_run(dw_driver, x, sg, eff, params, m, s, window, expected.shape)
    assert status == 0
    np.testing.assert_array_equal(out, expected)


def test_sparse_depthwise_rejects(dw_driver):
    rng = np.random.default_rng(2)
    x, sg, eff, params, m, s, window, expected = make_dw_case(
        rng, (1, 6, 6, 8, 3, 3, (1, 1), (1, 1), "SAME"), 0.5, True
    )
    assert host_run(dw_driver, x, sg, eff, params, m, s, window, expected.shape)[0] == 0
    bad = dict(params, dilation={"h": 1, "w": 0})
    assert host_run(dw_driver, x, sg, eff, bad, m, s, window, expected.shape)[0] == -1
    with pytest.raises(ValueError, match="multiple of 4"):
        depthwise_rows(np.zeros((9, 6), np.int8))


DW_M4_SHAPES = [
    ((1, 12, 12, 8, 3, 3, (1, 1), (1, 1), "SAME"), 0.7, "abs16"),  # MobileNet dw1
    ((1, 12, 12, 16, 3, 3, (2, 2), (1, 1), "SAME"), 0.5, "delta8"),  # a stride-2 dw
    ((1, 13, 5, 64, 3, 3, (1, 1), (1, 1), "SAME"), 0.9, "runs"),  # DS-CNN
    ((2, 6, 6, 32, 3, 3, (1, 1), (2, 2), "VALID"), 0.0, None),  # dilated, 2 images
]


@pytest.fixture(scope="module")
def m4_dw(tmp_path_factory):
    if not m4_profile.available():
        pytest.skip(f"{m4_profile.INSTALL_HINT}; {m4_profile.UNICORN_HINT}")
    d = tmp_path_factory.mktemp("sparse_dw_m4")
    elf = m4_profile.build_library_elf(
        DW_SOURCES, d / "kp_sparse_dw.elf", include_dirs=[kernel_library.KERNEL_DIR]
    )
    return m4_profile.M4Emulator(elf)


def m4_dw_run(emu, x, sg, eff, params, m, s, window, expected_shape):
    n, h, w, c = x.shape
    _, oh, ow, _ = expected_shape
    p = params
    emu.reset_heap()
    pa = emu.put_words(
        p["input_offset"], p["output_offset"], 1, p["stride"]["h"], p["stride"]["w"],
        p["padding"]["h"], p["padding"]["w"], p["dilation"]["h"], p["dilation"]["w"],
        p["activation"]["min"], p["activation"]["max"],
    )  # fmt: skip
    qa = emu.put_words(emu.put(m), emu.put(s), int(m.size > 1))
    wa = emu.put_words(
        sg.rows,
        sg.k,
        INDEX_KINDS[sg.index_kind],
        sg.n_groups,
        emu.put(sg.counts.astype("<u2")),
        emu.put(sg.words.astype("<u4")) if sg.n_groups else 0,
        emu.put(sg.index) if sg.index.size else 0,
    )
    out = emu.alloc(int(np.prod(expected_shape)))
    status, prof = emu.call(
        "kp_sparse_depthwise_conv_s8",
        pa,
        qa,
        emu.put_words(n, h, w, c),
        emu.put(x),
        emu.put_words(1, *window, c),
        wa,
        emu.put(eff),
        emu.put_words(n, oh, ow, c),
        out,
        emu.alloc(sparse_cost.dw_scratch_bytes(*window)),
    )
    got = emu.read_array(out, np.int8, int(np.prod(expected_shape))).reshape(expected_shape)
    return status, got, prof


@pytest.mark.slow  # unicorn
@pytest.mark.parametrize("shape,sparsity,kind", DW_M4_SHAPES)
def test_dsp_depthwise_equals_reference(m4_dw, dw_driver, shape, sparsity, kind):
    rng = np.random.default_rng(shape[1] * 17 + shape[3])
    for trial in range(2):
        x, sg, eff, params, m, s, window, expected = make_dw_case(
            rng, shape, sparsity, trial == 0, kind
        )
        status, host = host_run(dw_driver, x, sg, eff, params, m, s, window, expected.shape)
        assert status == 0
        np.testing.assert_array_equal(host, expected)
        status, arm, _ = m4_dw_run(m4_dw, x, sg, eff, params, m, s, window, expected.shape)
        assert status == 0
        np.testing.assert_array_equal(arm, expected)
