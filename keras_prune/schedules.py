"""Sparsity schedules: a pure function of the training step.

A schedule answers two questions for a step: should the masks be updated now, and to
which sparsity. ``schedule(step) -> (should_prune, sparsity)``, both tensors, so the
same object works eagerly (plots, tests) and inside the compiled train step, where
keras-prune evaluates it once per optimizer step.

The semantics (including ``frequency`` counting from ``begin_step`` and ``end_step=-1``
meaning "forever" for ``ConstantSparsity``) are those of
``tensorflow_model_optimization.sparsity.keras``; the float32 arithmetic is done in the
same order, so both libraries give bit-identical sparsities for the same arguments.

Any object with the same call signature (a tfmot schedule, for instance) is accepted
wherever keras-prune takes a schedule.

Example:

```python
sched = kp.schedules.PolynomialDecay(initial_sparsity=0.0, final_sparsity=0.9,
                                     begin_step=0, end_step=2000, frequency=100)
should_prune, sparsity = sched(1000)     # (True, 0.7875)
```
"""

from __future__ import annotations

import numbers
from typing import Any

import keras
import tensorflow as tf

from keras_prune._config import ConfigValue

__all__ = [
    "PruningSchedule",
    "ConstantSparsity",
    "PolynomialDecay",
    "get",
    "serialize",
    "deserialize",
]


def _check_int(name: str, value: Any, cls_name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{cls_name}: `{name}` must be an integer step, got {value!r}.")
    return int(value)


def _check_sparsity(name: str, value: Any, cls_name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{cls_name}: `{name}` must be a float in [0, 1), got {value!r}.")
    if not 0.0 <= float(value) < 1.0:
        raise ValueError(
            f"{cls_name}: `{name}` must be in [0, 1) (the fraction of weights removed), "
            f"got {value!r}. A sparsity of 1 would remove every weight."
        )
    return float(value)


class PruningSchedule(ConfigValue):
    """Base class: ``schedule(step) -> (should_prune, sparsity)``.

    Subclasses implement ``__call__`` with TensorFlow ops (so that it runs inside the
    compiled train step) and ``get_config``.
    """

    def _validate_steps(self, allow_forever: bool) -> None:
        name = type(self).__name__
        self.begin_step = _check_int("begin_step", self.begin_step, name)
        self.end_step = _check_int("end_step", self.end_step, name)
        self.frequency = _check_int("frequency", self.frequency, name)
        if self.begin_step < 0:
            raise ValueError(f"{name}: `begin_step` must be >= 0, got {self.begin_step}.")
        if self.end_step == -1 and not allow_forever:
            raise ValueError(f"{name}: `end_step` must be given (a step > begin_step), got -1.")
        if self.end_step != -1 and self.end_step < self.begin_step:
            raise ValueError(
                f"{name}: `end_step` ({self.end_step}) is before `begin_step` "
                f"({self.begin_step}); pass end_step >= begin_step"
                + (", or -1 to prune until training stops." if allow_forever else ".")
            )
        if self.frequency <= 0:
            raise ValueError(
                f"{name}: `frequency` must be a positive number of steps, got {self.frequency}."
            )

    def _should_prune(self, step):
        step = tf.convert_to_tensor(step, dtype=tf.int64)
        in_range = tf.logical_and(
            step >= self.begin_step,
            tf.logical_or(step <= self.end_step, tf.constant(self.end_step < 0)),
        )
        on_turn = tf.equal(tf.math.floormod(step - self.begin_step, self.frequency), 0)
        return tf.logical_and(in_range, on_turn)

    def __call__(self, step):  # pragma: no cover - abstract
        raise NotImplementedError

    def get_config(self) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError


@keras.saving.register_keras_serializable(package="keras_prune")
class ConstantSparsity(PruningSchedule):
    """Prune to one sparsity every ``frequency`` steps in ``[begin_step, end_step]``.

    Args:
        target_sparsity: fraction of units removed, in [0, 1).
        begin_step: first step at which masks are updated.
        end_step: last step at which masks may be updated; -1 keeps updating forever.
        frequency: update the masks every ``frequency`` steps, counted from ``begin_step``.

    Example:

    ```python
    kp.prune(model, schedule=kp.schedules.ConstantSparsity(0.5, begin_step=0, frequency=1))
    ```
    """

    def __init__(
        self, target_sparsity: float, begin_step: int = 0, end_step: int = -1, frequency: int = 100
    ):
        self.target_sparsity = _check_sparsity(
            "target_sparsity", target_sparsity, "ConstantSparsity"
        )
        self.begin_step, self.end_step, self.frequency = begin_step, end_step, frequency
        self._validate_steps(allow_forever=True)

    def __call__(self, step):
        return self._should_prune(step), tf.constant(self.target_sparsity, dtype=tf.float32)

    def get_config(self) -> dict:
        return {
            "target_sparsity": self.target_sparsity,
            "begin_step": self.begin_step,
            "end_step": self.end_step,
            "frequency": self.frequency,
        }


@keras.saving.register_keras_serializable(package="keras_prune")
class PolynomialDecay(PruningSchedule):
    """Sparsity that ramps from ``initial_sparsity`` to ``final_sparsity`` (Zhu & Gupta, 2017).

    ``s(t) = final + (initial - final) * (1 - p) ** power`` with
    ``p = clip((t - begin_step) / (end_step - begin_step), 0, 1)``: fast at first, then
    settling, which gives the network time to recover between updates.

    Args:
        initial_sparsity: sparsity at ``begin_step``, in [0, 1).
        final_sparsity: sparsity from ``end_step`` on, in [0, 1).
        begin_step: first step at which masks are updated.
        end_step: step at which ``final_sparsity`` is reached; must be > ``begin_step``.
        power: exponent of the ramp (3 is the usual choice).
        frequency: update the masks every ``frequency`` steps, counted from ``begin_step``.

    Example:

    ```python
    sched = kp.schedules.PolynomialDecay(0.0, 0.9, begin_step=0, end_step=2000, frequency=100)
    ```
    """

    def __init__(
        self,
        initial_sparsity: float,
        final_sparsity: float,
        begin_step: int,
        end_step: int,
        power: float = 3,
        frequency: int = 100,
    ):
        name = "PolynomialDecay"
        self.initial_sparsity = _check_sparsity("initial_sparsity", initial_sparsity, name)
        self.final_sparsity = _check_sparsity("final_sparsity", final_sparsity, name)
        if isinstance(power, bool) or not isinstance(power, numbers.Real) or power <= 0:
            raise ValueError(f"{name}: `power` must be a positive number, got {power!r}.")
        self.power = power
        self.begin_step, self.end_step, self.frequency = begin_step, end_step, frequency
        self._validate_steps(allow_forever=False)
        if self.end_step == self.begin_step:
            # tfmot divides by zero here and yields NaN at begin_step.
            raise ValueError(
                f"{name}: `end_step` must be greater than `begin_step` (both are "
                f"{self.begin_step}); for a single jump use ConstantSparsity."
            )

    def __call__(self, step):
        step = tf.convert_to_tensor(step, dtype=tf.int64)
        # Same op order and dtypes as tfmot, so both give bit-identical float32 values.
        p = tf.minimum(
            1.0,
            tf.maximum(
                0.0, tf.cast(step - self.begin_step, tf.float32) / (self.end_step - self.begin_step)
            ),
        )
        sparsity = (self.initial_sparsity - self.final_sparsity) * tf.pow(
            1 - p, self.power
        ) + self.final_sparsity
        return self._should_prune(step), sparsity

    def get_config(self) -> dict:
        return {
            "initial_sparsity": self.initial_sparsity,
            "final_sparsity": self.final_sparsity,
            "begin_step": self.begin_step,
            "end_step": self.end_step,
            "power": self.power,
            "frequency": self.frequency,
        }


def serialize(schedule) -> dict:
    """Config dict for a schedule; tfmot-style objects must provide ``get_config`` too."""
    return keras.saving.serialize_keras_object(schedule)


def deserialize(config: dict, custom_objects: dict | None = None):
    """The schedule a ``serialize`` config describes (user schedules via custom_objects)."""
    return keras.saving.deserialize_keras_object(config, custom_objects=custom_objects)


def get(schedule):
    """Validates a schedule argument and returns it.

    Accepts a keras-prune schedule, a config dict, or any callable
    ``step -> (should_prune, sparsity)`` such as a tfmot schedule.
    """
    if isinstance(schedule, dict):
        return deserialize(schedule)
    if schedule is None or not callable(schedule):
        raise TypeError(
            "`schedule` must be a keras_prune schedule (e.g. "
            "kp.schedules.PolynomialDecay(0.0, 0.9, begin_step=0, end_step=1000)) or a callable "
            f"step -> (should_prune, sparsity); got {schedule!r}."
        )
    if not isinstance(schedule, PruningSchedule):
        try:
            should, sparsity = schedule(0)
            float(sparsity)
            bool(should)
        except Exception as e:  # a user callable can fail in any way; report it as bad input
            raise TypeError(
                f"`schedule` {schedule!r} must return (should_prune, sparsity) when called "
                f"with a step; calling it with step 0 failed: {e}"
            ) from e
    return schedule
