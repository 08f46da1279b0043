"""The demo's tables and plots, from the recipes' results (``recipes.mnist``)."""

from __future__ import annotations

from dataclasses import asdict, fields
from pathlib import Path

import numpy as np

from keras_prune import io
from keras_prune.recipes.mnist import IntegralResult, RecipeResult

__all__ = [
    "plot_curves",
    "format_report",
    "format_tflm",
    "format_sparse_c",
    "format_cortex_m4",
    "format_integral",
    "to_json",
]


def plot_curves(results: list[RecipeResult], schedule, path: Path, overwrite: bool = False) -> Path:
    """Measured sparsity over training steps against the schedule's target (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    styles = [dict(lw=3.0, alpha=0.6), dict(lw=1.5, ls="--")]
    last = max((s for r in results for s, _ in r.curve), default=0)
    for i, r in enumerate(results):
        if not r.curve:
            continue
        steps, values = zip(*r.curve, strict=True)
        label = (
            f"{r.model}: accuracy {100 * r.dense_accuracy:.1f}% dense -> "
            f"{100 * r.pruned_accuracy:.1f}% pruned"
        )
        ax.plot(steps, [100 * v for v in values], label=label, **styles[i % len(styles)])
    if schedule is not None:
        steps = np.arange(last + 1)
        target = 100 * np.asarray(schedule(steps)[1]) * np.ones(len(steps))
        ax.plot(
            steps,
            target,
            color="black",
            lw=0.8,
            ls=":",
            label=f"schedule target ({type(schedule).__name__})",
        )
    ax.set_xlabel("training step")
    ax.set_ylabel("weights pruned (%)")
    ax.set_title("SIMDGroups(4) sparsity while pruning, then fine-tuning (MNIST-5k)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return io.save_figure(fig, path, overwrite=overwrite)


def format_report(results: list[RecipeResult]) -> str:
    lines = []
    for r in results:
        lines.append(f"\n{r.model}: per-layer sparsity after strip (SIMDGroups(4))")
        head = (
            f"  {'layer':<8}{'type':<8}{'params':>9}{'non-zero':>10}{'sparsity':>10}  "
            f"{'pattern':<27}{'int8 dense':>11}{'int8 sparse':>12}"
        )
        lines += [head, "  " + "-" * (len(head) - 2)]
        for row in r.layers:
            lines.append(
                f"  {row['name']:<8}{row['kind']:<8}{row['params']:>9,}"
                f"{row['nonzeros']:>10,}{row['sparsity']:>9.1%}  {row['pattern']:<27}"
                f"{row['dense_bytes']:>11,}{row['sparse_bytes']:>12,}"
            )
    lines.append("\nmodel            dense acc  pruned acc   change  sparsity   time")
    for r in results:
        lines.append(
            f"{r.model:<16}{r.dense_accuracy:>9.2%}{r.pruned_accuracy:>12.2%}"
            f"{100 * (r.pruned_accuracy - r.dense_accuracy):>+8.2f}pt"
            f"{r.sparsity:>9.1%}{r.seconds:>6.0f}s"
        )
    return "\n".join(lines)


def to_json(r: RecipeResult) -> dict:
    # asdict would deep-copy the Keras models; they are saved as files instead
    skip = (
        "schedule",
        "dense_model",
        "pruned_model",
        "integral",
        "legr",
        "cortex_m4",
        "m4_variants",
        "budget",
    )
    d = {f.name: getattr(r, f.name) for f in fields(r) if f.name not in skip}
    d["integral"] = (
        None
        if r.integral is None
        else {
            f.name: getattr(r.integral, f.name)
            for f in fields(r.integral)
            if f.name != "plain_model"
        }
    )
    if r.cortex_m4 is not None:
        d["cortex_m4"] = {k: v for k, v in r.cortex_m4.items() if k not in ("cost", "pruned")}
        d["cortex_m4"]["pruned"] = {k: v for k, v in r.cortex_m4["pruned"].items() if k != "cost"}
    if r.m4_variants is not None:
        d["m4_variants"] = [
            {"variant": label, **{k: row.get(k) for k in ("accuracy", "flash", "ram", "cycles")}}
            for label, row in r.m4_variants
        ]
    d["legr"] = None if r.legr is None else [asdict(p) for p in [r.legr.original, *r.legr.points]]
    d["budget"] = None if r.budget is None else r.budget.to_json()
    return d


def format_tflm(results: list[RecipeResult]) -> str:
    head = (
        f"{'model':<15}{'variant':<8}{'.tflite':>9}{'zlib':>9}{'arena':>8}"
        f"{'float acc':>10}{'int8 acc':>10}{'TFLM=LiteRT':>12}{'max diff':>9}{'tol':>5}"
        f"{'logits':>7}{'top-1':>8}"
    )
    lines = [
        "\nTFLite Micro export (int8; TFLM verified against LiteRT reference kernels "
        "on the 1,000 test digits)",
        head,
        "-" * len(head),
    ]
    for r in results:
        for row in r.tflm:
            lines.append(
                f"{r.model:<15}{row['variant']:<8}{row['tflite_bytes']:>9,}"
                f"{row['zlib_bytes']:>9,}{row['arena_bytes']:>8,}"
                f"{row['float_accuracy']:>10.2%}{row['int8_accuracy']:>10.2%}"
                f"{row['exact_match']:>12.2%}{row['max_diff_lsb']:>9}"
                f"{row['tolerance_lsb']:>5}"
                f"{'-' if row['logits_diff_lsb'] is None else row['logits_diff_lsb']:>7}"
                f"{row['top1_agreement']:>8.1%}"
            )
    lines.append(
        "Sizes in bytes. Arena: TFLM's measured arena + CMSIS-NN scratch + 10%. "
        "TFLM does not exploit zeros; flash compressors do (zlib column).\n"
        "max diff / tol: largest TFLM vs LiteRT output difference, in int8 steps, "
        "and what the kernels explain; logits: largest difference of the softmax "
        "inputs (docs/tflm-export.md)."
    )
    return "\n".join(lines)


def format_sparse_c(r: RecipeResult) -> str:
    """Dense vs SIMD-group sparse C on the Cortex-M4: accuracy, flash, RAM, cycles."""
    from keras_prune.mcu import cycles as m4_cycles

    c = r.cortex_m4
    lines = [
        f"\n{r.model}: dense vs SIMDGroups(4) sparse C on a Cortex-M4 (estimated "
        f"cycles, one test digit; accuracy of the int8 C on the test digits)",
        f"  {'variant':<26}{'int8 C acc':>11}{'flash B':>10}{'arena B':>9}"
        f"{'cycles':>12}{'ms@120MHz':>11}{'speed-up':>10}",
    ]
    base = c.get("cycles")
    for label, row in (("dense, our kernels", c), ("SIMDGroups(4) 90%, sparse", c["pruned"])):
        m = row["manifest"]
        acc = m.get("accuracy") or {}
        flash = m["sizes"].get("cortex_m4", {}).get("model_flash")
        cyc = row.get("cycles")
        acc_text = f"{acc['int8_c']:.2%}" if acc else "-"
        lines.append(
            f"  {label:<26}{acc_text:>11}"
            f"{(f'{flash:,}' if flash else '-'):>10}{m['memory']['arena_bytes']:>9,}"
            f"{(f'{cyc:,}' if cyc else '-'):>12}"
            f"{(f'{cyc / m4_cycles.REFERENCE_MHZ / 1e3:.2f}' if cyc else '-'):>11}"
            f"{(f'{base / cyc:.2f}x' if cyc and base else '-'):>10}"
        )
    for la in c["pruned"]["manifest"]["layers"]:
        if la.get("sparse"):
            lines.append(
                f"  {', '.join(la['keras_layers'])[:12]:<12} "
                f"{la['sparse']['kernel']:<6} {la['sparse']['reason']}"
            )
    return "\n".join(lines)


def format_cortex_m4(r: RecipeResult) -> str:
    c = r.cortex_m4
    m = c["manifest"]
    v, mem, sizes = m["verification"], m["memory"], m["sizes"]
    tflm = next((t for t in r.tflm if t["variant"] == "dense"), None)
    lines = [f"\n{r.model} (dense) as C for a Cortex-M4 ({c['path']}/)"]
    host = v.get("host")
    lines.append(
        "  host build vs TFLM interpreter: "
        + (
            f"{'bit-exact' if host['bit_exact'] else 'DIFFERENT'} on {host['samples']} test digits"
            if host
            else f"not run ({v.get('host_skipped')})"
        )
    )
    qemu = v.get("cortex_m4")
    lines.append(
        "  Cortex-M4 (QEMU mps2-an386) vs host: "
        + (
            f"{'bit-exact' if qemu['bit_exact'] else 'DIFFERENT'} on {qemu['samples']} digits"
            if qemu
            else f"not run ({v.get('cortex_m4_skipped')})"
        )
    )
    if m.get("accuracy"):
        lines.append(
            f"  accuracy: float {m['accuracy']['float']:.2%}, int8 C "
            f"{m['accuracy']['int8_c']:.2%} on {m['accuracy']['samples']} digits"
        )
    flash = sizes.get("cortex_m4", {}).get("model_flash")
    lines.append(f"  {'':<22}{'flash (weights+code)':>22}{'RAM arena':>11}")
    lines.append(
        f"  {'C export (ours)':<22}{(f'{flash:,}' if flash else '-'):>22}{mem['arena_bytes']:>11,}"
    )
    if tflm:
        lines.append(
            f"  {'TFLM export':<22}{tflm['tflite_bytes']:>14,} + TFLM"
            f"{mem['tflm_arena_bytes']:>11,}  (.tflite + interpreter code; "
            "TFLM's measured arena)"
        )
    if c.get("cost") is not None:
        from keras_prune.mcu import cycles as m4_cycles

        lines.append(
            m4_cycles.table(
                c["cost"],
                "  Estimated Cortex-M4 cycles per layer (one test digit, our DSP kernels, -O2):",
            )
        )
    else:
        lines.append(f"  cycles: not measured ({c['cycles_skipped']})")
    return "\n".join(lines)


def format_integral(results: list[IntegralResult]) -> str:
    lines = []
    for r in results:
        lines += [
            "",
            f"== Integral Pruning: {r.model} ==",
            r.tables["scan"],
            r.tables["rates"],
            r.tables["macs"],
            r.tables["int8"],
        ]
    head = (
        f"{'model':<15}{'dense':>8}{'weights':>9}{'+masks':>8}{'thresh':>8}{'int8':>8}"
        f"   {'MAC cut: weights':>16}{'x ReLU':>8}{'x masks':>9}"
    )
    lines += ["", "accuracy (test) and MAC reduction vs dense", head, "-" * len(head)]
    for r in results:
        int8 = "n/a" if r.int8_accuracy is None else f"{r.int8_accuracy:.2%}"
        lines.append(
            f"{r.model:<15}{r.dense_accuracy:>8.2%}{r.weights_accuracy:>9.2%}"
            f"{r.topk_accuracy:>8.2%}{r.threshold_accuracy:>8.2%}{int8:>8}"
            f"   {r.cut('weights'):>16.1%}{r.cut('weights_x_relu'):>8.1%}"
            f"{r.cut('weights_x_masks'):>9.1%}"
        )
    return "\n".join(lines)
