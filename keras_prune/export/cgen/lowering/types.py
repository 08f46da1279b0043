"""What lowering produces, and its limits: ``CLayer`` (one kernel call and its constants),
``CArray``, ``CExportError``, and the ops, mask modes and sizes the kernels take."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

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
