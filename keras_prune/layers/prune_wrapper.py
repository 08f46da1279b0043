"""PruneWrapper: a Keras layer with weight masks that a schedule updates during ``fit``."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from keras_prune import granularity as gr
from keras_prune import schedules as sch
from keras_prune.layers.prunable import PRUNABLE_CLASSES, KernelSpec, kernel_specs

__all__ = ["PruneWrapper"]


@keras.saving.register_keras_serializable(package="keras_prune")
class PruneWrapper(keras.layers.Wrapper):
    """Wraps a Dense/Conv layer and multiplies its kernels by masks in every forward pass.

    The wrapped layer's own ``call`` runs with ``kernel * mask`` swapped in, so a pruned
    weight contributes exactly zero and gets a zero gradient. At the steps its schedule
    names, the wrapper recomputes the masks inside the train step (so it is exact with
    any ``steps_per_execution``) and zeroes the pruned weights in the kernel itself.

    The step comes from the optimizer: ``kp.callbacks.PruningScheduler`` connects it
    when training starts. ``pruning_step`` counts the training steps this layer has
    seen; it is saved with the model, so training resumes where it stopped.

    Args:
        layer: a Dense, Conv1D, Conv2D, DepthwiseConv2D, SeparableConv2D or
            Conv2DTranspose layer (or a subclass).
        schedule: a ``kp.schedules`` schedule or any ``step -> (should_prune, sparsity)``.
        granularity: a ``kp.granularity`` object or name (default ``"unstructured"``).

    Usually created by ``kp.prune``; direct use:

    ```python
    layer = kp.layers.PruneWrapper(keras.layers.Dense(10),
                                   schedule=kp.schedules.ConstantSparsity(0.5, 0),
                                   granularity=kp.granularity.SIMDGroups(4))
    ```
    """

    def __init__(self, layer, schedule=None, granularity="unstructured", **kwargs):
        if isinstance(layer, PruneWrapper):
            raise ValueError(f"Layer '{layer.name}' is already wrapped in a PruneWrapper.")
        if not isinstance(layer, keras.layers.Layer) or not kernel_specs(layer):
            names = ", ".join(c.__name__ for c in PRUNABLE_CLASSES)
            raise ValueError(
                f"PruneWrapper cannot prune {type(layer).__name__} "
                f"'{getattr(layer, 'name', layer)}': prunable layers are {names}."
            )
        kwargs.setdefault("name", layer.name)
        super().__init__(layer, **kwargs)
        if schedule is None:
            raise ValueError(f"PruneWrapper '{layer.name}': a `schedule` is required.")
        self.schedule = sch.get(schedule)
        self.granularity = gr.get(granularity)
        self._specs: tuple[KernelSpec, ...] = tuple(
            s
            for s in kernel_specs(layer)
            if s.output or not isinstance(self.granularity, gr.Channels)
        )
        self._iterations = None  # the optimizer's step counter, set by PruningScheduler

    # ------------------------------------------------------------------ build
    def build(self, input_shape=None):
        super().build(input_shape)
        masks = []
        for spec in self._specs:
            kernel = self._kernel(spec)
            masks.append(self._state(f"{spec.attr}_mask", kernel.shape, kernel.dtype, "ones"))
        self.masks = masks
        self.bias_mask = None
        if self.granularity.masks_bias and getattr(self.layer, "bias", None) is not None:
            bias = self.layer.bias
            self.bias_mask = self._state("bias_mask", bias.shape, bias.dtype, "ones")
        self.pruning_step = self._state("pruning_step", (), "int64", "zeros")
        self.step_offset = self._state("step_offset", (), "int64", "zeros")
        self.built = True

    def _state(self, name, shape, dtype, initializer):
        # Masks and step counters are written inside the train step's conditional mask
        # update. Under tf.distribute a mirrored variable can't be written there (that
        # needs a merge_call, which control flow forbids), so each replica keeps its own
        # copy; all replicas compute the same values from the same mirrored weights.
        with keras.name_scope(self.name, caller=self):
            return keras.Variable(
                initializer,
                shape=shape,
                dtype=dtype,
                trainable=False,
                name=name,
                synchronization="on_read",
                aggregation="only_first_replica",
            )

    def _kernel(self, spec: KernelSpec):
        v = getattr(self.layer, spec.attr)
        if not isinstance(v, keras.Variable):
            raise ValueError(
                f"PruneWrapper '{self.name}': `{spec.attr}` of {type(self.layer).__name__} is "
                f"not a plain variable (got {type(v).__name__}); quantized or LoRA layers "
                "cannot be pruned. Prune before quantizing or enabling LoRA."
            )
        return v

    @property
    def kernels(self) -> list:
        """The pruned kernel variables, in the order of ``masks``."""
        return [self._kernel(s) for s in self._specs]

    @property
    def layouts(self) -> list:
        return [s.layout for s in self._specs]

    # ------------------------------------------------------------------ step
    def _attach_step(self, iterations) -> None:
        """Called by PruningScheduler: the optimizer variable counting train steps."""
        # Not tracked as this layer's state: the variable belongs to the optimizer.
        object.__setattr__(self, "_iterations", iterations)

    def current_step(self):
        """The step the schedule sees in this train step (0 for the first batch)."""
        if self._iterations is None:
            raise RuntimeError(
                f"PruneWrapper '{self.name}' is being trained without a step counter. Pass "
                "kp.callbacks.PruningScheduler() to model.fit(callbacks=[...]); in a custom "
                "training loop, call scheduler.set_model(model), scheduler.on_train_begin() "
                "and scheduler.on_train_batch_begin(0) before the first step."
            )
        return tf.cast(self._iterations, tf.int64) + self.step_offset

    def update_masks(self, sparsity):
        """Recompute every mask at ``sparsity`` and zero the pruned weights."""
        for spec, mask in zip(self._specs, self.masks, strict=True):
            kernel = self._kernel(spec)
            new = self.granularity.compute_mask(kernel, mask, sparsity, spec.layout)
            mask.assign(new)
            self._zero(kernel, new)
        if self.bias_mask is not None:
            out = self._specs[-1]
            rows = out.layout.to_rows(self.masks[-1])
            keep = tf.cast(tf.reduce_max(rows, axis=1) > 0, self.bias_mask.dtype)
            self.bias_mask.assign(keep)
            self._zero(self.layer.bias, keep)

    @staticmethod
    def _zero(variable, mask) -> None:
        # A mirrored weight can't be written from inside the update's control flow; under
        # a distribution strategy PruningScheduler zeroes the weights after each epoch
        # (see zero_pruned_weights). The forward pass uses kernel * mask either way.
        if not tf.distribute.has_strategy():
            variable.assign(variable * tf.cast(mask, variable.dtype))

    def zero_pruned_weights(self) -> None:
        """Write exact zeros into the wrapped layer's weights wherever the masks are 0.

        Optimizers with momentum or weight decay move a masked weight's stored value
        between mask updates (its effective value stays 0); this resets it.
        """
        for v, masked in self.effective_weights():
            v.assign(masked)

    def _maybe_update_masks(self):
        step = self.current_step()
        self.pruning_step.assign(step + 1)
        should_prune, sparsity = self.schedule(step)

        def update():
            self.update_masks(sparsity)
            return tf.constant(True)

        return tf.cond(
            tf.convert_to_tensor(should_prune, tf.bool), update, lambda: tf.constant(False)
        )

    # ------------------------------------------------------------------ call
    def effective_weights(self) -> list:
        """(variable, masked value) for every masked variable."""
        pairs = [
            (self._kernel(s), self._kernel(s) * m)
            for s, m in zip(self._specs, self.masks, strict=True)
        ]
        if self.bias_mask is not None:
            pairs.append((self.layer.bias, self.layer.bias * self.bias_mask))
        return pairs

    def masked_kernels(self) -> list[np.ndarray]:
        """The pruned kernels with their masks applied, as NumPy arrays (order of ``masks``)."""
        return [
            keras.ops.convert_to_numpy(k * m) for k, m in zip(self.kernels, self.masks, strict=True)
        ]

    def call(self, inputs, training=None, **kwargs):
        if training:
            self._maybe_update_masks()
        mapping = [
            (v, keras.ops.convert_to_tensor(masked)) for v, masked in self.effective_weights()
        ]
        with keras.StatelessScope(state_mapping=mapping):
            if training is not None:
                kwargs["training"] = training
            return self.layer(inputs, **kwargs)

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)

    # ------------------------------------------------------------------ config
    def get_config(self):
        config = super().get_config()
        config["schedule"] = sch.serialize(self.schedule)
        config["granularity"] = keras.saving.serialize_keras_object(self.granularity)
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        layer = keras.saving.deserialize_keras_object(
            config.pop("layer"), custom_objects=custom_objects
        )
        schedule = sch.deserialize(config.pop("schedule"), custom_objects=custom_objects)
        granularity = gr.get(config.pop("granularity"))
        return cls(layer, schedule=schedule, granularity=granularity, **config)

    # ------------------------------------------------------------------ inspection
    def stripped_weights(self) -> list[np.ndarray]:
        """The wrapped layer's weights with the masks applied (what ``kp.strip`` keeps)."""
        masked = {id(v): m for v, m in self.effective_weights()}
        return [keras.ops.convert_to_numpy(masked.get(id(w), w)) for w in self.layer.weights]
