"""Multiply-accumulate counts: dense, after weight sparsity, after weight x activation sparsity.

```python
report = kp.count_macs(model, x_val)     # prints a per-layer table, returns the report
report.total_effective / report.total_dense
```
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import keras
import numpy as np
from keras import ops

from keras_prune._data import batches, check_data
from keras_prune.layers.prunable import kernel_specs
from keras_prune.layers.prune_wrapper import PruneWrapper
from keras_prune.model_utils import check_model, functional_nodes

__all__ = ["count_macs", "MacReport", "MacRow", "count_flops", "FlopReport", "FlopRow"]

L = keras.layers


@dataclass
class MacRow:
    """MACs of one layer per inference: dense, with kept weights only, and effective
    (weight and input both non-zero, averaged over the data)."""

    name: str
    kind: str
    dense: int
    weight: int
    effective: float | None = None
    input_density: float | None = None  # fraction of non-zero inputs on the data

    @property
    def weight_density(self) -> float:
        return self.weight / self.dense if self.dense else 1.0


@dataclass
class MacReport:
    model: str
    rows: list[MacRow] = field(default_factory=list)
    samples: int = 0

    @property
    def dense(self) -> int:
        return sum(r.dense for r in self.rows)

    @property
    def weight(self) -> int:
        return sum(r.weight for r in self.rows)

    @property
    def effective(self) -> float | None:
        if any(r.effective is None for r in self.rows):
            return None
        return float(sum(r.effective for r in self.rows))

    def reduction(self, level: str = "effective") -> float:
        """1 - MACs at ``level`` ("weight" or "effective") / dense MACs."""
        value = getattr(self, level)
        return 1.0 - value / self.dense if value is not None and self.dense else 0.0

    def table(self) -> str:
        head = (
            f"{'layer':<16}{'type':<17}{'dense MACs':>12}{'kept weights':>14}"
            f"{'input nz':>10}{'effective':>12}{'vs dense':>10}"
        )
        lines = [
            f"MACs per inference of '{self.model}'"
            + (f" (effective: mean over {self.samples} samples)" if self.samples else ""),
            head,
            "-" * len(head),
        ]
        for r in self.rows:
            eff = "" if r.effective is None else f"{r.effective:>12,.0f}"
            nz = "" if r.input_density is None else f"{r.input_density:>10.1%}"
            ratio = "" if r.effective is None else f"{r.effective / r.dense:>10.1%}"
            lines.append(
                f"{r.name[:15]:<16}{r.kind[:16]:<17}{r.dense:>12,}{r.weight:>14,}"
                f"{nz:>10}{eff:>12}{ratio:>10}"
            )
        lines.append("-" * len(head))
        eff = self.effective
        lines.append(
            f"{'total':<33}{self.dense:>12,}{self.weight:>14,}{'':>10}"
            + ("" if eff is None else f"{eff:>12,.0f}{eff / self.dense:>10.1%}")
        )
        cut = f"MAC reduction vs dense: kept weights {self.reduction('weight'):.1%}"
        if eff is not None:
            cut += f", weights x activations {self.reduction('effective'):.1%}"
        lines.append(cut)
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "samples": self.samples,
            "dense": self.dense,
            "weight": self.weight,
            "effective": self.effective,
            "rows": [asdict(r) for r in self.rows],
        }


# ---------------------------------------------------------------------- per layer
def _kernels(layer) -> tuple[keras.layers.Layer, dict[str, np.ndarray]]:
    """The layer doing the MACs and its kernels with any pruning mask applied."""
    if isinstance(layer, PruneWrapper):
        inner = layer.layer
        masked = dict(zip((s.attr for s in layer._specs), layer.masked_kernels(), strict=True))
    else:
        inner, masked = layer, {}
    return inner, {
        s.attr: masked.get(s.attr, ops.convert_to_numpy(getattr(inner, s.attr)))
        for s in kernel_specs(inner)
    }


def _channels_last(layer, x):
    if getattr(layer, "data_format", "channels_last") == "channels_first":
        return np.moveaxis(x, 1, -1)
    return x


def _spatial(shape, layer) -> int:
    dims = (
        shape[1:-1]
        if getattr(layer, "data_format", "channels_last") != "channels_first"
        else shape[2:]
    )
    return math.prod(dims)


def _static_counts(layer, kernels, in_shape, out_shape) -> tuple[int, int]:
    """(dense, kept-weight) MACs per inference."""
    if isinstance(layer, L.SeparableConv2D):
        dw, pw = kernels["depthwise_kernel"], kernels["pointwise_kernel"]
        p = _spatial(out_shape, layer)
        return p * (dw.size + pw.size), p * (np.count_nonzero(dw) + np.count_nonzero(pw))
    (k,) = kernels.values()
    if isinstance(layer, L.Dense):
        p = math.prod(out_shape[1:-1])
    elif isinstance(layer, L.Conv2DTranspose):
        p = _spatial(in_shape, layer)  # every input meets the whole kernel
    else:
        p = _spatial(out_shape, layer)
    return p * k.size, p * int(np.count_nonzero(k))


def _conv_args(layer) -> dict:
    return {
        "strides": layer.strides,
        "padding": layer.padding,
        "dilation_rate": layer.dilation_rate,
        "data_format": "channels_last",
    }


def _effective(layer, kernels, x: np.ndarray) -> float:
    """Sum over the batch of MACs whose weight and input are both non-zero."""
    x = _channels_last(layer, x)
    nz = (x != 0).astype(np.float32)
    if isinstance(layer, L.Dense):
        per_input = np.count_nonzero(kernels["kernel"], axis=1).astype(np.float32)
        return float(np.sum(nz.reshape(-1, nz.shape[-1]) @ per_input, dtype=np.float64))
    if isinstance(layer, L.SeparableConv2D):
        dw, pw = kernels["depthwise_kernel"], kernels["pointwise_kernel"]
        macs = _depthwise(layer, dw, nz)
        mid = ops.convert_to_numpy(ops.depthwise_conv(x, dw, **_conv_args(layer)))
        per_input = np.count_nonzero(pw.reshape(-1, pw.shape[-1]), axis=1).astype(np.float32)
        return macs + float(
            np.sum(
                (mid != 0).reshape(-1, mid.shape[-1]).astype(np.float32) @ per_input,
                dtype=np.float64,
            )
        )
    (k,) = kernels.values()
    if isinstance(layer, L.DepthwiseConv2D):
        return _depthwise(layer, k, nz)
    if isinstance(layer, L.Conv2DTranspose):
        counts = np.count_nonzero(k, axis=-2, keepdims=True).astype(np.float32)
        out = ops.conv_transpose(
            nz,
            counts,
            strides=layer.strides,
            padding=layer.padding,
            output_padding=layer.output_padding,
            dilation_rate=layer.dilation_rate,
            data_format="channels_last",
        )
        return float(np.sum(ops.convert_to_numpy(out), dtype=np.float64))
    groups = getattr(layer, "groups", 1)
    cin, cout = k.shape[-2], k.shape[-1] // groups
    total = 0.0
    for g in range(groups):
        counts = np.count_nonzero(k[..., g * cout : (g + 1) * cout], axis=-1, keepdims=True)
        out = ops.conv(
            nz[..., g * cin : (g + 1) * cin], counts.astype(np.float32), **_conv_args(layer)
        )
        total += float(np.sum(ops.convert_to_numpy(out), dtype=np.float64))
    return total


def _depthwise(layer, kernel, nz) -> float:
    counts = np.count_nonzero(kernel, axis=-1, keepdims=True).astype(np.float32)
    out = ops.depthwise_conv(nz, counts, **_conv_args(layer))
    return float(np.sum(ops.convert_to_numpy(out), dtype=np.float64))


# ---------------------------------------------------------------------- model
# functional_nodes filtered to the MAC-doing calls; nested models stay single nodes
# (each call's inputs are needed), and _count recurses into them with those inputs.
def _mac_nodes(model):
    graph, nodes = functional_nodes(model)
    return graph, [
        n
        for n in nodes
        if isinstance(n.operation, keras.Model)
        or kernel_specs(n.operation.layer if isinstance(n.operation, PruneWrapper) else n.operation)
    ]


def count_macs(
    model: keras.Model,
    x=None,
    batch_size: int = 256,
    print_fn: Callable[[str], None] | None = print,
) -> MacReport:
    """MACs per inference, per layer and in total, at three levels.

    - **dense**: every weight meets every input it is connected to (padding included);
    - **kept weights**: only non-zero weights (pruning masks applied) count;
    - **effective** (needs ``x``): a MAC counts only if its weight and its input are
      both non-zero, measured on ``x`` (zero padding counts as a zero input), averaged
      per sample. This is what a kernel that skips zero weights and zero activations
      pays for.

    Counts Dense, Conv1D/2D/3D, DepthwiseConv2D, SeparableConv2D and Conv2DTranspose
    (wrapped or plain), nested models included; other layers do no MACs here.

    Args:
        model: a built Sequential or functional model.
        x: inputs for the effective count (optional).
        print_fn: where the table goes (``None`` to stay quiet).

    Example: ``print(kp.count_macs(pruned, x_val, print_fn=None).reduction())``
    """
    check_model(model, "kp.count_macs")
    if x is not None:
        x, _ = check_data(model, x, None, "x")
    report = MacReport(model.name, samples=0 if x is None else len(x))
    _count(model, x, batch_size, report, prefix="")
    if print_fn is not None:
        print_fn(report.table())
    return report


def _count(model, x, batch_size, report: MacReport, prefix: str) -> None:
    graph, nodes = _mac_nodes(model)
    rows: dict[int, MacRow] = {}
    nested = []
    for node in nodes:
        op = node.operation
        if isinstance(op, keras.Model):
            if len(node.input_tensors) != 1:
                raise ValueError(
                    f"kp.count_macs: nested model '{op.name}' takes "
                    f"{len(node.input_tensors)} inputs; nested models with one input are "
                    "supported. Count it on its own: kp.count_macs(nested_model, x)."
                )
            nested.append((op, node))
            continue
        inner, kernels = _kernels(op)
        dense, weight = _static_counts(
            inner, kernels, node.input_tensors[0].shape, node.outputs[0].shape
        )
        row = rows.get(id(op))
        if row is None:
            rows[id(op)] = MacRow(prefix + op.name, type(inner).__name__, dense, weight)
        else:  # a shared layer: one row, every call counted
            row.dense += dense
            row.weight += weight
    report.rows.extend(rows.values())
    if x is not None and nodes:
        effective = [0.0] * len(nodes)
        nonzero = [0.0] * len(nodes)
        sizes = [0] * len(nodes)
        sub_inputs = [[] for _ in nodes]
        feats = [n.input_tensors[0] for n in nodes]
        kernels = [
            None if isinstance(n.operation, keras.Model) else _kernels(n.operation) for n in nodes
        ]
        for outs in batches(graph, x, batch_size, outputs=feats):
            for j, (node, feat) in enumerate(zip(nodes, outs, strict=True)):
                feat = np.asarray(feat)
                if isinstance(node.operation, keras.Model):
                    sub_inputs[j].append(feat)
                    continue
                effective[j] += _effective(*kernels[j], feat)
                nonzero[j] += float(np.count_nonzero(feat))
                sizes[j] += feat.size
        seen = {}  # a shared layer's row sums over all its calls
        for j, node in enumerate(nodes):
            if not isinstance(node.operation, keras.Model):
                total = seen.setdefault(id(node.operation), [0.0, 0.0, 0])
                total[0] += effective[j] / len(x)
                total[1] += nonzero[j]
                total[2] += sizes[j]
        for key, (eff, nz, size) in seen.items():
            rows[key].effective = eff
            rows[key].input_density = nz / size if size else None
        for sub, node in nested:
            j = nodes.index(node)
            _count(
                sub,
                np.concatenate(sub_inputs[j]),
                batch_size,
                report,
                prefix=f"{prefix}{sub.name}/",
            )
    else:
        for sub, _ in nested:
            _count(sub, None, batch_size, report, prefix=f"{prefix}{sub.name}/")


# ---------------------------------------------------------------------- structural FLOPs
@dataclass
class FlopRow:
    name: str
    kind: str
    macs: int
    params: int


@dataclass
class FlopReport:
    """MACs per inference and parameters, per layer, from the channel dependency graph
    (what ``kp.shrink`` and LeGR's FLOPs targets count)."""

    model: str
    rows: list[FlopRow] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(r.macs for r in self.rows)

    @property
    def params(self) -> int:
        return sum(r.params for r in self.rows)

    def table(self) -> str:
        head = f"{'layer':<28}{'type':<20}{'MACs':>14}{'params':>12}{'share':>8}"
        lines = [f"MACs per inference of '{self.model}'", head, "-" * len(head)]
        total = self.total or 1
        for r in self.rows:
            lines.append(
                f"{r.name[:27]:<28}{r.kind[:19]:<20}{r.macs:>14,}{r.params:>12,}"
                f"{r.macs / total:>8.1%}"
            )
        lines.append("-" * len(head))
        lines.append(f"{'total':<48}{self.total:>14,}{self.params:>12,}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def count_flops(
    model: keras.Model, print_fn: Callable[[str], None] | None = print, graph=None
) -> FlopReport:
    """MACs per inference, per layer and in total (the FLOPs LeGR targets count).

    Counts Dense, Conv1D/2D/3D (grouped too), DepthwiseConv, SeparableConv and
    ConvTranspose layers, nested models included (a layer called twice counts twice);
    other layers do no MACs here. Parameters are listed for every layer with weights.

    Example: ``kp.count_flops(model).total``.
    """
    from keras_prune.graph import DependencyGraph

    graph = graph or DependencyGraph(model)
    macs = graph.macs()
    report = FlopReport(model.name)
    for use in graph.layers:
        params = int(sum(math.prod(w.shape) for w in use.layer.weights))
        if use.path in macs or params:
            report.rows.append(
                FlopRow(use.path, type(use.layer).__name__, int(macs.get(use.path, 0)), params)
            )
    if print_fn is not None:
        print_fn(report.table())
    return report
