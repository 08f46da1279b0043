"""From a decoded int8 ``.tflite`` graph to kernel calls: one ``CLayer`` per operator.

Each supported operator has one small lowering (``conv``, ``fully_connected``, ``pool``,
``elementwise``, ``masks``) registered in ``context.OPS``. It becomes a call into the
kernels' ``kp_nn.h`` with its parameters
computed exactly as TFLite Micro's ``Prepare`` computes them (``int8.reference``), its constant
arrays (weights, effective biases, multipliers, shifts), and, for the
``KP_USE_CMSIS_NN`` build, the equivalent CMSIS-NN call. Tensor addresses are left as
``{in0}``, ``{out0}``, ``{scratch}`` placeholders; the memory plan fills them in.

Anything the kernels cannot run exactly raises ``CExportError`` naming the operator, its
Keras layer and what to change.
"""

from __future__ import annotations

from keras_prune.export.cgen import cost_model as sparse_cost

# the op modules register their lowerings on import
from keras_prune.export.cgen.lowering import (  # noqa: F401
    activation_masks,
    conv,
    elementwise,
    fully_connected,
    pool,
)
from keras_prune.export.cgen.lowering.context import OPS, LoweringContext, where
from keras_prune.export.cgen.lowering.types import (
    MASK_MODES,
    MAX_DEPTH,
    MAX_DIM,
    SUPPORTED_OPS,
    CArray,
    CExportError,
    CLayer,
)
from keras_prune.export.int8.flatbuffer import Graph

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
    low = LoweringContext(graph, names or {}, sparse, masks, mask_rates)
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise CExportError(
            f"the model has {len(graph.inputs)} inputs and "
            f"{len(graph.outputs)} outputs; the C export takes one of each."
        )
    unsupported = [op for op in graph.operators if op.name not in OPS]
    if unsupported:
        lines = "\n".join(f"  - {where(op, low.names)}" for op in unsupported)
        raise CExportError(
            "The int8 model uses ops the C export has no kernel for:\n"
            + lines
            + f"\nThe C export runs {', '.join(SUPPORTED_OPS)} (with fused ReLU/ReLU6). "
            "Replace those layers, or export for TFLite Micro with kp.export.tflm instead."
        )
    return [la for la in map(low.lower, graph.operators) if la is not None]
