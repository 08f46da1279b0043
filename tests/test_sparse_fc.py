"""SIMD-group sparse FULLY_CONNECTED (keras_prune.export.sparse_format and
csrc/kp_sparse_fully_connected_s8.c): the encoder round-trips SIMDGroups-pruned matrices
with each index encoding; the portable kernel, built with ASan + UBSan, equals
``int8_ops.fully_connected`` on the dense pruned weights bit for bit (hypothesis); the
Cortex-M4 DSP kernel under unicorn equals it on a handful of shapes."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from conftest import group_pruned as pruned
from conftest import sanitized_driver
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keras_prune.export.cgen import kernel_library
from keras_prune.export.cgen.sparse_format import INDEX_KINDS, decode, encode_groups
from keras_prune.export.int8 import reference as int8_ops
from keras_prune.granularity import DENSE, SIMDGroups
from keras_prune.mcu import profiler as m4_profile

DRIVER_SRC = Path(__file__).parent / "csrc" / "kp_sparse_driver.c"
SPARSE_SOURCES = [
    kernel_library.KERNEL_DIR / n
    for n in ("kp_sparse_fully_connected_s8.c", "kp_nn_sparse_vec_s8.c")
]


# ------------------------------------------------------------------ the encoder
@pytest.mark.parametrize(
    "rows,k,sparsity,contiguous",
    [
        (5, 16, 0.0, False),
        (7, 30, 0.5, False),
        (9, 64, 0.9, False),
        (4, 13, 1.0, False),
        (3, 1, 0.0, False),
        (6, 4 * 700 + 3, 0.6, True),
        (3, 4 * 1100 + 1, 0.999, False),
        (11, 41, 0.3, False),
    ],
)
def test_round_trip(rows, k, sparsity, contiguous):
    rng = np.random.default_rng(rows * 1000 + k)
    w = pruned(rng, rows, k, sparsity, contiguous)
    best = encode_groups(w)
    sizes = {}
    for kind in INDEX_KINDS:
        s = encode_groups(w, index=kind)
        np.testing.assert_array_equal(decode(s), w)
        assert s.n_groups == int(
            np.any(np.pad(w, ((0, 0), (0, -k % 4))).reshape(rows, -1, 4) != 0, axis=-1).sum()
        )
        assert s.nbytes == 4 * s.n_groups + s.index.size + 2 * rows
        sizes[kind] = s.index.size
    # the rule: the smallest stream, ties in INDEX_KINDS order
    assert best.index_kind == min(INDEX_KINDS, key=lambda t: (sizes[t], INDEX_KINDS[t]))
    np.testing.assert_array_equal(decode(best), w)
    assert best.dense_bytes == rows * k
    if sparsity == 1.0:
        assert best.n_groups == 0 and best.nbytes == 2 * rows


def test_each_encoding_chosen_and_escapes():
    rng = np.random.default_rng(7)
    chosen = {
        encode_groups(pruned(rng, 8, 64, 0.0)).index_kind,  # dense rows: one run each
        encode_groups(pruned(rng, 8, 256, 0.8)).index_kind,  # scattered groups
    }
    w = np.zeros((2, 4 * 1200), np.int8)  # one group far out: delta8 needs escapes
    w[0, 4 * 1100 : 4 * 1100 + 4] = [1, 0, 0, -1]
    w[1, 4 * 300 + 1] = 3
    s = encode_groups(w)
    chosen.add(s.index_kind)
    assert chosen == set(INDEX_KINDS)
    assert s.index_kind == "abs16" and s.group_indices()[0].tolist() == [1100]
    d = encode_groups(w, index="delta8")
    assert d.index.tolist() == [255] * 4 + [80] + [255, 45]
    r = encode_groups(w, index="runs")
    assert r.index.tolist() == [255, 0] * 4 + [80, 1] + [255, 0, 45, 1]
    long_run = encode_groups(np.ones((1, 4 * 300), np.int8), index="runs")
    assert long_run.index.tolist() == [0, 255, 0, 45]
    # a partly zero group is kept whole, the padding of a short group is zero
    assert [hex(v) for v in s.words] == ["0xff000001", "0x300"]


def test_simdgroups_pruning_round_trips():
    """Matrices pruned by the real SIMDGroups(4) mask computation."""
    rng = np.random.default_rng(3)
    for rows, k, sp in [(10, 37, 0.5), (6, 64, 0.9)]:
        wf = rng.normal(size=(rows, k)).astype(np.float32)
        # a Dense kernel is (in, out): its rows are the transpose
        keep = np.asarray(SIMDGroups(4).compute_mask(wf.T, np.ones_like(wf.T), sp, DENSE)).T > 0
        w = np.where(keep, np.clip(np.round(wf * 60), -127, 127), 0).astype(np.int8)
        s = encode_groups(w)
        np.testing.assert_array_equal(decode(s), w)
        assert s.group_sparsity == pytest.approx(sp, abs=1.0 / s.groups_per_row / rows + 1e-9)


def test_encoder_rejects():
    with pytest.raises(ValueError, match="int8"):
        encode_groups(np.zeros((2, 4), np.int16))
    with pytest.raises(ValueError, match="width"):
        encode_groups(np.zeros((2, 8), np.int8), width=8)
    with pytest.raises(ValueError, match="unknown"):
        encode_groups(np.zeros((2, 8), np.int8), index="csr")


# ------------------------------------------------------------------ the host kernel
@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    d = sanitized_driver(tmp_path_factory, [*SPARSE_SOURCES, DRIVER_SRC], "kp_sparse_driver")
    yield d
    d.close()


def make_case(rng, b, k, o, sparsity, per_channel, kind=None):
    w = pruned(rng, o, k, sparsity, contiguous=bool(rng.integers(2)))
    zin, zout = int(rng.integers(-128, 128)), int(rng.integers(-128, 128))
    s_in = np.float32(10 ** rng.uniform(-3, -1))
    s_w = (10 ** rng.uniform(-4, -1.3, o if per_channel else 1)).astype(np.float32)
    s_out = np.float32(s_in * float(np.mean(s_w)) * np.sqrt(k) * 40 * 2.0 ** rng.uniform(-3, 3))
    act = int8_ops.activation_range(["NONE", "RELU", "RELU6"][int(rng.integers(3))], s_out, zout)
    m, s = int8_ops.fc_quant(s_in, s_w, s_out)
    params = int8_ops.fc_params(zin, zout, act)
    x = rng.integers(-128, 128, (b, k)).astype(np.int8)
    bias = rng.integers(-(1 << 16), 1 << 16, o) if rng.integers(2) else None
    eff = int8_ops.effective_bias(bias, w, params["input_offset"])
    sg = encode_groups(w, index=kind)
    expected = int8_ops.fully_connected(x, w, bias, params, m, s)
    return x, sg, eff, params, np.asarray(m, np.int32), np.asarray(s, np.int32), expected


def host_run(driver, x, sg, eff, params, m, s, kind_code=None):
    b, k = x.shape
    per_channel = int(m.size > 1)
    header = [
        b,
        k,
        sg.rows,
        params["input_offset"],
        params["output_offset"],
        params["activation"]["min"],
        params["activation"]["max"],
        per_channel,
        INDEX_KINDS[sg.index_kind] if kind_code is None else kind_code,
        sg.n_groups,
        sg.index.size,
        m.size,
    ]
    case = b"".join(
        [
            struct.pack("<12i", *header),
            x.tobytes(),
            sg.counts.astype("<u2").tobytes(),
            sg.words.astype("<u4").tobytes(),
            sg.index.tobytes(),
            eff.astype("<i4").tobytes(),
            m.astype("<i4").tobytes(),
            s.astype("<i4").tobytes(),
        ]
    )
    status, out = driver.run(case, b * sg.rows)
    return status, out.reshape(b, sg.rows)


@given(st.data())
@settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
def test_portable_kernel_equals_int8_ops(driver, data):
    b, k, o = (
        data.draw(st.integers(1, 3)),
        data.draw(st.integers(1, 70)),
        data.draw(st.integers(1, 12)),
    )
    sparsity = data.draw(st.sampled_from([0.0, 0.3, 0.5, 0.9, 1.0]))
    kind = data.draw(st.sampled_from([None, *INDEX_KINDS]))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    x, sg, eff, params, m, s, expected = make_case(
        rng, b, k, o, sparsity, data.draw(st.booleans()), kind
    )
    status, out = host_run(driver, x, sg, eff, params, m, s)
    assert status == 0
    np.testing.assert_array_equal(out, expected)


def test_portable_kernel_rejects(driver):
    rng = np.random.default_rng(1)
    x, sg, eff, params, m, s, _ = make_case(rng, 1, 9, 3, 0.5, False)
    assert host_run(driver, x, sg, eff, params, m, s)[0] == 0
    bad_act = dict(params, activation={"min": 5, "max": 4})
    assert host_run(driver, x, sg, eff, bad_act, m, s)[0] == -1
    bad_shift = np.array([40], np.int32)
    assert host_run(driver, x, sg, eff, params, m, bad_shift)[0] == -1
    assert host_run(driver, x, sg, eff, params, m, s, kind_code=3)[0] == -1


# ------------------------------------------------------------------ the DSP kernel
M4_SHAPES = [
    (1, 784, 30, 0.9, None),
    (2, 33, 7, 0.5, "runs"),
    (1, 70, 9, 0.5, "delta8"),
    (3, 21, 5, 0.3, "abs16"),
    (1, 4 * 1100 + 2, 3, 0.99, None),
    (2, 64, 8, 0.0, None),
    (1, 15, 4, 1.0, None),
    (1, 1, 2, 0.0, "delta8"),
]


@pytest.fixture(scope="module")
def m4(tmp_path_factory):
    if not m4_profile.available():
        pytest.skip(f"{m4_profile.INSTALL_HINT}; {m4_profile.UNICORN_HINT}")
    d = tmp_path_factory.mktemp("sparse_m4")
    elf = m4_profile.build_library_elf(
        SPARSE_SOURCES, d / "kp_sparse.elf", include_dirs=[kernel_library.KERNEL_DIR]
    )
    return m4_profile.M4Emulator(elf)


def m4_run(emu, x, sg, eff, params, m, s, skew=0):
    b, k = x.shape
    emu.reset_heap()
    xa = emu.alloc(x.size + 4) + skew  # the input at any byte address
    emu.write(xa, x)
    w = emu.put_words(
        sg.rows,
        sg.k,
        INDEX_KINDS[sg.index_kind],
        sg.n_groups,
        emu.put(sg.counts.astype("<u2")) if sg.rows else 0,
        emu.put(sg.words.astype("<u4")) if sg.n_groups else 0,
        emu.put(sg.index) if sg.index.size else 0,
    )
    p = emu.put_words(
        params["input_offset"],
        params["output_offset"],
        params["activation"]["min"],
        params["activation"]["max"],
    )
    q = emu.put_words(emu.put(m), emu.put(s), int(m.size > 1))
    out = emu.alloc(b * sg.rows)
    status, prof = emu.call(
        "kp_sparse_fully_connected_s8", p, q, b, k, sg.rows, xa, w, emu.put(eff), out
    )
    return status, emu.read_array(out, np.int8, b * sg.rows).reshape(b, sg.rows), prof


@pytest.mark.slow  # unicorn
@pytest.mark.parametrize("shape", M4_SHAPES)
def test_dsp_kernel_equals_host(m4, driver, shape):
    b, k, o, sparsity, kind = shape
    rng = np.random.default_rng(k * 31 + o)
    for trial in range(2):
        x, sg, eff, params, m, s, expected = make_case(rng, b, k, o, sparsity, trial == 0, kind)
        status, host = host_run(driver, x, sg, eff, params, m, s)
        assert status == 0
        np.testing.assert_array_equal(host, expected)
        status, arm, _ = m4_run(m4, x, sg, eff, params, m, s, skew=(k + trial) % 4)
        assert status == 0
        np.testing.assert_array_equal(arm, expected)


@pytest.mark.slow  # unicorn
@pytest.mark.parametrize("kind", list(INDEX_KINDS))
def test_dsp_kernel_reads_no_input_past_in_len(m4, kind):
    """The input's last byte is the last mapped byte of the emulator's memory, and every
    row keeps its short last group: a word read of that group would fault."""
    rng = np.random.default_rng(5)
    for k in (5, 30, 63):
        x, sg, eff, params, m, s, expected = make_case(rng, 1, k, 6, 0.0, True, kind)
        m4.reset_heap()
        w = m4.put_words(
            sg.rows,
            sg.k,
            INDEX_KINDS[sg.index_kind],
            sg.n_groups,
            m4.put(sg.counts.astype("<u2")),
            m4.put(sg.words.astype("<u4")),
            m4.put(sg.index),
        )
        p = m4.put_words(
            params["input_offset"],
            params["output_offset"],
            params["activation"]["min"],
            params["activation"]["max"],
        )
        q = m4.put_words(m4.put(m), m4.put(s), 1)
        ea, out = m4.put(eff), m4.alloc(sg.rows)
        m4.alloc(m4.heap_free - x.size, align=1)  # up to the mapped end
        xa = m4.alloc(x.size, align=1)
        assert xa + x.size == m4.heap_end
        m4.write(xa, x)
        status, _ = m4.call("kp_sparse_fully_connected_s8", p, q, 1, k, sg.rows, xa, w, ea, out)
        assert status == 0
        np.testing.assert_array_equal(m4.read_array(out, np.int8, sg.rows), expected[0])
