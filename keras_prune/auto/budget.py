"""``prune_to_budget``: channel cuts and SIMD-group sparsity chosen per layer to meet a
latency, flash, RAM or MACs budget on a target, then recovered by distillation."""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from keras_prune._data import check_data, predict
from keras_prune.auto import plan as planning
from keras_prune.auto.recover import (
    RecoveryConfig,
    accuracy,
    recalibrate_batchnorm,
    recover,
    with_group_zeros,
)
from keras_prune.graph import build as build_graph
from keras_prune.layers.prune_wrapper import PruneWrapper
from keras_prune.model_utils import all_layers, check_model, clone_with_weights, fresh
from keras_prune.surgery import shrink
from keras_prune.targets import METRICS, CortexM4, Target, layer_views

__all__ = ["prune_to_budget", "BudgetResult", "BudgetError"]

ALLOCATIONS = ("sensitivity", "uniform")
# Training inputs whose batch statistics the BatchNorms of each candidate, the cut and each
# recovered epoch get (see recover.recalibrate_batchnorm).
CALIBRATION = 512


class BudgetError(ValueError):
    """The budget cannot be met on this target, or was asked for wrongly."""


@dataclass
class LayerPlan:
    """One layer of the final model on the target."""

    name: str
    op: str
    channels: int  # output channels kept
    channels_original: int
    group_sparsity: float  # of its 4-weight groups (0 when dense)
    kernel: str  # what the target runs it with ("dense", "sparse", or the op)
    cost: dict  # this layer's share of the additive metrics

    def as_dict(self) -> dict:
        return {
            "layer": self.name,
            "op": self.op,
            "channels": self.channels,
            "channels_original": self.channels_original,
            "group_sparsity": round(self.group_sparsity, 4),
            "kernel": self.kernel,
            **{k: round(v, 6) for k, v in self.cost.items()},
        }


@dataclass
class BudgetResult:
    """What ``prune_to_budget`` returns.

    Attributes:
        model: the pruned plain Keras model (channels removed, group zeros in place).
        plan: per layer, a ``LayerPlan`` (channels kept, group sparsity, kernel, cost).
        estimate: the final model's metrics on the target.
        original: the same metrics of the input model.
        budget: the limits it was held to (relative ones resolved).
        accuracy: validation accuracy at each stage: ``original``, ``cut``,
            ``recovered``, ``int8`` (of the returned model, when measured).
        history: the recovery epochs.
    """

    model: keras.Model
    plan: list[LayerPlan]
    estimate: dict[str, float]
    original: dict[str, float]
    budget: dict[str, float]
    accuracy: dict[str, float]
    target: Target
    allocation: str
    history: list = field(default_factory=list)
    trials: dict = field(default_factory=dict)  # plan -> val accuracy after its trial
    sensitivity: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)
    original_layers: dict = field(default_factory=dict)  # path -> the original's costs

    def to_json(self) -> dict:
        return {
            "target": {"name": self.target.name, **self.target.get_config()},
            "allocation": self.allocation,
            "budget": self.budget,
            "original": self.original,
            "estimate": self.estimate,
            "accuracy": self.accuracy,
            "layers": [p.as_dict() for p in self.plan],
            "history": self.history,
            "trials": self.trials,
            "sensitivity": self.sensitivity,
            "seconds": self.seconds,
        }

    def report(self, print_fn=print) -> str:
        lines = [f"Pruned to budget on {self.target!r} ({self.allocation} allocation)"]
        for m, b in self.budget.items():
            unit = METRICS[m]
            lines.append(
                f"  {m:<11} budget {b:>12,.3f} {unit:<4} original {self.original[m]:>12,.3f}"
                f"  final {self.estimate[m]:>12,.3f}  ({self.estimate[m] / self.original[m]:.2f}x)"
            )
        acc = ", ".join(f"{k} {v:.4f}" for k, v in self.accuracy.items())
        lines.append(f"  accuracy: {acc}")
        metric = next(iter(self.budget))
        head = (
            f"  {'layer':<20}{'op':<6}{'channels':>12}{'groups cut':>12}  {'kernel':<8}{metric:>12}"
        )
        lines += [head, "  " + "-" * (len(head) - 2)]
        for p in self.plan:
            ch = f"{p.channels}/{p.channels_original}"
            gs = f"{p.group_sparsity:.0%}" if p.group_sparsity else "-"
            lines.append(
                f"  {p.name[:19]:<20}{p.op:<6}{ch:>12}{gs:>12}  {p.kernel:<8}"
                f"{p.cost.get(metric, 0.0):>12,.3f}"
            )
        text = "\n".join(lines)
        if print_fn is not None:
            print_fn(text)
        return text

    def plot(self, path: str | os.PathLike) -> Path:
        """Per layer: channels kept and groups cut (bars), and each layer's share of the
        first budget's metric, original against final."""
        from keras_prune.auto.report import plot_plan

        return plot_plan(self, Path(path))


def _resolve_budget(budgets: dict, original: dict[str, float], target: Target) -> dict:
    out = {}
    for m, v in budgets.items():
        if v is None:
            continue
        if m not in target.metrics:
            raise BudgetError(
                f"{m}={v!r}: the target {target!r} estimates only "
                f"{', '.join(target.metrics)}; drop {m} or pick a target that has it "
                "(kp.targets.CortexM4: latency_ms, flash_kb, ram_kb; kp.targets.CPU: "
                "latency_ms; kp.targets.MACs: macs)."
            )
        if isinstance(v, str):
            text = v.strip()
            if not text.endswith("%"):
                raise BudgetError(
                    f"{m}={v!r}: give a number in {METRICS[m]} or a percentage of the "
                    "original such as '50%'."
                )
            try:
                frac = float(text[:-1]) / 100
            except ValueError:
                raise BudgetError(f"{m}={v!r} is not a percentage such as '50%'.") from None
            value = frac * original[m]
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            value = float(v)
        else:
            raise BudgetError(f"{m}={v!r}: expected a number or a percentage string.")
        if not value > 0 or not math.isfinite(value):
            raise BudgetError(f"{m}={v!r}: a budget must be positive and finite.")
        out[m] = value
    if not out:
        raise BudgetError(
            "Give at least one budget: latency_ms, flash_kb, ram_kb or macs (a number, or "
            "a percentage of the original such as latency_ms='50%')."
        )
    return out


def _check_model(model: keras.Model) -> None:
    check_model(model, "kp.auto.prune_to_budget")
    if any(isinstance(la, PruneWrapper) for la in all_layers(model)):
        raise ValueError(
            f"Model '{model.name}' has PruneWrapper layers; pass the plain model "
            "(kp.strip(model)) to prune_to_budget."
        )
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ValueError(
            f"Model '{model.name}' has {len(model.inputs)} inputs and {len(model.outputs)} "
            "outputs; prune_to_budget takes a classifier with one of each."
        )


def _probs(out: np.ndarray) -> np.ndarray:
    out = out.astype(np.float64)
    if np.all(out >= 0) and np.allclose(out.sum(-1), 1.0, atol=1e-3):
        return out
    e = np.exp(out - out.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _loss_fn(x: np.ndarray, y: np.ndarray | None, teacher_probs: np.ndarray):
    """Validation loss of a model: cross-entropy with the labels, or without labels the
    KL divergence from the original model's predictions."""

    def loss(m: keras.Model) -> float:
        p = np.clip(_probs(predict(m, x)[0]), 1e-7, 1.0)
        if y is not None:
            return float(-np.mean(np.log(p[np.arange(len(p)), y.reshape(-1).astype(int)])))
        t = np.clip(teacher_probs, 1e-7, 1.0)
        return float(np.mean(np.sum(t * (np.log(t) - np.log(p)), axis=-1)))

    return loss


def _fingerprint(model: keras.Model, config: dict) -> str:
    h = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
    for w in model.get_weights():
        h.update(np.ascontiguousarray(w).tobytes())
    return h.hexdigest()[:16]


def prune_to_budget(
    model: keras.Model,
    train_data,
    val_data,
    target: Target | None = None,
    *,
    latency_ms: float | str | None = None,
    flash_kb: float | str | None = None,
    ram_kb: float | str | None = None,
    macs: float | str | None = None,
    allocation: str = "sensitivity",
    sparsity: bool = True,
    epochs: int = 10,
    batch_size: int = 32,
    learning_rate: float = 1e-3,
    temperature: float = 4.0,
    alpha: float = 0.5,
    distill: bool = True,
    augment: Callable | None = None,
    trial_epochs: int = 1,
    int8: bool = True,
    checkpoint: str | os.PathLike | None = None,
    seed: int = 0,
    progress: bool = True,
    print_fn=print,
) -> BudgetResult:
    """Prune ``model`` until the ``target``'s estimate meets every budget given, then
    recover its accuracy by fine-tuning with distillation from the original.

    Args:
        model: a plain, built Keras classifier (one input, one output). Never modified.
        train_data: ``(x, y)`` or ``(x, None)``/``x`` for unlabeled data (distillation
            only). A few hundred samples work.
        val_data: ``(x, y)`` or ``x``: scores the sensitivity of each layer and picks the
            best recovered model. Without labels, agreement with the original counts.
        target: ``kp.targets.CortexM4()`` (default), ``kp.targets.CPU(batch=32)`` or
            ``kp.targets.MACs()``.
        latency_ms, flash_kb, ram_kb, macs: the budgets (any combination the target
            estimates; at least one): a number in the metric's unit, or a string
            percentage of the original's estimate such as ``"50%"``.
        allocation: ``"sensitivity"`` (default; the greedy in ``kp.auto.plan``) or
            ``"uniform"`` (the baseline: every group keeps the same fraction of its
            channels and every kernel loses the same fraction of its SIMD groups).
        sparsity: allow SIMD-group sparsity where the target's kernels gain from it.
        epochs: recovery epochs (0: return the one-shot cut).
        trial_epochs: the allocation makes up to four plans that meet the budget (the
            greedy over channels and sparsity together, over sparsity alone, over
            channels alone, and the uniform baseline); each is cut and fine-tuned this
            many epochs, and the best on ``val_data`` is recovered in full. 0 takes the
            first plan without trials.
        batch_size, learning_rate: of the recovery fine-tuning (Adam).
        temperature, alpha: distillation (``kp.distill.Distiller``): softening of the
            original's outputs, and the weight of the labels' loss.
        distill: learn from the original's soft targets (default); ``False`` fine-tunes on
            the labels alone.
        augment: applied to each training batch of inputs: a Keras preprocessing layer
            (called with ``training=True``) or any ``fn(x_batch) -> x_batch``.
        int8: also measure the int8 TFLite model's validation accuracy.
        checkpoint: a directory saving the scan, the plan and each recovery epoch; a
            killed run called again with the same arguments resumes from it.
        seed: seeds the recovery (masks, shuffling, initial state): equal seeds give
            equal plans and models.
        progress: progress bars. ``print_fn``: where the report goes (None: silence).

    Returns:
        A ``BudgetResult``.

    Raises:
        BudgetError: no budget, a metric the target lacks, a malformed budget, or one that
            cannot be met even with every knob at its limit (the message gives the
            smallest reachable values); raised before any training.
        ValueError: a model with wrappers, several inputs/outputs or nothing prunable;
            data that does not fit the model; labels missing when ``distill=False``.

    Example:

    ```python
    result = kp.auto.prune_to_budget(model, (x, y), (xv, yv),
                                     target=kp.targets.CortexM4(clock_mhz=120),
                                     latency_ms="50%")
    result.report(); result.plot("plan.png")
    ```
    """
    t_start = time.time()
    _check_model(model)
    target = CortexM4() if target is None else target
    if not isinstance(target, Target):
        raise TypeError(
            f"target must be a kp.targets object (CortexM4(), CPU(batch=32), MACs()), got "
            f"{target!r}."
        )
    if allocation not in ALLOCATIONS:
        raise ValueError(f"allocation must be one of {ALLOCATIONS}, got {allocation!r}.")
    for arg, value in (("epochs", epochs), ("trial_epochs", trial_epochs)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{arg} must be a non-negative integer, got {value!r}.")
    x, y = _split(train_data, "train_data")
    xv, yv = _split(val_data, "val_data")
    x, y = check_data(model, x, y, "train_data x")
    xv, yv = check_data(model, xv, yv, "val_data x")
    if not distill and y is None:
        raise ValueError(
            "train_data has no labels and distill=False: there is nothing to learn from. "
            "Pass (x, y) or keep distill=True (the original model teaches)."
        )
    graph = build_graph(model)
    space = planning.Space(model, graph, target, sparsity=sparsity)
    if not space.knobs:
        raise ValueError(
            f"Model '{model.name}' has nothing prunable: no channel group can shrink and "
            f"no kernel can be sparsified.\n{graph.table()}"
        )
    original = space.estimate(space.zero_state())
    budget = _resolve_budget(
        {"latency_ms": latency_ms, "flash_kb": flash_kb, "ram_kb": ram_kb, "macs": macs},
        original,
        target,
    )
    probe = planning.allocate(space, budget, use_loss=False)  # cheap: no data involved
    if not probe.met:
        short = [m for m, b in budget.items() if probe.estimate[m] > b]
        parts = []
        for m in short:
            low = planning.smallest(space, m)
            parts.append(
                f"{m}={budget[m]:,.4g} (smallest reachable about {low:,.4g} {METRICS[m]}, "
                f"{low / original[m]:.0%} of the original)"
            )
        together = " together" if len(budget) > 1 else ""
        raise BudgetError(
            f"The budget cannot be met{together} on {target!r}: {', '.join(parts) or budget}. "
            f"Channel groups go down to {planning.CHANNEL_LEVELS[-1]:.0%} and kernels to "
            f"{planning.SPARSITY_LEVELS[-1]:.0%} of their SIMD groups cut. Raise the budget "
            "or start from a smaller model."
        )
    config = {
        "target": repr(target),
        "budget": budget,
        "allocation": allocation,
        "sparsity": sparsity,
        "epochs": epochs,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "temperature": temperature,
        "alpha": alpha,
        "distill": distill,
        "trial_epochs": trial_epochs,
        "seed": seed,
        "n_train": len(x),
        "n_val": len(xv),
    }
    ckpt = _checkpoint_dir(checkpoint, model, config)
    seconds = {}

    calibration = x[:CALIBRATION]
    teacher_val = predict(model, xv)[0]
    reference = np.argmax(teacher_val, axis=-1)
    acc = {"original": accuracy(model, xv, yv, reference)}
    t0 = time.time()
    trials: dict = {}
    if allocation == "uniform":
        chosen = planning.uniform(space, budget, sparsity=sparsity)
        if not chosen.met:
            raise BudgetError(
                f"The uniform allocation cannot meet {budget} on {target!r}: its smallest "
                f"cut gives {chosen.estimate}. Use allocation='sensitivity' (channel cuts "
                "per layer and SIMD-group sparsity) or raise the budget."
            )
    else:
        _scan(space, xv, yv, teacher_val, ckpt, progress, calibration)
        chosen, trials = _choose(
            space,
            budget,
            model,
            (x, y),
            (xv, yv),
            reference,
            calibration,
            trial_epochs,
            RecoveryConfig(
                batch_size=batch_size,
                learning_rate=learning_rate,
                temperature=temperature,
                alpha=alpha if distill else 1.0,
                augment=augment,
                seed=seed,
            ),
            graph,
            ckpt,
        )
    seconds["plan"] = round(time.time() - t0, 2)

    cut_plain, cut = _cut(model, chosen, graph, calibration)
    acc["cut"] = accuracy(cut, xv, yv, reference)
    history: list = []
    final = cut
    t0 = time.time()
    if epochs > 0:
        cfg = RecoveryConfig(
            epochs=epochs,
            batch_size=batch_size,
            learning_rate=learning_rate,
            temperature=temperature,
            alpha=alpha if distill else 1.0,
            augment=augment,
            seed=seed,
            history=history,
        )
        bar = _bar(epochs, "recovery", progress)
        final, best_acc, _ = recover(
            cut_plain,
            model,
            chosen.sparsity,
            (x, y),
            (xv, yv),
            cfg,
            acc["cut"],
            cut,
            val_reference=reference,
            checkpoint=ckpt,
            progress=(lambda e, row: bar.update(1)) if bar else None,
            calibration=calibration,
        )
        if bar:
            bar.close()
        acc["recovered"] = best_acc
    seconds["recovery"] = round(time.time() - t0, 2)
    final, estimate, details, views = _meet(final, target, budget, calibration)
    acc["final"] = accuracy(final, xv, yv, reference)
    if int8:
        acc["int8"] = _int8_accuracy(final, x, xv, yv, reference)
    seconds["total"] = round(time.time() - t_start, 2)
    result = BudgetResult(
        model=final,
        plan=_layer_plans(views, details, model, target),
        estimate=estimate,
        original=original,
        budget=budget,
        accuracy=acc,
        target=target,
        allocation=allocation,
        history=history,
        trials=trials,
        sensitivity={k.key: [round(v, 5) for v in k.loss] for k in space.knobs if k.loss},
        seconds=seconds,
        original_layers={v.path: target.layer_costs(v) for v in space.base},
    )
    if ckpt is not None:
        _clear(ckpt)
    if print_fn is not None:
        result.report(print_fn)
    return result


def _split(data, what: str):
    if isinstance(data, (tuple, list)):
        if len(data) != 2:
            raise ValueError(f"{what} must be (x, y), (x, None) or x; got {len(data)} items.")
        return data[0], data[1]
    if isinstance(data, dict):
        raise ValueError(f"{what} must be (x, y), (x, None) or x, not a dict.")
    return data, None


def _cut(model, plan, graph, calibration) -> tuple[keras.Model, keras.Model]:
    """The plan applied at once: the channel-cut model (recovery starts from it) and the
    cut with its group zeros and BatchNorm statistics measured again."""
    cut_plain = shrink(model, plan.keep, graph) if plan.keep else clone_with_weights(model, fresh)
    cut = with_group_zeros(cut_plain, plan.sparsity)
    if cut is cut_plain:
        cut = clone_with_weights(cut_plain, fresh)
    recalibrate_batchnorm(cut, calibration)
    return cut_plain, cut


def _bar(total: int, desc: str, progress: bool):
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="epoch" if desc == "recovery" else "eval", leave=False)


def _scan(space, xv, yv, teacher_val, ckpt, progress, calibration) -> None:
    path = ckpt / "scan.json" if ckpt is not None else None
    if path is not None and path.exists():
        saved = json.loads(path.read_text())
        for k in space.knobs:
            k.loss = saved[k.key]
        return
    bar = _bar(space.scan_size(), "sensitivity", progress)
    space.scan(
        _loss_fn(xv, yv, _probs(teacher_val)),
        progress=(lambda: bar.update(1)) if bar else None,
        calibration=calibration,
    )
    if bar:
        bar.close()
    if path is not None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({k.key: k.loss for k in space.knobs}))
        os.replace(tmp, path)


def _choose(
    space, budget, model, train, val, reference, calibration, trial_epochs, cfg, graph, ckpt
):
    """The plans that meet the budget, each tried with a short fine-tune; the best wins."""
    plans: dict[str, planning.Plan] = {}
    for name, kinds in (
        ("greedy", ("channels", "sparsity")),
        ("greedy, sparsity only", ("sparsity",)),
        ("greedy, channels only", ("channels",)),
    ):
        if not any(k.kind in kinds for k in space.knobs):
            continue
        p = planning.allocate(space, budget, kinds=kinds)
        if p.met and all(p.state != q.state for q in plans.values()):
            plans[name] = p
    u = planning.uniform(space, budget, sparsity=any(k.kind == "sparsity" for k in space.knobs))
    if u.met:
        plans["uniform"] = u
    first = next(iter(plans))
    if trial_epochs == 0 or len(plans) == 1:
        return plans[first], {}
    path = ckpt / "trials.json" if ckpt is not None else None
    if path is not None and path.exists():
        trials = json.loads(path.read_text())
    else:
        trials = {}
        for name, p in plans.items():
            cut_plain, cut = _cut(model, p, graph, calibration)
            trial = RecoveryConfig(
                **{**cfg.__dict__, "epochs": trial_epochs, "ramp": 0.0, "history": []}
            )
            _, acc, _ = recover(
                cut_plain,
                model,
                p.sparsity,
                train,
                val,
                trial,
                accuracy(cut, val[0], val[1], reference),
                cut,
                val_reference=reference,
                calibration=calibration,
            )
            trials[name] = acc
        if path is not None:
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(trials))
            os.replace(tmp, path)
    best = max(plans, key=lambda n: (trials[n], -list(plans).index(n)))
    return plans[best], trials


def _meet(model, target, budget, calibration):
    """The final model's estimate; if moved masks pushed it over (group positions change
    while training), more of the planned kernels' groups go until it fits."""
    views = layer_views(model)
    details = [target.layer_detail(v) for v in views]
    est = target.estimate(views, details)
    extra = 0.0
    base = {v.path: d.get("group_sparsity", 0.0) for v, d in zip(views, details, strict=True)}
    while planning.excess(est, budget) > 0 and extra < 0.1:
        extra += 0.01
        sp = {p: min(0.95, s + extra) for p, s in base.items() if s > 0}
        if not sp:
            break
        model = with_group_zeros(model, sp)
        recalibrate_batchnorm(model, calibration)
        views = layer_views(model)
        details = [target.layer_detail(v) for v in views]
        est = target.estimate(views, details)
    if planning.excess(est, budget) > 0:
        raise BudgetError(
            f"The recovered model's estimate {est} is over the budget {budget} and "
            "could not be brought under it; rerun with a slightly lower budget."
        )
    return model, est, details, views


def _layer_plans(views, details, original_model, target) -> list[LayerPlan]:
    orig = {v.path: v for v in layer_views(original_model)}
    out = []
    for v, d in zip(views, details, strict=True):
        cost = target.layer_costs(v)
        if v.rows is None and not any(cost.values()):
            continue
        o = orig.get(v.path)
        out.append(
            LayerPlan(
                v.path,
                v.op,
                v.out_shape[-1],
                o.out_shape[-1] if o is not None else v.out_shape[-1],
                float(d.get("group_sparsity", 0.0)),
                str(d.get("kernel", "dense" if v.rows is not None else v.op)),
                cost,
            )
        )
    return out


def _int8_accuracy(model, x_rep, xv, yv, reference) -> float:
    from keras_prune.export import pipeline
    from keras_prune.export.int8.runtime import run_tflm

    rep = x_rep[: min(len(x_rep), 300)]
    model_bytes = pipeline.convert(model, rep, model.name)
    raw, _ = run_tflm(model_bytes, xv)[0]
    pred = np.argmax(raw.reshape(len(xv), -1), axis=-1)
    truth = yv if yv is not None else reference
    return float(np.mean(pred == np.asarray(truth).reshape(-1)))


def _checkpoint_dir(checkpoint, model, config) -> Path | None:
    if checkpoint is None:
        return None
    path = Path(checkpoint)
    fp = _fingerprint(model, config)
    meta = path / "job.json"
    if meta.exists():
        saved = json.loads(meta.read_text())
        if saved.get("fingerprint") != fp:
            raise ValueError(
                f"The checkpoint '{path}' was made by a run with other settings, data "
                "size or model weights; remove it or pass another checkpoint directory."
            )
        return path
    path.mkdir(parents=True, exist_ok=True)
    tmp = path / "job.tmp.json"
    tmp.write_text(json.dumps({"fingerprint": fp, "config": config}, default=str))
    os.replace(tmp, meta)
    return path


def _clear(path: Path) -> None:
    for name in ("job.json", "scan.json", "trials.json", "recovery.json", "recovery.npz"):
        (path / name).unlink(missing_ok=True)
    try:
        path.rmdir()
    except OSError:
        pass
