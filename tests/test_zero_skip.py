"""Activation sparsity in the C kernels (csrc/kernels/kp_nn_activation.h): the threshold
and top-k masks and the zero-skipping FULLY_CONNECTED, portable (built with -DKP_NO_DSP)
and Cortex-M4 DSP, run under unicorn and fuzzed with hypothesis against ``int8_ops``;
the input-group encoding round-trips; ``threshold_min_kept`` agrees with TFLite's
GREATER_EQUAL on every int8 value."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import group_pruned
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keras_prune.export.cgen import kernel_library
from keras_prune.export.cgen.sparse_format import encode_input_groups
from keras_prune.export.int8 import reference as int8_ops
from keras_prune.mcu import profiler as m4_profile

SOURCES = [
    kernel_library.KERNEL_DIR / n
    for n in (
        "kp_threshold_s8.c",
        "kp_topk_s8.c",
        "kp_zero_skip_fully_connected_s8.c",
        "kp_nn_zero_skip_vec_s8.c",
    )
]
FUZZ = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@pytest.fixture(scope="module", params=["dsp", "portable"])
def emu(request, tmp_path_factory):
    if not m4_profile.available():
        pytest.skip(f"{m4_profile.INSTALL_HINT}; {m4_profile.UNICORN_HINT}")
    d = tmp_path_factory.mktemp(f"zero_skip_{request.param}")
    elf = m4_profile.build_library_elf(
        SOURCES,
        d / "kp_zero_skip.elf",
        include_dirs=[kernel_library.KERNEL_DIR],
        defines=("KP_NO_DSP",) if request.param == "portable" else (),
    )
    return m4_profile.M4Emulator(elf)


# ------------------------------------------------------------------ encoding
@pytest.mark.parametrize(
    "rows,k,sparsity",
    [(1, 1, 0.0), (3, 6, 0.5), (300, 100, 0.9), (257, 13, 0.7), (5, 9, 1.0), (4, 8, 0.0)],
)
def test_input_groups_round_trip(rows, k, sparsity):
    w = group_pruned(np.random.default_rng(rows + k), rows, k, sparsity)
    enc = encode_input_groups(w)
    np.testing.assert_array_equal(enc.decode(), w)
    kept = int(np.any(np.pad(w, ((0, 0), (0, -k % 4))).reshape(rows, -1, 4) != 0, -1).sum())
    assert enc.entries == kept
    assert enc.implicit_rows == (kept == rows * -(-k // 4))
    if not enc.implicit_rows:
        assert enc.row_index.dtype == (np.uint8 if rows <= 256 else np.dtype("<u2"))


def test_input_groups_rejects():
    with pytest.raises(ValueError, match="int8"):
        encode_input_groups(np.zeros((2, 3), np.int16))
    with pytest.raises(ValueError, match="non-empty"):
        encode_input_groups(np.zeros((0, 3), np.int8))


# ------------------------------------------------------------------ TFLite's compare
def _tflite_greater_equal(x, xs, xz, ts, tz, t):
    """TFLite's int8 GREATER_EQUAL with scaling, written out per value."""

    def scaled(v, scale, zp):
        m, s = int8_ops.quantize_multiplier(float(np.float32(scale)))
        return int(int8_ops.requantize(np.array([(int(v) - zp) << 8]), m, s)[0])

    rhs = scaled(t, ts, tz)
    return np.array([scaled(v, xs, xz) >= rhs for v in x])


@pytest.mark.parametrize(
    "xs,xz,ts,tz,t",
    [
        (0.0078, -128, 0.00096, -128, 127),
        (0.05, 3, 0.05, 3, 10),
        (0.01, -128, 1e-5, -128, 127),
        (0.02, 0, 0.3, -128, -128),
        (0.004, -128, 0.9, 0, 127),
        (0.1, 20, 0.0123, -7, 55),
    ],
)
def test_threshold_min_kept_is_tflites_compare(xs, xz, ts, tz, t):
    x = np.arange(-128, 128)
    first = int8_ops.threshold_min_kept(xs, xz, ts, tz, t)
    np.testing.assert_array_equal(x >= first, _tflite_greater_equal(x, xs, xz, ts, tz, t))


def test_topk_mask_semantics():
    x = np.array([[5, 1, 5, 3, 5, -2]], np.int8)
    np.testing.assert_array_equal(int8_ops.topk_mask(x, 2, -128), [[5, -128, 5, -128, -128, -128]])
    np.testing.assert_array_equal(int8_ops.topk_mask(x, 4, 0), [[5, 0, 5, 3, 5, 0]])
    np.testing.assert_array_equal(int8_ops.topk_mask(x, 9, 0), x)


# ------------------------------------------------------------------ the kernels
@pytest.mark.slow  # unicorn
@given(st.data())
@FUZZ
def test_masks_equal_int8_ops(emu, data):
    n = data.draw(st.integers(1, 300))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    # few distinct values: ties at the k-th place
    x = (
        rng.integers(-128, 128, n).astype(np.int8)
        if data.draw(st.booleans())
        else rng.choice(np.array([-128, -5, 0, 7, 127], np.int8), n)
    )
    fill = int(rng.integers(-128, 128))
    k = data.draw(st.integers(1, n + 2))
    in_place = data.draw(st.booleans())
    emu.reset_heap()
    xa = emu.put(x)
    out = xa if in_place else emu.alloc(n)
    status, _ = emu.call("kp_topk_s8", xa, n, k, fill, out, emu.alloc(512))
    assert status == 0
    np.testing.assert_array_equal(
        emu.read_array(out, np.int8, n), int8_ops.topk_mask(x[None], k, fill)[0]
    )
    min_kept = data.draw(st.integers(-128, 128))
    xa = emu.put(x)
    out = xa if in_place else emu.alloc(n)
    status, _ = emu.call("kp_threshold_s8", xa, n, min_kept, fill, out)
    assert status == 0
    np.testing.assert_array_equal(
        emu.read_array(out, np.int8, n), int8_ops.threshold_mask(x, min_kept, fill)
    )


def _zero_skip_case(rng, b, k, o, sparsity, density, per_channel):
    w = group_pruned(rng, o, k, sparsity)
    zin, zout = int(rng.integers(-128, 128)), int(rng.integers(-128, 128))
    s_in = np.float32(10 ** rng.uniform(-3, -1))
    s_w = (10 ** rng.uniform(-4, -1.3, o if per_channel else 1)).astype(np.float32)
    s_out = np.float32(s_in * float(np.mean(s_w)) * np.sqrt(k) * 40 * 2.0 ** rng.uniform(-3, 3))
    act = int8_ops.activation_range(["NONE", "RELU"][int(rng.integers(2))], s_out, zout)
    m, s = int8_ops.fc_quant(s_in, s_w, s_out)
    params = int8_ops.fc_params(zin, zout, act)
    x = rng.integers(-128, 128, (b, k)).astype(np.int8)
    x[rng.random((b, k)) >= density] = zin  # the zero point: real 0, skipped
    bias = rng.integers(-(1 << 16), 1 << 16, o)
    expected = int8_ops.fully_connected(x, w, bias, params, m, s)
    return x, w, bias, params, np.asarray(m, np.int32), np.asarray(s, np.int32), expected


def _run_zero_skip(emu, x, w, bias, params, m, s, at_end=False):
    b, k = x.shape
    o = w.shape[0]
    enc = encode_input_groups(w)
    emu.reset_heap()
    row8 = row16 = 0
    if enc.row_index is not None and enc.row_index.size:
        ra = emu.put(enc.row_index)
        row8, row16 = (ra, 0) if enc.row_index.dtype == np.uint8 else (0, ra)
    wa = emu.put_words(
        o,
        k,
        emu.put(enc.starts.astype("<i4")),
        emu.put(enc.words.astype("<u4")) if enc.entries else 0,
        row8,
        row16,
    )
    p = emu.put_words(
        params["input_offset"],
        params["output_offset"],
        params["activation"]["min"],
        params["activation"]["max"],
    )
    q = emu.put_words(emu.put(m), emu.put(s), int(m.size > 1))
    ba, out, acc = emu.put(bias.astype("<i4")), emu.alloc(b * o), emu.alloc(4 * o)
    if at_end:  # the input's last byte is the last mapped byte: no read past in_len
        emu.alloc(emu.heap_free - x.size, align=1)
    xa = emu.alloc(x.size, align=1)
    emu.write(xa, x)
    status, prof = emu.call("kp_zero_skip_fully_connected_s8", p, q, b, k, o, xa, wa, ba, out, acc)
    return status, emu.read_array(out, np.int8, b * o).reshape(b, o), prof


@pytest.mark.slow  # unicorn
@given(st.data())
@FUZZ
def test_zero_skip_fc_equals_int8_ops(emu, data):
    b, k, o = (
        data.draw(st.integers(1, 3)),
        data.draw(st.integers(1, 70)),
        data.draw(st.sampled_from([1, 3, 12, 40, 300])),
    )
    sparsity = data.draw(st.sampled_from([0.0, 0.5, 0.9, 1.0]))
    density = data.draw(st.sampled_from([0.0, 0.1, 0.3, 1.0]))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    x, w, bias, params, m, s, expected = _zero_skip_case(
        rng, b, k, o, sparsity, density, data.draw(st.booleans())
    )
    status, got, _ = _run_zero_skip(emu, x, w, bias, params, m, s, at_end=data.draw(st.booleans()))
    assert status == 0
    np.testing.assert_array_equal(got, expected)


@pytest.mark.slow  # unicorn
def test_zero_skip_fc_skips_zero_groups(emu):
    """Cycles fall with the input's density (the work is per non-zero input group)."""
    rng = np.random.default_rng(3)
    cycles = []
    for density in (1.0, 0.1, 0.0):
        x, w, bias, params, m, s, expected = _zero_skip_case(rng, 1, 300, 100, 0.0, density, False)
        status, got, prof = _run_zero_skip(emu, x, w, bias, params, m, s)
        assert status == 0
        np.testing.assert_array_equal(got, expected)
        cycles.append(prof.cycles)
    assert cycles[0] > 2 * cycles[1] > 2 * cycles[2]


@pytest.mark.slow  # unicorn
def test_kernels_reject_bad_arguments(emu):
    rng = np.random.default_rng(4)
    x, w, bias, params, m, s, _ = _zero_skip_case(rng, 1, 9, 3, 0.5, 0.5, False)
    assert _run_zero_skip(emu, x, w, bias, params, m, s)[0] == 0
    bad = dict(params, activation={"min": 5, "max": 4})
    assert _run_zero_skip(emu, x, w, bias, bad, m, s)[0] == -1
    assert _run_zero_skip(emu, x, w, bias, params, m, np.array([40], np.int32))[0] == -1
    emu.reset_heap()
    xa, out = emu.put(x), emu.alloc(16)
    assert emu.call("kp_threshold_s8", xa, 9, 129, 0, out)[0] == -1
    assert emu.call("kp_topk_s8", xa, 9, 0, 0, out, emu.alloc(512))[0] == -1
    assert emu.call("kp_topk_s8", xa, 70000, 3, 0, out, emu.alloc(512))[0] == -1


# ------------------------------------------------------------------ the C export
def _masked_model():
    import keras

    import keras_prune as kp

    i = keras.Input((6, 6, 3))
    h = keras.layers.Conv2D(8, 3, activation="relu", name="c3")(i)
    h = kp.layers.ActivationMask(0.3, name="m1")(h)
    h = keras.layers.Conv2D(12, 1, activation="relu", name="c1x1")(h)  # fed by a mask
    h = kp.layers.ActivationMask(0.4, name="m2")(h)
    h = keras.layers.Flatten(name="flat")(h)  # a RESHAPE between
    h = keras.layers.Dense(16, activation="relu", name="fc1")(h)
    h = kp.layers.ActivationMask(0.25, name="m3")(h)
    return keras.Model(i, keras.layers.Dense(5, name="fc2")(h), name="masked")


@pytest.fixture(scope="module")
def masked_data():
    rng = np.random.default_rng(0)
    return rng.random((120, 6, 6, 3)).astype("float32"), rng.integers(0, 5, 120)


def _kernels(rep):
    return {la["keras_layers"][-1]: la["kernel"] for la in rep.manifest["layers"]}


@pytest.mark.slow  # QEMU (verify_m4) and unicorn
def test_masked_model_exports_bit_exact_with_zero_skipping(tmp_path, masked_data):
    import keras_prune as kp

    x, y = masked_data
    model = _masked_model()
    rep = kp.export.cmsis(
        model,
        tmp_path / "c",
        x,
        labels=y,
        sparse="always",
        samples=40,
        print_fn=None,
        progress=False,
    )
    k = _kernels(rep)
    assert [k[m] for m in ("m1", "m2", "m3")] == ["kp_threshold_s8"] * 3
    assert k["c1x1"] == k["fc1"] == k["fc2"] == "kp_zero_skip_fully_connected_s8"
    v = rep.manifest["verification"]
    assert v["host"]["bit_exact"] and v["host"]["samples"] == 40
    if "cortex_m4" in v:
        assert v["cortex_m4"]["bit_exact"]
    masks = [la["mask"] for la in rep.manifest["layers"] if la.get("mask")]
    assert [m["winner_rate"] for m in masks] == [0.3, 0.4, 0.25]
    assert "activation masks: 3, threshold form" in rep.table()
    if m4_profile.available():  # layer by layer: the fused GREATER_EQUALs have no C layer
        from keras_prune.mcu import cycles as m4_cycles

        cost = m4_cycles.profile_model(tmp_path / "c", np.zeros(6 * 6 * 3, np.int8))
        assert [la.kernel for la in cost.layers] == [la["kernel"] for la in rep.manifest["layers"]]
    # never: the same masks, dense kernels, still bit-exact
    rep = kp.export.cmsis(
        model,
        tmp_path / "d",
        x,
        labels=y,
        sparse="never",
        samples=40,
        print_fn=None,
        progress=False,
    )
    assert _kernels(rep)["fc1"] == "kp_fully_connected_s8"
    assert rep.manifest["verification"]["host"]["bit_exact"]


@pytest.mark.slow  # QEMU (verify_m4)
def test_auto_skips_zeros_where_the_estimate_says_so(tmp_path, masked_data):
    import keras_prune as kp

    x, y = masked_data
    rep = kp.export.cmsis(
        _masked_model(), tmp_path / "c", x, labels=y, samples=20, print_fn=None, progress=False
    )
    for la in rep.manifest["layers"]:
        s = la.get("sparse")
        if s is None or "input_density" not in s:
            continue
        est = {
            "dense": s["est_dense_cycles"],
            "sparse": s["est_sparse_cycles"],
            "zero_skip": s["est_zero_skip_cycles"],
        }
        if s["sparse_weight_bytes"] > s["dense_weight_bytes"]:
            del est["sparse"]  # auto never stores more than the dense weights
        assert s["kernel"] == min((v, k) for k, v in est.items() if v is not None)[1]
        assert "non-zero (mask)" in s["reason"]
    assert rep.manifest["verification"]["host"]["bit_exact"]


@pytest.mark.slow  # QEMU (verify_m4)
def test_topk_masks_in_c(tmp_path, masked_data):
    import keras_prune as kp
    from keras_prune.layers.activation_mask import winner_count

    x, y = masked_data
    rep = kp.export.cmsis(
        _masked_model(),
        tmp_path / "c",
        x,
        labels=y,
        sparse="always",
        masks="topk",
        samples=40,
        print_fn=None,
        progress=False,
    )
    masks = [la for la in rep.manifest["layers"] if la.get("mask")]
    assert {la["kernel"] for la in masks} == {"kp_topk_s8"}
    for la in masks:
        m = la["mask"]
        assert m["winners"] == winner_count(m["winner_rate"], m["size"])
        assert la["scratch_bytes"] == 512
    v = rep.manifest["verification"]
    assert "host" not in v and "top-k" in v["host_skipped"]
    if "cortex_m4" in v:
        assert v["cortex_m4"]["bit_exact"]
    acc = rep.manifest["accuracy"]
    assert {"int8_c", "int8_tflm"} <= set(acc)
    assert "threshold form in TFLM" in rep.table()


def test_topk_needs_the_winner_rate(tmp_path, masked_data):
    import keras

    import keras_prune as kp
    from keras_prune.export import CExportError

    x, _ = masked_data
    i = keras.Input((6, 6, 3))
    h = keras.layers.Flatten()(i)
    h = keras.layers.Dense(8, activation="relu", name="fc")(h)
    h = kp.layers.ActivationThreshold(0.05, name="thr")(h)  # no winner rate recorded
    model = keras.Model(i, keras.layers.Dense(3, name="out")(h))
    with pytest.raises(CExportError, match="winner rate"):
        kp.export.cmsis(model, tmp_path / "c", x, masks="topk", print_fn=None, progress=False)
    assert not (tmp_path / "c").exists()
    with pytest.raises(ValueError, match="masks must be one of"):
        kp.export.cmsis(model, tmp_path / "c", x, masks="top-k", print_fn=None)


@pytest.mark.slow  # QEMU (verify_m4)
def test_cli_export_cmsis_with_topk_masks(tmp_path, masked_data, capsys):
    import json

    import keras_prune as kp
    from keras_prune import cli

    x, y = masked_data
    kp.io.save(_masked_model(), tmp_path / "m.keras")
    np.savez(tmp_path / "d.npz", x_train=x, y_train=y, x_val=x[:30], y_val=y[:30])
    args = [
        "export",
        "cmsis",
        str(tmp_path / "m.keras"),
        "--data",
        str(tmp_path / "d.npz"),
        "--out",
        str(tmp_path / "c"),
        "--samples",
        "30",
        "--masks",
        "topk",
    ]
    assert cli.main(args) == 0
    assert "top-k winners at run time" in capsys.readouterr().out
    manifest = json.loads((tmp_path / "c" / "manifest.json").read_text())
    assert manifest["masks"] == "topk"
    assert {la["kernel"] for la in manifest["layers"] if la.get("mask")} == {"kp_topk_s8"}
    with pytest.raises(SystemExit):  # argparse names the choices
        cli.main([*args[:-2], "--masks", "top-k", "--force"])
    assert "invalid choice: 'top-k'" in capsys.readouterr().err


def _mask_graph():
    """The int8 graph of a Dense -> ActivationThreshold -> Dense model, and its SELECT_V2."""
    import keras

    import keras_prune as kp
    from keras_prune.export.int8.convert import convert_int8
    from keras_prune.export.int8.flatbuffer import read_tflite

    i = keras.Input((12,))
    h = keras.layers.Dense(16, activation="relu")(i)
    h = kp.layers.ActivationThreshold(0.05, winner_rate=0.5)(h)
    model = keras.Model(i, keras.layers.Dense(3)(h))
    x = np.random.default_rng(0).random((64, 12)).astype("float32")
    graph = read_tflite(convert_int8(model, x, int8_io=True))
    sel = next(op for op in graph.operators if op.name == "SELECT_V2")
    return graph, sel


def test_mask_lowering_refuses_what_it_cannot_copy_exactly():
    import dataclasses

    from keras_prune.export.cgen import lowering as c_lowering
    from keras_prune.export.cgen.lowering import CExportError
    from keras_prune.export.cgen.lowering.context import LoweringContext

    graph, sel = _mask_graph()
    assert [la.kernel for la in c_lowering.lower(graph) if la.mask] == ["kp_threshold_s8"]
    # a SELECT_V2 output quantized unlike its input: TFLite would not copy values as is
    out = graph.tensors[sel.outputs[0]]
    bad = dataclasses.replace(graph, tensors=list(graph.tensors))
    bad.tensors[out.index] = dataclasses.replace(out, zero_point=out.zero_point + 1)
    with pytest.raises(CExportError, match="different quantization"):
        c_lowering.lower(bad)
    # GREATER_EQUAL or SELECT_V2 outside the mask pattern (select between x and x)
    cond, x, _ = sel.inputs
    ops = [
        dataclasses.replace(op, inputs=(cond, x, x)) if op is sel else op for op in graph.operators
    ]
    with pytest.raises(CExportError, match="GREATER_EQUAL runs in the C export only"):
        c_lowering.lower(dataclasses.replace(graph, operators=ops))
    # top-k counts at most 65,535 values per map
    low = LoweringContext(graph, {}, masks="topk")
    m = low.mask_of[sel.index]
    m.rate = 0.5
    big = (1, 300, 300)
    low.g = dataclasses.replace(graph, tensors=list(graph.tensors))
    for t in (m.x, sel.outputs[0]):
        low.g.tensors[t] = dataclasses.replace(graph.tensors[t], shape=big)
    with pytest.raises(CExportError, match="at most 65,535"):
        low.lower(sel)
    with pytest.raises(ValueError, match="masks="):
        c_lowering.lower(graph, masks="top-k")
