"""The state and checks that every op's lowering shares, and the op registry.

An op's lowering is a function ``(ctx, op) -> CLayer | None`` registered under the
TFLite operator name with ``@register("CONV_2D")``; it returns our kernel call and, for
the ``KP_USE_CMSIS_NN`` build, CMSIS-NN's. ``LoweringContext.lower`` dispatches on it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from keras_prune.export.cgen import cost_model as sparse_cost
from keras_prune.export.cgen.lowering.types import (
    MAX_DIM,
    SUPPORTED_OPS,
    CArray,
    CExportError,
    CLayer,
)
from keras_prune.export.cgen.sparse_format import INDEX_KINDS
from keras_prune.export.int8 import reference as int8_ops
from keras_prune.export.int8.cmsis_nn_buffers import cmsis_nn_scratch_bytes
from keras_prune.export.int8.flatbuffer import Graph, Operator, Tensor
from keras_prune.layers.activation_mask import winner_count

__all__ = ["LoweringContext", "MaskPair", "OPS", "register"]

Lowering = Callable[["LoweringContext", Operator], "CLayer | None"]
OPS: dict[str, Lowering] = {}


def register(op_name: str) -> Callable[[Lowering], Lowering]:
    """Register the lowering of the TFLite operator ``op_name``."""

    def add(fn: Lowering) -> Lowering:
        if op_name in OPS:
            raise ValueError(
                f"{op_name} is lowered twice: {OPS[op_name].__module__}, {fn.__module__}"
            )
        OPS[op_name] = fn
        return fn

    return add


def where(op: Operator, names: dict[int, tuple[str, ...]]) -> str:
    layers = names.get(op.index) or ()
    return (
        f"operator {op.index} ({op.name}"
        + (f", from Keras layer {', '.join(repr(n) for n in layers)}" if layers else "")
        + ")"
    )


def c_dims(shape) -> str:
    s = [int(v) for v in shape]
    while len(s) < 4:
        s.insert(1, 1)
    return "{" + ", ".join(str(v) for v in s) + "}"


def cmsis_ctx(size_expr: str) -> str:
    """Statements giving CMSIS-NN its scratch: the size it asks for, checked against the
    static buffer the generator sized with the same formulas."""
    return (
        f"    cmsis_nn_context ctx;\n    ctx.buf = kp_cmsis_scratch;\n"
        f"    ctx.size = {size_expr};\n"
        f"    if (ctx.size > KP_MODEL_CMSIS_SCRATCH_SIZE) return KP_ERR_ARG;\n"
    )


def quant_decl(p: str, per_channel: int) -> str:
    """The kp_quant_params of layer ``p`` over its kp_{p}_mult and kp_{p}_shift arrays."""
    return (
        f"static const kp_quant_params {p}_quant = {{kp_{p}_mult, kp_{p}_shift, {per_channel}}};\n"
    )


def cmsis_conv(p: str, struct: str, fn: str, head: str, window) -> tuple[str, str]:
    """CMSIS-NN's parameter struct (``head``: its leading fields, then stride, padding,
    dilation and clamp, each (x, y)) and its wrapper call, for a convolution or a
    depthwise one."""
    stride, pad, dil, (lo, hi) = window
    decl = (
        f"static const {struct} {p}_cp = {{{head}, {{{stride[1]}, {stride[0]}}}, "
        f"{{{pad[1]}, {pad[0]}}}, {{{dil[1]}, {dil[0]}}}, {{{lo}, {hi}}}}};\n"
    )
    call = (
        cmsis_ctx(f"{fn}_get_buffer_size(&{p}_cp, &{p}_cin, &{p}_cf, &{p}_cout)")
        + f"    return (int){fn}(&ctx, &{p}_cp, &{p}_cq, &{p}_cin, {{in0}}, &{p}_cf, "
        f"kp_{p}_w, &{p}_cb, kp_{p}_b, &{p}_cout, {{out0}});\n"
    )
    return decl, call


def cmsis_quant(
    p: str, mult: np.ndarray, shift: np.ndarray, channels: int
) -> tuple[list[CArray], str]:
    """CMSIS-NN's per-channel quant struct (per-tensor values repeated per channel)."""
    arrays = []
    m, s = f"kp_{p}_mult", f"kp_{p}_shift"
    if np.asarray(mult).size == 1 and channels > 1:
        arrays = [
            CArray(f"{p}_cmult", "int32_t", np.repeat(mult, channels), cmsis_only=True),
            CArray(f"{p}_cshift", "int32_t", np.repeat(shift, channels), cmsis_only=True),
        ]
        m, s = f"kp_{p}_cmult", f"kp_{p}_cshift"
    return arrays, (
        f"static const cmsis_nn_per_channel_quant_params {p}_cq = "
        f"{{(int32_t *){m}, (int32_t *){s}}};\n"
    )


@dataclass
class MaskPair:
    """A GREATER_EQUAL + SELECT_V2 pair: an ActivationThreshold, as TFLite runs it."""

    compare: int  # the GREATER_EQUAL operator, lowered together with the SELECT_V2
    x: int  # the masked activation tensor
    min_kept: int  # the smallest int8 value kept
    fill: int  # what replaces the others (the zero point)
    rate: float | None  # the mask's winner rate, when its Keras layer records one


def conv_window(op: Operator, inp: Tensor, out: Tensor, filter_hw) -> tuple:
    """(stride, dilation, padding before), each (h, w), as TFLM's Prepare derives them."""
    o = op.options
    stride = (o["stride_h"], o["stride_w"])
    dil = (o.get("dilation_h_factor", 1), o.get("dilation_w_factor", 1))
    pad = tuple(
        int8_ops.padding(inp.shape[1 + a], filter_hw[a], stride[a], dil[a], out.shape[1 + a])
        for a in range(2)
    )
    return stride, dil, pad


def c_struct(params: dict) -> str:
    """A C initializer from a dict in struct field order (nested dicts/tuples allowed)."""

    def one(v):
        if isinstance(v, dict):
            return c_struct(v)
        if isinstance(v, (tuple, list)):
            return "{" + ", ".join(one(x) for x in v) + "}"
        return str(int(v))

    return "{" + ", ".join(one(v) for v in params.values()) + "}"


class LoweringContext:
    """What every op's lowering shares: the graph, the options, the mask pairs found in
    the graph, and the checks that turn an unexpected tensor into a ``CExportError``."""

    def __init__(
        self,
        graph: Graph,
        names: dict[int, tuple[str, ...]],
        sparse: str = "auto",
        masks: str = "threshold",
        mask_rates: dict[str, float] | None = None,
    ):
        self.g = graph
        self.names = names
        self.sparse = sparse
        self.masks = masks
        self.mask_rates = mask_rates or {}
        self.producer = {t: op for op in graph.operators for t in op.outputs}
        self.consumers: dict[int, list[Operator]] = {}
        for op in graph.operators:
            for t in op.inputs:
                self.consumers.setdefault(t, []).append(op)
        self.mask_of: dict[int, MaskPair] = {}  # SELECT_V2 operator index -> its mask
        for op in graph.operators:
            if op.name == "SELECT_V2":
                m = self._match_mask(op)
                if m is not None:
                    self.mask_of[op.index] = m
        self.fused = {m.compare for m in self.mask_of.values()}

    def _scalar(self, t: int) -> int | None:
        """The value of a constant one-element int8 tensor, else None."""
        ten = self.g.tensors[t]
        if ten.data is None or ten.dtype != np.int8 or ten.data.size != 1:
            return None
        return int(ten.data.reshape(-1)[0])

    def _match_mask(self, sel: Operator) -> MaskPair | None:
        """SELECT_V2(GREATER_EQUAL(x, t), x, zero) with constant t and zero, the
        comparison used by nothing else: what an ActivationThreshold converts to."""
        if len(sel.inputs) != 3:
            return None
        cond, x, other = sel.inputs
        ge = self.producer.get(cond)
        if (
            ge is None
            or ge.name != "GREATER_EQUAL"
            or ge.inputs[0] != x
            or [o.index for o in self.consumers.get(cond, [])] != [sel.index]
        ):
            return None
        t, fill = self._scalar(ge.inputs[1]), self._scalar(other)
        if t is None or fill is None:
            return None
        xt, tt, ft = (self.g.tensors[i] for i in (x, ge.inputs[1], other))
        out = self.g.tensors[sel.outputs[0]]
        if xt.dtype != np.int8 or xt.scale.size != 1 or tt.scale.size != 1:
            return None
        same = [(float(a.scale[0]), int(a.zero_point[0])) for a in (xt, ft, out)]
        if len(set(same)) != 1:
            raise self.fail(
                sel,
                "SELECT_V2 between tensors of different quantization "
                f"{same}: the C mask copies int8 values unchanged, as "
                "TFLite does only when they share scale and zero point.",
            )
        min_kept = int8_ops.threshold_min_kept(
            float(xt.scale[0]), int(xt.zero_point[0]), float(tt.scale[0]), int(tt.zero_point[0]), t
        )
        rates = [
            self.mask_rates[n]
            for n in self.names.get(sel.index, ())
            if self.mask_rates.get(n) is not None
        ]
        return MaskPair(ge.index, x, min_kept, fill, rates[0] if rates else None)

    def input_density(self, t: int) -> float | None:
        """The expected non-zero fraction of activation tensor t when an activation mask
        produced it (through reshapes), else None."""
        op = self.producer.get(t)
        while op is not None and op.name == "RESHAPE":
            op = self.producer.get(op.inputs[0])
        if op is None or op.index not in self.mask_of:
            return None
        m = self.mask_of[op.index]
        if m.rate is None:
            return 1.0  # unknown: assume nothing is skipped
        if self.masks == "topk":
            n = self.g.tensors[m.x].size
            return winner_count(m.rate, n) / n
        return m.rate

    def sparse_weights(self, p: str, choice: sparse_cost.Choice, arrays: list[CArray]) -> str:
        """Swap the dense weights for the sparse encoding (dense kept for the CMSIS-NN
        build only); returns the kp_sparse_groups declaration."""
        sg = choice.sparse
        for a in arrays:
            if a.name == f"{p}_w":
                a.cmsis_only = True
        arrays.append(CArray(f"{p}_sc", "uint16_t", sg.counts))
        words = index = "0"
        if sg.n_groups:
            arrays.append(CArray(f"{p}_sw", "int32_t", sg.words.view(np.int32)))
            words = f"kp_{p}_sw"
        if sg.index.size:
            idx = sg.index.view("<u2") if sg.index_kind == "abs16" else sg.index
            arrays.append(
                CArray(f"{p}_si", "uint16_t" if sg.index_kind == "abs16" else "uint8_t", idx)
            )
            index = f"kp_{p}_si"
        return (
            f"static const kp_sparse_groups {p}_sg = {{{sg.rows}, {sg.k}, "
            f"{INDEX_KINDS[sg.index_kind]}, {sg.n_groups}, kp_{p}_sc, {words}, "
            f"{index}}};\n"
        )

    def zero_skip(
        self,
        p: str,
        choice: sparse_cost.Choice,
        arrays: list[CArray],
        batches: int,
        k: int,
        rows: int,
    ) -> tuple[str, str]:
        """Swap the dense weights and effective bias for the input-group encoding and the
        plain bias (dense weights kept for the CMSIS-NN build only); returns the
        declaration and the kp_zero_skip_fully_connected_s8 call (on the kp_fc_params
        {p}_params)."""
        ig = choice.input_groups
        for a in arrays:
            if a.name == f"{p}_w":
                a.cmsis_only = True
            elif a.name == f"{p}_b":
                a.cmsis_only = False
        arrays[:] = [a for a in arrays if a.name != f"{p}_eb"]
        arrays.append(CArray(f"{p}_zs", "int32_t", ig.starts))
        words = row8 = row16 = "0"
        if ig.entries:
            arrays.append(CArray(f"{p}_zw", "int32_t", ig.words.view(np.int32)))
            words = f"kp_{p}_zw"
        if ig.row_index is not None and ig.row_index.size:
            ctype = "uint8_t" if ig.row_index.dtype == np.uint8 else "uint16_t"
            arrays.append(CArray(f"{p}_zr", ctype, ig.row_index))
            if ctype == "uint8_t":
                row8 = f"kp_{p}_zr"
            else:
                row16 = f"kp_{p}_zr"
        decls = (
            f"static const kp_input_groups {p}_ig = {{{ig.rows}, {ig.k}, kp_{p}_zs, "
            f"{words}, {row8}, {row16}}};\n"
        )
        call = (
            f"kp_zero_skip_fully_connected_s8(&{p}_params, &{p}_quant, {batches}, {k}, "
            f"{rows}, {{in0}}, &{p}_ig, kp_{p}_b, {{out0}}, (int32_t *)(void *){{scratch}})"
        )
        return decls, call

    # ------------------------------------------------------------------ checks
    def fail(self, op: Operator, why: str) -> CExportError:
        return CExportError(f"{where(op, self.names)}: {why}")

    def act_tensor(self, op: Operator, i: int) -> Tensor:
        t = self.g.tensors[i]
        if t.dtype != np.int8:
            raise self.fail(
                op,
                f"tensor '{t.name}' is {t.dtype.name}; the C kernels take "
                "int8 activations. Export with int8 input and output "
                "(the default int8_io=True) and full-integer quantization.",
            )
        if t.scale.size != 1:
            raise self.fail(
                op,
                f"tensor '{t.name}' has {t.scale.size} scales; activations "
                "must be quantized per tensor.",
            )
        if any(d > MAX_DIM or d < 1 for d in t.shape):
            raise self.fail(
                op,
                f"tensor '{t.name}' has shape {t.shape}, beyond the kernels' "
                f"limit of 1 to {MAX_DIM} per dimension.",
            )
        return t

    def weights(self, op: Operator, i: int) -> Tensor:
        t = self.g.tensors[i]
        if t.data is None or t.dtype != np.int8:
            what = "not constant" if t.data is None else t.dtype.name
            raise self.fail(
                op, f"weights '{t.name}' are {what}; the kernels take constant int8 weights."
            )
        if np.any(t.zero_point != 0):
            raise self.fail(
                op,
                f"weights '{t.name}' have non-zero zero points "
                f"{sorted(set(t.zero_point.tolist()))[:4]}; the kernels "
                "take symmetric int8 weights (TFLite's default full-integer "
                "quantization gives them).",
            )
        return t

    def bias(self, op: Operator, n: int) -> np.ndarray:
        if len(op.inputs) < 3 or op.inputs[2] < 0:
            return np.zeros(n, np.int64)
        t = self.g.tensors[op.inputs[2]]
        if t.data is None or t.dtype != np.int32:
            raise self.fail(
                op,
                f"bias '{t.name}' is {t.dtype.name}; the kernels take "
                "constant int32 biases (int8 quantization gives them).",
            )
        return t.data.astype(np.int64).reshape(-1)

    def batch_one(self, op: Operator, t: Tensor) -> None:
        if len(t.shape) != 4 or t.shape[0] != 1:
            raise self.fail(
                op,
                f"tensor '{t.name}' has shape {t.shape}; this op takes "
                "one NHWC image (batch 1). Convert with batch 1 (the "
                "exporters do).",
            )

    def activation(self, op: Operator, out: Tensor) -> tuple[int, int]:
        fused = op.options.get("fused_activation_function", "NONE")
        if fused not in ("NONE", "RELU", "RELU6", "RELU_N1_TO_1"):
            raise self.fail(
                op, f"fused activation {fused} has no int8 kernel here; use ReLU or ReLU6."
            )
        return int8_ops.activation_range(fused, float(out.scale[0]), int(out.zero_point[0]))

    # ------------------------------------------------------------------ ops
    def lower(self, op: Operator) -> CLayer | None:
        fn = OPS.get(op.name)
        if fn is None:
            raise self.fail(
                op,
                f"{op.name} has no kernel in the C export (it runs "
                f"{', '.join(SUPPORTED_OPS)}). Replace the layer with one "
                "that converts to those ops, or export it for TFLite Micro "
                "with kp.export.tflm instead.",
            )
        layer = fn(self, op)
        if layer is None:
            return None
        layer.layers = self.names.get(op.index, ())
        t = self.g.tensors
        layer.cmsis_scratch = cmsis_nn_scratch_bytes(
            op.name,
            t[op.inputs[0]].shape,
            t[op.inputs[1]].shape if len(op.inputs) > 1 and op.inputs[1] >= 0 else None,
        )
        return layer

    def quant_arrays(self, p: str, mult, shift) -> tuple[list[CArray], str, int]:
        mult, shift = np.asarray(mult), np.asarray(shift)
        per_channel = int(mult.size > 1)
        arrays = [CArray(f"{p}_mult", "int32_t", mult), CArray(f"{p}_shift", "int32_t", shift)]
        return arrays, quant_decl(p, per_channel), per_channel

    def weighted(
        self, op: Operator, p: str, struct: str, prm: dict, tensors, mult, shift, eff
    ) -> tuple[list[CArray], str, str]:
        """Arrays and declarations a convolution shares with a depthwise one: weights,
        effective and plain biases, quantization, dims (ours and CMSIS-NN's)."""
        inp, w, out = tensors
        o = out.shape[-1]
        arrays, qdecl, _ = self.quant_arrays(p, mult, shift)
        carrays, cq = cmsis_quant(p, mult, shift, o)
        arrays += [
            CArray(f"{p}_w", "int8_t", w.data),
            CArray(f"{p}_eb", "int32_t", eff),
            CArray(f"{p}_b", "int32_t", self.bias(op, o), cmsis_only=True),
            *carrays,
        ]
        decls = (
            f"static const {struct} {p}_params = {c_struct(prm)};\n"
            + qdecl
            + f"static const kp_dims {p}_in = {c_dims(inp.shape)};\n"
            f"static const kp_dims {p}_f = {c_dims(w.shape)};\n"
            f"static const kp_dims {p}_out = {c_dims(out.shape)};\n"
        )
        cdecls = (
            cq + f"static const cmsis_nn_dims {p}_cin = {c_dims(inp.shape)};\n"
            f"static const cmsis_nn_dims {p}_cf = {c_dims(w.shape)};\n"
            f"static const cmsis_nn_dims {p}_cb = {{1, 1, 1, {o}}};\n"
            f"static const cmsis_nn_dims {p}_cout = {c_dims(out.shape)};\n"
        )
        return arrays, decls, cdecls
