"""What every target shares: a candidate model seen layer by layer, and the cost question.

A *candidate* is the model after a channel cut (which channels each layer keeps) and
SIMD-group sparsity (which 4-weight groups of each kernel are zero). The budget planner
asks a target for the cost of many candidates without building them as Keras models,
so a candidate is described by ``LayerView`` rows: each layer's kept input and output
shapes and, for layers with a kernel, the kernel in the int8 kernels' row layout with
the cut channels gone and the pruned groups zero.

```python
views = kp.targets.layer_views(model)                  # the model as it is
print(kp.targets.CortexM4().estimate(views))           # {"latency_ms": ..., ...}
```
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import keras
import numpy as np

from keras_prune.graph import DependencyGraph, LayerUse
from keras_prune.graph import build as build_graph
from keras_prune.model_utils import functional_nodes

__all__ = ["LayerView", "Target", "layer_views", "kernel_rows", "op_kind", "METRICS"]

L = keras.layers

# Every metric a budget can name, with its unit (the budget keyword is the metric name).
METRICS = {"latency_ms": "ms", "flash_kb": "KiB", "ram_kb": "KiB", "macs": "MACs"}


@dataclass(frozen=True)
class LayerView:
    """One layer call of a candidate.

    Attributes:
        path: the layer's name ("outer/inner" inside nested models).
        layer: the original Keras layer (its config: strides, padding, activation...).
        op: what it computes: ``"conv"``, ``"dw"`` (depthwise), ``"fc"`` (Dense),
            ``"add"`` (any element-wise merge), ``"concat"``, ``"avg_pool"``,
            ``"max_pool"``, ``"global_pool"``, ``"pad"``, ``"bn"``, ``"activation"``,
            ``"reshape"`` (Flatten, Reshape), ``"identity"`` (Dropout and other
            no-ops at inference) or ``"other"``.
        in_shapes: each input's shape without the batch axis, with kept channels.
        out_shape: the output's shape without the batch axis, with kept channels.
        rows: for ``conv``/``fc``: the kernel as (kept outputs, taps x kept inputs),
            input channel fastest (TFLite's OHWI rows); for ``dw``: (taps, kept
            channels). Pruned weights are exactly zero. ``None`` for other ops.
        inputs: ids of the tensors it reads; ``output``: the id of the tensor it writes
            (for liveness: which activations are alive together).
        softmax: the layer ends in a softmax activation (a separate op on int8 targets).
    """

    path: str
    layer: keras.layers.Layer
    op: str
    in_shapes: tuple[tuple[int, ...], ...]
    out_shape: tuple[int, ...]
    rows: np.ndarray | None = field(default=None, compare=False, repr=False)
    inputs: tuple[int, ...] = ()
    output: int = 0
    softmax: bool = False

    @property
    def in_shape(self) -> tuple[int, ...]:
        return self.in_shapes[0]

    @property
    def out_elements(self) -> int:
        return math.prod(self.out_shape)

    @property
    def macs(self) -> int:
        """Multiply-accumulates of the layer at its kept channels, zeros included."""
        if self.rows is None:
            return 0
        return math.prod(self.out_shape[:-1]) * int(self.rows.size)

    @property
    def nonzero_macs(self) -> int:
        """Multiply-accumulates left after the pruned weights (zeros) are skipped."""
        if self.rows is None:
            return 0
        return math.prod(self.out_shape[:-1]) * int(np.count_nonzero(self.rows))


class Target:
    """Where a model runs, and what a candidate of it costs there.

    Subclasses answer ``layer_costs(view)`` (per-layer cost of the metrics that add up
    over layers). ``layer_detail(view)`` is what the planner caches per layer (by
    default ``{"costs": layer_costs(view)}``; a target may add what its ``estimate``
    needs, such as scratch bytes), and ``estimate(views, details)`` turns a candidate's
    details into every metric of ``metrics`` (override it for metrics that do not add up,
    such as RAM). ``sparse_pays``: whether zeroed SIMD groups can lower the cost;
    ``channel_step``: kept channel counts are multiples of it (the target's SIMD width).
    """

    metrics: tuple[str, ...] = ()
    name: str = "target"
    sparse_pays: bool = True
    channel_step: int = 4

    def layer_costs(self, view: LayerView) -> dict[str, float]:
        raise NotImplementedError

    def layer_detail(self, view: LayerView) -> dict:
        return {"costs": self.layer_costs(view)}

    def estimate(
        self, views: list[LayerView], details: list[dict] | None = None
    ) -> dict[str, float]:
        """Every metric of ``metrics`` for the whole candidate."""
        details = details if details is not None else [self.layer_detail(v) for v in views]
        total = dict.fromkeys(self.metrics, 0.0)
        for d in details:
            for k, c in d["costs"].items():
                total[k] = total.get(k, 0.0) + c
        return total

    def describe(self) -> str:
        return repr(self)

    def get_config(self) -> dict:
        return {}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


def op_kind(layer) -> str:
    """What a layer computes, in ``LayerView.op``'s words."""
    if isinstance(layer, L.DepthwiseConv2D):
        return "dw"
    if isinstance(layer, L.Conv2D) and not isinstance(layer, (L.Conv2DTranspose,)):
        return "conv" if getattr(layer, "groups", 1) == 1 else "other"
    if isinstance(layer, L.Dense):
        return "fc"
    if isinstance(layer, (L.Add, L.Subtract, L.Multiply, L.Average, L.Maximum, L.Minimum)):
        return "add"
    if isinstance(layer, L.Concatenate):
        return "concat"
    if isinstance(layer, (L.GlobalAveragePooling2D, L.GlobalMaxPooling2D)):
        return "global_pool"
    if isinstance(layer, L.AveragePooling2D):
        return "avg_pool"
    if isinstance(layer, L.MaxPooling2D):
        return "max_pool"
    if isinstance(layer, L.ZeroPadding2D):
        return "pad"
    if isinstance(layer, L.BatchNormalization):
        return "bn"
    if isinstance(layer, (L.ReLU, L.Activation, L.LeakyReLU, L.ELU, L.PReLU)):
        return "activation"
    if isinstance(layer, (L.Flatten, L.Reshape)):
        return "reshape"
    if isinstance(
        layer, (L.Dropout, L.SpatialDropout2D, L.GaussianNoise, L.GaussianDropout, L.Identity)
    ):
        return "identity"
    return "other"


def kernel_rows(layer, op: str, kernel: np.ndarray | None = None) -> np.ndarray:
    """A kernel in the row layout the int8 kernels read (see ``LayerView.rows``), at
    full size."""
    k = keras.ops.convert_to_numpy(layer.kernel) if kernel is None else np.asarray(kernel)
    if op == "fc":
        return np.ascontiguousarray(k.T)
    if op == "conv":  # (kh, kw, cin, cout) -> (cout, kh*kw*cin)
        return np.ascontiguousarray(np.moveaxis(k, -1, 0).reshape(k.shape[-1], -1))
    if op == "dw":  # (kh, kw, c, multiplier) -> (taps, c*multiplier)
        return np.ascontiguousarray(k.reshape(k.shape[0] * k.shape[1], -1))
    raise ValueError(f"kernel_rows: op {op!r} has no kernel.")


def _slice_rows(rows: np.ndarray, op: str, keep_in, keep_out) -> np.ndarray:
    if op == "dw":
        return rows[:, keep_out]
    if op == "fc":
        return rows[keep_out][:, keep_in]
    n_out, k = rows.shape
    cin = len(keep_in)
    return (
        rows[keep_out]
        .reshape(int(keep_out.sum()), k // cin, cin)[:, :, keep_in]
        .reshape(int(keep_out.sum()), -1)
    )


def _kept_shape(shape, slots, alive) -> tuple[int, ...]:
    dims = tuple(int(d) for d in shape[1:])
    if alive is None or slots is None or len(slots) != dims[-1]:
        return dims
    return (*dims[:-1], int(alive[slots].sum()))


def layer_views(
    model: keras.Model,
    graph: DependencyGraph | None = None,
    alive: np.ndarray | None = None,
    rows: dict[str, np.ndarray] | None = None,
) -> list[LayerView]:
    """``model`` as a list of ``LayerView`` (one per layer call, in execution order).

    Args:
        model: a plain built Keras model (no wrappers; ``kp.strip`` first).
        graph: its ``kp.graph.build`` result, if at hand.
        alive: per graph element, whether the channel is kept (``graph.element_keep``);
            ``None`` keeps all.
        rows: {layer path: full-size kernel rows (``kernel_rows`` layout)} replacing the
            layer's own kernel, e.g. with pruned groups zeroed; sliced to the kept
            channels here.
    """
    graph = graph or build_graph(model)
    uses: dict[int, LayerUse] = {id(u.layer): u for u in graph.layers}
    views: list[LayerView] = []
    kept: dict[int, tuple[int, ...]] = {}  # tensor id -> its shape with kept channels

    def walk(m: keras.Model, prefix: str, aliases: dict[int, int]) -> None:
        _, nodes = functional_nodes(m)
        for node in nodes:
            op_layer = node.operation
            if isinstance(op_layer, L.InputLayer):
                continue
            ins = [aliases.get(id(t), id(t)) for t in node.input_tensors]
            if isinstance(op_layer, keras.Model):
                inner = dict(aliases)
                for t, src in zip(op_layer.inputs, ins, strict=True):
                    inner[id(t)] = src
                walk(op_layer, f"{prefix}{op_layer.name}/", inner)
                for t, o in zip(node.outputs, op_layer.outputs, strict=True):
                    aliases[id(t)] = inner.get(id(o), id(o))
                continue
            use = uses.get(id(op_layer))
            op = op_kind(op_layer)
            in_slots = use.in_slots if use is not None else None
            out_slots = use.out_slots if use is not None else None
            in_shapes = tuple(
                _kept_shape(t.shape, in_slots, alive)
                if len(node.input_tensors) == 1 or op in ("add",)
                # other merges (concat): each input as its producer's view left it
                else kept.get(i, tuple(int(d) for d in t.shape[1:]))
                for t, i in zip(node.input_tensors, ins, strict=True)
            )
            out_shape = _kept_shape(node.outputs[0].shape, out_slots, alive)
            kernel = None
            if op in ("conv", "dw", "fc"):
                path = f"{prefix}{op_layer.name}"
                full = (rows or {}).get(path)
                full = kernel_rows(op_layer, op) if full is None else full
                if alive is not None and in_slots is not None and out_slots is not None:
                    keep_in = alive[in_slots] if op != "dw" else None
                    keep_out = alive[out_slots]
                    if op == "fc" and len(keep_in) != full.shape[1]:
                        keep_in = np.ones(full.shape[1], bool)
                    kernel = _slice_rows(full, op, keep_in, keep_out)
                else:
                    kernel = full
            act = getattr(getattr(op_layer, "activation", None), "__name__", "")
            out_id = id(node.outputs[0])
            kept[out_id] = out_shape
            views.append(
                LayerView(
                    f"{prefix}{op_layer.name}",
                    op_layer,
                    op,
                    in_shapes,
                    out_shape,
                    kernel,
                    tuple(ins),
                    out_id,
                    softmax=act == "softmax"
                    or (isinstance(op_layer, L.Activation) and "softmax" in act),
                )
            )

    walk(model, "", {})
    return views
