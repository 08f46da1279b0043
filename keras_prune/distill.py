"""Knowledge distillation: train a student model to match a frozen teacher's outputs.

The student learns from the teacher's softened class distribution (Hinton et al., 2015,
"Distilling the Knowledge in a Neural Network"), with or without the true labels. In
keras-prune the usual teacher is the model before pruning and the student the pruned
model: distillation recovers accuracy lost to pruning, and it needs no labels, so any
unlabeled sample of the input distribution will do.

Example:

```python
import keras_prune as kp

distiller = kp.distill.Distiller(student=pruned, teacher=original, temperature=4.0,
                                 alpha=0.5)
distiller.compile(keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
distiller.fit(x, y, epochs=3)       # labels: alpha * hard loss + (1 - alpha) * soft loss
distiller.fit(x_unlabeled, epochs=3)  # no labels: the soft loss alone
pruned = distiller.student          # trained in place; save or strip this model
```
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import keras
from keras import ops

__all__ = ["soft_target_loss", "Distiller"]

_EPSILON = 1e-7


def _check_temperature(temperature: Any, allow_tensor: bool) -> None:
    if isinstance(temperature, numbers.Real) and not isinstance(temperature, bool):
        if not (math.isfinite(temperature) and temperature > 0):
            raise ValueError(f"`temperature` must be a positive finite number, got {temperature}.")
    elif not allow_tensor or temperature is None or isinstance(temperature, (bool, str)):
        raise TypeError(f"`temperature` must be a positive number, got {temperature!r}.")
    # a tensor (soft_target_loss only) is used as is


def _compute_dtype(*tensors) -> str:
    """float32 at least (float16 logits lose too much in exp/log), float64 if given."""
    return keras.backend.result_type(*(t.dtype for t in tensors), "float32")


def _scale_for_replicas(value):
    """Divide by the number of replicas under a ``tf.distribute`` strategy, as Keras does
    with every loss: the replicas' gradients are summed."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        if replicas > 1:
            value = value * ops.cast(1.0 / replicas, value.dtype)
    return value


def _log_softened(out, from_logits: bool, temperature):
    """``log softmax(z / T)``; probabilities are mapped back to logits with a clipped log
    first (the same logits up to a per-sample constant, which softmax ignores)."""
    if not from_logits:
        out = ops.log(ops.clip(out, _EPSILON, 1.0))
    return ops.log_softmax(out / temperature, axis=-1)


def _soft_target_loss_per_sample(
    teacher_out, student_out, temperature, teacher_from_logits: bool, student_from_logits: bool
):
    """``T**2 * KL(teacher_T || student_T)`` summed over the last axis, not reduced."""
    teacher_out = ops.convert_to_tensor(teacher_out)
    student_out = ops.convert_to_tensor(student_out)
    t_shape, s_shape = tuple(teacher_out.shape), tuple(student_out.shape)
    if len(t_shape) != len(s_shape) or any(
        a is not None and b is not None and a != b for a, b in zip(t_shape, s_shape, strict=True)
    ):
        raise ValueError(
            "`teacher_out` and `student_out` must have the same shape, got "
            f"{t_shape} and {s_shape}."
        )
    if len(s_shape) == 0:
        raise ValueError("The outputs must have a class axis (the last one), got scalars.")
    dtype = _compute_dtype(teacher_out, student_out)
    teacher_out = ops.cast(teacher_out, dtype)
    student_out = ops.cast(student_out, dtype)
    log_p_teacher = _log_softened(teacher_out, teacher_from_logits, temperature)
    log_p_student = _log_softened(student_out, student_from_logits, temperature)
    kl = ops.sum(ops.exp(log_p_teacher) * (log_p_teacher - log_p_student), axis=-1)
    return kl * ops.cast(temperature, dtype) ** 2


def soft_target_loss(
    teacher_out,
    student_out,
    temperature: float = 4.0,
    teacher_from_logits: bool = False,
    student_from_logits: bool = False,
):
    """The distillation loss: ``T**2 * KL(softmax(z_t / T) || softmax(z_s / T))``.

    ``z_t`` and ``z_s`` are the teacher's and student's logits. The KL divergence is
    summed over the last (class) axis and averaged over every other axis (the batch).
    Multiplying by ``T**2`` keeps the gradients about the same size whatever the
    temperature (Hinton et al., 2015), so the loss can be mixed with a hard-label loss
    without retuning the learning rate.

    Outputs that are probabilities (a model ending in softmax), the default as in
    ``keras.losses``, are turned back into logits with ``log(clip(p, 1e-7, 1))``: equal
    to the logits up to a constant per sample, which the softmax ignores. The clip
    limits how far apart log-probabilities can be (about 16 nats), so a teacher whose
    probabilities go below ``1e-7`` gives slightly different results from its logits.

    Args:
        teacher_out: the teacher's outputs, shape ``(batch, ..., classes)``. Treated as
            constants only if you stop the gradient yourself (``Distiller`` does).
        student_out: the student's outputs, same shape.
        temperature: ``T > 0``. Higher values soften both distributions and weight the
            small probabilities more; ``T = 1`` compares the plain distributions.
        teacher_from_logits: whether ``teacher_out`` holds logits (``True``) or
            probabilities (``False``).
        student_from_logits: the same for ``student_out``.

    Returns:
        A scalar tensor, 0 when the two softened distributions are equal, else positive.

    Example:

    >>> import numpy as np
    >>> logits = np.array([[2.0, 0.5, -1.0]], "float32")
    >>> float(soft_target_loss(logits, logits, teacher_from_logits=True,
    ...                        student_from_logits=True))
    0.0
    """
    _check_temperature(temperature, allow_tensor=True)
    per_sample = _soft_target_loss_per_sample(
        teacher_out, student_out, temperature, bool(teacher_from_logits), bool(student_from_logits)
    )
    return ops.mean(per_sample)


def _output_operation(model: keras.Model):
    """The layer (or op) that produces the model's output, or None if unknown."""
    try:
        outputs = model.outputs
    except (AttributeError, ValueError):
        outputs = None
    if outputs and len(outputs) == 1:
        history = getattr(outputs[0], "_keras_history", None)
        if history:
            return history[0]
    layers = getattr(model, "layers", None)
    return layers[-1] if layers else None


def _ends_in_softmax(model: keras.Model) -> bool:
    """Whether the model's output is a softmax: a layer with ``activation="softmax"``, an
    ``Activation("softmax")``, a ``Softmax`` layer or ``keras.ops.softmax``. Wrappers
    (``PruneWrapper``) and nested models are looked through."""
    op = _output_operation(model)
    for _ in range(64):  # wrappers and nested models, a bounded walk
        if isinstance(op, keras.layers.Wrapper):
            op = op.layer
        elif isinstance(op, keras.Model):
            op = _output_operation(op)
        else:
            break
    if op is None:
        return False
    if type(op).__name__ == "Softmax":  # keras.layers.Softmax and keras.ops.softmax
        return True
    activation = getattr(op, "activation", None)
    return getattr(activation, "__name__", None) == "softmax"


def _resolve_from_logits(value, model: keras.Model, arg: str) -> bool:
    if isinstance(value, str):
        if value != "auto":
            raise ValueError(f'`{arg}` must be True, False or "auto", got {value!r}.')
        return not _ends_in_softmax(model)
    if not isinstance(value, bool):
        raise TypeError(f'`{arg}` must be True, False or "auto", got {value!r}.')
    return value


def _output_shape(model: keras.Model, arg: str):
    if not isinstance(model, keras.Model):
        raise TypeError(f"`{arg}` must be a keras.Model, got {type(model).__name__}.")
    if not model.built:
        raise ValueError(
            f"`{arg}` ('{model.name}') is not built: build it first, e.g. by calling it on "
            "a batch or giving it a keras.Input."
        )
    try:
        shape = model.output_shape
    except (AttributeError, ValueError, NotImplementedError):
        return None  # a subclassed model: the shapes are checked on the first batch
    if isinstance(shape, (list, dict)) or (
        isinstance(shape, tuple) and shape and isinstance(shape[0], (tuple, list))
    ):
        raise ValueError(
            f"`{arg}` ('{model.name}') must have a single output, got output shapes {shape}."
        )
    return tuple(shape)


@keras.saving.register_keras_serializable(package="keras_prune")
class Distiller(keras.Model):
    """Trains ``student`` to match a frozen ``teacher`` with the standard ``fit`` loop.

    The loss of a batch is

    - with labels ``y``: ``alpha * hard_loss(y, student(x)) + (1 - alpha) * soft``, where
      ``hard_loss`` is the ``loss`` given to ``compile``;
    - without labels (``fit(x)``, or a dataset of inputs only): ``soft`` alone. ``alpha``
      only applies when labels are given;

    where ``soft = soft_target_loss(teacher(x), student(x), temperature)``. Regularization
    losses of the student are added as Keras does. The ``soft_loss`` metric logs ``soft``
    on its own. Compiled metrics compare the student's outputs with ``y`` and are skipped
    for batches without labels. ``sample_weight`` weights both losses.

    The student is trained in place: ``distiller.student`` is the model you passed, with
    its weights updated; keep, save or ``kp.strip`` that model. ``call`` (and so
    ``predict``) returns the student's outputs.

    The teacher is frozen without touching its ``trainable`` flag: the distiller does
    not track it as a sublayer, so its weights are not in ``distiller.weights`` or
    ``distiller.trainable_weights`` (the optimizer never sees them), its outputs pass
    through ``stop_gradient``, and it always runs with ``training=False`` (dropout off,
    batch-norm statistics fixed).

    Args:
        student: a built single-output ``keras.Model``; it may contain ``PruneWrapper``
            layers, whose masks keep applying while it trains.
        teacher: a built ``keras.Model`` with the same output shape, and not the same
            object as ``student``.
        temperature: the softmax temperature ``T > 0`` of the soft loss.
        alpha: the weight of the hard-label loss, in ``[0, 1]``. ``0`` distils only
            (no ``loss`` needed in ``compile``); ``1`` ignores the teacher when labels
            are given.
        teacher_from_logits: whether the teacher outputs logits (``True``) or
            probabilities (``False``). ``"auto"`` (default): probabilities if its output
            layer applies a softmax (``activation="softmax"``, ``Activation("softmax")``,
            ``Softmax``), else logits.
        student_from_logits: the same for the student. Give the matching
            ``from_logits`` to the hard loss in ``compile`` yourself.

    ``get_config`` holds the scalar settings only (the resolved ``from_logits`` flags,
    not ``"auto"``); the two models are not part of it. To rebuild a distiller, pass
    them again: ``Distiller.from_config(config, student=s, teacher=t)``. Saving a
    distiller is not the way to keep the result: save the student.

    Example:

    ```python
    teacher = keras.Sequential([keras.Input((784,)),
                                keras.layers.Dense(256, activation="relu"),
                                keras.layers.Dense(10, activation="softmax")])
    student = keras.Sequential([keras.Input((784,)),
                                keras.layers.Dense(32, activation="relu"),
                                keras.layers.Dense(10, activation="softmax")])
    distiller = Distiller(student, teacher, temperature=4.0, alpha=0.3)
    distiller.compile(keras.optimizers.Adam(1e-3),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    distiller.fit(x_train, y_train, epochs=5, validation_data=(x_test, y_test))
    student.evaluate(x_test, y_test)  # compile the student first
    ```
    """

    def __init__(
        self,
        student: keras.Model,
        teacher: keras.Model,
        temperature: float = 4.0,
        alpha: float = 0.5,
        teacher_from_logits: bool | str = "auto",
        student_from_logits: bool | str = "auto",
        **kwargs,
    ):
        student_shape = _output_shape(student, "student")
        teacher_shape = _output_shape(teacher, "teacher")
        if student is teacher:
            raise ValueError(
                "`student` and `teacher` are the same model: the soft loss would always "
                "be 0. Distil from a separate copy, e.g. the model before pruning."
            )
        if student_shape is not None and teacher_shape is not None:
            if len(student_shape) != len(teacher_shape) or any(
                a is not None and b is not None and a != b
                for a, b in zip(student_shape[1:], teacher_shape[1:], strict=True)
            ):
                raise ValueError(
                    f"`student` and `teacher` must have the same output shape, got "
                    f"{student_shape} ('{student.name}') and {teacher_shape} "
                    f"('{teacher.name}')."
                )
            if student_shape[-1] == 1:
                raise ValueError(
                    f"The models have a single output unit (output shape {student_shape}): "
                    "soft targets need a softmax over at least 2 classes on the last axis."
                )
        _check_temperature(temperature, allow_tensor=False)
        if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real):
            raise TypeError(f"`alpha` must be a number in [0, 1], got {alpha!r}.")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"`alpha` must be in [0, 1], got {alpha}.")

        super().__init__(**kwargs)
        self.student = student
        # Not tracked (object.__setattr__ bypasses Keras' tracking): the teacher's weights
        # stay out of this model's weights and out of the optimizer, and its `trainable`
        # flag is left as the user set it.
        object.__setattr__(self, "_teacher", teacher)
        self.temperature = float(temperature)
        self.alpha = float(alpha)
        self.teacher_from_logits = _resolve_from_logits(
            teacher_from_logits, teacher, "teacher_from_logits"
        )
        self.student_from_logits = _resolve_from_logits(
            student_from_logits, student, "student_from_logits"
        )
        self.soft_loss_tracker = keras.metrics.Mean(name="soft_loss")
        self.built = True

    @property
    def teacher(self) -> keras.Model:
        """The frozen teacher (not tracked: not in ``weights`` nor saved with the model)."""
        return self._teacher

    def call(self, inputs, training=None):
        return self.student(inputs, training=training)

    def _soft_loss(self, x, y_pred, sample_weight):
        teacher_pred = ops.stop_gradient(self._teacher(x, training=False))
        per_sample = _soft_target_loss_per_sample(
            teacher_pred,
            y_pred,
            self.temperature,
            self.teacher_from_logits,
            self.student_from_logits,
        )
        if sample_weight is None:
            return ops.mean(per_sample)
        weights = ops.cast(ops.convert_to_tensor(sample_weight), per_sample.dtype)
        if len(weights.shape) == len(per_sample.shape) + 1 and weights.shape[-1] == 1:
            weights = ops.squeeze(weights, axis=-1)
        while len(weights.shape) < len(per_sample.shape):
            weights = ops.expand_dims(weights, axis=-1)
        # Keras' "sum_over_batch_size": the weighted sum over the number of samples
        return ops.mean(per_sample * weights)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """``alpha * hard + (1 - alpha) * soft`` with labels, ``soft`` without, plus the
        student's regularization losses. Called by Keras' ``train_step``/``test_step``."""
        if y_pred is None:
            y_pred = self(x, training=training)
        soft = self._soft_loss(x, y_pred, sample_weight)
        self.soft_loss_tracker.update_state(soft)
        soft = _scale_for_replicas(soft)  # the compiled loss is scaled the same way
        if y is None or self.alpha == 0.0:
            total = soft
        else:
            compiled_loss = getattr(self, "_compile_loss", None)
            if compiled_loss is None:
                raise ValueError(
                    f"Distiller got labels and alpha={self.alpha}, but no `loss` was given "
                    "to compile(): pass the hard-label loss, e.g. compile(optimizer, "
                    'loss="sparse_categorical_crossentropy"), or set alpha=0.'
                )
            hard = compiled_loss(y, y_pred, sample_weight)
            hard = ops.cast(hard, soft.dtype)
            total = self.alpha * hard + (1.0 - self.alpha) * soft
        for extra in self.losses:  # as Keras adds them (scaled for replicas too)
            total = total + ops.cast(self._aggregate_additional_loss(extra), total.dtype)
        return total

    def _results(self, skip_compiled: bool) -> dict[str, Any]:
        compiled = getattr(self, "_compile_metrics", None)
        results = {}
        for metric in self.metrics:
            if skip_compiled and metric is compiled:
                continue
            result = metric.result()
            if isinstance(result, dict):
                results.update(result)
            else:
                results[metric.name] = result
        return results

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        if y is None:  # unlabeled batch: nothing to compare the student's outputs with
            return self._results(skip_compiled=True)
        return super().compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    def get_metrics_result(self) -> dict[str, Any]:
        # compiled metrics are built by their first labeled batch; before that they have
        # no result (a fit or evaluate on unlabeled data)
        compiled = getattr(self, "_compile_metrics", None)
        return self._results(skip_compiled=compiled is not None and not compiled.built)

    def _compiled_state_unbuilt(self) -> bool:
        # Compiled metrics and the compiled loss create their variables on the first
        # labeled batch. A step function first traced on unlabeled data never built
        # them, and a later trace on labeled data may not create variables, so such a
        # function is made afresh.
        return any(
            c is not None and not c.built
            for c in (
                getattr(self, "_compile_metrics", None),
                getattr(self, "_compile_loss", None),
            )
        )

    def make_train_function(self, force=False):
        return super().make_train_function(force=force or self._compiled_state_unbuilt())

    def make_test_function(self, force=False):
        return super().make_test_function(force=force or self._compiled_state_unbuilt())

    def get_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "temperature": self.temperature,
            "alpha": self.alpha,
            "teacher_from_logits": self.teacher_from_logits,
            "student_from_logits": self.student_from_logits,
        }

    @classmethod
    def from_config(
        cls,
        config: dict[str, Any],
        student: keras.Model | None = None,
        teacher: keras.Model | None = None,
    ) -> Distiller:
        """A distiller with ``config``'s settings over the two models given here."""
        if student is None or teacher is None:
            raise ValueError(
                "A Distiller's config does not hold its models: pass them, "
                "Distiller.from_config(config, student=..., teacher=...)."
            )
        return cls(student, teacher, **config)
