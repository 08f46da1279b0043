"""Physically remove channels along the dependency graph.

```python
g = kp.graph.build(model)
small = kp.shrink(model, {"conv1": [0, 2, 3, 7]})      # kept channels of conv1's group
small = kp.shrink(model, {"conv1": keep_mask}, graph=g) # or a boolean mask per group
```

``shrink`` returns a new model: fewer filters in every producer of a group, the matching
BatchNorm statistics, depthwise filters and PReLU slopes, and the input slices of every
consumer (strided units of a Dense after Flatten, offsets after Concatenate). Its outputs
equal those of the original model with the removed channels zeroed where they are
consumed (``masked``), to float tolerance.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import keras
import numpy as np

from keras_prune._graph import functional_nodes
from keras_prune.graph import DependencyGraph, LayerUse

__all__ = ["shrink", "masked", "channel_masks", "ChannelGate"]

L = keras.layers


class ChannelGate(keras.layers.Layer):
    """Multiplies the channel axis by a fixed 0/1 mask (a non-trainable weight)."""

    def __init__(self, mask, **kwargs):
        super().__init__(**kwargs)
        self._init_mask = np.asarray(mask, dtype="float32")

    def build(self, input_shape):
        self.mask = self.add_weight(name="mask", shape=self._init_mask.shape,
                                    initializer=keras.initializers.Constant(self._init_mask),
                                    trainable=False)
        self.built = True

    def call(self, x):
        return x * keras.ops.cast(self.mask, x.dtype)

    def get_config(self):
        return {**super().get_config(), "mask": self._init_mask.tolist()}


def channel_masks(graph: DependencyGraph, keep: Mapping[str, Sequence] | None,
                  what: str = "kp.shrink") -> dict[str, np.ndarray]:
    """Normalize ``keep`` ({group or producer name: kept indices or boolean mask}) to
    {group name: boolean mask}, with clear errors."""
    if keep is None:
        return {}
    if not isinstance(keep, Mapping):
        raise TypeError(f"{what}: `keep` must map a layer name to the channels to keep, got "
                        f"{type(keep).__name__}.")
    out: dict[str, np.ndarray] = {}
    for name, value in keep.items():
        try:
            group = graph.group(name)
        except KeyError as e:
            raise ValueError(f"{what}: {e.args[0]}") from None
        if not group.prunable:
            raise ValueError(f"{what}: channels of '{name}' cannot be removed: {group.reason}. "
                             f"`kp.graph.build(model)` lists the prunable groups.")
        arr = np.asarray(value)
        n = group.channels
        if arr.dtype == bool:
            if arr.shape != (n,):
                raise ValueError(f"{what}: the mask for '{name}' has shape {arr.shape}; its "
                                 f"group has {n} channels, so pass shape ({n},).")
            mask = arr.copy()
        else:
            if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
                raise ValueError(f"{what}: keep['{name}'] must be channel indices (ints) or a "
                                 f"boolean mask, got {value!r}.")
            if arr.size and (arr.min() < 0 or arr.max() >= n):
                raise ValueError(f"{what}: keep['{name}'] has index {arr.max()} outside the "
                                 f"{n} channels of its group.")
            mask = np.zeros(n, dtype=bool)
            mask[arr.astype(np.int64)] = True
        if not mask.any():
            raise ValueError(f"{what}: keep['{name}'] keeps no channel; keep at least one.")
        if group.name in out and not np.array_equal(out[group.name], mask):
            raise ValueError(f"{what}: '{name}' and '{group.name}' are in one channel group "
                             "but were given different channels.")
        out[group.name] = mask
    return out


# ---------------------------------------------------------------------- weight slicing
def _slice(use: LayerUse, alive: np.ndarray) -> dict[str, np.ndarray]:
    """The layer's weights (by name) with removed input/output channels cut out."""
    layer = use.layer
    weights = {w.name: keras.ops.convert_to_numpy(w) for w in layer.weights}
    if use.kind in ("blocked", "merge", "concat", "flatten", "reshape") or not weights:
        return weights
    ki = alive[use.in_slots]
    ko = alive[use.out_slots]
    out = {}
    for name, w in weights.items():
        if use.kind == "passthrough":
            w = w[..., ki] if w.ndim and w.shape[-1] == len(ki) else w
        elif name == "bias":
            w = w[ko]
        elif use.kind == "depthwise" or name == "depthwise_kernel":
            w = w[..., ki, :]
        elif name == "pointwise_kernel":
            w = w[..., np.repeat(ki, layer.depth_multiplier), :][..., ko]
        elif isinstance(layer, (L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose)):
            w = w[..., ko, :][..., ki]
        else:  # Dense, Conv: (..., in, out)
            w = w[..., ki, :][..., ko]
        out[name] = w
    return out


def _clone(use: LayerUse, alive: np.ndarray | None):
    layer = use.layer
    config = layer.get_config()
    if alive is not None and use.kind == "producer":
        kept = int(alive[use.out_slots].sum())
        config["units" if "units" in config else "filters"] = kept
    elif alive is not None and use.kind == "reshape":
        target = list(config["target_shape"])
        if len(target) == 1 and target[0] != -1:
            target[0] = int(alive[use.out_slots].sum())
        elif len(target) > 1 and target[-1] != -1:
            target[-1] = int(alive[use.out_slots].sum())
        config["target_shape"] = tuple(target)
    return type(layer).from_config(config)


def _rebuild(graph: DependencyGraph, alive: np.ndarray | None, gates: bool):
    """A copy of the model; with ``alive`` channels cut out (shrink) or, with ``gates``,
    the same architecture with a ``ChannelGate`` before every channel-mixing layer."""
    uses = {id(u.layer): u for u in graph.layers}
    new_layers: dict[int, keras.layers.Layer] = {}
    gate_layers: dict[int, ChannelGate] = {}

    def call(model, inputs):
        _, nodes = functional_nodes(model)
        tensors = {id(t): x for t, x in zip(model.inputs, inputs, strict=True)}
        for node in nodes:
            op = node.operation
            if isinstance(op, L.InputLayer):
                continue
            args, kwargs = node.arguments.fill_in(tensors)
            if isinstance(op, keras.Model):
                new = new_layers.get(id(op))
                if new is None:
                    new = new_layers[id(op)] = nested(op, args)
                outs = new(*args, **kwargs)
            else:
                use = uses[id(op)]
                new = new_layers.get(id(op))
                if new is None:
                    new = new_layers[id(op)] = _clone(use, None if gates else alive)
                if gates and use.kind == "producer" and use.in_slots is not None:
                    gate = gate_layers.get(id(op))
                    if gate is None:
                        mask = np.ones(len(use.in_slots)) if alive is None \
                            else alive[use.in_slots].astype("float32")
                        gate = gate_layers[id(op)] = ChannelGate(mask, name=f"{op.name}_gate")
                    args = (gate(args[0]), *args[1:])
                outs = new(*args, **kwargs)
            flat = outs if isinstance(outs, (list, tuple)) else [outs]
            for t, x in zip(node.outputs, flat, strict=True):
                tensors[id(t)] = x
        return [tensors[id(t)] for t in model.outputs]

    def nested(model, args):
        flat = [a for a in keras.tree.flatten(args) if isinstance(a, keras.KerasTensor)]
        inputs = [keras.Input(batch_shape=x.shape, dtype=x.dtype, name=t.name)
                  for x, t in zip(flat, model.inputs, strict=True)]
        outs = call(model, inputs)
        return _as_model(model, inputs, outs, None if gates else new_layers)

    inputs = [keras.Input(batch_shape=t.shape, dtype=t.dtype, name=t.name)
              for t in graph.model.inputs]
    outputs = call(graph.model, inputs)
    new_model = _as_model(graph.model, inputs, outputs, None if gates else new_layers)
    for layer_id, new in new_layers.items():
        use = uses.get(layer_id)
        if use is None or not new.weights:
            continue
        weights = _slice(use, alive) if alive is not None and not gates else \
            {w.name: keras.ops.convert_to_numpy(w) for w in use.layer.weights}
        for w in new.weights:
            w.assign(weights[w.name])
    # non-weight state (e.g. a Dropout's seed generator) starts fresh, as in clone_model
    return new_model, gate_layers


def _as_model(original: keras.Model, inputs, outputs, new_layers) -> keras.Model:
    """A Sequential stays Sequential when its layers map one to one (no gates)."""
    if isinstance(original, keras.Sequential) and new_layers is not None:
        return keras.Sequential([inputs[0], *(new_layers[id(la)] for la in original.layers)],
                                name=original.name)
    return keras.Model(inputs if len(inputs) > 1 else inputs[0],
                       outputs if len(outputs) > 1 else outputs[0], name=original.name)


def _graph(model, graph, what):
    if graph is None:
        return DependencyGraph(model)
    if graph.model is not model:
        raise ValueError(f"{what}: `graph` was built for model '{graph.model.name}', not for "
                         f"'{model.name}'.")
    return graph


def shrink(model: keras.Model, keep: Mapping[str, Sequence],
           graph: DependencyGraph | None = None) -> keras.Model:
    """A new model with only the kept channels of each group (the input is untouched).

    Args:
        model: a built Sequential or functional model (nested models included), without
            pruning wrappers (``kp.strip`` first).
        keep: {layer name: channels to keep}. A name is any producer of a channel group
            (``kp.graph.build(model)`` lists them; nested layers as "outer/inner"); the
            value is a list of channel indices or a boolean mask over the group's
            channels. Groups not named keep all their channels.
        graph: the model's ``kp.graph.build`` result, if you have it already.

    Example: ``small = kp.shrink(model, {"conv1": [0, 1, 5]})``.
    """
    _check_plain(model, "kp.shrink")
    graph = _graph(model, graph, "kp.shrink")
    alive = graph.element_keep(channel_masks(graph, keep))
    new_model, _ = _rebuild(graph, alive, gates=False)
    return new_model


def masked(model: keras.Model, keep: Mapping[str, Sequence] | None = None,
           graph: DependencyGraph | None = None) -> tuple[keras.Model, dict]:
    """The same model with a ``ChannelGate`` zeroing the removed channels where they are
    consumed: what ``shrink`` must equal. Returns the model and its gates (by layer
    name); assigning new masks to the gates changes the channels without rebuilding."""
    _check_plain(model, "kp.surgery.masked")
    graph = _graph(model, graph, "kp.surgery.masked")
    alive = graph.element_keep(channel_masks(graph, keep, "kp.surgery.masked"))
    new_model, gates = _rebuild(graph, alive, gates=True)
    return new_model, {u.path: gates[id(u.layer)] for u in graph.layers if id(u.layer) in gates}


def _check_plain(model, what) -> None:
    from keras_prune.integral import activation_masks
    from keras_prune.layers.prune_wrapper import PruneWrapper
    from keras_prune.pruning import _all_layers, _check_model

    _check_model(model, what)
    wrapped = [la.name for la in _all_layers(model) if isinstance(la, PruneWrapper)]
    if wrapped or activation_masks(model):
        names = ", ".join(wrapped) or "activation masks"
        raise ValueError(f"{what}: model '{model.name}' still has pruning layers ({names}); "
                         "call kp.strip(model) first.")
