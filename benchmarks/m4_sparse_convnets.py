"""MLPerf Tiny's convolutional networks (ResNet-8, MobileNetV1-0.25 at 96x96, DS-CNN) as
C for a Cortex-M4, dense against SIMDGroups(4)-pruned at several sparsities.

Each model gets seeded random weights (random BatchNorm scales and offsets, moving
statistics measured on the calibration inputs so every layer's int8 range is sane;
cycles depend on shapes and on which weights are zero, not on their values). Every
Conv2D, DepthwiseConv2D and Dense kernel is then pruned in one shot by group magnitude
with the library's own mask computation (``kp.granularity.SIMDGroups(4).compute_mask``:
the L2 norm of each run of 4 weights along an output channel's accumulation axis, or of
4 consecutive channels at one tap of a depthwise filter; the weakest groups go). Each
pruned copy is exported with ``kp.export.cmsis(..., sparse="auto")`` (the cost model picks
the dense or the sparse kernel per layer; host build checked bit for bit against TFLM);
the unpruned model is exported twice: with ``sparse="never"`` (our dense kernels
everywhere: the baseline the speedups are measured against) and with ``sparse="auto"``
(which must keep it dense: an index on unpruned weights only adds flash). Every export
runs layer by layer under unicorn (``kp.mcu.profile_model``) on one quantized input, and
that output is checked against the host build's. When ``KP_CMSIS_NN_DIR`` names a CMSIS-NN checkout,
the dense export is also built against ARM's kernels and measured the same way.

Cycle estimates assume zero wait states and no bus contention (see
``keras_prune.mcu.cycles.ASSUMPTIONS``): compare ratios, not absolute times. Emulation is
deterministic, so one run per build is the measurement.

    python benchmarks/m4_sparse_convnets.py [--out bench_out/m4_sparse_convnets]
        [--models resnet8 mobilenet_v1 ds_cnn] [--sparsities 0.5 0.7 0.9]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import traceback
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_prune as kp  # noqa: E402
from keras_prune.layers.prunable import kernel_specs  # noqa: E402
from keras_prune.mcu import cycles as m4_cycles  # noqa: E402
from keras_prune.mcu import firmware as m4  # noqa: E402
from keras_prune.mcu import host  # noqa: E402
from keras_prune.mcu import profiler as m4_profile  # noqa: E402
from keras_prune.model_utils import clone_with_weights, fresh  # noqa: E402

BUILDERS = {
    "resnet8": kp.models.resnet8,
    "mobilenet_v1": kp.models.mobilenet_v1,
    "ds_cnn": kp.models.ds_cnn,
}
GROUPS = kp.granularity.SIMDGroups(4)
PRUNED = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)


# ------------------------------------------------------------------- models
def build(name: str, x_cal: np.ndarray, seed: int) -> keras.Model:
    """``name`` with seeded random weights and BatchNorm layers that normalise what they
    really receive: random gamma/beta, moving statistics from one training-mode pass over
    ``x_cal`` (momentum 0 for that pass, so the statistics are the batch's)."""
    keras.utils.set_random_seed(seed)
    model = BUILDERS[name]()
    rng = np.random.default_rng(seed)
    bns = [la for la in model.layers if isinstance(la, keras.layers.BatchNormalization)]
    momenta = []
    for bn in bns:
        c = bn.gamma.shape[0]
        bn.gamma.assign(rng.uniform(0.5, 1.5, c).astype("float32"))
        bn.beta.assign(rng.normal(0.0, 0.25, c).astype("float32"))
        momenta.append(bn.momentum)
        bn.momentum = 0.0
    model(x_cal, training=True)  # each BN stores the mean/variance of its own input
    for bn, m in zip(bns, momenta, strict=True):
        bn.momentum = m
    return model


def group_prune(model: keras.Model, sparsity: float) -> keras.Model:
    """A copy of ``model`` with every Conv2D, DepthwiseConv2D and Dense kernel pruned to
    ``sparsity`` of its 4-weight groups by magnitude (the library's SIMDGroups(4) mask);
    ``model`` is left as it was."""
    pruned = clone_with_weights(model, fresh)
    for layer in pruned.layers:
        if not isinstance(layer, PRUNED):
            continue
        for spec in kernel_specs(layer):
            var = getattr(layer, spec.attr)
            w = var.numpy()
            mask = GROUPS.compute_mask(w, np.ones_like(w), sparsity, spec.layout)
            var.assign(w * np.asarray(mask, w.dtype))
    return pruned


def quantize(x: np.ndarray, io: dict) -> np.ndarray:
    q = np.round(x / io["scale"]) + io["zero_point"]
    return np.clip(q, -128, 127).astype(np.int8).reshape(1, -1)


# ---------------------------------------------------------------- measuring
def measure(
    model: keras.Model,
    path: Path,
    x_cal: np.ndarray,
    samples: int,
    sparse: str,
    cmsis_nn: str | None = None,
) -> dict:
    """Export ``model`` to ``path``, profile it on the Cortex-M4 (and, with ``cmsis_nn``,
    the same C built against CMSIS-NN), check the emulated output against the host's."""
    t = time.time()
    report = kp.export.cmsis(
        model, path, x_cal, samples=samples, sparse=sparse, print_fn=None, progress=False
    )
    man = report.manifest
    t_export = time.time() - t
    xq = quantize(x_cal[:1], man["io"]["input"])
    out_size = int(np.prod(man["io"]["output"]["shape"]))
    host_out = host.run_host(host.build_host(path, path.parent / f"{path.name}.host"), xq, out_size)
    v = man["verification"]
    row = {
        "export_s": round(t_export, 1),
        "const_bytes": man["sizes"]["const_bytes"],
        "tflite_bytes": man["sizes"]["tflite_bytes"],
        "model_flash": man["sizes"].get("cortex_m4", {}).get("model_flash"),
        "arena_bytes": man["memory"]["arena_bytes"],
        "bit_exact": report.bit_exact,
        "host_vs_tflm": v.get("host"),
        "cortex_m4_vs_host": v.get("cortex_m4"),
        "layers": man["layers"],
    }
    builds = {"ours": {}}
    if cmsis_nn:
        builds["cmsis_nn"] = {"cmsis_nn": cmsis_nn}
    for label, kwargs in builds.items():
        t = time.time()
        cost = m4_cycles.profile_model(path, xq, **kwargs)
        row[label] = {
            "cycles": cost.cycles,
            "macs": cost.macs,
            "instructions": cost.instructions,
            "ms_at_120mhz": round(cost.ms(), 3),
            "emulated_s": round(time.time() - t, 1),
            "matches_host": bool(np.array_equal(cost.output, host_out[0])),
            "layers": [
                {
                    "layers": list(la.layers),
                    "op": la.op,
                    "kernel": la.kernel,
                    "macs": la.macs,
                    "cycles": la.cycles,
                }
                for la in cost.layers
            ],
        }
    return row


def run_model(name: str, sparsities: list[float], samples: int, cmsis_nn, seed: int, log) -> dict:
    """The dense model and one pruned copy per sparsity, each exported and measured."""
    rng = np.random.default_rng(seed)
    shape = BUILDERS[name]().inputs[0].shape[1:]
    x_cal = rng.random((100, *shape)).astype("float32")
    model = build(name, x_cal, seed)
    result = {
        "model": name,
        "params": int(model.count_params()),
        "macs": int(sum(r.dense for r in kp.count_macs(model, print_fn=None).rows)),
        "variants": {},
    }
    # "dense": our dense kernels everywhere (sparse="never"), the baseline, also built
    # against CMSIS-NN. "dense_auto": the same unpruned weights with sparse="auto", where
    # the cost model may still pick a sparse kernel for a layer.
    variants = [("dense", 0.0, "never"), ("dense_auto", 0.0, "auto")] + [
        (f"sparse_{s:g}", s, "auto") for s in sparsities
    ]
    with tempfile.TemporaryDirectory(prefix=f"m4sc_{name}_") as tmp:
        for label, s, mode in variants:
            t = time.time()
            try:
                variant = model if s == 0 else group_prune(model, s)
                row = measure(
                    variant,
                    Path(tmp) / label,
                    x_cal,
                    samples,
                    mode,
                    cmsis_nn if label == "dense" else None,
                )
                row.update(sparsity=s, sparse_mode=mode)
            except Exception as e:  # one failed export must not lose the other rows
                row = {"sparsity": s, "sparse_mode": mode, "error": f"{type(e).__name__}: {e}"}
                log(f"[{name} {label}] FAILED: {row['error']}\n{traceback.format_exc()}")
            result["variants"][label] = row
            if "error" not in row:
                extra = f", CMSIS-NN {row['cmsis_nn']['cycles']:,}" if "cmsis_nn" in row else ""
                log(
                    f"[{name} {label}: {row['ours']['cycles']:,} cycles{extra}; export "
                    f"{row['export_s']:.0f} s, total {time.time() - t:.0f} s]"
                )
    return result


# ------------------------------------------------------------------ reports
def _ok(row: dict) -> bool:
    return bool(row) and "error" not in row


def _pick(sparsities: list[float], target: float = 0.7) -> float:
    return min(sparsities, key=lambda s: (abs(s - target), -s))


def _exact(row: dict) -> str:
    if not _ok(row):
        return "export failed"
    parts = []
    h, c = row["host_vs_tflm"], row["cortex_m4_vs_host"]
    parts.append(
        f"host vs TFLM {'bit-exact' if h['bit_exact'] else 'DIFFERENT'} on {h['samples']}"
        if h
        else "host vs TFLM not run"
    )
    parts.append(
        f"QEMU Cortex-M4 vs host {'bit-exact' if c['bit_exact'] else 'DIFFERENT'} on {c['samples']}"
        if c
        else "QEMU not run"
    )
    unicorn = [row["ours"]["matches_host"]]
    if "cmsis_nn" in row:
        unicorn.append(row["cmsis_nn"]["matches_host"])
    parts.append("unicorn output == host" if all(unicorn) else "unicorn output DIFFERS from host")
    return "; ".join(parts)


def _grid(head: list[str], body: list[list[str]], align: str) -> str:
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(head)]
    line = lambda cells: " | ".join(  # noqa: E731
        f"{c:{a}{w}}" for c, a, w in zip(cells, align, widths, strict=True)
    )
    return "\n".join([line(head), "-+-".join("-" * w for w in widths), *map(line, body)])


def whole_table(results: list[dict], sparsities: list[float]) -> str:
    ref = _pick(sparsities)
    pct = [f"{s:.0%}" for s in sparsities]
    head = (
        ["model", "MACs", "dense ours", "unpruned auto", "dense CMSIS-NN"]
        + [f"sparse {p}" for p in pct]
        + [f"x ours @{p}" for p in pct]
        + [f"x CMSIS-NN @{ref:.0%}", "flash B dense"]
        + [f"flash B {p}" for p in pct]
    )
    body = []
    for r in results:
        v = r["variants"]
        dense = v["dense"]
        ours = dense["ours"]["cycles"] if _ok(dense) else None
        cmsis = dense["cmsis_nn"]["cycles"] if _ok(dense) and "cmsis_nn" in dense else None
        auto = v["dense_auto"]["ours"]["cycles"] if _ok(v["dense_auto"]) else None
        sp = [v[f"sparse_{s:g}"] for s in sparsities]
        cyc = [x["ours"]["cycles"] if _ok(x) else None for x in sp]
        at_ref = cyc[sparsities.index(ref)]
        body.append(
            [r["model"], f"{r['macs']:,}", _n(ours), _n(auto), _n(cmsis)]
            + [_n(c) for c in cyc]
            + [f"{ours / c:.2f}x" if ours and c else "-" for c in cyc]
            + [f"{cmsis / at_ref:.2f}x" if cmsis and at_ref else "-"]
            + [_n(dense.get("const_bytes"))]
            + [_n(x.get("const_bytes")) for x in sp]
        )
    return _grid(head, body, "<" + ">" * (len(head) - 1))


def _n(v) -> str:
    return "-" if v is None else f"{v:,}"


def layer_table(result: dict, sparsity: float) -> str:
    dense = result["variants"]["dense"]
    auto = result["variants"]["dense_auto"]
    sparse = result["variants"][f"sparse_{sparsity:g}"]
    if not (_ok(dense) and _ok(auto) and _ok(sparse)):
        return f"{result['model']}: no per-layer table (an export failed)"
    head = [
        "layer",
        "op",
        "MACs",
        f"kernel @{sparsity:.0%}",
        "groups pruned",
        "dense cycles",
        "unpruned auto",
        f"sparse cycles @{sparsity:.0%}",
        "dense/sparse",
        "cost model est.",
    ]
    body = []
    d_layers, s_layers = dense["ours"]["layers"], sparse["ours"]["layers"]
    rows = zip(d_layers, auto["ours"]["layers"], s_layers, sparse["layers"], strict=True)
    for d, a, s, man in rows:
        if not d["layers"] == a["layers"] == s["layers"]:
            raise RuntimeError(f"{result['model']}: the exports' layers differ ({d} vs {s})")
        choice = man.get("sparse") or {}
        est = (
            f"{choice['est_dense_cycles'] / choice['est_sparse_cycles']:.2f}x"
            if choice.get("est_sparse_cycles")
            else "-"
        )
        body.append(
            [
                (s["layers"] or ["-"])[-1],  # the conv/dense a fused BN and ReLU follow
                s["op"],
                _n(s["macs"] or None),
                s["kernel"].removeprefix("kp_"),
                f"{choice['group_sparsity']:.0%}" if choice else "-",
                _n(d["cycles"]),
                _n(a["cycles"]) + (" (sparse)" if "sparse" in a["kernel"] else ""),
                _n(s["cycles"]),
                f"{d['cycles'] / s['cycles']:.2f}x" if s["cycles"] else "-",
                est,
            ]
        )
    total_d, total_s = dense["ours"]["cycles"], sparse["ours"]["cycles"]
    body.append(
        ["total", "", _n(result["macs"]), "", "", _n(total_d), _n(auto["ours"]["cycles"])]
        + [_n(total_s)]
        + [f"{total_d / total_s:.2f}x", ""]
    )
    return f"\n{result['model']}, per layer (dense vs sparse {sparsity:.0%}):\n" + _grid(
        head, body, "<<><>>>>>>"
    )


def plot(results: list[dict], sparsities: list[float], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for i, r in enumerate(results):
        v = r["variants"]
        if not _ok(v["dense"]):
            continue
        color = f"C{i}"
        pts = [(0.0, 1.0)] + [
            (s, v["dense"]["ours"]["cycles"] / v[f"sparse_{s:g}"]["ours"]["cycles"])
            for s in sparsities
            if _ok(v[f"sparse_{s:g}"])
        ]
        ax.plot(*zip(*pts, strict=True), "o-", color=color, label=f"{r['model']} vs our dense")
        if "cmsis_nn" in v["dense"]:
            c = v["dense"]["cmsis_nn"]["cycles"]
            pts = [(0.0, c / v["dense"]["ours"]["cycles"])] + [
                (s, c / v[f"sparse_{s:g}"]["ours"]["cycles"])
                for s in sparsities
                if _ok(v[f"sparse_{s:g}"])
            ]
            ax.plot(*zip(*pts, strict=True), "s--", color=color, alpha=0.6, label="  vs CMSIS-NN")
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.set_xlabel("SIMDGroups(4) sparsity of every Conv2D, DepthwiseConv2D and Dense kernel")
    ax.set_ylabel("speedup (estimated Cortex-M4 cycles)")
    ax.set_title("SIMDGroups(4) sparse C on a Cortex-M4")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return kp.io.save_figure(fig, path, overwrite=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="bench_out/m4_sparse_convnets")
    ap.add_argument("--models", nargs="+", default=list(BUILDERS), choices=list(BUILDERS))
    ap.add_argument("--sparsities", nargs="+", type=float, default=[0.5, 0.7, 0.9])
    ap.add_argument(
        "--samples",
        type=int,
        default=8,
        help="inputs each export checks bit for bit against TFLM (default 8)",
    )
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if not m4_profile.available() or m4.find_cross_toolchain() is None:
        raise SystemExit(
            "needs arm-none-eabi-gcc with newlib and unicorn: "
            "pip install 'keras-prune[mcu]' and see `make toolchain`."
        )
    if any(not 0 < s < 1 for s in args.sparsities):
        raise SystemExit("--sparsities: each must be strictly between 0 and 1")
    sparsities = sorted(set(args.sparsities))
    cmsis_nn = os.environ.get("KP_CMSIS_NN_DIR") or None
    if cmsis_nn and not (Path(cmsis_nn) / "Include" / "arm_nnfunctions.h").is_file():
        raise SystemExit(f"KP_CMSIS_NN_DIR={cmsis_nn} is not a CMSIS-NN checkout")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    def log(s: str) -> None:
        print(s, flush=True)

    t0 = time.time()
    results = []
    for name in args.models:
        t = time.time()
        results.append(run_model(name, sparsities, args.samples, cmsis_nn, args.seed, log))
        results[-1]["seconds"] = round(time.time() - t, 1)
        log(f"[{name}: {results[-1]['seconds']:.0f} s]")

    ref = _pick(sparsities)
    print(
        "\nEstimated Cortex-M4 cycles per inference (unicorn, -O2; "
        "x = speedup of the sparse build; flash = constant bytes of the export: weights, "
        "biases, requantization)"
        + ("" if cmsis_nn else "; no KP_CMSIS_NN_DIR, so no CMSIS-NN column")
        + ":\n"
    )
    print(whole_table(results, sparsities))
    for r in results:
        print(layer_table(r, ref))
    print("\nBit-exactness per export:")
    for r in results:
        for label, row in r["variants"].items():
            print(f"  {r['model']:<13} {label:<11} {_exact(row)}")
    print("\n" + m4_cycles.ASSUMPTIONS)
    (out / "results.json").write_text(
        json.dumps({"sparsities": sparsities, "cmsis_nn": cmsis_nn, "models": results}, indent=1)
        + "\n"
    )
    print(f"\nresults: {out / 'results.json'}")
    print(f"plot: {plot(results, sparsities, out / 'speedup.png')}")
    print(f"[total {time.time() - t0:.0f} s]")


if __name__ == "__main__":
    main()
