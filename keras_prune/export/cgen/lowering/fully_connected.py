"""FULLY_CONNECTED: our dense, SIMD-group sparse or zero-skipping kernel call and CMSIS-NN's."""

from __future__ import annotations

import numpy as np

from keras_prune.export.cgen import cost_model as sparse_cost
from keras_prune.export.cgen.lowering.context import (
    LoweringContext,
    c_struct,
    cmsis_ctx,
    register,
)
from keras_prune.export.cgen.lowering.types import (
    MAX_DEPTH,
    CArray,
    CLayer,
)
from keras_prune.export.int8 import reference as int8_ops
from keras_prune.export.int8.flatbuffer import Operator


@register("FULLY_CONNECTED")
def fully_connected(ctx: LoweringContext, op: Operator) -> CLayer:
    inp, out = ctx.act_tensor(op, op.inputs[0]), ctx.act_tensor(op, op.outputs[0])
    w = ctx.weights(op, op.inputs[1])
    if op.options.get("weights_format", 0) != 0:
        raise ctx.fail(op, "shuffled FULLY_CONNECTED weights are not supported.")
    o, k = w.shape
    if k > MAX_DEPTH:
        raise ctx.fail(op, f"{k} inputs per unit exceeds the kernels' limit of {MAX_DEPTH}.")
    if inp.size % k:
        raise ctx.fail(
            op, f"input of {inp.size} values is not a multiple of the {k} weights per unit."
        )
    batches = inp.size // k
    mult, shift = int8_ops.fc_quant(float(inp.scale[0]), w.scale, float(out.scale[0]))
    in_off, out_off = -int(inp.zero_point[0]), int(out.zero_point[0])
    eff = int8_ops.effective_bias(ctx.bias(op, o), w.data, in_off)
    lo, hi = ctx.activation(op, out)
    p = f"l{op.index}"
    arrays, qdecl, _ = ctx.quant_arrays(p, mult, shift)
    arrays += [
        CArray(f"{p}_w", "int8_t", w.data),
        CArray(f"{p}_eb", "int32_t", eff),
        CArray(f"{p}_b", "int32_t", ctx.bias(op, o), cmsis_only=True),
    ]
    prm = int8_ops.fc_params(-in_off, out_off, (lo, hi))
    decls = f"static const kp_fc_params {p}_params = {c_struct(prm)};\n" + qdecl
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
        cmsis_ctx(f"arm_fully_connected_s8_get_buffer_size(&{p}_cf)")
        + f"    if (ctx.size != 0) return KP_ERR_ARG;\n"
        f"    return (int){fn}(&ctx, &{p}_cp, &{p}_cq, &{p}_cin, {{in0}}, &{p}_cf, "
        f"kp_{p}_w, &{p}_cb, kp_{p}_b, &{p}_cout, {{out0}});\n"
    )
    choice = sparse_cost.choose("fc", w.data, {"batches": batches}, ctx.sparse)
    density = ctx.input_density(op.inputs[0])
    if density is not None:
        choice = sparse_cost.choose_zero_skip(choice, w.data, batches, density, ctx.sparse)
    kernel, scratch = "kp_fully_connected_s8", 0
    if choice.kernel == "zero_skip":
        zdecls, call = ctx.zero_skip(p, choice, arrays, batches, k, o)
        decls += zdecls
        kernel, scratch = "kp_zero_skip_fully_connected_s8", 4 * o
    elif choice.kernel == "sparse":
        decls += ctx.sparse_weights(p, choice, arrays)
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
