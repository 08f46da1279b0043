"""Recipes on MNIST-5k that the demo and the benchmarks share: train a model dense,
prune it with SIMDGroups(4) and fine-tune; add Integral Pruning; export it for TFLM and
as C; run LeGR on its ``.h5``. Each step returns plain data (``RecipeResult``,
``IntegralResult``) and writes only under the ``out`` folder it is given.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import keras
import numpy as np

from keras_prune import callbacks, granularity, io, schedules
from keras_prune.datasets import validation_subset
from keras_prune.models import lenet5, lenet_300_100
from keras_prune.pruning import prune, strip, summary

__all__ = [
    "MODELS",
    "RecipeResult",
    "IntegralResult",
    "EpochBar",
    "prune_and_finetune",
    "run_one",
    "run_integral",
    "run_tflm",
    "run_cortex_m4",
    "run_legr",
]

# builder, learning rate while pruning and fine-tuning (the small CNN recovers better at 1e-3)
MODELS = {"lenet_300_100": (lenet_300_100, 5e-4), "lenet5": (lenet5, 1e-3)}


@dataclass
class RecipeResult:
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
    m4_variants: list | None = None  # m4_variants.variants' table rows: (label, row dict)
    budget: object = field(default=None, repr=False)  # a kp.auto.BudgetResult
    budget_test_accuracy: float | None = None


class EpochBar(keras.callbacks.Callback):
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
        callbacks=[callbacks.PruningScheduler(), logger, EpochBar(f"{name} prune+tune")],
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
) -> RecipeResult:
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
        callbacks=[EpochBar(f"{name} dense")],
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
    return RecipeResult(
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


def run_tflm(r: RecipeResult, data, out: Path, overwrite: bool = False) -> list[dict]:
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


def run_cortex_m4(
    r: RecipeResult, data, out: Path, overwrite: bool = False, samples: int = 100
) -> dict:
    """Export the dense and the pruned model to C (``kp.export.cmsis``: host and QEMU
    Cortex-M4 checked against TFLM on ``samples`` test digits; the dense one on our dense
    kernels, the pruned one on SIMD-group sparse kernels where the cost model says that is
    faster), then
    count both models' cycles per layer on the emulated Cortex-M4 for one test digit."""
    from keras_prune import export
    from keras_prune.export.int8.runtime import quantize_input
    from keras_prune.mcu import cycles as m4_cycles
    from keras_prune.mcu import profiler as m4_profile

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
            xq = quantize_input(xt[:1], inp["scale"], inp["zero_point"])
            row["cost"] = m4_cycles.profile_model(path, xq)
            row["cycles"] = row["cost"].cycles
        else:
            row["cycles_skipped"] = (
                "arm-none-eabi-gcc (with newlib) or unicorn missing: "
                "pip install 'keras-prune[mcu]' and see `make toolchain`"
            )
        rows[variant] = row
    return {**rows["dense"], "pruned": rows["pruned"]}


# ---------------------------------------------------------------------- LeGR
def run_legr(
    r: RecipeResult,
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


def run_budget(
    r: RecipeResult,
    data,
    out: Path,
    latency: str = "50%",
    epochs: int = 4,
    overwrite: bool = False,
    seed: int = 0,
):
    """Prune the dense CNN to ``latency`` of its estimated Cortex-M4 time with
    ``kp.auto.prune_to_budget`` (the ``keras-prune prune`` job): model, plan and plot in
    ``out/budget_<model>``. The last 500 training digits pick the layers and the
    recovered model; the test digits give the reported accuracy."""
    from keras_prune.auto import job

    x, y, xt, yt = data
    (xa, ya), (xv, yv) = (x[:-500], y[:-500]), validation_subset(x, y)
    result = job.run_job(
        r.dense_model,
        {"x_train": xa, "y_train": ya, "x_val": xv, "y_val": yv},
        out / f"budget_{r.model}",
        force=overwrite,
        latency_ms=latency,
        epochs=epochs,
        seed=seed,
        progress=True,
        print_fn=None,
    )
    pred = np.argmax(result.model.predict(xt, batch_size=256, verbose=0), axis=-1)
    r.budget_test_accuracy = float(np.mean(pred == yt))
    return result


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
    result: RecipeResult,
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
        callbacks=[callbacks.PruningScheduler(), EpochBar(f"{name} masks+tune")],
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
