"""ADD, SOFTMAX, PAD and RESHAPE (an alias of its input's bytes)."""

from __future__ import annotations

import numpy as np

from keras_prune.export.cgen.lowering.context import (
    LoweringContext,
    c_dims,
    c_struct,
    register,
)
from keras_prune.export.cgen.lowering.types import (
    CLayer,
)
from keras_prune.export.int8 import reference as int8_ops
from keras_prune.export.int8.flatbuffer import Operator


@register("ADD")
def add(ctx: LoweringContext, op: Operator) -> CLayer:
    a, b = (ctx.act_tensor(op, i) for i in op.inputs[:2])
    out = ctx.act_tensor(op, op.outputs[0])
    if a.is_constant or b.is_constant or a.shape != b.shape or a.shape != out.shape:
        raise ctx.fail(
            op,
            f"ADD of shapes {a.shape} and {b.shape}: the kernel adds two "
            "computed tensors of the same shape (no broadcasting or "
            "constants).",
        )
    lo, hi = ctx.activation(op, out)
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
    decls = f"static const kp_add_params {p}_params = {c_struct(prm)};\n"
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


@register("SOFTMAX")
def softmax(ctx: LoweringContext, op: Operator) -> CLayer:
    inp, out = ctx.act_tensor(op, op.inputs[0]), ctx.act_tensor(op, op.outputs[0])
    if int(out.zero_point[0]) != -128 or not np.isclose(out.scale[0], 1 / 256):
        raise ctx.fail(
            op,
            f"SOFTMAX output quantized with scale {out.scale[0]} and zero "
            f"point {out.zero_point[0]}; TFLite's int8 softmax uses "
            "1/256 and -128.",
        )
    prm = int8_ops.softmax_params(float(op.options.get("beta", 1.0)), float(inp.scale[0]))
    row = inp.shape[-1]
    p = f"l{op.index}"
    decls = f"static const kp_softmax_params {p}_params = {c_struct(prm)};\n"
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


@register("PAD")
def pad(ctx: LoweringContext, op: Operator) -> CLayer:
    inp, out = ctx.act_tensor(op, op.inputs[0]), ctx.act_tensor(op, op.outputs[0])
    pads = ctx.g.tensors[op.inputs[1]].data
    if pads is None or len(inp.shape) != 4:
        raise ctx.fail(op, "PAD needs constant paddings of a 4-D tensor.")
    if len(op.inputs) > 2 and op.inputs[2] >= 0:
        raise ctx.fail(op, "PAD with an explicit constant (PADV2) is not supported.")
    prm = int8_ops.pad_params(pads, int(out.zero_point[0]))
    p = f"l{op.index}"
    decls = (
        f"static const kp_pad_params {p}_params = {c_struct(prm)};\n"
        f"static const kp_dims {p}_in = {c_dims(inp.shape)};\n"
        f"static const kp_dims {p}_out = {c_dims(out.shape)};\n"
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


@register("RESHAPE")
def reshape(ctx: LoweringContext, op: Operator) -> CLayer:
    inp, out = ctx.act_tensor(op, op.inputs[0]), ctx.act_tensor(op, op.outputs[0])
    if inp.size != out.size:
        raise ctx.fail(op, f"RESHAPE from {inp.shape} to {out.shape} changes the size.")
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
