"""The main job: `keras-prune demo`."""

import json

import numpy as np
import pytest

import keras_prune as kp
from keras_prune import cli
from keras_prune.datasets import mnist_5k
from keras_prune.recipes import demo, m4_variants, reports


@pytest.fixture(scope="module")
def lenet_demo(tmp_path_factory):
    """`keras-prune demo` on LeNet-300-100, run once for the checks below: the result
    and its output directory."""
    out = tmp_path_factory.mktemp("demo")
    (result,) = demo.run(out, models=("lenet_300_100",))
    return result, out


def skip_unless_cycles(row: dict, what: str) -> None:
    """Skip, saying which tool is missing and how to install it, where the demo could not
    count ``what``'s Cortex-M4 cycles."""
    if not row.get("cycles"):
        from keras_prune.mcu import profiler as m4_profile

        why = row.get("cycles_skipped") or f"{m4_profile.INSTALL_HINT}; {m4_profile.UNICORN_HINT}"
        pytest.skip(f"Cortex-M4 cycles of {what} not measured: {why}")


@pytest.mark.slow
def test_lenet_300_100_reaches_90_percent_simd_sparsity_within_half_a_point(lenet_demo):
    result, tmp_path = lenet_demo
    assert result.sparsity >= 0.90
    assert result.pruned_accuracy >= result.dense_accuracy - 0.005
    for name in (
        "sparsity.png",
        "results.json",
        "lenet_300_100_dense.keras",
        "lenet_300_100_pruned.keras",
    ):
        assert (tmp_path / name).stat().st_size > 0
    assert (tmp_path / "sparsity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved[0]["sparsity"] == pytest.approx(result.sparsity)
    plain = kp.io.load(tmp_path / "lenet_300_100_pruned.keras")
    rows = kp.summary(plain, granularity=kp.granularity.SIMDGroups(4), print_fn=lambda s: None)
    assert all(r.pattern_ok for r in rows)
    _, _, xt, yt = mnist_5k()
    acc = float(np.mean(np.argmax(plain.predict(xt, verbose=0), axis=1) == yt))
    assert acc == pytest.approx(result.pruned_accuracy, abs=1e-6)
    # the curve rises to the target and stays there
    values = [v for _, v in result.curve]
    assert values[0] < 0.5 and values[-1] >= 0.9 and values == sorted(values)
    # Integral Pruning stage: >= 90% fewer effective MACs, accuracy within half a point
    ip = result.integral
    assert ip.rates and all(0 < r < 1 for r in ip.rates.values())
    assert ip.macs["dense"] == 266_200
    assert ip.cut("weights_x_masks") >= 0.90
    assert ip.cut("weights_x_masks") > ip.cut("weights_x_relu") > ip.cut("weights") >= 0.89
    assert ip.topk_accuracy >= ip.dense_accuracy - 0.005
    assert all(abs(r["density_int8"] - r["density_topk"]) <= 0.05 for r in ip.activation_check)
    assert ip.int8_accuracy is not None and abs(ip.int8_accuracy - ip.threshold_accuracy) < 0.01
    assert saved[0]["integral"]["rates"] == ip.rates
    # The trained SIMDGroups(4) model as sparse C: bit-exact with TFLM, sparse kernels
    # on the big layers, fewer estimated cycles and less flash than the dense C
    c = result.cortex_m4
    pruned = c["pruned"]["manifest"]
    assert pruned["verification"]["host"]["bit_exact"]
    kernels = {
        la["keras_layers"][-1]: la["kernel"]
        for la in pruned["layers"]
        if la["op"] == "FULLY_CONNECTED"
    }
    assert kernels["fc1"] == kernels["fc2"] == "kp_sparse_fully_connected_s8"
    assert pruned["sizes"]["const_bytes"] < 0.25 * c["manifest"]["sizes"]["const_bytes"]
    assert "dense vs SIMDGroups(4) sparse C" in reports.format_sparse_c(result)
    for name in ("sensitivity_lenet_300_100.png", "lenet_300_100_integral.keras"):
        assert (tmp_path / name).stat().st_size > 0
    integral_model = kp.io.load(tmp_path / "lenet_300_100_integral.keras")
    assert "ActivationThreshold" in {type(la).__name__ for la in integral_model.layers}
    # TFLM export of the dense and the pruned model
    dense, pruned = result.tflm
    assert (dense["variant"], pruned["variant"]) == ("dense", "pruned")
    for row in result.tflm:
        assert row["ok"] and row["top1_agreement"] >= 0.99
        assert abs(row["int8_accuracy"] - row["float_accuracy"]) <= 0.01
        assert (tmp_path / "tflm" / f"lenet_300_100_{row['variant']}" / "model.tflite").exists()
    assert pruned["float_accuracy"] == pytest.approx(result.pruned_accuracy, abs=1e-6)
    # TFLM keeps zeros as weights (same size), a compressor exploits them
    assert abs(pruned["tflite_bytes"] - dense["tflite_bytes"]) < 0.01 * dense["tflite_bytes"]
    assert pruned["zlib_bytes"] < 0.5 * dense["zlib_bytes"]
    assert saved[0]["tflm"] == result.tflm


@pytest.mark.slow
def test_lenet_300_100_sparse_c_takes_3x_fewer_cortex_m4_cycles(lenet_demo):
    c = lenet_demo[0].cortex_m4
    skip_unless_cycles(c, "the dense C")
    skip_unless_cycles(c["pruned"], "the SIMDGroups(4) sparse C")
    assert c["cycles"] / c["pruned"]["cycles"] > 3.0


@pytest.mark.slow
def test_lenet_300_100_every_cortex_m4_variant_side_by_side(lenet_demo):
    result, tmp_path = lenet_demo
    # demo.run compares the variants only where it could count the dense C's cycles
    skip_unless_cycles(result.cortex_m4, "the dense C")
    saved = json.loads((tmp_path / "results.json").read_text())
    rows = dict(result.m4_variants)
    assert list(rows)[0] == "dense, ours" and "unstructured 90% + CSR" in rows
    masked, groups = rows["SIMDGroups(4) + masks"], rows["SIMDGroups(4) 90%"]
    assert masked["manifest"]["verification"]["host"]["bit_exact"]
    assert {"kp_threshold_s8"} <= {la["kernel"] for la in masked["manifest"]["layers"]}
    dense_c = rows["dense, ours"]
    # issue 7's bars, on all 1,000 test digits: >= 4x, >= 80% less flash, <= 0.5 points
    assert dense_c["cycles"] / groups["cycles"] >= 4.0
    assert groups["flash"] <= 0.2 * dense_c["flash"]
    assert groups["accuracy"] >= dense_c["accuracy"] - 0.005
    assert dense_c["manifest"]["accuracy"]["samples"] == 1000
    assert rows["unstructured 90% + CSR"]["cycles"] > groups["cycles"]
    assert "top-k" in m4_variants.table(result.model, result.m4_variants)
    png = tmp_path / "m4_variants" / "lenet_300_100" / "variants.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [v["variant"] for v in saved[0]["m4_variants"]] == list(rows)


@pytest.mark.slow
def test_cli_demo_quick_run_and_refusal_to_overwrite(tmp_path, capsys):
    args = [
        "demo",
        "--out",
        str(tmp_path),
        "--models",
        "lenet5",
        "--dense-epochs",
        "1",
        "--prune-epochs",
        "1",
        "--finetune-epochs",
        "1",
        "--masks-epochs",
        "1",
        "--legr-generations",
        "2",
        "--legr-epochs",
        "1",
        "--budget-epochs",
        "1",
    ]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "lenet5" in out and "groups of 4 aligned: yes" in out and "pruned acc" in out
    assert "Integral Pruning: lenet5" in out and "MAC reduction vs dense" in out
    assert (tmp_path / "sensitivity_lenet5.png").exists()
    assert "TFLite Micro export" in out and "TFLM=LiteRT" in out
    for variant in ("dense", "pruned"):
        assert (tmp_path / "tflm" / f"lenet5_{variant}" / "op_resolver.h").exists()
    assert "lenet5 (dense) as C for a Cortex-M4" in out
    assert "host build vs TFLM interpreter: bit-exact on 100 test digits" in out
    assert (tmp_path / "cmsis" / "lenet5_dense" / "kp_model.c").exists()
    from keras_prune.mcu import firmware as m4
    from keras_prune.mcu import profiler as m4_profile

    if m4.find_qemu() is not None and m4_profile.available():
        assert "Cortex-M4 (QEMU mps2-an386) vs host: bit-exact on 100 digits" in out
        assert "Estimated Cortex-M4 cycles per layer" in out and "ms at 120 MHz" in out
    assert "LeGR on the reloaded lenet5_dense.h5" in out and "uniform" in out
    assert (tmp_path / "legr_lenet5" / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    assert "Pruned to half of lenet5's estimated Cortex-M4 time" in out
    plan = json.loads((tmp_path / "budget_lenet5" / "plan.json").read_text())
    assert plan["estimate"]["latency_ms"] <= 0.5 * plan["original"]["latency_ms"] * 1.0001
    assert (tmp_path / "budget_lenet5" / "plan.png").read_bytes()[:4] == b"\x89PNG"
    saved = json.loads((tmp_path / "results.json").read_text())
    assert [p["method"] for p in saved[0]["legr"]] == ["original"] + ["learned"] * 2 + [
        "l2"
    ] * 2 + ["uniform"] * 2
    stamp = (tmp_path / "lenet5_pruned.keras").stat().st_mtime_ns
    assert cli.main(args) == 2
    assert "--force" in capsys.readouterr().err
    assert (tmp_path / "lenet5_pruned.keras").stat().st_mtime_ns == stamp


def test_cli_rejects_unknown_models(tmp_path, capsys):
    assert cli.main(["demo", "--out", str(tmp_path), "--models", "resnet"]) == 2
    assert "resnet" in capsys.readouterr().err


@pytest.mark.slow
def test_quickstart_example_runs(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "examples" / "quickstart.py"
    out = tmp_path / "pruned.keras"
    proc = subprocess.run(
        [sys.executable, str(script), "--epochs", "1", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "groups of 4 aligned: yes" in proc.stdout and out.stat().st_size > 0
