"""ActivationMask (dynamic top-k winners) and ActivationThreshold (its export form)."""

from __future__ import annotations

import math

import keras
from keras import ops

__all__ = ["ActivationMask", "ActivationThreshold", "winner_count", "check_winner_rate"]


def check_winner_rate(rate, where: str = "winner_rate") -> float:
    """``rate`` as a float in (0, 1], or a ValueError naming ``where``."""
    if isinstance(rate, bool) or not isinstance(rate, (int, float)):
        raise TypeError(f"{where} must be a number in (0, 1], got {rate!r}.")
    if not (0.0 < float(rate) <= 1.0) or math.isnan(rate):
        raise ValueError(
            f"{where} must be in (0, 1] (the fraction of activations kept), got {rate!r}."
        )
    return float(rate)


def winner_count(rate: float, n: int) -> int:
    """ceil(rate * n), at least 1; rounding noise such as 0.3 * 100 = 30.000000000000004
    must not add a winner, hence the rounding to 9 digits before the ceiling."""
    return max(1, math.ceil(round(rate * n, 9)))


@keras.saving.register_keras_serializable(package="keras_prune")
class ActivationMask(keras.layers.Layer):
    """Keeps the top ``ceil(winner_rate * n)`` activations of each sample, zeroes the rest.

    ``n`` is the size of one sample's activation map (all positions and channels). The
    winners are the largest values; among equal values the one earlier in memory order
    (C order, channels last) wins, so the mask is deterministic. The mask is the same in
    training and inference, and gradients flow only through the winners.

    Place it after a ReLU-family activation (``kp.add_activation_masks`` does this):
    top-k by value only means "strongest" when activations are non-negative.

    Example:

    ```python
    x = keras.layers.Dense(300, activation="relu")(x)
    x = kp.layers.ActivationMask(0.3)(x)      # 90 winners of 300 per sample
    ```
    """

    def __init__(self, winner_rate: float = 0.3, **kwargs):
        super().__init__(**kwargs)
        self.winner_rate = winner_rate
        self.supports_masking = True

    @property
    def winner_rate(self) -> float:
        return self._winner_rate

    @winner_rate.setter
    def winner_rate(self, rate) -> None:
        name = getattr(self, "name", "ActivationMask")
        self._winner_rate = check_winner_rate(rate, f"ActivationMask '{name}': winner_rate")

    def winners(self, n: int) -> int:
        """How many of ``n`` activations per sample this mask keeps."""
        return winner_count(self.winner_rate, n)

    def call(self, inputs):
        n = math.prod(inputs.shape[1:])
        k = self.winners(n)
        if k >= n:
            return inputs
        flat = ops.reshape(inputs, (-1, n))
        kth = ops.top_k(flat, k, sorted=True)[0][:, k - 1 : k]
        above = ops.greater(flat, kth)
        tied = ops.equal(flat, kth)
        # ties at the k-th value: the first ones in memory order fill the remaining places
        room = k - ops.sum(ops.cast(above, "int32"), axis=1, keepdims=True)
        tie_rank = ops.cumsum(ops.cast(tied, "int32"), axis=1)
        keep = ops.logical_or(above, ops.logical_and(tied, ops.less_equal(tie_rank, room)))
        mask = ops.stop_gradient(ops.cast(keep, inputs.dtype))
        return ops.reshape(flat * mask, ops.shape(inputs))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "winner_rate": self.winner_rate}


@keras.saving.register_keras_serializable(package="keras_prune")
class ActivationThreshold(keras.layers.Layer):
    """``x if x >= threshold else 0``: the static form of an ActivationMask.

    ``kp.strip`` calibrates ``threshold`` on representative data so that the mean kept
    fraction matches the mask's winner rate. It converts to int8 TFLite as
    GREATER_EQUAL + SELECT_V2, both TFLite Micro built-ins (TFLM has no TOPK).

    Args:
        threshold: the smallest value kept (0 keeps every value of a ReLU output).
        winner_rate: the rate of the ActivationMask it replaces (for reports only).
    """

    def __init__(self, threshold: float = 0.0, winner_rate: float | None = None, **kwargs):
        super().__init__(**kwargs)
        self.threshold = float(threshold)
        self.winner_rate = None if winner_rate is None else check_winner_rate(winner_rate)
        self.supports_masking = True

    def call(self, inputs):
        t = ops.cast(self.threshold, inputs.dtype)
        return ops.where(ops.greater_equal(inputs, t), inputs, ops.zeros_like(inputs))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "threshold": self.threshold,
            "winner_rate": self.winner_rate,
        }
