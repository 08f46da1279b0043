"""Dense or sparse, per layer: estimated Cortex-M4 cycles of both kernels, and the choice.

The C export runs a FULLY_CONNECTED or CONV_2D layer on SIMD-group sparse weights
(``kp_sparse_*_s8``, ``sparse_format``) only where that is estimated to be faster than the
dense kernel on the same int8 weights. Sparse only pays when most 4-weight groups are gone:
the dense kernels run at about 1.7 cycles per MAC, a kept group costs about 12 cycles
(SXTB16/SMLAD on 4 weights plus its index), and every output row pays a fixed cost.

The estimates are linear models of the DSP build at ``-O2``, fitted to unicorn
measurements of the kernels themselves (``benchmarks/m4_cost_model.py`` measures the
shapes, fits these constants and prints each model's error; rerun it after touching a
kernel). Like every cycle figure here they assume zero wait states: compare them, do
not read them as board times.

Example:

```python
choice = sparse_cost.choose("fc", w_rows, shape={"batches": 1}, mode="auto")
print(choice.kernel, choice.reason)
```
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from keras_prune.export.cgen.sparse_format import (
    InputGroups,
    SparseGroups,
    encode_groups,
    encode_input_groups,
    row_groups,
)

__all__ = [
    "SPARSE_MODES",
    "Choice",
    "ConvShape",
    "choose",
    "fc_dense_cycles",
    "fc_sparse_cycles",
    "conv_dense_cycles",
    "conv_sparse_cycles",
    "conv_pieces",
    "conv_scratch_bytes",
    "zero_skip_cycles",
    "choose_zero_skip",
]

SPARSE_MODES = ("auto", "never", "always")

# Fitted by benchmarks/m4_cost_model.py (2026-11-24; ZERO_SKIP 2026-12-07; -O2, DSP build).
FC_DENSE = {"call": 463.0, "row": 47.4, "mac": 1.69}
FC_SPARSE = {
    "call": 0.0,
    "row": 81.7,
    "run_pair": 18.6,
    "group": {"abs16": 10.5, "delta8": 12.6, "runs": 27.0},
}
CONV_DENSE = {"call": 0.0, "pixel": 221.0, "tap": 31.8, "value": 6.86, "mac": 1.61, "row": 41.8}
# The sparse convolution's row copies are not fitted (a few library calls per input row,
# word copies); the rest is.
CONV_SPARSE = {
    "call": 0.0,
    "in_row": 40.0,
    "copy": 0.5,
    "group": 152.0,
    "out": 43.8,
    "piece": 11.4,
    "pixel_1x1": 248.0,
    "row_1x1": 59.0,
}
# The zero-skipping FULLY_CONNECTED: per row (bias copy, requantization), per group holding
# a non-zero input, and per entry of such a group. Reading and testing a skipped group is
# not separable from "active" on the measured shapes, so it has no term of its own.
ZERO_SKIP = {"call": 0.0, "row": 79.3, "active": 56.1, "entry": 14.0}


def fc_dense_cycles(batches: int, k: int, rows: int) -> float:
    c = FC_DENSE
    return c["call"] + batches * (c["row"] * rows + c["mac"] * rows * k)


def runs_pairs(sparse: SparseGroups) -> int:
    """(skip, run) pairs of a ``runs`` stream (0 for the other kinds): its decoder pays
    per pair."""
    return int(sparse.index.size) // 2 if sparse.index_kind == "runs" else 0


def groups_cycles(sparse: SparseGroups) -> float:
    return FC_SPARSE["group"][sparse.index_kind] * sparse.n_groups + FC_SPARSE[
        "run_pair"
    ] * runs_pairs(sparse)


def fc_sparse_cycles(batches: int, sparse: SparseGroups) -> float:
    c = FC_SPARSE
    return c["call"] + batches * (c["row"] * sparse.rows + groups_cycles(sparse))


@dataclass(frozen=True)
class ConvShape:
    """What the cycle models need of a CONV_2D layer (one image; (h, w) tuples)."""

    out_h: int
    out_w: int
    kh: int
    kw: int
    cin: int
    stride: tuple[int, int] = (1, 1)
    dilation: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)

    @property
    def pixels(self) -> int:
        return self.out_h * self.out_w

    @property
    def in_place(self) -> bool:
        """An unpadded 1x1 filter: the sparse kernel reads each pixel in place."""
        return self.kh == self.kw == 1 and not any(self.padding)


def conv_dense_cycles(shape: ConvShape, rows: int) -> float:
    c, taps = CONV_DENSE, shape.kh * shape.kw
    k = taps * shape.cin
    return c["call"] + shape.pixels * (
        c["pixel"] + c["tap"] * taps + c["value"] * k + c["mac"] * k * rows + c["row"] * rows
    )


CONV_BLOCK_PIXELS = 32  # KP_SPARSE_CONV_BLOCK_PIXELS


def conv_block_rows(out_h: int, out_w: int) -> int:
    """Output rows per block of ``kp_sparse_convolve_s8`` (``KP_SPARSE_CONV_BLOCK_ROWS``)."""
    return min(out_h, -(-CONV_BLOCK_PIXELS // out_w))


# KP_SPARSE_CONV_MAX_ROWS_BYTES: the copied input rows are addressed by uint16 offsets.
CONV_MAX_ROWS_BYTES = 65532


def conv_block(shape: ConvShape) -> tuple[int, int, int]:
    """(output rows, input rows, input pixels per row) of a block of
    ``kp_sparse_convolve_s8``."""
    bh = conv_block_rows(shape.out_h, shape.out_w)
    span = (shape.out_w - 1) * shape.stride[1] + (shape.kw - 1) * shape.dilation[1] + 1
    in_rows = (bh - 1) * shape.stride[0] + (shape.kh - 1) * shape.dilation[0] + 1
    return bh, in_rows, span


def conv_rows_bytes(shape: ConvShape) -> int:
    """Bytes of input rows ``kp_sparse_convolve_s8`` copies per block of output rows."""
    _, in_rows, span = conv_block(shape)
    return in_rows * span * shape.cin


def conv_scratch_bytes(shape: ConvShape) -> int:
    """Arena scratch of ``kp_sparse_convolve_s8`` (``KP_SPARSE_CONV_SCRATCH_BYTES``): the
    int32 accumulators of a block of output rows, a uint16 offset per filter tap, the input
    rows the block reads and a word its DSP loop may read past them; none for an unpadded
    1x1 filter, which reads its input in place."""
    if shape.in_place:
        return 0
    taps = shape.kh * shape.kw * shape.cin
    return (
        4 * conv_block_rows(shape.out_h, shape.out_w) * shape.out_w
        + 4 * ((taps + 1) // 2)
        + 4
        + ((conv_rows_bytes(shape) + 3) & ~3)
    )


def conv_pieces(shape: ConvShape, rows: np.ndarray) -> int:
    """Words the DSP sparse convolution reads per output pixel: a kept group is one word
    of the copied input rows, two when it crosses into the next filter row; a dilated
    filter with fewer than 4 input channels takes the per-tap loop, costed as two."""
    rows = np.asarray(rows)
    k = rows.shape[1]
    kept = row_groups(rows, 4).any(axis=2)
    g = kept.shape[1]
    if shape.dilation[1] != 1 and shape.cin % 4:
        return 2 * int(kept.sum())
    t0 = 4 * np.arange(g)
    row_len = shape.kw * shape.cin
    crosses = (t0 % row_len) + np.minimum(4, k - t0) > row_len
    return int(kept.sum() + (kept & crosses[None, :]).sum())


def conv_sparse_cycles(shape: ConvShape, sparse: SparseGroups, pieces: int) -> float:
    """``kp_sparse_convolve_s8``: per block of output rows, the copy of its input rows (per
    row and per byte) and each kept group's setup; per pixel, each output's accumulator and
    requantization and each word of kept weights (``conv_pieces``). An unpadded 1x1
    filter runs the FC kernel's product on each pixel instead."""
    c = CONV_SPARSE
    if shape.in_place:
        return shape.pixels * (c["pixel_1x1"] + c["row_1x1"] * sparse.rows + groups_cycles(sparse))
    bh, in_rows, _ = conv_block(shape)
    blocks = -(-shape.out_h // bh)
    return (
        c["call"]
        + blocks
        * (
            c["in_row"] * in_rows
            + c["copy"] * conv_rows_bytes(shape)
            + c["group"] * sparse.n_groups
        )
        + shape.pixels * (c["out"] * sparse.rows + c["piece"] * pieces)
    )


@dataclass(frozen=True)
class Choice:
    """What the exporter decided for one layer, and why."""

    kernel: str  # "dense", "sparse" or "zero_skip"
    reason: str
    group_sparsity: float
    dense_cycles: float
    sparse_cycles: float
    dense_bytes: int  # int8 weights
    sparse_bytes: int  # packed groups + index + counts
    sparse: SparseGroups | None  # the encoding, when kernel == "sparse"
    input_groups: InputGroups | None = None  # the encoding, when kernel == "zero_skip"
    zero_skip_cycles: float = float("nan")
    input_density: float | None = None  # expected non-zero fraction of the input

    def as_dict(self) -> dict:
        extra = {}
        if self.input_density is not None:
            extra = {
                "input_density": round(self.input_density, 4),
                "est_zero_skip_cycles": (
                    None if np.isnan(self.zero_skip_cycles) else int(round(self.zero_skip_cycles))
                ),
                "zero_skip_weight_bytes": (
                    self.input_groups.nbytes if self.input_groups is not None else None
                ),
            }
        return {
            "kernel": self.kernel,
            "reason": self.reason,
            "group_sparsity": round(self.group_sparsity, 4),
            "index": self.sparse.index_kind if self.sparse is not None else None,
            "est_dense_cycles": int(round(self.dense_cycles)),
            "est_sparse_cycles": (
                None if np.isnan(self.sparse_cycles) else int(round(self.sparse_cycles))
            ),
            "dense_weight_bytes": self.dense_bytes,
            "sparse_weight_bytes": self.sparse_bytes,
            **extra,
        }


def choose(op: str, rows: np.ndarray, shape: dict | ConvShape, mode: str = "auto") -> Choice:
    """Dense or sparse for one layer.

    Args:
        op: ``"fc"`` or ``"conv"``.
        rows: the int8 weights as (output channels, k), TFLite's row layout (a
            convolution's OHWI filter flattened per output channel).
        shape: ``{"batches": n}`` for ``fc``; a ``ConvShape`` for ``conv``.
        mode: ``"auto"`` picks the lower estimate, ``"always"`` takes sparse whenever
            the layer has weights at all, ``"never"`` keeps dense.
    """
    if mode not in SPARSE_MODES:
        raise ValueError(f"sparse={mode!r}: expected one of {', '.join(SPARSE_MODES)}.")
    rows = np.asarray(rows)
    n_out, k = rows.shape
    if op == "fc":
        dense = fc_dense_cycles(shape["batches"], k, n_out)
    elif op == "conv":
        dense = conv_dense_cycles(shape, n_out)
        pieces = conv_pieces(shape, rows)
    else:
        raise ValueError(f"op={op!r}: expected 'fc' or 'conv'.")
    if mode == "never":
        return Choice(
            "dense",
            "sparse kernels disabled (sparse='never')",
            0.0,
            dense,
            float("nan"),
            int(rows.size),
            0,
            None,
        )
    if op == "conv" and not shape.in_place and conv_rows_bytes(shape) > CONV_MAX_ROWS_BYTES:
        return Choice(
            "dense",
            f"the sparse kernel's {conv_rows_bytes(shape):,} bytes of "
            f"input rows per block exceed its {CONV_MAX_ROWS_BYTES:,}",
            0.0,
            dense,
            float("nan"),
            int(rows.size),
            0,
            None,
        )
    # The index stream is picked by estimated speed, not by size: abs16 decodes fastest
    # and costs ~20% more flash than the smallest stream at 90% sparsity.
    best = None
    for kind in ("abs16", "delta8", "runs"):
        try:
            enc = encode_groups(rows, index=kind)
        except ValueError:  # abs16 beyond 65536 groups per row
            continue
        if op == "fc":
            cost = fc_sparse_cycles(shape["batches"], enc)
        else:
            cost = conv_sparse_cycles(shape, enc, pieces)
        if best is None or cost < best[0] or (cost == best[0] and enc.nbytes < best[1].nbytes):
            best = (cost, enc)
    sparse, enc = best
    gs = enc.group_sparsity
    speed = dense / sparse
    facts = (
        f"{gs:.0%} of 4-weight groups pruned, est. {sparse:,.0f} vs {dense:,.0f} "
        f"dense cycles ({speed:.2f}x)"
    )
    if mode == "always" or sparse < dense:
        why = facts if mode == "auto" else f"sparse='always'; {facts}"
        return Choice("sparse", why, gs, dense, sparse, int(rows.size), enc.nbytes, enc)
    return Choice(
        "dense", f"dense is faster: {facts}", gs, dense, sparse, int(rows.size), enc.nbytes, None
    )


def zero_skip_cycles(batches: int, enc: InputGroups, density: float) -> float:
    """Estimated cycles of ``kp_zero_skip_fully_connected_s8`` when each input is non-zero
    with probability ``density``, independently (a group of 4 is then visited with
    probability ``1 - (1 - density)^4``)."""
    c = ZERO_SKIP
    groups = -(-enc.k // 4)
    active = 1.0 - (1.0 - min(max(density, 0.0), 1.0)) ** 4
    return c["call"] + batches * (
        c["row"] * enc.rows + active * (c["active"] * groups + c["entry"] * enc.entries)
    )


def choose_zero_skip(
    choice: Choice, rows: np.ndarray, batches: int, density: float, mode: str = "auto"
) -> Choice:
    """Whether a FULLY_CONNECTED layer fed by an activation mask runs the zero-skipping
    kernel instead of ``choice`` (dense or weight-sparse): by estimated cycles in
    ``"auto"``, whenever possible in ``"always"``, never in ``"never"``. ``density`` is
    the expected fraction of non-zero inputs (the mask's winner rate)."""
    if mode == "never":
        return replace(choice, input_density=density)
    enc = encode_input_groups(np.asarray(rows))
    zs = zero_skip_cycles(batches, enc, density)
    best = choice.sparse_cycles if choice.kernel == "sparse" else choice.dense_cycles
    facts = (
        f"input {density:.0%} non-zero (mask), est. {zs:,.0f} cycles skipping zeros "
        f"vs {best:,.0f} {choice.kernel}"
    )
    if mode == "always" or zs < best:
        why = facts if mode == "auto" else f"sparse='always'; {facts}"
        return replace(
            choice,
            kernel="zero_skip",
            reason=why,
            sparse=None,
            input_groups=enc,
            zero_skip_cycles=zs,
            input_density=density,
        )
    return replace(
        choice,
        reason=f"{choice.reason}; not skipping zeros: {facts}",
        zero_skip_cycles=zs,
        input_density=density,
    )
