"""The ``keras-prune legr`` job: learn once, cut to each target, fine-tune, compare with
the baselines, and write models, ``results.csv`` and ``pareto.png`` atomically."""

from __future__ import annotations

import csv
import io as _io
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import keras
import numpy as np

from keras_prune import io
from keras_prune._data import check_splits
from keras_prune.legr.executors import RayExecutor
from keras_prune.legr.search import LeGR, ParetoResult

__all__ = ["run", "plot_pareto", "results_csv"]

_LABELS = {
    "learned": "LeGR (learned ranking)",
    "l2": "global L2 norm",
    "uniform": "uniform per layer",
}


def checkpoint_path(out: Path) -> Path:
    """Where an unfinished run keeps its state: beside ``out``, which appears only when
    the job completes."""
    return out.parent / f".{out.name}.legr-checkpoint.json"


def _fmt(t: float) -> str:
    return f"{t:g}".replace(".", "p")


def run(
    model: keras.Model,
    data: dict,
    targets: Sequence[float],
    out: str | os.PathLike,
    generations: int = 400,
    tau: int = 200,
    finetune_epochs: int = 5,
    seed: int = 0,
    resume: bool = False,
    force: bool = False,
    population: int = 64,
    sample: int = 16,
    learn_at: float | None = None,
    progress: bool = True,
    round_to: int = 1,
    print_fn: Callable[[str], None] = print,
    executor: str = "serial",
    workers: int | None = None,
    batch: int | None = None,
    worker_threads: int | None = None,
) -> ParetoResult:
    """Run LeGR on ``model`` with ``data`` (x_train, y_train, x_val, y_val) and write, in
    ``out``: ``legr_<target>.keras``/``.h5`` per target, ``results.csv`` (every method
    and target, plus the original), ``pareto.png`` and ``legr_state.json``.

    The ranking is learned on the mean loss over all ``targets`` unless ``learn_at``
    says otherwise (see ``LeGR``). Everything is checked before the slow part; a failed
    or interrupted run leaves no ``out``. An interrupted run's checkpoint stays beside
    ``out`` for ``resume=True``. ``round_to`` keeps channel counts in multiples of it
    (see ``LeGR``). ``executor``, ``workers`` and ``batch`` choose where and how many
    candidates are evaluated at a time (see ``LeGR.learn``); ``worker_threads`` sets the
    Ray workers' TensorFlow threads (see ``RayExecutor``).
    """
    out = Path(out)
    writer = io.atomic_dir(out, overwrite=force)
    writer.check()
    check_splits(data, "LeGR")
    if not targets:
        raise ValueError("Give at least one FLOPs target, e.g. --flops 0.7,0.5,0.3.")
    for t in targets:
        if not isinstance(t, (int, float)) or not 0 < t < 1:
            raise ValueError(
                f"FLOPs target {t!r} is outside (0, 1): it is the fraction of the "
                "original MACs to keep, e.g. 0.5."
            )
    targets = sorted(set(float(t) for t in targets), reverse=True)
    legr = LeGR(
        model,
        train=(data["x_train"], data["y_train"]),
        val=(data["x_val"], data["y_val"]),
        seed=seed,
        round_to=round_to,
        learn_at=tuple(targets) if learn_at is None else learn_at,
    )
    for t in targets:
        legr.ranking.check_target(t, "FLOPs target")
    ckpt = checkpoint_path(out)
    if ckpt.exists() and not resume:
        raise FileExistsError(
            f"An interrupted LeGR run left '{ckpt}'; pass --resume to "
            "continue it, or delete it to start over."
        )
    if worker_threads is not None and executor != "ray":
        raise ValueError("--worker-threads sets the threads of Ray workers: add --executor ray.")
    keras.utils.set_random_seed(seed)
    runner = executor
    if executor == "ray" and worker_threads is not None:
        runner = RayExecutor(legr, num_workers=workers, threads=worker_threads)
    try:
        legr.learn(
            generations=generations,
            tau=tau,
            checkpoint=ckpt,
            population=population,
            sample=sample,
            progress=progress,
            batch=batch,
            executor=runner,
            num_workers=None if runner is not executor else workers,
        )
    finally:
        if runner is not executor:
            runner.close()
    result = legr.pareto(
        targets,
        finetune_epochs=finetune_epochs,
        methods=("learned", "l2", "uniform"),
        progress=progress,
        print_fn=None,
    )
    with writer as tmp:
        for t in targets:
            small = result.models[("learned", t)]
            small.save(tmp / f"legr_{_fmt(t)}.keras")
            small.save(tmp / f"legr_{_fmt(t)}.h5")
        (tmp / "results.csv").write_text(results_csv(result))
        plot_pareto(result, tmp / "pareto.png", title=f"LeGR on '{model.name}'")
        (tmp / "legr_state.json").write_bytes(ckpt.read_bytes())
    ckpt.unlink()
    print_fn(result.table())
    where = f" on {len(legr.worker_pids)} worker processes" if len(legr.worker_pids) > 1 else ""
    print_fn(
        f"\nLearned in {legr.evolution.generation} generations{where} (best validation loss "
        f"{legr.evolution.best.fitness:.4f} at {_targets(legr.learn_at)} FLOPs). Wrote "
        f"models, results.csv and pareto.png to {out}/"
    )
    return result


def results_csv(result: ParetoResult) -> str:
    buf = _io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(
        [
            "method",
            "target",
            "macs",
            "macs_ratio",
            "params",
            "val_acc_before_finetune",
            "val_acc_after_finetune",
            "val_loss_after_finetune",
        ]
    )
    for p in [result.original, *result.points]:
        w.writerow(
            [
                p.method,
                f"{p.target:g}",
                p.macs,
                f"{p.macs_ratio:.4f}",
                p.params,
                f"{p.acc_before:.4f}",
                f"{p.acc_after:.4f}",
                "" if np.isnan(p.loss_after) else f"{p.loss_after:.4f}",
            ]
        )
    return buf.getvalue()


def plot_pareto(result: ParetoResult, path: str | os.PathLike, title: str = "LeGR") -> Path:
    """Accuracy after fine-tuning vs the MACs kept, per method, with the original model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for method, marker in (("learned", "o-"), ("l2", "s--"), ("uniform", "^:")):
        pts = sorted((p for p in result.points if p.method == method), key=lambda p: p.macs_ratio)
        if pts:
            ax.plot(
                [p.macs_ratio for p in pts],
                [100 * p.acc_after for p in pts],
                marker,
                label=_LABELS[method],
            )
    if result.original is not None:
        ax.plot([1.0], [100 * result.original.acc_after], "k*", markersize=12, label="original")
    ax.set_xlabel("MACs kept (fraction of the original)")
    ax.set_ylabel("validation accuracy after fine-tuning (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    return io.save_figure(fig, path, overwrite=True)


def _targets(learn_at) -> str:
    return ", ".join(f"{t:g}" for t in learn_at) if isinstance(learn_at, tuple) else f"{learn_at:g}"
