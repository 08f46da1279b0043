"""Recovery after the cut: gradual SIMD-group sparsity and distillation from the original.

The channel cut is applied at once (``kp.shrink``); each planned kernel then grows its
SIMD-group sparsity from 0 to the plan's level over the first ``ramp`` of the epochs
(``kp.schedules.PolynomialDecay`` in a ``PruneWrapper``), while the student learns from
the original model's soft targets (``kp.distill.Distiller``) and, when given, the
labels. After every epoch whose sparsity is complete the stripped student is scored on
the validation data; the best one wins, and the one-shot cut is a candidate too, so
recovery never hands back a model worse (on validation) than the cut.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from keras_prune import schedules
from keras_prune._data import predict
from keras_prune.callbacks import PruningScheduler
from keras_prune.distill import Distiller
from keras_prune.granularity import SIMDGroups
from keras_prune.layers.prune_wrapper import PruneWrapper
from keras_prune.model_utils import all_layers, clone_with_weights, fresh
from keras_prune.pruning import strip

__all__ = [
    "RecoveryConfig",
    "recover",
    "accuracy",
    "with_group_zeros",
    "recalibrate_batchnorm",
    "batchnorm_state",
    "restore_batchnorm",
]


@dataclass
class RecoveryConfig:
    epochs: int = 10
    batch_size: int = 32
    learning_rate: float = 1e-3
    temperature: float = 4.0
    alpha: float = 0.5  # weight of the labels' loss (ignored without labels)
    ramp: float = 0.5  # fraction of the epochs over which sparsity grows
    augment: Callable | None = None
    seed: int = 0
    history: list = field(default_factory=list)


def accuracy(model: keras.Model, x: np.ndarray, y: np.ndarray | None, reference=None) -> float:
    """Top-1 accuracy against ``y``; without labels, agreement with ``reference`` (the
    original model's predicted classes)."""
    pred = np.argmax(predict(model, x)[0], axis=-1)
    truth = y if y is not None else reference
    return float(np.mean(pred == np.asarray(truth).reshape(-1)))


def _batchnorms(model: keras.Model) -> list:
    return [la for la in all_layers(model) if isinstance(la, keras.layers.BatchNormalization)]


def batchnorm_state(model: keras.Model) -> list[np.ndarray]:
    """Every BatchNormalization's moving mean and variance (to restore them later)."""
    return [
        np.array(v)
        for bn in _batchnorms(model)
        for v in (bn.moving_mean.numpy(), bn.moving_variance.numpy())
    ]


def restore_batchnorm(model: keras.Model, state: list[np.ndarray]) -> None:
    values = iter(state)
    for bn in _batchnorms(model):
        bn.moving_mean.assign(next(values))
        bn.moving_variance.assign(next(values))


def recalibrate_batchnorm(model: keras.Model, x: np.ndarray) -> None:
    """Set every BatchNormalization's moving statistics to the batch statistics of ``x``,
    in one forward pass in training mode (momentum 0 for that pass), in place.

    Cutting channels or zeroing weights moves the distribution each BatchNorm sees, and
    its stored statistics no longer match: a one-shot cut can then read as chance
    although it is not. So can a model trained briefly, whose moving averages lag its
    weights. Pass a few hundred training inputs; Dropout is active during the pass.
    """
    bns = _batchnorms(model)
    if not bns:
        return
    momenta = [bn.momentum for bn in bns]
    try:
        for bn in bns:
            bn.momentum = 0.0
        model(np.asarray(x), training=True)
    finally:
        for bn, m in zip(bns, momenta, strict=True):
            bn.momentum = m


def with_group_zeros(model: keras.Model, sparsity: dict[str, float]) -> keras.Model:
    """A copy of a plain model whose named kernels lose ``sparsity[name]`` of their 4-weight
    groups at once, by ``SIMDGroups(4)``'s rule (what the gradual schedule ends in)."""
    if not sparsity:
        return model
    wrapped = _wrap(
        model, {k: schedules.ConstantSparsity(v, 0, frequency=1) for k, v in sparsity.items()}
    )
    for w in _wrappers(wrapped):
        w.update_masks(sparsity[w.name])
    return strip(wrapped)


def _wrap(model: keras.Model, per_layer: dict) -> keras.Model:
    def clone(layer):
        if layer.name in per_layer:
            return PruneWrapper(
                fresh(layer), schedule=per_layer[layer.name], granularity=SIMDGroups(4)
            )
        return fresh(layer)

    return clone_with_weights(model, clone)


def _wrappers(model) -> list[PruneWrapper]:
    from keras_prune.pruning import wrappers

    return wrappers(model)


def _dataset(x, y, cfg: RecoveryConfig, epoch: int):
    rng = np.random.default_rng([cfg.seed, epoch])
    order = rng.permutation(len(x))
    xs = x[order]
    ds = (
        tf.data.Dataset.from_tensor_slices((xs, y[order]))
        if y is not None
        else tf.data.Dataset.from_tensor_slices(xs)
    )
    ds = ds.batch(cfg.batch_size)
    if cfg.augment is not None:
        aug = cfg.augment
        call = (lambda b: aug(b, training=True)) if isinstance(aug, keras.layers.Layer) else aug
        ds = ds.map((lambda a, b: (call(a), b)) if y is not None else call)
    return ds.prefetch(2)


def recover(
    shrunk: keras.Model,
    teacher: keras.Model,
    sparsity: dict[str, float],
    train: tuple[np.ndarray, np.ndarray | None],
    val: tuple[np.ndarray, np.ndarray | None],
    cfg: RecoveryConfig,
    cut_accuracy: float,
    cut_model: keras.Model,
    val_reference: np.ndarray | None = None,
    checkpoint: Path | None = None,
    progress: Callable[[int, dict], None] | None = None,
    calibration: np.ndarray | None = None,
) -> tuple[keras.Model, float, int]:
    """Fine-tune ``shrunk`` (channels already cut) to ``sparsity``; returns the best plain
    model by validation accuracy, its accuracy, and the epoch it came from (0: the cut)."""
    x, y = train
    xv, yv = val
    steps = -(-len(x) // cfg.batch_size)
    end = max(1, int(round(cfg.ramp * cfg.epochs * steps)))
    per_layer = {
        name: schedules.PolynomialDecay(0.0, s, 0, end, frequency=max(1, min(steps, end // 8)))
        for name, s in sparsity.items()
    }
    student = _wrap(shrunk, per_layer) if per_layer else clone_with_weights(shrunk, fresh)
    distiller = Distiller(student, teacher, temperature=cfg.temperature, alpha=cfg.alpha)
    loss = "sparse_categorical_crossentropy" if y is not None else None
    distiller.compile(optimizer=keras.optimizers.Adam(cfg.learning_rate), loss=loss, metrics=None)
    best = (cut_accuracy, 0)
    best_weights = None
    start = 0
    if checkpoint is not None and (checkpoint / "recovery.json").exists():
        start, best, best_weights = _resume(checkpoint, distiller, student, x, y, cfg)
    callbacks = [PruningScheduler()] if per_layer else []
    for epoch in range(start, cfg.epochs):
        keras.utils.set_random_seed(cfg.seed * 1000 + epoch)
        ds = _dataset(x, y, cfg, epoch)
        hist = distiller.fit(ds, epochs=1, verbose=0, callbacks=callbacks, shuffle=False)
        done = not per_layer or (epoch + 1) * steps >= end
        plain = strip(student) if per_layer else clone_with_weights(student, fresh)
        if calibration is not None:
            recalibrate_batchnorm(plain, calibration)
        acc = accuracy(plain, xv, yv, val_reference)
        row = {
            "epoch": epoch + 1,
            "loss": float(hist.history["loss"][-1]),
            "val_accuracy": acc,
            "sparsity_complete": bool(done),
        }
        cfg.history.append(row)
        if done and acc > best[0]:
            best = (acc, epoch + 1)
            best_weights = [np.array(w) for w in plain.get_weights()]
        if checkpoint is not None:
            _save(checkpoint, epoch + 1, distiller, student, best, best_weights, cfg.history)
        if progress:
            progress(epoch + 1, row)
    if best_weights is None:
        return cut_model, best[0], 0
    final = strip(student) if per_layer else clone_with_weights(student, fresh)
    final.set_weights(best_weights)  # the epoch's weights and its recalibrated statistics
    return final, best[0], best[1]


def _save(path: Path, epoch, distiller, student, best, best_weights, history) -> None:
    tmp = path / "recovery.tmp.npz"
    arrays = {f"s{i}": np.asarray(w) for i, w in enumerate(student.get_weights())}
    arrays.update({f"o{i}": np.asarray(v) for i, v in enumerate(distiller.optimizer.variables)})
    if best_weights is not None:
        arrays.update({f"b{i}": w for i, w in enumerate(best_weights)})
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
    os.replace(tmp, path / "recovery.npz")
    meta = {
        "epoch": epoch,
        "best": list(best),
        "has_best": best_weights is not None,
        "history": history,
    }
    (path / "recovery.tmp.json").write_text(json.dumps(meta))
    os.replace(path / "recovery.tmp.json", path / "recovery.json")


def _resume(path: Path, distiller, student, x, y, cfg: RecoveryConfig):
    meta = json.loads((path / "recovery.json").read_text())
    data = np.load(path / "recovery.npz")
    n_s = len(student.get_weights())
    student.set_weights([data[f"s{i}"] for i in range(n_s)])
    distiller.optimizer.build(distiller.trainable_variables)
    for i, v in enumerate(distiller.optimizer.variables):
        v.assign(data[f"o{i}"])
    best_weights = None
    if meta["has_best"]:
        best_weights = [data[f"b{i}"] for i in range(len([k for k in data.files if k[0] == "b"]))]
    cfg.history[:] = meta["history"]
    return meta["epoch"], tuple(meta["best"]), best_weights
