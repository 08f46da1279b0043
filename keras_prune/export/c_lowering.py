"""From a decoded int8 ``.tflite`` graph to kernel calls: one ``CLayer`` per operator.

Each supported operator becomes a call into ``csrc/kernels/kp_nn.h`` with its parameters
computed exactly as TFLite Micro's ``Prepare`` computes them (``int8_ops``), its constant
arrays (weights, effective biases, multipliers, shifts), and, for the
``KP_USE_CMSIS_NN`` build, the equivalent CMSIS-NN call. Tensor addresses are left as
``{in0}``, ``{out0}``, ``{scratch}`` placeholders; the memory plan fills them in.

Anything the kernels cannot run exactly raises ``CExportError`` naming the operator, its
Keras layer and what to change.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from keras_prune.export import int8_ops, sparse_cost
from keras_prune.export.sparse_format import INDEX_KINDS
from keras_prune.export.tflite_graph import Graph, Operator, Tensor
from keras_prune.export.tflite_micro import cmsis_nn_scratch_bytes
from keras_prune.layers.activation_mask import winner_count

__all__ = [
    "CExportError",
    "CArray",
    "CLayer",
    "lower",
    "SUPPORTED_OPS",
    "MAX_DIM",
    "MAX_DEPTH",
    "MASK_MODES",
]

SUPPORTED_OPS = (
    "CONV_2D",
    "DEPTHWISE_CONV_2D",
    "FULLY_CONNECTED",
    "MAX_POOL_2D",
    "AVERAGE_POOL_2D",
    "MEAN",
    "ADD",
    "RESHAPE",
    "SOFTMAX",
    "PAD",
    "GREATER_EQUAL + SELECT_V2 (activation masks)",
)
MASK_MODES = ("threshold", "topk")
TOPK_SCRATCH_BYTES = 512  # KP_TOPK_SCRATCH_BYTES
TOPK_MAX_SIZE = 65535  # its uint16 counts
# Kernel limits. A dot product over MAX_DEPTH int8 pairs stays far inside int32
# (2^15 * 2^14 = 2^29, with room for the bias); dims beyond MAX_DIM are not MCU models.
MAX_DIM = 32767
MAX_DEPTH = 32768


class CExportError(ValueError):
    """A model the C generator cannot turn into exact kernel calls; says which and why."""


@dataclass
class CArray:
    """A constant array for ``kp_weights.c``."""

    name: str
    ctype: str  # "int8_t", "uint8_t", "uint16_t" or "int32_t"
    values: np.ndarray
    cmsis_only: bool = False  # only compiled under KP_USE_CMSIS_NN

    @property
    def nbytes(self) -> int:
        size = {"int8_t": 1, "uint8_t": 1, "uint16_t": 2, "int32_t": 4}[self.ctype]
        return int(self.values.size) * size


@dataclass
class CLayer:
    index: int
    op: str
    layers: tuple[str, ...]  # the Keras layers it came from
    inputs: tuple[int, ...]  # activation tensors read
    outputs: tuple[int, ...]  # activation tensors written
    decls: str  # static const parameter structs
    call: str  # the kp_* call (a C expression giving kp_status)
    cmsis_decls: str = ""  # the same for -DKP_USE_CMSIS_NN ("" = same as ours)
    cmsis_call: str = ""
    arrays: list[CArray] = field(default_factory=list)
    macs: int = 0
    scratch: int = 0  # bytes of arena scratch during this layer (ours)
    cmsis_scratch: int = 0  # bytes CMSIS-NN asks for (its own buffer)
    alias: bool = False  # RESHAPE: output shares the input's bytes
    kernel: str = ""
    sparse: dict | None = None  # FC/CONV: the dense-or-sparse choice and its reasons
    mask: dict | None = None  # an activation mask: its form, winners, threshold


def _where(op: Operator, names: dict[int, tuple[str, ...]]) -> str:
    layers = names.get(op.index) or ()
    return (
        f"operator {op.index} ({op.name}"
        + (f", from Keras layer {', '.join(repr(n) for n in layers)}" if layers else "")
        + ")"
    )


def _dims(shape) -> str:
    s = [int(v) for v in shape]
    while len(s) < 4:
        s.insert(1, 1)
    return "{" + ", ".join(str(v) for v in s) + "}"


def _cmsis_ctx(size_expr: str) -> str:
    """Statements giving CMSIS-NN its scratch: the size it asks for, checked against the
    static buffer the generator sized with the same formulas."""
    return (
        f"    cmsis_nn_context ctx;\n    ctx.buf = kp_cmsis_scratch;\n"
        f"    ctx.size = {size_expr};\n"
        f"    if (ctx.size > KP_MODEL_CMSIS_SCRATCH_SIZE) return KP_ERR_ARG;\n"
    )


def _quant_decl(p: str, per_channel: int) -> str:
    """The kp_quant_params of layer ``p`` over its kp_{p}_mult and kp_{p}_shift arrays."""
    return (
        f"static const kp_quant_params {p}_quant = {{kp_{p}_mult, kp_{p}_shift, {per_channel}}};\n"
    )


def _cmsis_conv(p: str, struct: str, fn: str, head: str, window) -> tuple[str, str]:
    """CMSIS-NN's parameter struct (``head``: its leading fields, then stride, padding,
    dilation and clamp, each (x, y)) and its wrapper call, for a convolution or a
    depthwise one."""
    stride, pad, dil, (lo, hi) = window
    decl = (
        f"static const {struct} {p}_cp = {{{head}, {{{stride[1]}, {stride[0]}}}, "
        f"{{{pad[1]}, {pad[0]}}}, {{{dil[1]}, {dil[0]}}}, {{{lo}, {hi}}}}};\n"
    )
    call = (
        _cmsis_ctx(f"{fn}_get_buffer_size(&{p}_cp, &{p}_cin, &{p}_cf, &{p}_cout)")
        + f"    return (int){fn}(&ctx, &{p}_cp, &{p}_cq, &{p}_cin, {{in0}}, &{p}_cf, "
        f"kp_{p}_w, &{p}_cb, kp_{p}_b, &{p}_cout, {{out0}});\n"
    )
    return decl, call


def _cmsis_quant(
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
class _Mask:
    """A GREATER_EQUAL + SELECT_V2 pair: an ActivationThreshold, as TFLite runs it."""

    compare: int  # the GREATER_EQUAL operator, lowered together with the SELECT_V2
    x: int  # the masked activation tensor
    min_kept: int  # the smallest int8 value kept
    fill: int  # what replaces the others (the zero point)
    rate: float | None  # the mask's winner rate, when its Keras layer records one


class _Lowering:
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
        self.mask_of: dict[int, _Mask] = {}  # SELECT_V2 operator index -> its mask
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

    def _match_mask(self, sel: Operator) -> _Mask | None:
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
        return _Mask(ge.index, x, min_kept, fill, rates[0] if rates else None)

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

    def _sparse_weights(self, p: str, choice: sparse_cost.Choice, arrays: list[CArray]) -> str:
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

    def _zero_skip(
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
        return CExportError(f"{_where(op, self.names)}: {why}")

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
        fn = getattr(self, "op_" + op.name.lower(), None)
        if fn is None:
            raise self.fail(
                op,
                f"{op.name} has no kernel in the C export (it runs "
                f"{', '.join(SUPPORTED_OPS)}). Replace the layer with one "
                "that converts to those ops, or export it for TFLite Micro "
                "with kp.export.tflm instead.",
            )
        layer = fn(op)
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

    def _quant_arrays(self, p: str, mult, shift) -> tuple[list[CArray], str, int]:
        mult, shift = np.asarray(mult), np.asarray(shift)
        per_channel = int(mult.size > 1)
        arrays = [CArray(f"{p}_mult", "int32_t", mult), CArray(f"{p}_shift", "int32_t", shift)]
        return arrays, _quant_decl(p, per_channel), per_channel

    def _weighted(
        self, op: Operator, p: str, struct: str, prm: dict, tensors, mult, shift, eff
    ) -> tuple[list[CArray], str, str]:
        """Arrays and declarations a convolution shares with a depthwise one: weights,
        effective and plain biases, quantization, dims (ours and CMSIS-NN's)."""
        inp, w, out = tensors
        o = out.shape[-1]
        arrays, qdecl, _ = self._quant_arrays(p, mult, shift)
        carrays, cq = _cmsis_quant(p, mult, shift, o)
        arrays += [
            CArray(f"{p}_w", "int8_t", w.data),
            CArray(f"{p}_eb", "int32_t", eff),
            CArray(f"{p}_b", "int32_t", self.bias(op, o), cmsis_only=True),
            *carrays,
        ]
        decls = (
            f"static const {struct} {p}_params = {_struct(prm)};\n"
            + qdecl
            + f"static const kp_dims {p}_in = {_dims(inp.shape)};\n"
            f"static const kp_dims {p}_f = {_dims(w.shape)};\n"
            f"static const kp_dims {p}_out = {_dims(out.shape)};\n"
        )
        cdecls = (
            cq + f"static const cmsis_nn_dims {p}_cin = {_dims(inp.shape)};\n"
            f"static const cmsis_nn_dims {p}_cf = {_dims(w.shape)};\n"
            f"static const cmsis_nn_dims {p}_cb = {{1, 1, 1, {o}}};\n"
            f"static const cmsis_nn_dims {p}_cout = {_dims(out.shape)};\n"
        )
        return arrays, decls, cdecls

    def op_conv_2d(self, op: Operator) -> CLayer:
        inp, out = self.act_tensor(op, op.inputs[0]), self.act_tensor(op, op.outputs[0])
        w = self.weights(op, op.inputs[1])
        self.batch_one(op, inp)
        self.batch_one(op, out)
        o, kh, kw, ci = w.shape
        if ci != inp.shape[3]:
            raise self.fail(
                op,
                f"grouped convolution (filter depth {ci}, input depth "
                f"{inp.shape[3]}) is not supported; use DepthwiseConv2D.",
            )
        if kh * kw * ci > MAX_DEPTH:
            raise self.fail(
                op,
                f"a filter of {kh}x{kw}x{ci} = {kh * kw * ci} taps exceeds "
                f"the kernels' limit of {MAX_DEPTH}.",
            )
        stride, dil, pad = _window(op, inp, out, (kh, kw))
        mult, shift = int8_ops.conv_quant(float(inp.scale[0]), w.scale, float(out.scale[0]))
        in_off, out_off = -int(inp.zero_point[0]), int(out.zero_point[0])
        eff = int8_ops.effective_bias(self.bias(op, o), w.data.reshape(o, -1), in_off)
        lo, hi = self.activation(op, out)
        p = f"l{op.index}"
        prm = int8_ops.conv_params(-in_off, out_off, stride, pad, dil, (lo, hi))
        arrays, decls, cdecls = self._weighted(
            op, p, "kp_conv_params", prm, (inp, w, out), mult, shift, eff
        )
        call = (
            f"kp_convolve_s8(&{p}_params, &{p}_quant, &{p}_in, {{in0}}, &{p}_f, kp_{p}_w, "
            f"kp_{p}_eb, &{p}_out, {{out0}}, (int16_t *)(void *){{scratch}})"
        )
        cp, ccall = _cmsis_conv(
            p,
            "cmsis_nn_conv_params",
            "arm_convolve_wrapper_s8",
            f"{in_off}, {out_off}",
            (stride, pad, dil, (lo, hi)),
        )
        cdecls = cp + cdecls
        macs = int(np.prod(out.shape)) * kh * kw * ci
        cshape = sparse_cost.ConvShape(*out.shape[1:3], kh, kw, ci, stride, dil, pad)
        choice = sparse_cost.choose("conv", w.data.reshape(o, -1), cshape, self.sparse)
        kernel, scratch = "kp_convolve_s8", 4 * kh * kw * ci
        density = self.input_density(op.inputs[0])
        if (
            density is not None and kh == kw == 1 and stride == (1, 1) and not any(pad)
        ):  # a 1x1 convolution is a FULLY_CONNECTED per pixel
            choice = sparse_cost.choose_zero_skip(
                choice, w.data.reshape(o, -1), cshape.pixels, density, self.sparse
            )
        if choice.kernel == "zero_skip":
            zdecls, call = self._zero_skip(p, choice, arrays, cshape.pixels, ci, o)
            fc = int8_ops.fc_params(-in_off, out_off, (lo, hi))
            decls = (
                f"static const kp_fc_params {p}_params = {_struct(fc)};\n"
                + _quant_decl(p, int(np.asarray(mult).size > 1))
                + zdecls
            )
            kernel, scratch = "kp_zero_skip_fully_connected_s8", 4 * o
        elif choice.kernel == "sparse":
            decls += self._sparse_weights(p, choice, arrays)
            kernel = "kp_sparse_convolve_s8"
            scratch = sparse_cost.conv_scratch_bytes(cshape)
            call = (
                f"kp_sparse_convolve_s8(&{p}_params, &{p}_quant, &{p}_in, {{in0}}, "
                f"&{p}_f, &{p}_sg, kp_{p}_eb, &{p}_out, {{out0}}, "
                f"(int8_t *)(void *){{scratch}})"
            )
        return CLayer(
            op.index,
            op.name,
            (),
            (op.inputs[0],),
            (op.outputs[0],),
            decls,
            call,
            cdecls,
            ccall,
            arrays=arrays,
            macs=macs,
            scratch=scratch,
            kernel=kernel,
            sparse=choice.as_dict(),
        )

    def op_depthwise_conv_2d(self, op: Operator) -> CLayer:
        inp, out = self.act_tensor(op, op.inputs[0]), self.act_tensor(op, op.outputs[0])
        w = self.weights(op, op.inputs[1])
        self.batch_one(op, inp)
        self.batch_one(op, out)
        _, kh, kw, o = w.shape
        dm = int(op.options.get("depth_multiplier") or o // inp.shape[3])
        if o != inp.shape[3] * dm:
            raise self.fail(
                op,
                f"filter has {o} channels for {inp.shape[3]} input channels "
                f"and depth multiplier {dm}.",
            )
        stride, dil, pad = _window(op, inp, out, (kh, kw))
        mult, shift = int8_ops.conv_quant(float(inp.scale[0]), w.scale, float(out.scale[0]))
        in_off, out_off = -int(inp.zero_point[0]), int(out.zero_point[0])
        rows = w.data.reshape(kh * kw, o).T  # per output channel
        eff = int8_ops.effective_bias(self.bias(op, o), rows, in_off)
        lo, hi = self.activation(op, out)
        p = f"l{op.index}"
        prm = int8_ops.dw_conv_params(-in_off, out_off, dm, stride, pad, dil, (lo, hi))
        arrays, decls, cdecls = self._weighted(
            op, p, "kp_dw_conv_params", prm, (inp, w, out), mult, shift, eff
        )
        call = (
            f"kp_depthwise_conv_s8(&{p}_params, &{p}_quant, &{p}_in, {{in0}}, &{p}_f, "
            f"kp_{p}_w, kp_{p}_eb, &{p}_out, {{out0}})"
        )
        cp, ccall = _cmsis_conv(
            p,
            "cmsis_nn_dw_conv_params",
            "arm_depthwise_conv_wrapper_s8",
            f"{in_off}, {out_off}, {dm}",
            (stride, pad, dil, (lo, hi)),
        )
        cdecls = cp + cdecls
        macs = int(np.prod(out.shape)) * kh * kw
        return CLayer(
            op.index,
            op.name,
            (),
            (op.inputs[0],),
            (op.outputs[0],),
            decls,
            call,
            cdecls,
            ccall,
            arrays=arrays,
            macs=macs,
            kernel="kp_depthwise_conv_s8",
        )

    def op_fully_connected(self, op: Operator) -> CLayer:
        inp, out = self.act_tensor(op, op.inputs[0]), self.act_tensor(op, op.outputs[0])
        w = self.weights(op, op.inputs[1])
        if op.options.get("weights_format", 0) != 0:
            raise self.fail(op, "shuffled FULLY_CONNECTED weights are not supported.")
        o, k = w.shape
        if k > MAX_DEPTH:
            raise self.fail(op, f"{k} inputs per unit exceeds the kernels' limit of {MAX_DEPTH}.")
        if inp.size % k:
            raise self.fail(
                op, f"input of {inp.size} values is not a multiple of the {k} weights per unit."
            )
        batches = inp.size // k
        mult, shift = int8_ops.fc_quant(float(inp.scale[0]), w.scale, float(out.scale[0]))
        in_off, out_off = -int(inp.zero_point[0]), int(out.zero_point[0])
        eff = int8_ops.effective_bias(self.bias(op, o), w.data, in_off)
        lo, hi = self.activation(op, out)
        p = f"l{op.index}"
        arrays, qdecl, _ = self._quant_arrays(p, mult, shift)
        arrays += [
            CArray(f"{p}_w", "int8_t", w.data),
            CArray(f"{p}_eb", "int32_t", eff),
            CArray(f"{p}_b", "int32_t", self.bias(op, o), cmsis_only=True),
        ]
        prm = int8_ops.fc_params(-in_off, out_off, (lo, hi))
        decls = f"static const kp_fc_params {p}_params = {_struct(prm)};\n" + qdecl
        call = (
            f"kp_fully_connected_s8(&{p}_params, &{p}_quant, {batches}, {k}, {o}, "
            f"{{in0}}, kp_{p}_w, kp_{p}_eb, {{out0}})"
        )
        cdecls = (
            f"static const cmsis_nn_fc_params {p}_cp = {{{in_off}, 0, {out_off}, "
            f"{{{lo}, {hi}}}}};\n"
            f"static const cmsis_nn_dims {p}_cin = {{{batches}, 1, 1, {k}}};\n"
            f"static const cmsis_nn_dims {p}_cf = {{{k}, 1, 1, {o}}};\n"
            f"static const cmsis_nn_dims {p}_cb = {{1, 1, 1, {o}}};\n"
            f"static const cmsis_nn_dims {p}_cout = {{{batches}, 1, 1, {o}}};\n"
        )
        if np.asarray(mult).size == 1:
            cdecls += (
                f"static const cmsis_nn_per_tensor_quant_params {p}_cq = "
                f"{{{int(np.asarray(mult).reshape(-1)[0])}, "
                f"{int(np.asarray(shift).reshape(-1)[0])}}};\n"
            )
            fn = "arm_fully_connected_s8"
        else:
            cdecls += (
                f"static const cmsis_nn_per_channel_quant_params {p}_cq = "
                f"{{(int32_t *)kp_{p}_mult, (int32_t *)kp_{p}_shift}};\n"
            )
            fn = "arm_fully_connected_per_channel_s8"
        # The DSP build of CMSIS-NN needs no kernel-sum buffer (Helium would).
        ccall = (
            _cmsis_ctx(f"arm_fully_connected_s8_get_buffer_size(&{p}_cf)")
            + f"    if (ctx.size != 0) return KP_ERR_ARG;\n"
            f"    return (int){fn}(&ctx, &{p}_cp, &{p}_cq, &{p}_cin, {{in0}}, &{p}_cf, "
            f"kp_{p}_w, &{p}_cb, kp_{p}_b, &{p}_cout, {{out0}});\n"
        )
        choice = sparse_cost.choose("fc", w.data, {"batches": batches}, self.sparse)
        density = self.input_density(op.inputs[0])
        if density is not None:
            choice = sparse_cost.choose_zero_skip(choice, w.data, batches, density, self.sparse)
        kernel, scratch = "kp_fully_connected_s8", 0
        if choice.kernel == "zero_skip":
            zdecls, call = self._zero_skip(p, choice, arrays, batches, k, o)
            decls += zdecls
            kernel, scratch = "kp_zero_skip_fully_connected_s8", 4 * o
        elif choice.kernel == "sparse":
            decls += self._sparse_weights(p, choice, arrays)
            kernel = "kp_sparse_fully_connected_s8"
            call = (
                f"kp_sparse_fully_connected_s8(&{p}_params, &{p}_quant, {batches}, {k}, "
                f"{o}, {{in0}}, &{p}_sg, kp_{p}_eb, {{out0}})"
            )
        return CLayer(
            op.index,
            op.name,
            (),
            (op.inputs[0],),
            (op.outputs[0],),
            decls,
            call,
            cdecls,
            ccall,
            arrays=arrays,
            macs=batches * k * o,
            kernel=kernel,
            scratch=scratch,
            sparse=choice.as_dict(),
        )

    def _pool(self, op: Operator, fn: str) -> CLayer:
        inp, out = self.act_tensor(op, op.inputs[0]), self.act_tensor(op, op.outputs[0])
        self.batch_one(op, inp)
        self.batch_one(op, out)
        if (
            not np.isclose(inp.scale[0], out.scale[0], rtol=0, atol=0)
            or inp.zero_point[0] != out.zero_point[0]
        ):
            raise self.fail(
                op,
                "pooling with different input and output quantization is "
                "not supported (TFLite keeps them equal).",
            )
        k = (op.options["filter_height"], op.options["filter_width"])
        stride, _, pad = _window(op, inp, out, k)
        lo, hi = self.activation(op, out)
        p = f"l{op.index}"
        prm = int8_ops.pool_params(stride, pad, (lo, hi))
        decls = (
            f"static const kp_pool_params {p}_params = {_struct(prm)};\n"
            f"static const kp_tile {p}_k = {{{k[0]}, {k[1]}}};\n"
            f"static const kp_dims {p}_in = {_dims(inp.shape)};\n"
            f"static const kp_dims {p}_out = {_dims(out.shape)};\n"
        )
        call = f"{fn}(&{p}_params, &{p}_in, {{in0}}, &{p}_k, &{p}_out, {{out0}})"
        arm = "arm_max_pool_s8" if fn == "kp_max_pool_s8" else "arm_avgpool_s8"
        cdecls = (
            f"static const cmsis_nn_pool_params {p}_cp = {{{{{stride[1]}, {stride[0]}}}, "
            f"{{{pad[1]}, {pad[0]}}}, {{{lo}, {hi}}}}};\n"
            f"static const cmsis_nn_dims {p}_cin = {_dims(inp.shape)};\n"
            f"static const cmsis_nn_dims {p}_cf = {{1, {k[0]}, {k[1]}, 1}};\n"
            f"static const cmsis_nn_dims {p}_cout = {_dims(out.shape)};\n"
        )
        size = (
            "0"
            if arm == "arm_max_pool_s8"
            else f"arm_avgpool_s8_get_buffer_size({out.shape[2]}, {out.shape[3]})"
        )
        ccall = (
            _cmsis_ctx(size) + f"    return (int){arm}(&ctx, &{p}_cp, &{p}_cin, {{in0}}, "
            f"&{p}_cf, &{p}_cout, {{out0}});\n"
        )
        return CLayer(
            op.index,
            op.name,
            (),
            (op.inputs[0],),
            (op.outputs[0],),
            decls,
            call,
            cdecls,
            ccall,
            macs=int(np.prod(out.shape)) * k[0] * k[1],
            kernel=fn,
        )

    def op_max_pool_2d(self, op: Operator) -> CLayer:
        return self._pool(op, "kp_max_pool_s8")

    def op_average_pool_2d(self, op: Operator) -> CLayer:
        return self._pool(op, "kp_avg_pool_s8")

    def op_mean(self, op: Operator) -> CLayer:
        inp, out = self.act_tensor(op, op.inputs[0]), self.act_tensor(op, op.outputs[0])
        self.batch_one(op, inp)
        axis = self.g.tensors[op.inputs[1]].data
        axes = (
            sorted(int(a) % 4 for a in np.asarray(axis).reshape(-1)) if axis is not None else None
        )
        if axes != [1, 2]:
            raise self.fail(
                op,
                f"MEAN over axes {axes}; the kernel averages over height and "
                "width (GlobalAveragePooling2D).",
            )
        prm = int8_ops.mean_params(
            inp.shape,
            float(inp.scale[0]),
            int(inp.zero_point[0]),
            float(out.scale[0]),
            int(out.zero_point[0]),
        )
        p = f"l{op.index}"
        decls = (
            f"static const kp_mean_params {p}_params = {_struct(prm)};\n"
            f"static const kp_dims {p}_in = {_dims(inp.shape)};\n"
        )
        call = f"kp_mean_s8(&{p}_params, &{p}_in, {{in0}}, {{out0}})"
        return CLayer(
            op.index,
            op.name,
            (),
            (op.inputs[0],),
            (op.outputs[0],),
            decls,
            call,
            macs=inp.size,
            kernel="kp_mean_s8",
        )

    def op_add(self, op: Operator) -> CLayer:
        a, b = (self.act_tensor(op, i) for i in op.inputs[:2])
        out = self.act_tensor(op, op.outputs[0])
        if a.is_constant or b.is_constant or a.shape != b.shape or a.shape != out.shape:
            raise self.fail(
                op,
                f"ADD of shapes {a.shape} and {b.shape}: the kernel adds two "
                "computed tensors of the same shape (no broadcasting or "
                "constants).",
            )
        lo, hi = self.activation(op, out)
        prm = int8_ops.add_params(
            float(a.scale[0]),
            int(a.zero_point[0]),
            float(b.scale[0]),
            int(b.zero_point[0]),
            float(out.scale[0]),
            int(out.zero_point[0]),
            lo,
            hi,
        )
        p = f"l{op.index}"
        decls = f"static const kp_add_params {p}_params = {_struct(prm)};\n"
        call = f"kp_elementwise_add_s8(&{p}_params, {{in0}}, {{in1}}, {{out0}}, {out.size})"
        q = f"{p}_params"
        ccall = (
            f"    return (int)arm_elementwise_add_s8({{in0}}, {{in1}}, {q}.input1_offset, "
            f"{q}.input1_multiplier, {q}.input1_shift, {q}.input2_offset, "
            f"{q}.input2_multiplier, {q}.input2_shift, {q}.left_shift, {{out0}}, "
            f"{q}.output_offset, {q}.output_multiplier, {q}.output_shift, "
            f"{q}.activation.min, {q}.activation.max, {out.size});\n"
        )
        return CLayer(
            op.index,
            op.name,
            (),
            tuple(op.inputs[:2]),
            (op.outputs[0],),
            decls,
            call,
            "",
            ccall,
            macs=0,
            kernel="kp_elementwise_add_s8",
        )

    def op_softmax(self, op: Operator) -> CLayer:
        inp, out = self.act_tensor(op, op.inputs[0]), self.act_tensor(op, op.outputs[0])
        if int(out.zero_point[0]) != -128 or not np.isclose(out.scale[0], 1 / 256):
            raise self.fail(
                op,
                f"SOFTMAX output quantized with scale {out.scale[0]} and zero "
                f"point {out.zero_point[0]}; TFLite's int8 softmax uses "
                "1/256 and -128.",
            )
        prm = int8_ops.softmax_params(float(op.options.get("beta", 1.0)), float(inp.scale[0]))
        row = inp.shape[-1]
        p = f"l{op.index}"
        decls = f"static const kp_softmax_params {p}_params = {_struct(prm)};\n"
        call = f"kp_softmax_s8(&{p}_params, {{in0}}, {inp.size // row}, {row}, {{out0}})"
        q = f"{p}_params"
        ccall = (
            f"    arm_softmax_s8({{in0}}, {inp.size // row}, {row}, {q}.input_multiplier, "
            f"{q}.input_left_shift, {q}.diff_min, {{out0}});\n    return KP_OK;\n"
        )
        return CLayer(
            op.index,
            op.name,
            (),
            (op.inputs[0],),
            (op.outputs[0],),
            decls,
            call,
            "",
            ccall,
            kernel="kp_softmax_s8",
        )

    def op_pad(self, op: Operator) -> CLayer:
        inp, out = self.act_tensor(op, op.inputs[0]), self.act_tensor(op, op.outputs[0])
        pads = self.g.tensors[op.inputs[1]].data
        if pads is None or len(inp.shape) != 4:
            raise self.fail(op, "PAD needs constant paddings of a 4-D tensor.")
        if len(op.inputs) > 2 and op.inputs[2] >= 0:
            raise self.fail(op, "PAD with an explicit constant (PADV2) is not supported.")
        prm = int8_ops.pad_params(pads, int(out.zero_point[0]))
        p = f"l{op.index}"
        decls = (
            f"static const kp_pad_params {p}_params = {_struct(prm)};\n"
            f"static const kp_dims {p}_in = {_dims(inp.shape)};\n"
            f"static const kp_dims {p}_out = {_dims(out.shape)};\n"
        )
        call = f"kp_pad_s8(&{p}_params, &{p}_in, {{in0}}, &{p}_out, {{out0}})"
        return CLayer(
            op.index,
            op.name,
            (),
            (op.inputs[0],),
            (op.outputs[0],),
            decls,
            call,
            kernel="kp_pad_s8",
        )

    def op_greater_equal(self, op: Operator) -> CLayer | None:
        if op.index in self.fused:
            return None  # lowered with its SELECT_V2
        raise self.fail(
            op,
            "GREATER_EQUAL runs in the C export only as half of an "
            "activation mask's threshold form (GREATER_EQUAL against a "
            "constant, then SELECT_V2 with a constant zero).",
        )

    def op_select_v2(self, op: Operator) -> CLayer:
        m = self.mask_of.get(op.index)
        if m is None:
            raise self.fail(
                op,
                "SELECT_V2 runs in the C export only as half of an "
                "activation mask's threshold form (SELECT_V2(GREATER_EQUAL("
                "x, constant), x, constant zero)).",
            )
        x = self.act_tensor(op, m.x)
        out = self.act_tensor(op, op.outputs[0])
        if x.shape != out.shape:
            raise self.fail(op, f"SELECT_V2 from {x.shape} to {out.shape}: a mask keeps the shape.")
        # In place when nothing else reads the activations afterwards.
        others = [c for c in self.consumers.get(m.x, []) if c.index not in (m.compare, op.index)]
        alias = (
            not others
            and m.x not in self.g.inputs
            and m.x not in self.g.outputs
            and m.x in self.producer
        )
        info = {
            "form": self.masks,
            "min_kept": m.min_kept,
            "fill": m.fill,
            "winner_rate": m.rate,
            "size": x.size,
        }
        if self.masks == "topk":
            if m.rate is None:
                raise self.fail(
                    op,
                    "masks='topk' needs the mask's winner rate, and this "
                    "threshold layer records none; export with "
                    "masks='threshold', or strip the ActivationMask model "
                    "with kp.strip (which records it).",
                )
            if x.size > TOPK_MAX_SIZE:
                raise self.fail(
                    op,
                    f"masks='topk' on {x.size:,} activations: the run-time "
                    f"top-k counts at most {TOPK_MAX_SIZE:,} per map; use "
                    "masks='threshold'.",
                )
            k = winner_count(m.rate, x.size)
            info["winners"] = k
            call = (
                f"kp_topk_s8({{in0}}, {x.size}, {k}, {m.fill}, {{out0}}, "
                f"(uint16_t *)(void *){{scratch}})"
            )
            return CLayer(
                op.index,
                op.name,
                (),
                (m.x,),
                (op.outputs[0],),
                "",
                call,
                alias=alias,
                kernel="kp_topk_s8",
                scratch=TOPK_SCRATCH_BYTES,
                mask=info,
            )
        call = f"kp_threshold_s8({{in0}}, {x.size}, {m.min_kept}, {m.fill}, {{out0}})"
        return CLayer(
            op.index,
            op.name,
            (),
            (m.x,),
            (op.outputs[0],),
            "",
            call,
            alias=alias,
            kernel="kp_threshold_s8",
            mask=info,
        )

    def op_reshape(self, op: Operator) -> CLayer:
        inp, out = self.act_tensor(op, op.inputs[0]), self.act_tensor(op, op.outputs[0])
        if inp.size != out.size:
            raise self.fail(op, f"RESHAPE from {inp.shape} to {out.shape} changes the size.")
        return CLayer(
            op.index,
            op.name,
            (),
            (op.inputs[0],),
            (op.outputs[0],),
            "",
            "KP_OK",
            alias=True,
            kernel="(alias of its input)",
        )


def _window(op: Operator, inp: Tensor, out: Tensor, filter_hw) -> tuple:
    """(stride, dilation, padding before), each (h, w), as TFLM's Prepare derives them."""
    o = op.options
    stride = (o["stride_h"], o["stride_w"])
    dil = (o.get("dilation_h_factor", 1), o.get("dilation_w_factor", 1))
    pad = tuple(
        int8_ops.padding(inp.shape[1 + a], filter_hw[a], stride[a], dil[a], out.shape[1 + a])
        for a in range(2)
    )
    return stride, dil, pad


def _struct(params: dict) -> str:
    """A C initializer from a dict in struct field order (nested dicts/tuples allowed)."""

    def one(v):
        if isinstance(v, dict):
            return _struct(v)
        if isinstance(v, (tuple, list)):
            return "{" + ", ".join(one(x) for x in v) + "}"
        return str(int(v))

    return "{" + ", ".join(one(v) for v in params.values()) + "}"


def lower(
    graph: Graph,
    names: dict[int, tuple[str, ...]] | None = None,
    sparse: str = "auto",
    masks: str = "threshold",
    mask_rates: dict[str, float] | None = None,
) -> list[CLayer]:
    """One ``CLayer`` per operator, in execution order. ``names`` maps an operator index
    to the Keras layers it came from (for error messages and reports). ``sparse``:
    ``"auto"`` runs a FULLY_CONNECTED or CONV_2D layer on SIMD-group sparse weights where
    ``sparse_cost`` estimates that faster, ``"always"`` wherever possible, ``"never"``
    nowhere; the same switch governs the zero-skipping kernel of a FULLY_CONNECTED (or 1x1
    CONV_2D) fed by an activation mask. ``masks``: ``"threshold"`` runs each activation
    mask as the ``.tflite`` does (bit-exact with TFLM), ``"topk"`` keeps the top-k winners
    at run time as the Keras ActivationMask does (``mask_rates``: Keras layer name ->
    winner rate)."""
    if sparse not in sparse_cost.SPARSE_MODES:
        raise ValueError(
            f"sparse={sparse!r}: expected one of {', '.join(map(repr, sparse_cost.SPARSE_MODES))}."
        )
    if masks not in MASK_MODES:
        raise ValueError(f"masks={masks!r}: expected one of {', '.join(map(repr, MASK_MODES))}.")
    low = _Lowering(graph, names or {}, sparse, masks, mask_rates)
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise CExportError(
            f"the model has {len(graph.inputs)} inputs and "
            f"{len(graph.outputs)} outputs; the C export takes one of each."
        )
    unsupported = [op for op in graph.operators if not hasattr(low, "op_" + op.name.lower())]
    if unsupported:
        lines = "\n".join(f"  - {_where(op, low.names)}" for op in unsupported)
        raise CExportError(
            "The int8 model uses ops the C export has no kernel for:\n"
            + lines
            + f"\nThe C export runs {', '.join(SUPPORTED_OPS)} (with fused ReLU/ReLU6). "
            "Replace those layers, or export for TFLite Micro with kp.export.tflm instead."
        )
    return [la for la in map(low.lower, graph.operators) if la is not None]
