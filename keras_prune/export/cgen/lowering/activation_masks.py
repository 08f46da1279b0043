"""Activation masks: GREATER_EQUAL + SELECT_V2 (an ActivationThreshold), lowered together
as one threshold or top-k call."""

from __future__ import annotations

from keras_prune.export.cgen.lowering.context import (
    LoweringContext,
    register,
)
from keras_prune.export.cgen.lowering.types import (
    TOPK_MAX_SIZE,
    TOPK_SCRATCH_BYTES,
    CLayer,
)
from keras_prune.export.int8.flatbuffer import Operator
from keras_prune.layers.activation_mask import winner_count


@register("GREATER_EQUAL")
def greater_equal(ctx: LoweringContext, op: Operator) -> CLayer | None:
    if op.index in ctx.fused:
        return None  # lowered with its SELECT_V2
    raise ctx.fail(
        op,
        "GREATER_EQUAL runs in the C export only as half of an "
        "activation mask's threshold form (GREATER_EQUAL against a "
        "constant, then SELECT_V2 with a constant zero).",
    )


@register("SELECT_V2")
def select_v2(ctx: LoweringContext, op: Operator) -> CLayer:
    m = ctx.mask_of.get(op.index)
    if m is None:
        raise ctx.fail(
            op,
            "SELECT_V2 runs in the C export only as half of an "
            "activation mask's threshold form (SELECT_V2(GREATER_EQUAL("
            "x, constant), x, constant zero)).",
        )
    x = ctx.act_tensor(op, m.x)
    out = ctx.act_tensor(op, op.outputs[0])
    if x.shape != out.shape:
        raise ctx.fail(op, f"SELECT_V2 from {x.shape} to {out.shape}: a mask keeps the shape.")
    # In place when nothing else reads the activations afterwards.
    others = [c for c in ctx.consumers.get(m.x, []) if c.index not in (m.compare, op.index)]
    alias = (
        not others and m.x not in ctx.g.inputs and m.x not in ctx.g.outputs and m.x in ctx.producer
    )
    info = {
        "form": ctx.masks,
        "min_kept": m.min_kept,
        "fill": m.fill,
        "winner_rate": m.rate,
        "size": x.size,
    }
    if ctx.masks == "topk":
        if m.rate is None:
            raise ctx.fail(
                op,
                "masks='topk' needs the mask's winner rate, and this "
                "threshold layer records none; export with "
                "masks='threshold', or strip the ActivationMask model "
                "with kp.strip (which records it).",
            )
        if x.size > TOPK_MAX_SIZE:
            raise ctx.fail(
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
