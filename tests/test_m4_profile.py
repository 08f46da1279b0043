"""keras_prune.export.m4_profile (unicorn Cortex-M4 profiler) and the DSP kernels it runs:
exact instruction counts against objdump, determinism, AAPCS calls, and the DSP inner
products, depthwise convolution, ADD and max pooling bit-exact with the portable C99
build (host, ctypes)."""

import ctypes
import re
import subprocess

import numpy as np
import pytest

from keras_prune.export.cgen import kernel_library
from keras_prune.export.int8 import reference as int8_ops
from keras_prune.mcu import profiler as m4_profile
from keras_prune.mcu import toolchain as cbuild

pytestmark = [
    pytest.mark.slow,  # every check runs on the unicorn emulator
    pytest.mark.skipif(
        not m4_profile.available() or cbuild.find_cc() is None,
        reason="arm-none-eabi-gcc + newlib, unicorn, pyelftools or a host gcc missing: "
        f"{m4_profile.INSTALL_HINT}; {m4_profile.UNICORN_HINT}",
    ),
]

TOY_C = r"""
#include <stdint.h>
#include <string.h>

/* Straight-line code with two IT blocks: every instruction executes (or is skipped by its
 * IT condition) exactly once, whatever the arguments. */
int32_t toy_clamp(int32_t v, int32_t lo, int32_t hi)
{
    v = v < lo ? lo : v;
    v = v > hi ? hi : v;
    return v;
}

int32_t toy_sum(const int8_t *x, int32_t n)
{
    int32_t s = 0, i;
    for (i = 0; i < n; ++i) {
        s += x[i] * (i + 1);
    }
    return s;
}

/* Six arguments: two on the stack. */
int32_t toy_args(int32_t a, int32_t b, int32_t c, int32_t d, int32_t e, int32_t f)
{
    return a + 2 * b + 3 * c + 4 * d + 5 * e + 6 * f;
}

void toy_copy(int8_t *dst, const int8_t *src, int32_t n)
{
    memcpy(dst, src, (size_t)n);
}

int32_t toy_fault(void)
{
    return *(volatile int32_t *)0x70000000;
}
"""


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    d = tmp_path_factory.mktemp("toy")
    (d / "toy.c").write_text(TOY_C)
    elf = m4_profile.build_library_elf([d / "toy.c"], d / "toy.elf")
    return elf, m4_profile.M4Emulator(elf)


def _objdump_function(elf, name):
    """(address, mnemonic, operands) of each instruction of one function, from objdump."""
    text = subprocess.run(
        ["arm-none-eabi-objdump", "-d", str(elf)], capture_output=True, text=True, check=True
    ).stdout
    body = text.split(f"<{name}>:\n", 1)[1].split("\n\n", 1)[0]
    out = []
    for line in body.splitlines():
        m = re.match(r"\s*([0-9a-f]+):\t[0-9a-f ]+\t(\S+)\s*(.*)", line)
        if m and not m.group(2).startswith("."):
            out.append((int(m.group(1), 16), m.group(2), m.group(3)))
    return out


def test_straight_line_counts_equal_objdump(toy):
    elf, emu = toy
    insns = _objdump_function(elf, "toy_clamp")
    insns = insns[: [m for _, m, _ in insns].index("bx") + 1]  # then alignment padding
    assert sum(m.startswith("it") for _, m, _ in insns) == 2
    for v in (-50, 5, 50):  # both IT conditions false, true, the other true
        r0, prof = emu.call("toy_clamp", v, -10, 10)
        assert r0 == min(max(v, -10), 10)
        assert prof.instructions == len(insns)
        # cmp, it, mov, cmp, it, mov: 1 each; bx lr: 1 + the refill of 2
        assert prof.cycles == len(insns) + 2
        assert prof.functions["toy_clamp"].instructions == len(insns)


def test_loop_counts_equal_objdump(toy):
    elf, emu = toy
    insns = _objdump_function(elf, "toy_sum")
    # The loop body: from the target of the backward branch to the branch.
    back = [
        (a, int(ops.split()[0], 16))
        for a, m, ops in insns
        if re.match(r"b(ne|lt|gt|le|ge|cc|cs|hi|ls)?(\.[nw])?$", m) and int(ops.split()[0], 16) < a
    ]
    assert len(back) == 1
    end, start = back[0]
    body = sum(start <= a <= end for a, _, _ in insns)
    x = emu.put(np.arange(1, 21, dtype=np.int8))
    counts = {}
    for n in (5, 10, 20):
        r0, prof = emu.call("toy_sum", x, n)
        assert r0 == sum(i * i for i in range(1, n + 1))
        counts[n] = prof.instructions
    assert counts[10] - counts[5] == 5 * body
    assert counts[20] - counts[10] == 10 * body


def test_deterministic_and_calls(toy):
    _, emu = toy
    x = emu.put(np.arange(-64, 64, dtype=np.int8))
    first = emu.call("toy_sum", x, 128)
    second = emu.call("toy_sum", x, 128)
    assert first == second
    assert emu.call("toy_args", 1, 2, 3, 4, 5, -6)[0] == 1 + 4 + 9 + 16 + 25 - 36
    dst = emu.alloc(40)
    r0, prof = emu.call("toy_copy", dst, x, 37)
    assert emu.read_array(dst, np.int8, 37).tolist() == list(range(-64, -27))
    assert "memcpy" in prof.functions  # newlib's, linked in
    assert emu.symbol("toy_sum") % 2 == 0  # thumb bit cleared
    with pytest.raises(m4_profile.M4ProfileError, match="no symbol"):
        emu.call("no_such_function")
    with pytest.raises(m4_profile.M4ProfileError, match="toy_fault"):
        emu.call("toy_fault")
    assert emu.call("toy_clamp", 3, 0, 9)[0] == 3  # usable after a fault


# ---------------------------------------------------------------- DSP kernels
class Quant(ctypes.Structure):
    _fields_ = [
        ("multiplier", ctypes.POINTER(ctypes.c_int32)),
        ("shift", ctypes.POINTER(ctypes.c_int32)),
        ("per_channel", ctypes.c_int32),
    ]


class Act(ctypes.Structure):
    _fields_ = [("min", ctypes.c_int32), ("max", ctypes.c_int32)]


@pytest.fixture(scope="module")
def kernels(tmp_path_factory):
    """The kernels built for the Cortex-M4 with the DSP paths (under unicorn) and for the
    host, portable (ctypes)."""
    d = tmp_path_factory.mktemp("kernels")
    sources = [
        s
        for s in kernel_library.kernel_sources()
        if s.name.startswith(
            (
                "kp_nn_vec_mat_s8",
                "kp_nn_mat_mult_s8_s16_2col",
                "kp_depthwise_conv_s8",
                "kp_elementwise_add_s8",
                "kp_max_pool_s8",
            )
        )
    ]
    elf = m4_profile.build_library_elf(
        sources, d / "kp_dsp.elf", include_dirs=[kernel_library.KERNEL_DIR]
    )
    lib = d / "libkp_portable.so"
    subprocess.run(
        [
            cbuild.find_cc(),
            *cbuild.WARN_FLAGS,
            "-shared",
            "-fPIC",
            f"-I{kernel_library.KERNEL_DIR}",
            *map(str, sources),
            "-o",
            str(lib),
        ],
        check=True,
        capture_output=True,
    )
    return m4_profile.M4Emulator(elf), ctypes.CDLL(str(lib))


def _ptr(a: np.ndarray, ctype=ctypes.c_int8):
    return a.ctypes.data_as(ctypes.POINTER(ctype))


def _quant(rng, rows, per_channel, extreme=False):
    n = rows if per_channel else 1
    mult = rng.integers(1 << 30, (1 << 31) - 1, n, dtype=np.int64).astype(np.int32)
    shift = rng.integers(-14, 3, n).astype(np.int32)
    if extreme:  # large left shifts (2a overflows: the exact slow path), INT32_MIN
        shift[: n // 2 + 1] = rng.integers(3, 31, n // 2 + 1)
        mult[-1] = np.int32(-(1 << 31))
    return mult, shift


PRIMITIVE_SHAPES = [
    (1, 1),
    (3, 2),
    (4, 4),
    (7, 3),
    (8, 5),
    (13, 6),
    (33, 7),
    (64, 9),
    (100, 10),
    (27, 16),
]


@pytest.mark.parametrize("k_len,rows", PRIMITIVE_SHAPES)
def test_dsp_primitives_equal_portable(kernels, k_len, rows):
    emu, lib = kernels
    rng = np.random.default_rng(k_len * 100 + rows)
    for trial in range(3):
        emu.reset_heap()
        per_channel, extreme = trial != 1, trial == 2
        mult, shift = _quant(rng, rows, per_channel, extreme)
        w = rng.integers(-128, 128, (rows, k_len), dtype=np.int8)
        bias = rng.integers(-(1 << 20), 1 << 20, rows).astype(np.int32)
        offset = int(rng.integers(-128, 128))
        lo = int(rng.integers(-128, 0))
        act = (lo, int(rng.integers(lo, 128)))
        q_host = Quant(_ptr(mult, ctypes.c_int32), _ptr(shift, ctypes.c_int32), per_channel)
        q_arm = emu.put_words(emu.put(mult), emu.put(shift), per_channel)

        x = rng.integers(-128, 128, k_len, dtype=np.int8)
        expected = np.zeros(rows, np.int8)
        lib.kp_nn_vec_mat_s8(
            _ptr(x),
            _ptr(w),
            k_len,
            rows,
            _ptr(bias, ctypes.c_int32),
            ctypes.byref(q_host),
            offset,
            Act(*act),
            _ptr(expected),
        )
        out = emu.alloc(rows)
        emu.call(
            "kp_nn_vec_mat_s8",
            emu.put(x),
            emu.put(w),
            k_len,
            rows,
            emu.put(bias),
            q_arm,
            offset,
            *act,
            out,
        )
        np.testing.assert_array_equal(emu.read_array(out, np.int8, rows), expected)

        span = 1 << 15 if extreme else 128  # the primitive takes any int16
        cols = rng.integers(-span, span, 2 * k_len).astype(np.int16)
        if trial == 1:
            cols[k_len:] = cols[:k_len]  # a lone last pixel: out1 is out0
        e0, e1 = np.zeros(rows, np.int8), np.zeros(rows, np.int8)
        lib.kp_nn_mat_mult_s8_s16_2col(
            _ptr(w),
            _ptr(cols, ctypes.c_int16),
            k_len,
            rows,
            _ptr(bias, ctypes.c_int32),
            ctypes.byref(q_host),
            offset,
            Act(*act),
            _ptr(e0),
            _ptr(e1),
        )
        o0 = emu.alloc(rows)
        o1 = o0 if trial == 1 else emu.alloc(rows)
        emu.call(
            "kp_nn_mat_mult_s8_s16_2col",
            emu.put(w),
            emu.put(cols),
            k_len,
            rows,
            emu.put(bias),
            q_arm,
            offset,
            *act,
            o0,
            o1,
        )
        np.testing.assert_array_equal(emu.read_array(o0, np.int8, rows), e0)
        np.testing.assert_array_equal(emu.read_array(o1, np.int8, rows), e1)


# (h, w, c, ch_mult, kh, kw, stride, dilation, padding): 3x3 'same' (the asm row), channel
# tails, depth multipliers, dilation, strides, a window larger than the image.
DW_SHAPES = [
    (6, 5, 8, 1, 3, 3, 1, 1, "SAME"),
    (7, 6, 6, 1, 3, 3, 2, 1, "SAME"),
    (5, 5, 4, 2, 3, 3, 1, 1, "VALID"),
    (9, 7, 12, 1, 3, 3, 1, 2, "SAME"),
    (6, 8, 5, 3, 2, 4, 1, 1, "SAME"),
    (3, 2, 8, 1, 5, 5, 1, 1, "SAME"),
    (8, 8, 16, 1, 5, 3, 2, 1, "SAME"),
    (18, 17, 4, 1, 17, 17, 1, 1, "SAME"),
]


@pytest.mark.parametrize("shape", DW_SHAPES)
def test_dsp_depthwise_equals_portable(kernels, shape):
    emu, lib = kernels
    h, w, c, mult_, kh, kw, stride, dil, scheme = shape
    rng = np.random.default_rng(sum(shape[:-1]))
    oc = c * mult_
    oh, ph = int8_ops.padding(h, kh, stride, dil, scheme)
    ow, pw = int8_ops.padding(w, kw, stride, dil, scheme)
    x = rng.integers(-128, 128, (1, h, w, c), dtype=np.int8)
    wts = rng.integers(-127, 128, (1, kh, kw, oc), dtype=np.int8)
    if kh * kw > 258:  # weight sums past int16
        wts[..., : oc // 2] = 127
    bias = rng.integers(-5000, 5000, oc).astype(np.int32)
    mult, shift = _quant(rng, oc, True)
    shift = np.minimum(shift, -6).astype(np.int32)  # outputs mostly inside int8
    zp_in = int(rng.integers(-128, 128))
    params = int8_ops.dw_conv_params(
        zp_in, int(rng.integers(-20, 20)), mult_, (stride,) * 2, (ph, pw), (dil, dil), (-128, 127)
    )
    eff = int8_ops.effective_bias(bias, wts[0].reshape(-1, oc).T, params["input_offset"])
    expected = int8_ops.depthwise_conv2d(x, wts, bias, params, mult, shift, (oh, ow))
    words = [
        v for item in params.values() for v in (item.values() if isinstance(item, dict) else [item])
    ]
    dims = [(1, h, w, c), (1, kh, kw, oc), (1, oh, ow, oc)]

    host_out = np.zeros(expected.shape, np.int8)
    p_host, d_host = np.array(words, np.int32), [np.array(d, np.int32) for d in dims]
    q_host = Quant(_ptr(mult, ctypes.c_int32), _ptr(shift, ctypes.c_int32), 1)
    status = lib.kp_depthwise_conv_s8(
        _ptr(p_host, ctypes.c_int32),
        ctypes.byref(q_host),
        _ptr(d_host[0], ctypes.c_int32),
        _ptr(x),
        _ptr(d_host[1], ctypes.c_int32),
        _ptr(wts),
        _ptr(eff, ctypes.c_int32),
        _ptr(d_host[2], ctypes.c_int32),
        _ptr(host_out),
    )
    assert status == 0
    np.testing.assert_array_equal(host_out, expected)

    emu.reset_heap()
    out = emu.alloc(expected.size)
    status, _ = emu.call(
        "kp_depthwise_conv_s8",
        emu.put_words(*words),
        emu.put_words(emu.put(mult), emu.put(shift), 1),
        emu.put_words(*dims[0]),
        emu.put(x),
        emu.put_words(*dims[1]),
        emu.put(wts),
        emu.put(eff),
        emu.put_words(*dims[2]),
        out,
    )
    assert status == 0
    np.testing.assert_array_equal(
        emu.read_array(out, np.int8, expected.size).reshape(expected.shape), expected
    )


# ADD: sizes around the 4-element word loop; scales drawn from add_params (every clamp),
# then raw parameters at the limits the kernel accepts (any multiplier, shifts -31..0,
# left shifts other than 20); inputs at odd addresses and in place.
ADD_SIZES = [1, 2, 3, 4, 5, 6, 7, 8, 9, 15, 16, 33, 130]


def _add_params_random(rng) -> dict:
    scales = 10.0 ** rng.uniform(-4, 0, 3)
    if rng.random() < 0.3:  # one input's scale far below the other's
        scales[int(rng.integers(2))] *= 10.0 ** -rng.uniform(2, 5)
    zp = rng.integers(-128, 128, 3)
    act = [
        (-128, 127),
        (int(zp[2]), 127),
        (int(zp[2]), min(int(zp[2]) + 6, 127)),
        (-128, -128),
        (127, 127),
    ][int(rng.integers(5))]
    try:
        return int8_ops.add_params(
            scales[0], int(zp[0]), scales[1], int(zp[1]), scales[2], int(zp[2]), *act
        )
    except ValueError:  # an output multiplier TFLM rejects: redraw
        return _add_params_random(rng)


def _add_params_raw(rng, mode: str) -> dict:
    """Parameters the C API accepts beyond what add_params makes. "ties": multipliers of
    one half and shifts that land products exactly halfway (the rounding direction of
    each step); "big": the largest sums (input shifts 0, multipliers +-2^31) under the
    largest output shifts; "any": anything in range."""

    def mult():
        if mode == "ties":
            return int(rng.choice([1 << 30, -(1 << 30)]))
        if mode == "big":
            return int(rng.choice([-(1 << 31), (1 << 31) - 1]))
        return int(
            rng.choice(
                [
                    -(1 << 31),
                    -1,
                    0,
                    1,
                    (1 << 31) - 1,
                    1 << 30,
                    int(rng.integers(-(1 << 31), 1 << 31)),
                ]
            )
        )

    def shift(out: bool):
        if mode == "ties":
            return int(rng.choice([0, -1, -2] if out else [0, -1, -19, -20, -21]))
        if mode == "big":
            return int(rng.integers(-31, -27)) if out else 0
        return int(rng.integers(-31, 1))

    lo = int(rng.integers(-128, 128))
    if mode == "ties":  # outputs unclamped, where a rounding slip shows
        return {
            **_add_params_raw(rng, "any"),
            **{
                "input1_multiplier": mult(),
                "input1_shift": shift(False),
                "input2_multiplier": mult(),
                "input2_shift": shift(False),
                "left_shift": 20,
                "output_offset": 0,
                "output_multiplier": mult(),
                "output_shift": shift(True),
                "activation": {"min": -128, "max": 127},
            },
        }
    return {
        "input1_offset": int(rng.choice([-127, 128, rng.integers(-127, 129)])),
        "input1_multiplier": mult(),
        "input1_shift": shift(False),
        "input2_offset": int(rng.choice([-127, 128, rng.integers(-127, 129)])),
        "input2_multiplier": mult(),
        "input2_shift": shift(False),
        "left_shift": 20 if mode != "any" else int(rng.choice([20, 0, 19, rng.integers(0, 21)])),
        "output_offset": int(rng.choice([-128, 127, rng.integers(-128, 128)])),
        "output_multiplier": mult(),
        "output_shift": shift(True),
        "activation": {"min": lo, "max": int(rng.integers(lo, 128))},
    }


def _flat(params: dict) -> list[int]:
    return [
        v for item in params.values() for v in (item.values() if isinstance(item, dict) else [item])
    ]


def _add_host(lib, params: dict, x1, x2, out=None) -> tuple[int, np.ndarray]:
    words = np.array(_flat(params), np.int32)
    out = np.zeros(x1.size, np.int8) if out is None else out
    status = lib.kp_elementwise_add_s8(
        _ptr(words, ctypes.c_int32), _ptr(x1), _ptr(x2), _ptr(out), x1.size
    )
    return status, out


@pytest.mark.parametrize("size", ADD_SIZES)
def test_dsp_add_equals_portable(kernels, size):
    emu, lib = kernels
    rng = np.random.default_rng(1000 + size)
    for trial in range(10):
        emu.reset_heap()
        raw = trial >= 5
        mode = ["ties", "big", "any"][trial % 3]
        params = _add_params_raw(rng, mode) if raw else _add_params_random(rng)
        x1 = rng.integers(-128, 128, size, dtype=np.int8)
        x2 = rng.integers(-128, 128, size, dtype=np.int8)
        if trial % 3 == 0:  # the extreme inputs
            x1[::2], x2[1::2] = -128, 127
        if raw and mode == "big":  # |x + offset| at its largest, mostly
            x1[: size // 2 + 1] = -128 if params["input1_offset"] < 0 else 127
            x2[: size // 2 + 1] = -128 if params["input2_offset"] < 0 else 127
        status, expected = _add_host(lib, params, x1, x2)
        assert status == 0
        if not raw:
            np.testing.assert_array_equal(expected, int8_ops.add(x1, x2, params))
        # Inputs and output at different byte offsets within a word (unaligned reads).
        skew = [trial % 4, (trial + 1) % 4, (trial + 3) % 4]
        a1 = emu.alloc(size + 4) + skew[0]
        a2 = emu.alloc(size + 4) + skew[1]
        out = emu.alloc(size + 4) + skew[2]
        emu.write(a1, x1)
        emu.write(a2, x2)
        if trial == 4:
            out = a1  # in place
        status, _ = emu.call(
            "kp_elementwise_add_s8", emu.put_words(*_flat(params)), a1, a2, out, size
        )
        assert status == 0
        np.testing.assert_array_equal(
            emu.read_array(out, np.int8, size), expected, err_msg=f"trial {trial}: {params}"
        )


def test_dsp_add_rejects_like_portable(kernels):
    emu, lib = kernels
    good = int8_ops.add_params(0.05, -10, 0.03, 5, 0.06, 3, -128, 127)
    bad = [
        ("left_shift", -1),
        ("left_shift", 21),
        ("input1_offset", -128),
        ("input1_offset", 129),
        ("input2_offset", -128),
        ("input2_offset", 129),
        ("output_offset", -129),
        ("output_offset", 128),
        ("input1_shift", 1),
        ("input1_shift", -32),
        ("input2_shift", 1),
        ("input2_shift", -32),
        ("output_shift", 1),
        ("output_shift", -32),
        ("activation", {"min": 5, "max": 4}),
        ("activation", {"min": -129, "max": 0}),
        ("activation", {"min": 0, "max": 128}),
    ]
    x = np.arange(-3, 5, dtype=np.int8)
    emu.reset_heap()
    ax, out = emu.put(x), emu.alloc(16)
    for field, value in [(None, None), *bad]:
        params = dict(good) if field is None else {**good, field: value}
        host, _ = _add_host(lib, params, x, x)
        arm, _ = emu.call(
            "kp_elementwise_add_s8", emu.put_words(*_flat(params)), ax, ax, out, x.size
        )
        assert host == arm == (0 if field is None else -1), (field, value)
    p = emu.put_words(*_flat(good))
    for args in [
        (0, ax, ax, out, 8),
        (p, 0, ax, out, 8),
        (p, ax, 0, out, 8),
        (p, ax, ax, 0, 8),
        (p, ax, ax, out, 0),
        (p, ax, ax, out, -4),
    ]:
        assert emu.call("kp_elementwise_add_s8", *args)[0] == -1
    assert lib.kp_elementwise_add_s8(None, _ptr(x), _ptr(x), _ptr(x), 8) == -1


# (h, w, c, kh, kw, stride, pad): channel quads and tails, padding, overlapping windows,
# windows wholly in the padding (empty: -128 before the clamp), batch 2.
POOL_SHAPES = [
    (8, 8, 16, 2, 2, 2, (0, 0)),
    (7, 9, 5, 3, 3, 2, (1, 1)),
    (6, 5, 12, 3, 2, 1, (1, 0)),
    (5, 5, 3, 2, 2, 1, (0, 0)),
    (4, 6, 9, 2, 3, 3, (2, 3)),
    (3, 3, 8, 1, 1, 1, (0, 0)),
]


@pytest.mark.parametrize("shape", POOL_SHAPES)
def test_dsp_max_pool_equals_portable(kernels, shape):
    emu, lib = kernels
    h, w, c, kh, kw, stride, pad = shape
    rng = np.random.default_rng(sum(shape[:-1]) + 7)
    n = 2 if c == 5 else 1
    oh = (h + 2 * pad[0] - kh) // stride + 1
    ow = (w + 2 * pad[1] - kw) // stride + 1
    for act in [(-128, 127), (-20, 50), (int(rng.integers(-128, 128)),) * 2]:
        emu.reset_heap()
        x = rng.integers(-128, 128, (n, h, w, c), dtype=np.int8)
        params = int8_ops.pool_params((stride, stride), pad, act)
        words = np.array(_flat(params), np.int32)
        shapes = [(n, h, w, c), (kh, kw), (n, oh, ow, c)]
        dims = [np.array(d, np.int32) for d in shapes]
        expected = np.zeros((n, oh, ow, c), np.int8)
        status = lib.kp_max_pool_s8(
            _ptr(words, ctypes.c_int32),
            _ptr(dims[0], ctypes.c_int32),
            _ptr(x),
            _ptr(dims[1], ctypes.c_int32),
            _ptr(dims[2], ctypes.c_int32),
            _ptr(expected),
        )
        assert status == 0
        if pad[0] < kh and pad[1] < kw:  # no empty windows
            np.testing.assert_array_equal(
                expected, int8_ops.max_pool2d(x, params, (kh, kw), (oh, ow))
            )
        out = emu.alloc(expected.size + 4) + 1  # an odd address: unaligned stores
        status, _ = emu.call(
            "kp_max_pool_s8",
            emu.put_words(*_flat(params)),
            emu.put_words(*shapes[0]),
            emu.put(x),
            emu.put_words(*shapes[1]),
            emu.put_words(*shapes[2]),
            out,
        )
        assert status == 0
        np.testing.assert_array_equal(
            emu.read_array(out, np.int8, expected.size).reshape(expected.shape), expected
        )
    bad = dict(params, activation={"min": 3, "max": 2})
    status, _ = emu.call(
        "kp_max_pool_s8",
        emu.put_words(*_flat(bad)),
        emu.put_words(*shapes[0]),
        emu.put(x),
        emu.put_words(*shapes[1]),
        emu.put_words(*shapes[2]),
        out,
    )
    assert status == -1
