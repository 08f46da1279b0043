"""Channel dependency graph: which channels of which layers must be removed together.

Every output channel a layer creates (a conv filter, a dense unit) is one *element*.
Layers that pass channels through (BatchNormalization, activations, pooling, padding,
depthwise convs) carry their input's elements; element-wise merges (Add, Multiply, ...)
tie the elements of their inputs position by position; Concatenate lays its inputs'
elements side by side; Flatten/Reshape before a Dense repeat each channel's element at
its strided units. Tied elements form one *channel*: removing it removes a filter in
every producer, the matching BatchNorm statistics, depthwise filters and the input
slices of every consumer. Channels with the same producers form a ``ChannelGroup``:
the unit LeGR learns one transform for and the safeguard keeps a minimum of.

Layers the graph does not understand make the channels around them unprunable (and
say why); the graph never guesses.

```python
g = kp.graph.build(model)
print(g)                                   # groups, sizes, prunable or why not
g.group("conv1").channels                  # number of removable channels
```
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import keras
import numpy as np

from keras_prune.layers.activation_mask import ActivationThreshold
from keras_prune.model_utils import check_model, functional_nodes

__all__ = ["build", "DependencyGraph", "ChannelGroup", "LayerUse", "MacTerm", "filter_norms"]

L = keras.layers

# Layers whose output channel c depends on input channel c only.
_PASSTHROUGH = tuple(
    getattr(L, n)
    for n in (
        "ReLU",
        "LeakyReLU",
        "ELU",
        "Dropout",
        "SpatialDropout1D",
        "SpatialDropout2D",
        "SpatialDropout3D",
        "GaussianNoise",
        "GaussianDropout",
        "AlphaDropout",
        "MaxPooling1D",
        "MaxPooling2D",
        "MaxPooling3D",
        "AveragePooling1D",
        "AveragePooling2D",
        "AveragePooling3D",
        "GlobalAveragePooling1D",
        "GlobalAveragePooling2D",
        "GlobalAveragePooling3D",
        "GlobalMaxPooling1D",
        "GlobalMaxPooling2D",
        "GlobalMaxPooling3D",
        "ZeroPadding1D",
        "ZeroPadding2D",
        "ZeroPadding3D",
        "Cropping1D",
        "Cropping2D",
        "Cropping3D",
        "UpSampling1D",
        "UpSampling2D",
        "UpSampling3D",
        "Identity",
        "ActivityRegularization",
        "BatchNormalization",
        "PReLU",
        "Activation",
    )
    if hasattr(L, n)
) + (ActivationThreshold,)  # element-wise with one scalar threshold
_MERGE = (L.Add, L.Subtract, L.Multiply, L.Average, L.Maximum, L.Minimum)
_DEPTHWISE = tuple(c for c in (getattr(L, "DepthwiseConv1D", None), L.DepthwiseConv2D) if c)
_SEPARABLE = tuple(c for c in (getattr(L, "SeparableConv1D", None), L.SeparableConv2D) if c)
_TRANSPOSE = tuple(
    getattr(L, n)
    for n in ("Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose")
    if hasattr(L, n)
)
_CONV = (L.Conv1D, L.Conv2D, L.Conv3D)
_PRODUCERS = (L.Dense, *_SEPARABLE, *_TRANSPOSE, *_CONV)  # order: subclasses first


def _kind(layer) -> str:
    """How ``layer`` treats channels (see the module docstring)."""
    if isinstance(layer, keras.Model):
        return "model"
    if isinstance(layer, _DEPTHWISE):
        return "depthwise"
    if isinstance(layer, _PRODUCERS):
        return "producer"
    if isinstance(layer, _MERGE):
        return "merge"
    if isinstance(layer, L.Concatenate):
        return "concat"
    if isinstance(layer, L.Flatten):
        return "flatten"
    if isinstance(layer, L.Reshape):
        return "reshape"
    if isinstance(layer, _PASSTHROUGH):
        return "passthrough"
    return "other"


def _act_name(layer) -> str:
    act = getattr(layer, "activation", None)
    return getattr(act, "__name__", str(act))


def _why_blocked(layer, kind: str, in_shape, out_shape) -> str | None:
    """Why ``layer`` cannot be part of a prunable channel (None if it can)."""
    cls = type(layer).__name__
    if getattr(layer, "data_format", "channels_last") == "channels_first":
        return f"'{layer.name}' ({cls}) uses data_format='channels_first'"
    if kind == "other":
        return f"'{layer.name}' ({cls}) is not a layer the channel graph knows"
    if kind in ("producer", "depthwise") and getattr(layer, "groups", 1) != 1:
        return f"'{layer.name}' ({cls}) is a grouped convolution (groups={layer.groups})"
    if isinstance(layer, L.Activation) and "softmax" in _act_name(layer):
        return f"'{layer.name}' (Activation) applies softmax across channels"
    if isinstance(layer, L.BatchNormalization) and layer.axis not in (-1, len(in_shape) - 1):
        return f"'{layer.name}' (BatchNormalization) normalizes axis {layer.axis}, not channels"
    if (
        isinstance(layer, L.PReLU)
        and in_shape[-1] not in (1, None)
        and layer.alpha.shape[-1] not in (1, in_shape[-1])
    ):
        return f"'{layer.name}' (PReLU) has an alpha that is not per channel"
    if kind == "flatten" and len(in_shape) < 2:
        return f"'{layer.name}' (Flatten) has no channel axis"
    if kind == "reshape":
        if out_shape[-1] != in_shape[-1] and len(out_shape) != 2:
            return (
                f"'{layer.name}' (Reshape) to {tuple(out_shape[1:])} does not keep the "
                "channel axis last and is not a flatten"
            )
    return None


@dataclass
class MacTerm:
    """MACs of one layer call: ``coef * in_channels**use_in * out_channels**use_out``,
    the channel counts being those still kept."""

    coef: int
    use_in: bool
    use_out: bool


@dataclass
class LayerUse:
    """One layer of the graph and the elements along its input and output channels."""

    path: str  # name, prefixed by nested models ("block/conv")
    layer: keras.layers.Layer
    kind: str
    in_slots: np.ndarray | None = None  # element id per channel of the (first) input
    out_slots: np.ndarray | None = None  # element id per channel of the output
    creates: np.ndarray | None = None  # elements this layer creates (producers)
    macs: list[MacTerm] = field(default_factory=list)
    calls: int = 0


@dataclass
class ChannelGroup:
    """Channels that share the same producer layers: one LeGR ranking unit.

    ``elements[i]`` are the tied elements of channel ``i``; channels are numbered in the
    order of the first producer's filters.
    """

    name: str
    producers: list[str]
    members: list[str]
    elements: list[np.ndarray]
    prunable: bool
    reason: str = ""

    @property
    def channels(self) -> int:
        return len(self.elements)


class _UnionFind:
    def __init__(self):
        self.parent: list[int] = []

    def add(self, n: int) -> np.ndarray:
        start = len(self.parent)
        self.parent.extend(range(start, start + n))
        return np.arange(start, start + n)

    def find(self, a: int) -> int:
        root = a
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[a] != root:
            self.parent[a], a = root, self.parent[a]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(int(a)), self.find(int(b))
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def _shape(tensor) -> tuple:
    return tuple(tensor.shape)


class DependencyGraph:
    """The channel dependency graph of a built Sequential or functional model.

    Use ``kp.graph.build(model)``. Attributes: ``layers`` (``LayerUse`` per layer, in
    topological order, nested models flattened with "outer/inner" paths), ``groups``
    (every ``ChannelGroup``, prunable or not).
    """

    def __init__(self, model: keras.Model):
        check_model(model, "kp.graph.build")
        self.model = model
        self._uf = _UnionFind()
        self._fixed: dict[int, str] = {}  # element -> why it cannot be removed
        self._creator: list[tuple[str, int]] = []  # element -> (producer path, filter)
        self.layers: list[LayerUse] = []
        self._uses: dict[int, LayerUse] = {}
        self._slots: dict[int, np.ndarray] = {}
        for x in model.inputs:
            self._slots[id(x)] = self._new(x.shape[-1], "", fixed="a model input")
        self._walk(model, "")
        for x in model.outputs:
            self._fix(self._slots[id(x)], "a model output")
        self._finish()

    # ------------------------------------------------------------------ building
    def _new(self, n, path: str, fixed: str | None = None) -> np.ndarray:
        if n is None:
            raise ValueError(
                f"kp.graph: layer '{path}' has an unknown channel count; build "
                "the model with fully defined channel dimensions."
            )
        ids = self._uf.add(int(n))
        self._creator.extend((path, i) for i in range(int(n)))
        if fixed:
            self._fix(ids, fixed)
        return ids

    def _fix(self, slots: np.ndarray, why: str) -> None:
        for e in slots:
            self._fixed.setdefault(int(e), why)

    def _tie(self, a: np.ndarray, b: np.ndarray) -> None:
        for x, y in zip(a, b, strict=True):
            self._uf.union(x, y)

    def _use(self, layer, path: str, kind: str) -> LayerUse:
        use = self._uses.get(id(layer))
        if use is None:
            use = self._uses[id(layer)] = LayerUse(path, layer, kind)
            self.layers.append(use)
        use.calls += 1
        return use

    # Own recursion over functional_nodes (not all_layers): channel slots follow the
    # tensors of every call, through nested models' inputs and outputs.
    def _walk(self, model: keras.Model, prefix: str) -> None:
        _, nodes = functional_nodes(model)
        for node in nodes:
            op = node.operation
            if isinstance(op, L.InputLayer):
                continue
            ins = [self._slots[id(t)] for t in node.input_tensors]
            if isinstance(op, keras.Model):
                inner_inputs = op.inputs
                if len(inner_inputs) != len(ins):
                    raise ValueError(
                        f"kp.graph: nested model '{prefix}{op.name}' is called "
                        f"with {len(ins)} tensors for {len(inner_inputs)} inputs."
                    )
                for t, s in zip(inner_inputs, ins, strict=True):
                    if id(t) in self._slots:  # called again: same weights, same channels
                        self._tie(self._slots[id(t)], s)
                    else:
                        self._slots[id(t)] = s
                self._walk(op, f"{prefix}{op.name}/")
                for t, inner in zip(node.outputs, op.outputs, strict=True):
                    self._slots[id(t)] = self._slots[id(inner)]
                continue
            outs = self._layer(op, f"{prefix}{op.name}", node, ins)
            for t, s in zip(node.outputs, outs, strict=True):
                self._slots[id(t)] = s

    def _layer(self, layer, path: str, node, ins: list[np.ndarray]) -> list[np.ndarray]:
        kind = _kind(layer)
        in_shapes = [_shape(t) for t in node.input_tensors]
        out_shapes = [_shape(t) for t in node.outputs]
        use = self._use(layer, path, kind)
        why = _why_blocked(layer, kind, in_shapes[0], out_shapes[0])
        if why is None and kind in ("merge", "concat"):
            why = self._check_merge(layer, kind, in_shapes)
        if why is None and len(node.outputs) != 1:
            why = f"'{layer.name}' ({type(layer).__name__}) has several outputs"
        if why is None and kind not in ("merge", "concat") and len(ins) != 1:
            why = f"'{layer.name}' ({type(layer).__name__}) takes several inputs"
        if why is not None:
            for s in ins:
                self._fix(s, why)
            use.kind = "blocked"
            use.macs.extend(_mac_terms(layer, kind, in_shapes[0], out_shapes[0]))
            if use.in_slots is None:
                use.in_slots = ins[0]
            outs = [self._new(s[-1], path, fixed=why) for s in out_shapes]
            use.out_slots = outs[0] if use.out_slots is None else use.out_slots
            return outs
        x = ins[0]
        if use.in_slots is None:
            use.in_slots = x
        elif kind not in ("merge", "concat"):
            self._tie(use.in_slots, x)  # a shared layer sees the same channels each call
        if kind == "producer":
            if use.creates is None:
                use.creates = self._new(out_shapes[0][-1], path)
            out = use.creates
            if "softmax" in _act_name(layer):
                self._fix(out, f"'{layer.name}' applies softmax across its channels")
        elif kind == "depthwise":
            out = np.repeat(x, layer.depth_multiplier)
        elif kind == "merge":
            for other in ins[1:]:
                self._tie(x, other)
            out = x
        elif kind == "concat":
            out = self._concat(layer, ins, in_shapes)
        elif kind in ("flatten", "reshape") and len(out_shapes[0]) == 2 and len(in_shapes[0]) > 2:
            out = np.tile(x, math.prod(in_shapes[0][1:-1]))
        else:
            out = x
        use.macs.extend(_mac_terms(layer, kind, in_shapes[0], out_shapes[0]))
        if use.out_slots is None:
            use.out_slots = out
        return [out]

    def _check_merge(self, layer, kind, shapes) -> str | None:
        if kind == "merge" and len({s[-1] for s in shapes}) != 1:
            return f"'{layer.name}' ({type(layer).__name__}) broadcasts across channels"
        if kind == "concat":
            axis = layer.axis % len(shapes[0])
            if axis != len(shapes[0]) - 1 and len({s[-1] for s in shapes}) != 1:
                return f"'{layer.name}' (Concatenate) mixes channel counts off the channel axis"
        return None

    def _concat(self, layer, ins, shapes) -> np.ndarray:
        if layer.axis % len(shapes[0]) == len(shapes[0]) - 1:
            return np.concatenate(ins)
        for other in ins[1:]:  # joined along a spatial axis: channels stay aligned
            self._tie(ins[0], other)
        return ins[0]

    # ------------------------------------------------------------------ groups
    def _finish(self) -> None:
        n = len(self._uf.parent)
        self.root = np.array([self._uf.find(e) for e in range(n)], dtype=np.int64)
        fixed_roots: dict[int, str] = {}
        for e, why in self._fixed.items():
            fixed_roots.setdefault(int(self.root[e]), why)
        members: dict[int, list[int]] = {}
        for e in range(n):
            members.setdefault(int(self.root[e]), []).append(e)
        # channel -> (producer paths); channels with equal producer sets form a group
        by_producers: dict[tuple[str, ...], list[int]] = {}
        for r, elems in members.items():
            producers = tuple(sorted({self._creator[e][0] for e in elems if self._creator[e][0]}))
            by_producers.setdefault(producers, []).append(r)
        touching: dict[int, set[str]] = {}
        for use in self.layers:
            for slots in (use.in_slots, use.out_slots):
                if slots is not None:
                    for r in set(self.root[slots].tolist()):
                        touching.setdefault(r, set()).add(use.path)
        self.groups: list[ChannelGroup] = []
        order = {use.path: i for i, use in enumerate(self.layers)}
        for producers, roots in by_producers.items():
            if not producers:
                continue  # model inputs only
            first = min(producers, key=order.get)
            roots.sort(
                key=lambda r: min(
                    self._creator[e][1] for e in members[r] if self._creator[e][0] == first
                )
            )
            reasons = [fixed_roots[r] for r in roots if r in fixed_roots]
            names = set().union(*(touching.get(r, set()) for r in roots))
            group = ChannelGroup(
                name=first,
                producers=sorted(producers, key=order.get),
                members=sorted(names, key=order.get),
                elements=[np.array(members[r]) for r in roots],
                prunable=not reasons,
                reason=reasons[0] if reasons else "",
            )
            self.groups.append(group)
        self.groups.sort(key=lambda g: order[g.name])

    # ------------------------------------------------------------------ queries
    @property
    def prunable_groups(self) -> list[ChannelGroup]:
        return [g for g in self.groups if g.prunable]

    def group(self, name: str) -> ChannelGroup:
        """The group whose producers include the layer ``name`` (a path for nested)."""
        for g in self.groups:
            if name in g.producers:
                return g
        known = ", ".join(p for g in self.groups for p in g.producers)
        raise KeyError(f"No channel group is produced by layer '{name}'. Producers: {known}.")

    def element_keep(self, keep: dict[str, np.ndarray] | None) -> np.ndarray:
        """Boolean per element from per-group channel keeps (True = kept)."""
        alive = np.ones(len(self.root), dtype=bool)
        for name, mask in (keep or {}).items():
            g = self.group(name)
            for elems, k in zip(g.elements, mask, strict=True):
                if not k:
                    alive[elems] = False
        return alive[self.root]

    def macs(self, alive: np.ndarray | None = None) -> dict[str, int]:
        """MACs per layer path with the channels ``alive`` (per element) kept."""
        out = {}
        for use in self.layers:
            if not use.macs:
                continue
            n_in = len(use.in_slots) if alive is None else int(alive[use.in_slots].sum())
            n_out = len(use.out_slots) if alive is None else int(alive[use.out_slots].sum())
            out[use.path] = sum(
                t.coef * (n_in if t.use_in else 1) * (n_out if t.use_out else 1) for t in use.macs
            )
        return out

    def table(self) -> str:
        head = f"{'group':<24}{'channels':>9}  {'producers':<40}prunable"
        lines = [f"Channel groups of '{self.model.name}'", head, "-" * len(head)]
        for g in self.groups:
            prods = ", ".join(g.producers)
            state = "yes" if g.prunable else f"no: {g.reason}"
            lines.append(f"{g.name[:23]:<24}{g.channels:>9}  {prods[:39]:<40}{state}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def _mac_terms(layer, kind: str, in_shape, out_shape) -> list[MacTerm]:
    if kind not in ("producer", "depthwise"):
        return []
    k = getattr(layer, "kernel_size", ())
    taps = math.prod(k) if k else 1
    if isinstance(layer, L.Dense):
        return [MacTerm(math.prod(out_shape[1:-1]), True, True)]
    if isinstance(layer, _TRANSPOSE):
        return [MacTerm(math.prod(in_shape[1:-1]) * taps, True, True)]
    spatial = math.prod(out_shape[1:-1])
    groups = getattr(layer, "groups", 1)
    if groups != 1:  # blocked, so the channel counts never change
        return [MacTerm(spatial * taps * in_shape[-1] * out_shape[-1] // groups, False, False)]
    if kind == "depthwise":
        return [MacTerm(spatial * taps, False, True)]
    if isinstance(layer, _SEPARABLE):
        dm = layer.depth_multiplier
        return [MacTerm(spatial * taps * dm, True, False), MacTerm(spatial * dm, True, True)]
    return [MacTerm(spatial * taps, True, True)]


def build(model: keras.Model) -> DependencyGraph:
    """The channel dependency graph of ``model`` (Sequential or functional, nested too)."""
    return DependencyGraph(model)


def _producer_rows(layer, name: str) -> np.ndarray:
    """The producer's weights as (output channel, ...) rows."""
    if hasattr(layer, "pointwise_kernel"):
        k = keras.ops.convert_to_numpy(layer.pointwise_kernel)
        return np.moveaxis(k, -1, 0)
    k = keras.ops.convert_to_numpy(layer.kernel)
    if "Transpose" in type(layer).__name__:  # (..., out, in)
        return np.moveaxis(k, -2, 0)
    return np.moveaxis(k, -1, 0)


def filter_norms(graph: DependencyGraph) -> list[np.ndarray]:
    """Squared L2 norm of each channel of each prunable group, summed over the group's
    producers (coupled filters are scored together)."""
    sq: dict[str, np.ndarray] = {}
    for use in graph.layers:
        if use.creates is not None:
            rows = _producer_rows(use.layer, use.path)
            sq[use.path] = np.sum(rows.reshape(len(rows), -1).astype(np.float64) ** 2, axis=1)
    out = []
    for g in graph.prunable_groups:
        norms = np.zeros(g.channels)
        for i, elems in enumerate(g.elements):
            for e in elems:
                path, j = graph._creator[e]
                if path in sq:
                    norms[i] += sq[path][j]
        out.append(norms)
    return out
