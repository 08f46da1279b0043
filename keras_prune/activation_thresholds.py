"""Activation masks in their export form: finding a model's ``ActivationMask`` layers,
calibrating a threshold for each, and swapping the masks for ``ActivationThreshold``
layers. Shared by ``kp.strip`` (pruning) and ``kp.integral``; imports neither."""

from __future__ import annotations

import keras
import numpy as np

from keras_prune._data import check_data, predict
from keras_prune.layers.activation_mask import ActivationMask, ActivationThreshold
from keras_prune.layers.prune_wrapper import PruneWrapper
from keras_prune.model_utils import LayerGraph, clone_with_weights, fresh

__all__ = [
    "activation_masks",
    "calibrate_thresholds",
    "with_thresholds",
    "int8_threshold",
    "threshold_for",
]


def activation_masks(model: keras.Model) -> list[ActivationMask]:
    """The top-level ActivationMask layers of ``model``, in graph order."""
    return [la for la in LayerGraph(model).layers if isinstance(la, ActivationMask)]


def calibrate_thresholds(
    model: keras.Model, representative_data, batch_size: int = 256
) -> dict[str, float]:
    """{mask name: threshold} so that ``x >= threshold`` keeps, on ``representative_data``,
    as many activations as the masks' top-k keeps (``ceil(rate * n)`` per sample).

    The pooled inputs of each mask are quantized as the int8 converter will quantize
    them, and the threshold is put midway between the last kept and the first dropped
    int8 level, so the float and int8 forms keep the same activations. A block of equal
    levels is kept or dropped whole, whichever lands nearer the target. A layer with
    fewer non-zero activations than the rate asks for gets threshold 0 (its ReLU output
    passes unchanged, as under top-k).
    """
    masks = activation_masks(model)
    if not masks:
        return {}
    x, _ = check_data(model, representative_data, None, "representative_data")
    thresholds: dict[str, float] = {}
    for i, mask in enumerate(masks):
        # calibrate in graph order on the model as it will run: with the masks upstream
        # already in threshold form (their kept sets differ slightly from top-k's)
        current = with_thresholds(model, thresholds) if i else model
        (act,) = predict(current, x, batch_size, outputs=[current.get_layer(mask.name).input])
        n = int(np.prod(act.shape[1:]))
        thresholds[mask.name] = int8_threshold(act.reshape(-1), mask.winners(n) * len(act))
    return thresholds


def int8_threshold(values: np.ndarray, keep: int) -> float:
    """A threshold midway between two int8 levels of ``values``' quantization.

    The int8 scale is the one the TFLite converter derives from the same data (per-tensor
    range including 0, 256 levels). A cut between two levels keeps the same activations
    in float and in int8; values less than one level apart (e.g. two channels' ReLU(bias)
    over a blank background) are one level in int8, so no threshold could split them.
    """
    lo, hi = min(0.0, float(values.min())), max(0.0, float(values.max()))
    if hi == lo:
        return 0.0
    scale = (hi - lo) / 255.0
    zero_point = round(-128 - lo / scale)
    levels = np.clip(np.round(values / scale) + zero_point, -128, 127)
    cut = threshold_for(levels, keep, zero=zero_point)
    return 0.0 if cut is None else float((cut - zero_point) * scale)


def threshold_for(values: np.ndarray, keep: int, zero: float = 0.0) -> float | None:
    """The cut ``t`` for which ``values >= t`` keeps closest to ``keep`` values (``None``:
    keep everything, when only values <= ``zero`` would be dropped).

    Top-k splits a block of equal values by position; a threshold keeps or drops the
    whole block (ReLU(bias) over an image's blank background is such a block), so take
    whichever side of it is nearer. ``t`` sits midway between the last kept and the
    first dropped distinct value.
    """
    distinct, counts = np.unique(values, return_counts=True)
    distinct, counts = distinct[::-1], counts[::-1]  # descending
    kept = np.cumsum(counts)  # kept[i]: how many values >= distinct[i]
    i = int(np.searchsorted(kept, keep))  # first block reaching keep
    if i >= len(distinct):
        return None
    if i > 0 and keep - kept[i - 1] < kept[i] - keep:
        i -= 1  # dropping the straddling block is closer than keeping it
    if distinct[i] <= zero or i + 1 >= len(distinct):
        return None
    return float((distinct[i] + distinct[i + 1]) / 2)


def with_thresholds(
    model: keras.Model, thresholds: dict[str, float], unwrap: bool = False
) -> keras.Model:
    """A copy of ``model`` with the named ActivationMasks replaced by ActivationThresholds
    (and, with ``unwrap``, PruneWrappers by their layers with the zeros baked in)."""

    def clone(layer):
        if isinstance(layer, ActivationMask) and layer.name in thresholds:
            return ActivationThreshold(thresholds[layer.name], layer.winner_rate, name=layer.name)
        return fresh(layer.layer if unwrap and isinstance(layer, PruneWrapper) else layer)

    return clone_with_weights(model, clone)
