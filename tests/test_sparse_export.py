"""The C export's sparse layers: SIMD-group sparse FULLY_CONNECTED and CONV_2D kernels
chosen per layer, bit-exact with TFLM on the host (plain and ASan+UBSan) and on QEMU, and
the cost model's estimates against unicorn's count."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

import keras_prune as kp
from keras_prune.export.cgen import cost_model as sparse_cost
from keras_prune.export.cgen.sparse_format import encode_groups
from keras_prune.export.int8.runtime import quantize_input
from keras_prune.mcu import cycles as m4_cycles
from keras_prune.mcu import firmware as m4
from keras_prune.mcu import host as mcu_host
from keras_prune.mcu import profiler as m4_profile

L = keras.layers


def _group_prune(model: keras.Model, sparsity: float, seed: int = 0) -> keras.Model:
    """Zero a random `sparsity` of the 4-weight groups of every kernel, along the
    accumulation axis of each output channel (what SIMDGroups(4) leaves)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, L.DepthwiseConv2D):  # groups: 4 channels at one tap
            w = layer.kernel.numpy()
            keep = rng.random((*w.shape[:2], w.shape[2] // 4)) >= sparsity
            keep = np.repeat(keep, 4, axis=2)[..., None]
            layer.kernel.assign(w * keep)
        elif hasattr(layer, "kernel"):
            w = layer.kernel.numpy()
            rows = np.moveaxis(w, -1, 0).reshape(w.shape[-1], -1)
            keep = rng.random((rows.shape[0], -(-rows.shape[1] // 4))) >= sparsity
            rows = rows * np.repeat(keep, 4, axis=1)[:, : rows.shape[1]]
            layer.kernel.assign(np.moveaxis(rows.reshape(w.shape[-1], *w.shape[:-1]), 0, -1))
    return model


def _cnn() -> keras.Model:
    """Every path of the sparse convs: a 1-channel SAME window (border taps, windows built
    whole, k % 4 != 0, a short last pass and quad), stride 2 over 8 channels, a
    depthwise 3x3 over 12 channels, a 1x1 conv, a dilated window, a VALID 3x3, then
    FULLY_CONNECTED layers."""
    keras.utils.set_random_seed(3)
    inp = keras.Input((13, 13, 1))
    x = L.Conv2D(8, 5, padding="same", activation="relu", name="c5")(inp)
    x = L.Conv2D(12, 3, strides=2, padding="same", activation="relu", name="c3s2")(x)
    x = L.DepthwiseConv2D(3, padding="same", activation="relu", name="dw")(x)
    x = L.Conv2D(6, 1, activation="relu", name="c1x1")(x)
    x = L.Conv2D(6, 3, dilation_rate=2, padding="same", activation="relu", name="c3dil")(x)
    x = L.Conv2D(8, 3, activation="relu", name="c3valid")(x)
    x = L.Flatten()(x)
    x = L.Dense(30, activation="relu", name="fc_a")(x)
    out = L.Dense(10, name="fc_b")(x)
    return keras.Model(inp, out, name="sparse_cnn")


@pytest.fixture(scope="module")
def data():
    return np.random.default_rng(0).random((120, 13, 13, 1)).astype("float32")


@pytest.fixture(scope="module")
def sparse_export(tmp_path_factory, data):
    model = _group_prune(_cnn(), 0.9)
    out = tmp_path_factory.mktemp("sparse") / "c"
    rep = kp.export.cmsis(
        model, out, data, samples=60, sparse="always", print_fn=None, progress=False
    )
    return model, out, rep


# sparse_export builds the Cortex-M4 firmware and runs it on QEMU: its users are slow
@pytest.mark.slow
def test_sparse_layers_are_bit_exact_with_tflm_on_host_and_cortex_m4(sparse_export):
    _, out, rep = sparse_export
    kernels = {
        (la["keras_layers"] or ["?"])[-1]: la["kernel"]
        for la in rep.manifest["layers"]
        if la["op"] in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
    }
    # The block-of-rows variant wins on the 1-channel and the dilated 6-channel windows.
    assert kernels == {
        "c5": "kp_sparse_convolve_rows_s8",
        "c3s2": "kp_sparse_convolve_s8",
        "dw": "kp_sparse_depthwise_conv_s8",
        "c1x1": "kp_sparse_convolve_s8",
        "c3dil": "kp_sparse_convolve_rows_s8",
        "c3valid": "kp_sparse_convolve_s8",
        "fc_a": "kp_sparse_fully_connected_s8",
        "fc_b": "kp_sparse_fully_connected_s8",
    }
    v = rep.manifest["verification"]
    assert v["host"]["bit_exact"] and v["host"]["samples"] == 60
    if m4.find_cross_toolchain() is not None and m4.find_qemu() is not None:
        assert v["cortex_m4"]["bit_exact"]
    # The dense weights are only compiled for the CMSIS-NN build.
    weights_c = (out / "kp_weights.c").read_text()
    assert "kp_l" in weights_c and "#ifdef KP_USE_CMSIS_NN" in weights_c
    for la in rep.manifest["layers"]:
        if "sparse" in la:
            assert la["sparse"]["kernel"] == "sparse"
            assert la["sparse"]["group_sparsity"] > 0.75
            assert la["sparse"]["reason"].startswith("sparse='always'")


@pytest.mark.slow
def test_sparse_build_is_clean_under_asan_and_ubsan(sparse_export, tmp_path, data):
    _, out, rep = sparse_export
    inp = rep.manifest["io"]["input"]
    xq = quantize_input(data[:20], inp["scale"], inp["zero_point"])
    plain = mcu_host.run_host(mcu_host.build_host(out, tmp_path / "plain"), xq, 10)
    checked = mcu_host.run_host(mcu_host.build_host(out, tmp_path / "asan", sanitize=True), xq, 10)
    np.testing.assert_array_equal(plain, checked)


@pytest.mark.slow
def test_sparse_export_is_smaller_than_dense(sparse_export, tmp_path, data):
    model, _, rep = sparse_export
    dense = kp.export.cmsis(
        model,
        tmp_path / "dense",
        data,
        samples=5,
        sparse="never",
        verify_m4=False,
        print_fn=None,
        progress=False,
    )
    assert all(
        "sparse" not in la or la["sparse"]["kernel"] == "dense" for la in dense.manifest["layers"]
    )
    assert rep.manifest["sizes"]["const_bytes"] < 0.6 * dense.manifest["sizes"]["const_bytes"]


def test_auto_follows_the_estimates_on_a_dense_model(tmp_path, data, capsys):
    rep = kp.export.cmsis(_cnn(), tmp_path / "c", data, samples=5, verify_m4=False, progress=False)
    choices = {
        la["keras_layers"][-1]: la["sparse"] for la in rep.manifest["layers"] if "sparse" in la
    }
    assert len(choices) == 8
    for c in choices.values():
        faster = c["est_sparse_cycles"] < c["est_dense_cycles"]
        smaller = c["sparse_weight_bytes"] <= c["dense_weight_bytes"]
        assert c["kernel"] == ("sparse" if faster and smaller else "dense")
        if not smaller:
            assert c["reason"].startswith("sparse storage would be larger")
        else:
            assert c["reason"].startswith("dense is faster") != faster
    # Nothing is pruned: every group kept costs index bytes on top of the dense weights,
    # so auto keeps every layer dense even where the sparse conv's estimate is lower (it
    # is, for most convolutions here: the output-stationary loop beats the im2col one).
    assert all(c["kernel"] == "dense" for c in choices.values())
    assert any(c["est_sparse_cycles"] < c["est_dense_cycles"] for c in choices.values())
    assert "dense or sparse, per layer" in capsys.readouterr().out
    manifest = json.loads((tmp_path / "c" / "manifest.json").read_text())
    assert manifest["layers"] == rep.manifest["layers"]


def test_bad_sparse_mode_is_refused_before_anything_is_written(tmp_path, data):
    with pytest.raises(ValueError, match="sparse must be one of"):
        kp.export.cmsis(_cnn(), tmp_path / "c", data, sparse="yes")
    assert not (tmp_path / "c").exists()
    with pytest.raises(ValueError, match="sparse="):
        sparse_cost.choose("fc", np.ones((4, 8), np.int8), {"batches": 1}, mode="maybe")


def test_choice_follows_the_estimates():
    rng = np.random.default_rng(0)
    w = rng.integers(-127, 128, (300, 784)).astype(np.int8)
    dense = sparse_cost.choose("fc", w, {"batches": 1})
    assert dense.kernel == "dense" and dense.sparse is None
    keep = np.repeat(rng.random((300, 196)) >= 0.9, 4, axis=1)
    sparse = sparse_cost.choose("fc", np.where(keep, w, 0), {"batches": 1})
    assert sparse.kernel == "sparse" and sparse.sparse_cycles < sparse.dense_cycles / 3
    # The fastest stream is picked, not the smallest.
    assert sparse.sparse.index_kind == "abs16"
    assert encode_groups(np.where(keep, w, 0)).index_kind == "delta8"
    # ... unless it would store more than the dense weights: at 25% of groups pruned,
    # abs16 takes 4.5 bytes per dense group, delta8 3.75.
    few = np.repeat(rng.random((300, 196)) >= 0.25, 4, axis=1)
    mild = sparse_cost.choose("conv", np.where(few, w, 0), sparse_cost.ConvShape(8, 8, 1, 1, 784))
    assert mild.sparse_bytes <= mild.dense_bytes
    assert mild.kernel == "dense" or mild.sparse.index_kind != "abs16"


@pytest.mark.slow  # unicorn
@pytest.mark.skipif(not m4_profile.available(), reason="needs unicorn and arm-none-eabi-gcc")
def test_cost_model_estimates_are_close_to_unicorns_count(sparse_export, data):
    _, out, rep = sparse_export
    inp = rep.manifest["io"]["input"]
    cost = m4_cycles.profile_model(out, quantize_input(data[:1], inp["scale"], inp["zero_point"]))
    by_index = {la.index: la for la in cost.layers}
    for la in rep.manifest["layers"]:
        if "sparse" in la:
            measured = by_index[la["index"]].cycles
            estimate = la["sparse"]["est_sparse_cycles"]
            assert 0.6 < estimate / measured < 1.5, (la["keras_layers"], estimate, measured)


SCRATCH_SHAPES = [  # ConvShape fields: out_h, out_w, kh, kw, cin, stride, dilation, padding
    sparse_cost.ConvShape(28, 28, 5, 5, 1, (1, 1), (1, 1), (2, 2)),
    sparse_cost.ConvShape(5, 5, 3, 3, 8, (2, 2), (1, 1), (1, 1)),
    sparse_cost.ConvShape(9, 9, 3, 3, 6, (1, 1), (2, 2), (0, 0)),
    sparse_cost.ConvShape(7, 40, 3, 5, 3, (1, 2), (1, 1), (1, 2)),
    sparse_cost.ConvShape(3, 200, 3, 3, 64, (1, 1), (1, 1), (1, 1)),
]

_SCRATCH_C = r"""
#include <stdio.h>
#include "kp_nn_sparse.h"

static const int32_t shapes[][9] = {SHAPES}; /* kh, kw, cin, oh, ow, sh, sw, dh, dw */

int main(void)
{
    size_t i;
    for (i = 0; i < sizeof shapes / sizeof shapes[0]; ++i) {
        const int32_t *s = shapes[i];
        printf("%ld %ld\n", (long)KP_SPARSE_CONV_SCRATCH_BYTES(s[0], s[1], s[2]),
               (long)KP_SPARSE_CONV_ROWS_SCRATCH_BYTES(s[0], s[1], s[2], s[3], s[4], s[5],
                                                       s[6], s[7], s[8]));
    }
    return 0;
}
"""


def test_scratch_agrees_with_the_kernel(tmp_path):
    """sparse_cost's scratch sizes are the C macros' (tests/test_sparse_conv.py runs both
    sparse convolutions under ASan with exactly that much)."""
    import subprocess

    from keras_prune.export.cgen import kernel_library
    from keras_prune.mcu import toolchain as cbuild

    if cbuild.find_cc() is None:
        pytest.skip("no host C compiler")
    rows = ", ".join(
        "{"
        + ", ".join(map(str, (s.kh, s.kw, s.cin, s.out_h, s.out_w, *s.stride, *s.dilation)))
        + "}"
        for s in SCRATCH_SHAPES
    )
    src = tmp_path / "scratch.c"
    src.write_text(_SCRATCH_C.replace("{SHAPES}", "{" + rows + "}"))
    exe = cbuild.compile_host([src], [kernel_library.KERNEL_DIR], tmp_path / "scratch")
    lines = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.split()
    assert [int(v) for v in lines] == [
        n
        for s in SCRATCH_SHAPES
        for n in (sparse_cost.conv_scratch_bytes(s), sparse_cost.conv_rows_scratch_bytes(s))
    ]
