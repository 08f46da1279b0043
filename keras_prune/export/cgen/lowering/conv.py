"""CONV_2D and DEPTHWISE_CONV_2D: our dense, sparse or zero-skipping kernel call and CMSIS-NN's."""

from __future__ import annotations

import numpy as np

from keras_prune.export.cgen import cost_model as sparse_cost
from keras_prune.export.cgen.lowering.context import (
    LoweringContext,
    c_struct,
    cmsis_conv,
    conv_window,
    quant_decl,
    register,
)
from keras_prune.export.cgen.lowering.types import (
    MAX_DEPTH,
    CLayer,
)
from keras_prune.export.cgen.sparse_format import depthwise_rows
from keras_prune.export.int8 import reference as int8_ops
from keras_prune.export.int8.flatbuffer import Operator


@register("CONV_2D")
def conv_2d(ctx: LoweringContext, op: Operator) -> CLayer:
    inp, out = ctx.act_tensor(op, op.inputs[0]), ctx.act_tensor(op, op.outputs[0])
    w = ctx.weights(op, op.inputs[1])
    ctx.batch_one(op, inp)
    ctx.batch_one(op, out)
    o, kh, kw, ci = w.shape
    if ci != inp.shape[3]:
        raise ctx.fail(
            op,
            f"grouped convolution (filter depth {ci}, input depth "
            f"{inp.shape[3]}) is not supported; use DepthwiseConv2D.",
        )
    if kh * kw * ci > MAX_DEPTH:
        raise ctx.fail(
            op,
            f"a filter of {kh}x{kw}x{ci} = {kh * kw * ci} taps exceeds "
            f"the kernels' limit of {MAX_DEPTH}.",
        )
    stride, dil, pad = conv_window(op, inp, out, (kh, kw))
    mult, shift = int8_ops.conv_quant(float(inp.scale[0]), w.scale, float(out.scale[0]))
    in_off, out_off = -int(inp.zero_point[0]), int(out.zero_point[0])
    eff = int8_ops.effective_bias(ctx.bias(op, o), w.data.reshape(o, -1), in_off)
    lo, hi = ctx.activation(op, out)
    p = f"l{op.index}"
    prm = int8_ops.conv_params(-in_off, out_off, stride, pad, dil, (lo, hi))
    arrays, decls, cdecls = ctx.weighted(
        op, p, "kp_conv_params", prm, (inp, w, out), mult, shift, eff
    )
    call = (
        f"kp_convolve_s8(&{p}_params, &{p}_quant, &{p}_in, {{in0}}, &{p}_f, kp_{p}_w, "
        f"kp_{p}_eb, &{p}_out, {{out0}}, (int16_t *)(void *){{scratch}})"
    )
    cp, ccall = cmsis_conv(
        p,
        "cmsis_nn_conv_params",
        "arm_convolve_wrapper_s8",
        f"{in_off}, {out_off}",
        (stride, pad, dil, (lo, hi)),
    )
    cdecls = cp + cdecls
    macs = int(np.prod(out.shape)) * kh * kw * ci
    cshape = sparse_cost.ConvShape(*out.shape[1:3], kh, kw, ci, stride, dil, pad)
    choice = sparse_cost.choose("conv", w.data.reshape(o, -1), cshape, ctx.sparse)
    kernel, scratch = "kp_convolve_s8", 4 * kh * kw * ci
    density = ctx.input_density(op.inputs[0])
    if (
        density is not None and kh == kw == 1 and stride == (1, 1) and not any(pad)
    ):  # a 1x1 convolution is a FULLY_CONNECTED per pixel
        choice = sparse_cost.choose_zero_skip(
            choice, w.data.reshape(o, -1), cshape.pixels, density, ctx.sparse
        )
    if choice.kernel == "zero_skip":
        zdecls, call = ctx.zero_skip(p, choice, arrays, cshape.pixels, ci, o)
        fc = int8_ops.fc_params(-in_off, out_off, (lo, hi))
        decls = (
            f"static const kp_fc_params {p}_params = {c_struct(fc)};\n"
            + quant_decl(p, int(np.asarray(mult).size > 1))
            + zdecls
        )
        kernel, scratch = "kp_zero_skip_fully_connected_s8", 4 * o
    elif choice.kernel == "sparse":
        decls += ctx.sparse_weights(p, choice, arrays)
        if choice.conv_variant == "rows":
            kernel = "kp_sparse_convolve_rows_s8"
            scratch = sparse_cost.conv_rows_scratch_bytes(cshape)
        else:
            kernel = "kp_sparse_convolve_s8"
            scratch = sparse_cost.conv_scratch_bytes(cshape)
        call = (
            f"{kernel}(&{p}_params, &{p}_quant, &{p}_in, {{in0}}, "
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


@register("DEPTHWISE_CONV_2D")
def depthwise_conv_2d(ctx: LoweringContext, op: Operator) -> CLayer:
    inp, out = ctx.act_tensor(op, op.inputs[0]), ctx.act_tensor(op, op.outputs[0])
    w = ctx.weights(op, op.inputs[1])
    ctx.batch_one(op, inp)
    ctx.batch_one(op, out)
    _, kh, kw, o = w.shape
    dm = int(op.options.get("depth_multiplier") or o // inp.shape[3])
    if o != inp.shape[3] * dm:
        raise ctx.fail(
            op,
            f"filter has {o} channels for {inp.shape[3]} input channels and depth multiplier {dm}.",
        )
    stride, dil, pad = conv_window(op, inp, out, (kh, kw))
    mult, shift = int8_ops.conv_quant(float(inp.scale[0]), w.scale, float(out.scale[0]))
    in_off, out_off = -int(inp.zero_point[0]), int(out.zero_point[0])
    rows = w.data.reshape(kh * kw, o).T  # per output channel
    eff = int8_ops.effective_bias(ctx.bias(op, o), rows, in_off)
    lo, hi = ctx.activation(op, out)
    p = f"l{op.index}"
    prm = int8_ops.dw_conv_params(-in_off, out_off, dm, stride, pad, dil, (lo, hi))
    arrays, decls, cdecls = ctx.weighted(
        op, p, "kp_dw_conv_params", prm, (inp, w, out), mult, shift, eff
    )
    call = (
        f"kp_depthwise_conv_s8(&{p}_params, &{p}_quant, &{p}_in, {{in0}}, &{p}_f, "
        f"kp_{p}_w, kp_{p}_eb, &{p}_out, {{out0}})"
    )
    cp, ccall = cmsis_conv(
        p,
        "cmsis_nn_dw_conv_params",
        "arm_depthwise_conv_wrapper_s8",
        f"{in_off}, {out_off}, {dm}",
        (stride, pad, dil, (lo, hi)),
    )
    cdecls = cp + cdecls
    macs = int(np.prod(out.shape)) * kh * kw
    kernel, scratch, choice = "kp_depthwise_conv_s8", 0, None
    if dm == 1 and o % 4 == 0:  # the sparse kernel's groups: 4 channels at one tap
        cshape = sparse_cost.ConvShape(*out.shape[1:3], kh, kw, o, stride, dil, pad)
        taps = w.data.reshape(kh * kw, o)
        choice = sparse_cost.choose("dw", depthwise_rows(taps), cshape, ctx.sparse)
        if choice.kernel == "sparse":
            decls += ctx.sparse_weights(p, choice, arrays)
            kernel, scratch = "kp_sparse_depthwise_conv_s8", sparse_cost.dw_scratch_bytes(kh, kw)
            call = (
                f"kp_sparse_depthwise_conv_s8(&{p}_params, &{p}_quant, &{p}_in, {{in0}}, "
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
        sparse=choice.as_dict() if choice is not None else None,
    )
