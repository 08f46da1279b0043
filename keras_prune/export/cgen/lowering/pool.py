"""MAX_POOL_2D, AVERAGE_POOL_2D and MEAN (global average pooling)."""

from __future__ import annotations

import numpy as np

from keras_prune.export.cgen.lowering.context import (
    LoweringContext,
    c_dims,
    c_struct,
    cmsis_ctx,
    conv_window,
    register,
)
from keras_prune.export.cgen.lowering.types import (
    CLayer,
)
from keras_prune.export.int8 import reference as int8_ops
from keras_prune.export.int8.flatbuffer import Operator


def _pool(ctx: LoweringContext, op: Operator, fn: str) -> CLayer:
    inp, out = ctx.act_tensor(op, op.inputs[0]), ctx.act_tensor(op, op.outputs[0])
    ctx.batch_one(op, inp)
    ctx.batch_one(op, out)
    if (
        not np.isclose(inp.scale[0], out.scale[0], rtol=0, atol=0)
        or inp.zero_point[0] != out.zero_point[0]
    ):
        raise ctx.fail(
            op,
            "pooling with different input and output quantization is "
            "not supported (TFLite keeps them equal).",
        )
    k = (op.options["filter_height"], op.options["filter_width"])
    stride, _, pad = conv_window(op, inp, out, k)
    lo, hi = ctx.activation(op, out)
    p = f"l{op.index}"
    prm = int8_ops.pool_params(stride, pad, (lo, hi))
    decls = (
        f"static const kp_pool_params {p}_params = {c_struct(prm)};\n"
        f"static const kp_tile {p}_k = {{{k[0]}, {k[1]}}};\n"
        f"static const kp_dims {p}_in = {c_dims(inp.shape)};\n"
        f"static const kp_dims {p}_out = {c_dims(out.shape)};\n"
    )
    call = f"{fn}(&{p}_params, &{p}_in, {{in0}}, &{p}_k, &{p}_out, {{out0}})"
    arm = "arm_max_pool_s8" if fn == "kp_max_pool_s8" else "arm_avgpool_s8"
    cdecls = (
        f"static const cmsis_nn_pool_params {p}_cp = {{{{{stride[1]}, {stride[0]}}}, "
        f"{{{pad[1]}, {pad[0]}}}, {{{lo}, {hi}}}}};\n"
        f"static const cmsis_nn_dims {p}_cin = {c_dims(inp.shape)};\n"
        f"static const cmsis_nn_dims {p}_cf = {{1, {k[0]}, {k[1]}, 1}};\n"
        f"static const cmsis_nn_dims {p}_cout = {c_dims(out.shape)};\n"
    )
    size = (
        "0"
        if arm == "arm_max_pool_s8"
        else f"arm_avgpool_s8_get_buffer_size({out.shape[2]}, {out.shape[3]})"
    )
    ccall = (
        cmsis_ctx(size) + f"    return (int){arm}(&ctx, &{p}_cp, &{p}_cin, {{in0}}, "
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


@register("MAX_POOL_2D")
def max_pool_2d(ctx: LoweringContext, op: Operator) -> CLayer:
    return _pool(ctx, op, "kp_max_pool_s8")


@register("AVERAGE_POOL_2D")
def average_pool_2d(ctx: LoweringContext, op: Operator) -> CLayer:
    return _pool(ctx, op, "kp_avg_pool_s8")


@register("MEAN")
def mean(ctx: LoweringContext, op: Operator) -> CLayer:
    inp, out = ctx.act_tensor(op, op.inputs[0]), ctx.act_tensor(op, op.outputs[0])
    ctx.batch_one(op, inp)
    axis = ctx.g.tensors[op.inputs[1]].data
    axes = sorted(int(a) % 4 for a in np.asarray(axis).reshape(-1)) if axis is not None else None
    if axes != [1, 2]:
        raise ctx.fail(
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
        f"static const kp_mean_params {p}_params = {c_struct(prm)};\n"
        f"static const kp_dims {p}_in = {c_dims(inp.shape)};\n"
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
