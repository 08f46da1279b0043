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
from dataclasses import dataclass, field

import keras
import numpy as np

from keras_prune.activation_thresholds import activation_masks
from keras_prune.graph import DependencyGraph, LayerUse, filter_norms
from keras_prune.layers.prune_wrapper import PruneWrapper
from keras_prune.model_utils import LayerGraph, all_layers, check_model, functional_nodes

__all__ = [
    "shrink",
    "masked",
    "compact",
    "CompactReport",
    "channel_masks",
    "ChannelGate",
    "ConstantOffset",
    "fold_batchnorm",
]

L = keras.layers


class ChannelGate(keras.layers.Layer):
    """Multiplies the channel axis by a fixed 0/1 mask (a non-trainable weight)."""

    def __init__(self, mask, **kwargs):
        super().__init__(**kwargs)
        self._init_mask = np.asarray(mask, dtype="float32")

    def build(self, input_shape):
        self.mask = self.add_weight(
            name="mask",
            shape=self._init_mask.shape,
            initializer=keras.initializers.Constant(self._init_mask),
            trainable=False,
        )
        self.built = True

    capture: list | None = None  # ``compact`` sets a list to record eager inputs

    def call(self, x):
        if self.capture is not None:
            self.capture.append(keras.ops.convert_to_numpy(x))
        return x * keras.ops.cast(self.mask, x.dtype)

    def get_config(self):
        return {**super().get_config(), "mask": self._init_mask.tolist()}


@keras.saving.register_keras_serializable(package="keras_prune")
class ConstantOffset(keras.layers.Layer):
    """Adds a fixed tensor (one value per position and channel) to its input.

    ``compact`` puts it after a layer whose removed input channels carried constants that
    do not fold into a bias: a 3x3 "same" convolution sees a constant channel through its
    zero padding, so its contribution differs at the borders. The offset is a
    non-trainable weight, so it is saved with the model's weights.

    Args:
        shape: the offset's shape, the input's shape without the batch axis.
    """

    def __init__(self, shape, **kwargs):
        super().__init__(**kwargs)
        self.offset_shape = tuple(int(d) for d in shape)
        self.offset = self.add_weight(
            name="offset", shape=self.offset_shape, initializer="zeros", trainable=False
        )

    def call(self, x):
        return x + keras.ops.cast(self.offset, x.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "shape": list(self.offset_shape)}


def channel_masks(
    graph: DependencyGraph, keep: Mapping[str, Sequence] | None, what: str = "kp.shrink"
) -> dict[str, np.ndarray]:
    """Normalize ``keep`` ({group or producer name: kept indices or boolean mask}) to
    {group name: boolean mask}, with clear errors."""
    if keep is None:
        return {}
    if not isinstance(keep, Mapping):
        raise TypeError(
            f"{what}: `keep` must map a layer name to the channels to keep, got "
            f"{type(keep).__name__}."
        )
    out: dict[str, np.ndarray] = {}
    for name, value in keep.items():
        try:
            group = graph.group(name)
        except KeyError as e:
            raise ValueError(f"{what}: {e.args[0]}") from None
        if not group.prunable:
            raise ValueError(
                f"{what}: channels of '{name}' cannot be removed: {group.reason}. "
                f"`kp.graph.build(model)` lists the prunable groups."
            )
        arr = np.asarray(value)
        n = group.channels
        if arr.dtype == bool:
            if arr.shape != (n,):
                raise ValueError(
                    f"{what}: the mask for '{name}' has shape {arr.shape}; its "
                    f"group has {n} channels, so pass shape ({n},)."
                )
            mask = arr.copy()
        else:
            if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
                raise ValueError(
                    f"{what}: keep['{name}'] must be channel indices (ints) or a "
                    f"boolean mask, got {value!r}."
                )
            if arr.size and (arr.min() < 0 or arr.max() >= n):
                raise ValueError(
                    f"{what}: keep['{name}'] has index {arr.max()} outside the "
                    f"{n} channels of its group."
                )
            mask = np.zeros(n, dtype=bool)
            mask[arr.astype(np.int64)] = True
        if not mask.any():
            raise ValueError(f"{what}: keep['{name}'] keeps no channel; keep at least one.")
        if group.name in out and not np.array_equal(out[group.name], mask):
            raise ValueError(
                f"{what}: '{name}' and '{group.name}' are in one channel group "
                "but were given different channels."
            )
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


def _clone_layer_narrowed(use: LayerUse, alive: np.ndarray | None, offset: _Offset | None = None):
    """A new, unbuilt copy of ``use.layer`` from its config, narrowed to the ``alive``
    channels (units/filters, or a Reshape's target) and adjusted for ``offset``."""
    layer = use.layer
    config = layer.get_config()
    if offset is not None and offset.bias is not None:
        config["use_bias"] = True
    elif offset is not None:
        config["activation"] = "linear"  # the offset goes between the layer and it
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


# Not model_utils.LayerGraph/all_layers: rebuilding needs every call node in call order,
# with the tensors flowing between them, to re-wire the new layers.
def _replay(model: keras.Model, inputs: list, apply) -> list:
    """Walk ``model``'s call nodes in order on new tensors that start from ``inputs``,
    with ``apply(op, args, kwargs)`` giving each node's outputs; the new outputs."""
    _, nodes = functional_nodes(model)
    tensors = {id(t): x for t, x in zip(model.inputs, inputs, strict=True)}
    for node in nodes:
        op = node.operation
        if isinstance(op, L.InputLayer):
            continue
        args, kwargs = node.arguments.fill_in(tensors)
        outs = apply(op, args, kwargs)
        flat = outs if isinstance(outs, (list, tuple)) else [outs]
        for t, x in zip(node.outputs, flat, strict=True):
            tensors[id(t)] = x
    return [tensors[id(t)] for t in model.outputs]


def _rebuild(
    graph: DependencyGraph,
    alive: np.ndarray | None,
    gates: bool,
    offsets: dict[int, _Offset] | None = None,
):
    """A copy of the model; with ``alive`` channels cut out (shrink) or, with ``gates``,
    the same architecture with a ``ChannelGate`` before every channel-mixing layer.
    ``offsets`` (by layer id) adds what removed constant channels contributed."""
    uses = {id(u.layer): u for u in graph.layers}
    offsets = offsets or {}
    new_layers: dict[int, keras.layers.Layer] = {}
    gate_layers: dict[int, ChannelGate] = {}
    extras: dict[int, list[keras.layers.Layer]] = {}  # layers added after a layer

    def apply(op, args, kwargs):
        if isinstance(op, keras.Model):
            new = new_layers.get(id(op))
            if new is None:
                new = new_layers[id(op)] = nested(op, args)
            outs = new(*args, **kwargs)
        else:
            use = uses[id(op)]
            new = new_layers.get(id(op))
            if new is None:
                new = new_layers[id(op)] = _clone_layer_narrowed(
                    use, None if gates else alive, offsets.get(id(op))
                )
            if gates and use.kind == "producer" and use.in_slots is not None:
                gate = gate_layers.get(id(op))
                if gate is None:
                    mask = (
                        np.ones(len(use.in_slots))
                        if alive is None
                        else alive[use.in_slots].astype("float32")
                    )
                    gate = gate_layers[id(op)] = ChannelGate(mask, name=f"{op.name}_gate")
                args = (gate(args[0]), *args[1:])
            outs = new(*args, **kwargs)
            if id(op) in offsets and offsets[id(op)].map is not None:
                if id(op) not in extras:
                    extras[id(op)] = _offset_layers(op, offsets[id(op)], outs.shape)
                for extra in extras[id(op)]:
                    outs = extra(outs)
        return outs

    def nested(model, args):
        flat = [a for a in keras.tree.flatten(args) if isinstance(a, keras.KerasTensor)]
        inputs = [
            keras.Input(batch_shape=x.shape, dtype=x.dtype, name=t.name)
            for x, t in zip(flat, model.inputs, strict=True)
        ]
        outs = _replay(model, inputs, apply)
        return _as_model(model, inputs, outs, None if gates else new_layers, extras)

    inputs = [
        keras.Input(batch_shape=t.shape, dtype=t.dtype, name=t.name) for t in graph.model.inputs
    ]
    outputs = _replay(graph.model, inputs, apply)
    new_model = _as_model(graph.model, inputs, outputs, None if gates else new_layers, extras)
    for layer_id, new in new_layers.items():
        use = uses.get(layer_id)
        if use is None or not new.weights:
            continue
        weights = (
            _slice(use, alive)
            if alive is not None and not gates
            else {w.name: keras.ops.convert_to_numpy(w) for w in use.layer.weights}
        )
        off = offsets.get(layer_id)
        if off is not None:
            ko = alive[use.out_slots]
            if off.bias is not None:
                weights["bias"] = weights.get("bias", 0.0) + off.bias[ko].astype("float32")
            else:
                extras[layer_id][0].offset.assign(off.map[..., ko])
        for w in new.weights:
            w.assign(weights[w.name])
    # non-weight state (e.g. a Dropout's seed generator) starts fresh, as in clone_model
    return new_model, gate_layers


@dataclass
class _Offset:
    """What a layer's removed input channels added: per output channel (``bias``) or per
    position and output channel (``map``), with the layer's activation moved after it."""

    bias: np.ndarray | None = None
    map: np.ndarray | None = None
    activation: object = None


def _offset_layers(op, offset: _Offset, shape) -> list[keras.layers.Layer]:
    layers = [ConstantOffset(shape[1:], name=f"{op.name}_offset")]
    if offset.activation is not None:
        layers.append(L.Activation(offset.activation, name=f"{op.name}_activation"))
    return layers


def _as_model(
    original: keras.Model, inputs, outputs, new_layers, extras: dict | None = None
) -> keras.Model:
    """A Sequential stays Sequential when its layers map one to one (no gates)."""
    if isinstance(original, keras.Sequential) and new_layers is not None:
        layers = []
        for la in original.layers:
            layers += [new_layers[id(la)], *(extras or {}).get(id(la), [])]
        return keras.Sequential([inputs[0], *layers], name=original.name)
    return keras.Model(
        inputs if len(inputs) > 1 else inputs[0],
        outputs if len(outputs) > 1 else outputs[0],
        name=original.name,
    )


def _graph(model, graph, what):
    if graph is None:
        return DependencyGraph(model)
    if graph.model is not model:
        raise ValueError(
            f"{what}: `graph` was built for model '{graph.model.name}', not for '{model.name}'."
        )
    return graph


def shrink(
    model: keras.Model, keep: Mapping[str, Sequence], graph: DependencyGraph | None = None
) -> keras.Model:
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
    check_plain(model, "kp.shrink")
    graph = _graph(model, graph, "kp.shrink")
    alive = graph.element_keep(channel_masks(graph, keep))
    new_model, _ = _rebuild(graph, alive, gates=False)
    return new_model


def masked(
    model: keras.Model,
    keep: Mapping[str, Sequence] | None = None,
    graph: DependencyGraph | None = None,
) -> tuple[keras.Model, dict]:
    """The same model with a ``ChannelGate`` zeroing the removed channels where they are
    consumed: what ``shrink`` must equal. Returns the model and its gates (by layer
    name); assigning new masks to the gates changes the channels without rebuilding."""
    check_plain(model, "kp.surgery.masked")
    graph = _graph(model, graph, "kp.surgery.masked")
    alive = graph.element_keep(channel_masks(graph, keep, "kp.surgery.masked"))
    new_model, gates = _rebuild(graph, alive, gates=True)
    return new_model, {u.path: gates[id(u.layer)] for u in graph.layers if id(u.layer) in gates}


@dataclass
class CompactReport:
    """What ``compact`` removed and how it kept the outputs equal."""

    removed: dict[str, tuple[int, int]] = field(default_factory=dict)  # group: (gone, of)
    folded: list[str] = field(default_factory=list)  # biases that absorbed constants
    offsets: list[str] = field(default_factory=list)  # layers followed by ConstantOffset
    kept: dict[str, str] = field(default_factory=dict)  # group: why pruned channels stay
    macs: tuple[int, int] = (0, 0)  # before, after
    params: tuple[int, int] = (0, 0)
    max_error: float = 0.0  # largest output difference on probe inputs

    @property
    def channels_removed(self) -> int:
        return sum(gone for gone, _ in self.removed.values())

    def __str__(self) -> str:
        m0, m1 = self.macs
        p0, p1 = self.params
        lines = [
            f"removed {self.channels_removed} pruned channels in {len(self.removed)} "
            f"groups: MACs {m0:,} -> {m1:,} ({m1 / max(m0, 1):.1%}), params {p0:,} -> "
            f"{p1:,}; max output difference {self.max_error:.2e}"
        ]
        lines += [f"  {g}: {gone} of {n} channels" for g, (gone, n) in self.removed.items()]
        if self.folded:
            lines.append(
                "  constants of removed channels folded into the biases of: "
                + ", ".join(self.folded)
            )
        if self.offsets:
            lines.append(
                "  constants of removed channels added as ConstantOffset after: "
                + ", ".join(self.offsets)
            )
        lines += [f"  kept pruned channels of {g}: {why}" for g, why in self.kept.items()]
        return "\n".join(lines)


def compact(
    model: keras.Model, graph: DependencyGraph | None = None, probe_batch: int = 8, seed: int = 0
) -> tuple[keras.Model, CompactReport]:
    """Physically remove the channels that pruning left without weights.

    A channel is removable when every filter producing it is zero (what
    ``granularity=Channels()`` leaves after ``kp.strip``; a Channels-pruned filter loses
    its bias too). Its output still need not be zero: a BatchNormalization after it
    shifts it to a constant. ``compact`` therefore measures what the removed channels
    added at each consumer and adds it back: into the consumer's bias where it is the
    same at every position, else as a ``ConstantOffset`` (a "same"-padded 3x3 conv sees
    the constant through its zero padding, so the borders differ). The result equals
    the input model, which is checked on random probe inputs.

    Channels whose consumers are called more than once (shared layers) stay, since one
    offset cannot serve calls on different inputs; a group whose channels are all pruned
    keeps one. Top-k ``ActivationMask`` layers may be present; channels around them stay.

    Returns ``(new model, CompactReport)``; the input is untouched.

    Example: ``small, report = kp.surgery.compact(kp.strip(channel_pruned)); print(report)``
    """
    check_plain(model, "kp.surgery.compact", allow_masks=True)
    graph = _graph(model, graph, "kp.surgery.compact")
    report = CompactReport()
    owner = {}
    for g in graph.prunable_groups:
        for elems in g.elements:
            owner[int(graph.root[elems[0]])] = g.name
    keep: dict[str, np.ndarray] = {}
    for g, norms in zip(graph.prunable_groups, filter_norms(graph), strict=True):
        dead = norms == 0
        if dead.all():
            dead[0] = False
            report.kept[g.name] = "every channel is pruned; one stays so the layers exist"
        if dead.any():
            keep[g.name] = ~dead
    while True:  # a shared consumer would need one offset per call
        alive = graph.element_keep(keep)
        shared = [
            u
            for u in graph.layers
            if u.kind == "producer"
            and u.in_slots is not None
            and u.calls > 1
            and not alive[u.in_slots].all()
        ]
        if not shared:
            break
        for u in shared:
            for e in np.unique(u.in_slots[~alive[u.in_slots]]):
                name = owner[int(graph.root[e])]
                if keep.pop(name, None) is not None:
                    report.kept[name] = (
                        f"its consumer '{u.path}' is called {u.calls} times (a shared layer)"
                    )
    offsets = _constant_offsets(graph, alive, report)
    small, _ = _rebuild(graph, alive, gates=False, offsets=offsets)
    for name, mask in keep.items():
        report.removed[name] = (int((~mask).sum()), len(mask))
    report.macs = (sum(graph.macs().values()), sum(DependencyGraph(small).macs().values()))
    report.params = (model.count_params(), small.count_params())
    report.max_error, scale = _max_difference(model, small, probe_batch, seed)
    if report.max_error > 1e-4 * max(1.0, scale):
        raise RuntimeError(
            f"kp.surgery.compact: the compacted '{model.name}' differs from "
            f"the input by {report.max_error:.3g} on probe inputs; this is a "
            "bug, please report it with the model."
        )
    return small, report


def _constant_offsets(
    graph: DependencyGraph, alive: np.ndarray, report: CompactReport
) -> dict[int, _Offset]:
    """For each layer consuming removed channels, what those channels added to it."""
    consumers = [
        u
        for u in graph.layers
        if u.kind == "producer" and u.in_slots is not None and not alive[u.in_slots].all()
    ]
    if not consumers:
        return {}
    gated, gates = _rebuild(graph, alive, gates=True)
    for u in consumers:
        gates[id(u.layer)].capture = []
    probe = [np.zeros((1, *t.shape[1:]), dtype=t.dtype) for t in graph.model.inputs]
    gated(probe if len(probe) > 1 else probe[0], training=False)
    offsets = {}
    for u in consumers:
        x = gates[id(u.layer)].capture[0]
        gates[id(u.layer)].capture = None
        removed = x * (~alive[u.in_slots]).astype(x.dtype)
        delta = keras.ops.convert_to_numpy(_linear_part(u.layer, removed.shape)(removed))[0]
        flat = delta.reshape(-1, delta.shape[-1]).astype(np.float64)
        if not np.any(flat):
            continue
        mean = flat.mean(axis=0)
        if np.abs(flat - mean).max() <= 1e-6 * (1.0 + np.abs(flat).max()):
            offsets[id(u.layer)] = _Offset(bias=mean)
            report.folded.append(u.path)
        else:
            act = u.layer.get_config().get("activation")
            linear = act is None or keras.activations.get(act) is keras.activations.linear
            offsets[id(u.layer)] = _Offset(map=delta, activation=None if linear else act)
            report.offsets.append(u.path)
    return offsets


# Layers whose kernel's last axis is the output channel (DepthwiseConv2D: channel x mult).
_FOLDS_BN = (L.Dense, L.Conv1D, L.Conv2D, L.Conv3D, L.DepthwiseConv2D)


def _bn_pairs(model: keras.Model) -> dict[int, keras.layers.Layer]:
    """{id(BatchNorm): the layer it folds into} for every foldable pair: a Dense or
    convolution without activation, called once, whose only consumer is a BatchNorm of
    the last axis, called once."""
    lg = LayerGraph(model)
    pairs = {}
    for bn in lg.layers:
        if not isinstance(bn, L.BatchNormalization) or lg.calls[id(bn)] != 1:
            continue
        producers = lg.producers(bn)
        if len(producers) != 1 or lg.calls.get(id(producers[0])) != 1:
            continue
        p = producers[0]
        if (
            isinstance(p, _FOLDS_BN)
            and lg.consumers(p) == [bn]
            and p not in lg.outputs
            and keras.activations.serialize(p.activation) in ("linear", None)
            and bn.axis in (-1, len(bn.input.shape) - 1)
        ):
            pairs[id(bn)] = p
    return pairs


def _folded_weights(layer, bn) -> tuple[np.ndarray, np.ndarray]:
    """The kernel and bias of ``bn(layer(x))`` as one layer (in float64, then cast)."""
    kernel = keras.ops.convert_to_numpy(layer.kernel).astype(np.float64)
    bias = keras.ops.convert_to_numpy(layer.bias).astype(np.float64) if layer.use_bias else 0.0
    mean, var = (
        keras.ops.convert_to_numpy(w).astype(np.float64)
        for w in (bn.moving_mean, bn.moving_variance)
    )
    gamma = keras.ops.convert_to_numpy(bn.gamma).astype(np.float64) if bn.scale else 1.0
    beta = keras.ops.convert_to_numpy(bn.beta).astype(np.float64) if bn.center else 0.0
    scale = gamma / np.sqrt(var + bn.epsilon)
    folded = kernel * scale.reshape(
        kernel.shape[-2:] if isinstance(layer, L.DepthwiseConv2D) else kernel.shape[-1:]
    )
    dtype = keras.ops.convert_to_numpy(layer.kernel).dtype
    return folded.astype(dtype), ((bias - mean) * scale + beta).astype(dtype)


def fold_batchnorm(model: keras.Model) -> tuple[keras.Model, list[str]]:
    """A copy of ``model`` with each inference-mode BatchNormalization merged into the
    Dense or convolution before it (kernel scaled per output channel, bias shifted).

    TensorFlow runs a BatchNorm in a SavedModel as separate element-wise ops over the
    whole activation map, and cannot fold it while the weights are variables; merged,
    the convolution's bias add is all that is left. A BatchNorm stays when the layer
    before it has an activation, feeds anything else, is shared, or is not a Dense or
    convolution. Outputs match the input model at inference to float tolerance.

    Returns ``(new model, names of the BatchNorms folded)``; the input is untouched.
    A model with nested models is returned as it is (nothing folded).

    Example: ``serving, folded = kp.surgery.fold_batchnorm(model)``
    """
    check_plain(model, "kp.surgery.fold_batchnorm", allow_masks=True)
    if any(isinstance(la, keras.Model) for la in model.layers):
        return model, []
    pairs = _bn_pairs(model)
    if not pairs:
        return model, []
    by_id = {id(la): la for la in model.layers}
    into = {id(p): by_id[bn_id] for bn_id, p in pairs.items()}
    new_layers: dict[int, keras.layers.Layer] = {}
    for la in model.layers:
        if id(la) in pairs or isinstance(la, L.InputLayer):
            continue
        config = la.get_config()
        if id(la) in into:
            config["use_bias"] = True
        new_layers[id(la)] = type(la).from_config(config)
    inputs = [keras.Input(batch_shape=t.shape, dtype=t.dtype, name=t.name) for t in model.inputs]
    if isinstance(model, keras.Sequential):
        folded_model = keras.Sequential(
            [inputs[0], *(new_layers[id(la)] for la in model.layers if id(la) in new_layers)],
            name=model.name,
        )
    else:
        outputs = _replay(
            model,
            inputs,
            lambda op, args, kwargs: (
                args[0] if id(op) in pairs else new_layers[id(op)](*args, **kwargs)
            ),
        )
        folded_model = _as_model(model, inputs, outputs, None)
    for la in model.layers:
        new = new_layers.get(id(la))
        if new is None:
            continue
        weights = {w.name: keras.ops.convert_to_numpy(w) for w in la.weights}
        if id(la) in into:
            weights["kernel"], weights["bias"] = _folded_weights(la, into[id(la)])
        for w in new.weights:
            w.assign(weights[w.name])
    return folded_model, [la.name for la in model.layers if id(la) in pairs]


def _linear_part(layer, input_shape) -> keras.layers.Layer:
    """A copy of a producer without bias and activation: the linear map of its input."""
    config = {
        **layer.get_config(),
        "use_bias": False,
        "activation": "linear",
        "name": f"{layer.name}_linear",
    }
    linear = type(layer).from_config(config)
    linear.build(input_shape)
    weights = {w.name: w for w in layer.weights}
    for w in linear.weights:
        w.assign(weights[w.name])
    return linear


def _max_difference(a: keras.Model, b: keras.Model, batch: int, seed: int) -> tuple[float, float]:
    """The largest output difference on seeded normal inputs, and the largest output."""
    rng = np.random.default_rng(seed)
    x = [
        rng.normal(size=(batch, *t.shape[1:])).astype(t.dtype)
        if np.issubdtype(np.dtype(t.dtype), np.floating)
        else np.zeros((batch, *t.shape[1:]), dtype=t.dtype)
        for t in a.inputs
    ]
    x = x if len(x) > 1 else x[0]
    ya = [keras.ops.convert_to_numpy(y) for y in keras.tree.flatten(a(x, training=False))]
    yb = [keras.ops.convert_to_numpy(y) for y in keras.tree.flatten(b(x, training=False))]
    diff = max(float(np.max(np.abs(p - q), initial=0.0)) for p, q in zip(ya, yb, strict=True))
    return diff, max(float(np.max(np.abs(p), initial=0.0)) for p in ya)


def check_plain(model, what: str, allow_masks: bool = False) -> None:
    """Raise unless ``model`` passes ``check_model`` and has no PruneWrapper (nor, unless
    ``allow_masks``, ActivationMask) layers left: the tools here need a stripped model."""
    check_model(model, what)
    wrapped = [la.name for la in all_layers(model) if isinstance(la, PruneWrapper)]
    if wrapped or (activation_masks(model) and not allow_masks):
        names = ", ".join(wrapped) or "activation masks"
        raise ValueError(
            f"{what}: model '{model.name}' still has pruning layers ({names}); "
            "call kp.strip(model) first."
        )
