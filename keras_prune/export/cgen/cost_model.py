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
    "conv_sparse_features",
    "CONV_SPARSE_FEATURES",
    "conv_scratch_bytes",
    "conv_rows_cycles",
    "conv_rows_scratch_bytes",
    "dw_scratch_bytes",
    "dw_dense_cycles",
    "dw_sparse_cycles",
    "zero_skip_cycles",
    "choose_zero_skip",
]

SPARSE_MODES = ("auto", "never", "always")

# Fitted by benchmarks/m4_cost_model.py (2026-11-24; ZERO_SKIP, CONV_* 2026-12-07; -O2,
# DSP build).
FC_DENSE = {"call": 463.0, "row": 47.4, "mac": 1.69}
FC_SPARSE = {
    "call": 0.0,
    "row": 81.7,
    "run_pair": 18.6,
    "group": {"abs16": 10.5, "delta8": 12.6, "runs": 27.0},
}
CONV_DENSE = {"call": 0.0, "pixel": 490.0, "tap": 24.5, "value": 4.8, "mac": 1.66, "row": 35.2}
CONV_SPARSE = {
    "word": 5.53,
    "byte_row": 18.5,
    "byte_word": 10.7,
    "border_tap": 28.7,
    "pass_row": 79.3,
    "decode_row": 147.0,
    "decode_delta8": 16.8,
    "decode_runs": 16.1,
    "quad_row": 55.8,
    "quad_group": 28.9,
    "tail_row": 175.0,
    "tail_group": 2.49,
    "empty_row": 140.0,
    "empty_abs16": 5.35,
}
# Depthwise (depth multiplier 1), dense and on SIMD groups of 4 channels at one tap.
DW_DENSE = {"pixel_quad": 232.0, "tap": 2.69, "border_tap": 20.3}
DW_SPARSE = {"quad": 800.0, "pixel_quad": 132.0, "tap": 17.4, "border_tap": 28.7}
# The zero-skipping FULLY_CONNECTED: per row (bias copy, requantization), per group holding
# a non-zero input, and per entry of such a group. Reading and testing a skipped group is
# not separable from "active" on the measured shapes, so it has no term of its own.
ZERO_SKIP = {"call": 0.0, "row": 79.3, "active": 56.1, "entry": 14.0}
# The operators around the kernels, for planning (``kp.targets.CortexM4``): per output
# element of kp_elementwise_add_s8, per output pixel and window value of kp_max_pool_s8,
# per input value of kp_avg_pool_s8 (global pooling included), per class of
# kp_softmax_s8. Read off unicorn's per-layer counts of the dense ResNet-8, DS-CNN and
# LeNet-5 exports (2026-12-07; within 1% on each); pad and copy are upper guesses (no
# model here has them as separate operators).
OTHER_OPS = {
    "add": {"call": 200.0, "element": 31.5},
    "max_pool": {"pixel": 312.0, "value": 2.04},
    "avg_pool": {"value": 10.65},
    "softmax": {"call": 540.0, "class": 515.0},
    "pad": {"element": 4.0},
    "copy": {"element": 4.0},
}


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


def conv_dense_cycles(shape: ConvShape, rows: int) -> float:
    c, taps = CONV_DENSE, shape.kh * shape.kw
    k = taps * shape.cin
    return c["call"] + shape.pixels * (
        c["pixel"] + c["tap"] * taps + c["value"] * k + c["mac"] * k * rows + c["row"] * rows
    )


CONV_PIXELS = 16  # KP_SPARSE_CONV_PIXELS: output pixels gathered per pass


def conv_scratch_bytes(shape: ConvShape) -> int:
    """Arena scratch of ``kp_sparse_convolve_s8`` (``KP_SPARSE_CONV_SCRATCH_BYTES``): the
    windows of ``CONV_PIXELS`` pixels and one more, each rounded up to whole 4-byte
    groups, and 2 bytes per group of a filter (one output channel's kept groups,
    decoded), rounded up to 4."""
    groups = -(-(shape.kh * shape.kw * shape.cin) // 4)
    return 4 * (CONV_PIXELS + 1) * groups + 4 * ((groups + 1) // 2)


def dw_scratch_bytes(kh: int, kw: int) -> int:
    """Arena scratch of ``kp_sparse_depthwise_conv_s8`` (``KP_SPARSE_DW_SCRATCH_BYTES``):
    one channel quad's kept taps decoded, 16 bytes per tap."""
    return 16 * kh * kw


def border_pixels(shape: ConvShape) -> int:
    """Output pixels whose window crosses the image border (the kernels' slower path).
    The padding after is taken as what a SAME window needs beyond the padding before."""
    counts = []
    for out, k, s, d, pad in zip(
        (shape.out_h, shape.out_w),
        (shape.kh, shape.kw),
        shape.stride,
        shape.dilation,
        shape.padding,
        strict=True,
    ):
        after = max((k - 1) * d - pad, 0) if pad else 0
        counts.append(min(out, -(-pad // s) + -(-after // s)))
    return shape.pixels - (shape.out_h - counts[0]) * (shape.out_w - counts[1])


def dw_dense_features(shape: ConvShape) -> list[float]:
    """What ``kp_depthwise_conv_s8`` spends its cycles on (``DW_DENSE``): per output pixel
    and channel quad (bias, four requantizations, the store), per tap of each, and per
    tap of each outside its one-block 3x3 path (the border, other windows)."""
    quads = -(-shape.cin // 4)
    taps = shape.kh * shape.kw
    fast = shape.kh == shape.kw == 3 and shape.dilation[1] == 1
    slow = border_pixels(shape) if fast else shape.pixels
    return [shape.pixels * quads, shape.pixels * quads * taps, slow * quads * taps]


def dw_dense_cycles(shape: ConvShape) -> float:
    """Estimated cycles of ``kp_depthwise_conv_s8`` (depth multiplier 1; ``shape.cin`` is
    the channel count)."""
    return float(np.dot(list(DW_DENSE.values()), dw_dense_features(shape)))


def dw_sparse_features(shape: ConvShape, sparse: SparseGroups) -> list[float]:
    """What ``kp_sparse_depthwise_conv_s8`` spends its cycles on (``DW_SPARSE``): per
    channel quad, the decoding of its kept taps; per output pixel and quad, the same
    fixed work as the dense kernel; per pixel and kept tap of a quad, one word of input
    and of weights and four MACs, and more on the border (a bounds check per tap)."""
    return [
        sparse.rows,
        shape.pixels * sparse.rows,
        shape.pixels * sparse.n_groups,
        border_pixels(shape) * sparse.n_groups,
    ]


def dw_sparse_cycles(shape: ConvShape, sparse: SparseGroups) -> float:
    """Estimated cycles of ``kp_sparse_depthwise_conv_s8``."""
    return float(np.dot(list(DW_SPARSE.values()), dw_sparse_features(shape, sparse)))


#: What ``conv_sparse_cycles`` counts, in the order of ``conv_sparse_features``.
CONV_SPARSE_FEATURES = (
    "word",
    "byte_row",
    "byte_word",
    "border_tap",
    "pass_row",
    "decode_row",
    "decode_delta8",
    "decode_runs",
    "quad_row",
    "quad_group",
    "tail_row",
    "tail_group",
    "empty_row",
    "empty_abs16",
)


def conv_sparse_features(shape: ConvShape, sparse: SparseGroups) -> list[float]:
    """The counts ``kp_sparse_convolve_s8`` spends its cycles on (``CONV_SPARSE_FEATURES``):
    per output pixel, the gather of its window: per 4-byte word, plus the pixel's own loop
    and addresses counted as 4 words more (the measured layers, all with long windows,
    cannot tell the two apart); where the input channels are not a multiple of 4 and the
    window is built whole first, per filter row and per word again; per tap of a window
    that crosses the image border (copied tap by tap). Per pass of ``CONV_PIXELS`` pixels,
    the walk over the rows, and for a row with kept groups in a ``delta8`` or ``runs``
    stream, its index decoded into group numbers (``abs16`` is read as it is). Per quad of
    pixels, each row's accumulators and outputs, and each kept group (one weight word over
    four pixels). Per row and kept group, a quad of an image's last pass done in C. Per
    row without kept groups, its outputs (one constant) written once per image, and per
    pass a skip in the ``abs16`` walk."""
    k = shape.kh * shape.kw * shape.cin
    words = -(-k // 4)
    full, rest = divmod(shape.pixels, CONV_PIXELS)
    passes = full + (rest > 0)
    quads = full * (CONV_PIXELS // 4) + -(-rest // 4)
    abs16 = sparse.index_kind == "abs16"
    # A last pass of 5-15 pixels, no multiple of 4, ends on a quad that overlaps the one
    # before: for abs16 one more walk over the rows, else the C path per row; a last pass
    # of 1-3 pixels takes the C path.
    overlap = rest > 4 and rest % 4 != 0
    c_quad = 0 < rest < 4 or (overlap and not abs16)
    bytewise = shape.cin % 4 != 0
    live = int(np.count_nonzero(sparse.counts))
    empty = sparse.rows - live
    return [
        shape.pixels * (words + 4),
        shape.pixels * shape.kh * bytewise,
        shape.pixels * words * bytewise,
        border_pixels(shape) * shape.kh * shape.kw,
        (passes + (overlap and abs16)) * sparse.rows,
        passes * live * (not abs16),
        passes * sparse.n_groups * (sparse.index_kind == "delta8"),
        passes * sparse.n_groups * (sparse.index_kind == "runs"),
        quads * live,
        quads * sparse.n_groups,
        live * c_quad,
        sparse.n_groups * c_quad,
        empty,
        passes * empty * abs16,
    ]


def conv_sparse_cycles(shape: ConvShape, sparse: SparseGroups) -> float:
    """Estimated cycles of ``kp_sparse_convolve_s8``: ``CONV_SPARSE`` times
    ``conv_sparse_features``."""
    counts = conv_sparse_features(shape, sparse)
    return float(sum(CONV_SPARSE[f] * n for f, n in zip(CONV_SPARSE_FEATURES, counts, strict=True)))


# kp_sparse_convolve_rows_s8: by blocks of output rows (the variant for few channels).
# Its copies of input rows are not fitted (a few library calls per row, word copies).
CONV_ROWS = {"in_row": 40.0, "copy": 0.5, "group": 152.0, "out": 43.8, "piece": 11.4}
CONV_ROWS_BLOCK_PIXELS = 32  # KP_SPARSE_CONV_ROWS_BLOCK_PIXELS
# KP_SPARSE_CONV_ROWS_MAX_BYTES: the copied input rows are addressed by uint16 offsets.
CONV_ROWS_MAX_BYTES = 65532


def conv_rows_block(shape: ConvShape) -> tuple[int, int, int]:
    """(output rows, input rows, input pixels per row) of a block of
    ``kp_sparse_convolve_rows_s8``."""
    bh = min(shape.out_h, -(-CONV_ROWS_BLOCK_PIXELS // shape.out_w))
    span = (shape.out_w - 1) * shape.stride[1] + (shape.kw - 1) * shape.dilation[1] + 1
    in_rows = (bh - 1) * shape.stride[0] + (shape.kh - 1) * shape.dilation[0] + 1
    return bh, in_rows, span


def conv_rows_bytes(shape: ConvShape) -> int:
    """Bytes of input rows ``kp_sparse_convolve_rows_s8`` copies per block."""
    _, in_rows, span = conv_rows_block(shape)
    return in_rows * span * shape.cin


def conv_rows_scratch_bytes(shape: ConvShape) -> int:
    """Arena scratch of ``kp_sparse_convolve_rows_s8``
    (``KP_SPARSE_CONV_ROWS_SCRATCH_BYTES``): a block's int32 accumulators, a uint16 offset
    per filter tap, the block's input rows and a word its DSP loop may read past them."""
    bh, _, _ = conv_rows_block(shape)
    taps = shape.kh * shape.kw * shape.cin
    return 4 * bh * shape.out_w + 4 * ((taps + 1) // 2) + 4 + ((conv_rows_bytes(shape) + 3) & ~3)


def conv_rows_pieces(shape: ConvShape, rows: np.ndarray) -> int:
    """Words ``kp_sparse_convolve_rows_s8`` reads per output pixel: a kept group is one
    word of the copied rows, two when it crosses into the next filter row; a dilated
    filter with fewer than 4 input channels takes the per-tap loop, costed as two."""
    rows = np.asarray(rows)
    k = rows.shape[1]
    kept = row_groups(rows, 4).any(axis=2)
    if shape.dilation[1] != 1 and shape.cin % 4:
        return 2 * int(kept.sum())
    t0 = 4 * np.arange(kept.shape[1])
    row_len = shape.kw * shape.cin
    crosses = (t0 % row_len) + np.minimum(4, k - t0) > row_len
    return int(kept.sum() + (kept & crosses[None, :]).sum())


def conv_rows_cycles(shape: ConvShape, sparse: SparseGroups, pieces: int) -> float:
    """Estimated cycles of ``kp_sparse_convolve_rows_s8``: per block of output rows, the copy
    of its input rows and each kept group's setup; per pixel, each output's accumulator
    and requantization and each word of kept weights (``conv_rows_pieces``)."""
    c = CONV_ROWS
    bh, in_rows, _ = conv_rows_block(shape)
    blocks = -(-shape.out_h // bh)
    per_block = c["in_row"] * in_rows + c["copy"] * conv_rows_bytes(shape)
    return blocks * (per_block + c["group"] * sparse.n_groups) + shape.pixels * (
        c["out"] * sparse.rows + c["piece"] * pieces
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
    # CONV_2D: "rows" when the block-of-rows variant (kp_sparse_convolve_rows_s8) is the
    # faster sparse kernel, else "quads" (kp_sparse_convolve_s8)
    conv_variant: str | None = None

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
            **({"conv_variant": self.conv_variant} if self.conv_variant else {}),
            **extra,
        }


def choose(op: str, rows: np.ndarray, shape: dict | ConvShape, mode: str = "auto") -> Choice:
    """Dense or sparse for one layer.

    Args:
        op: ``"fc"``, ``"conv"`` or ``"dw"`` (depthwise, depth multiplier 1).
        rows: the int8 weights as (output channels, k), TFLite's row layout (a
            convolution's OHWI filter flattened per output channel); for ``dw``,
            ``sparse_format.depthwise_rows`` of the (taps, channels) filter.
        shape: ``{"batches": n}`` for ``fc``; a ``ConvShape`` for ``conv`` and ``dw``
            (``cin``: the depthwise layer's channels).
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
    elif op == "dw":
        dense = dw_dense_cycles(shape)
    else:
        raise ValueError(f"op={op!r}: expected 'fc', 'conv' or 'dw'.")
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
    # The index stream is picked by estimated speed, not by size (abs16 decodes fastest
    # and costs ~20% more flash than the smallest stream at 90% sparsity), among the
    # streams whose storage is no larger than the dense weights: "auto" never trades
    # flash for speed.
    best = smallest = None
    # The block-of-rows convolution is a candidate where its input rows fit its offsets.
    rows_cost = rows_pieces = None
    if op == "conv" and conv_rows_bytes(shape) <= CONV_ROWS_MAX_BYTES:
        rows_cost, rows_pieces = True, conv_rows_pieces(shape, rows)
    for kind in ("abs16", "delta8", "runs"):
        try:
            enc = encode_groups(rows, index=kind)
        except ValueError:  # abs16 beyond 65536 groups per row
            continue
        variant = None
        if op == "fc":
            cost = fc_sparse_cycles(shape["batches"], enc)
        elif op == "dw":
            cost = dw_sparse_cycles(shape, enc)
        else:
            cost, variant = conv_sparse_cycles(shape, enc), "quads"
            if rows_cost is not None:
                alt = conv_rows_cycles(shape, enc, rows_pieces)
                if alt < cost:
                    cost, variant = alt, "rows"
        if smallest is None or enc.nbytes < smallest[1].nbytes:
            smallest = (cost, enc, variant)
        if mode == "auto" and enc.nbytes > rows.size:
            continue
        if best is None or cost < best[0] or (cost == best[0] and enc.nbytes < best[1].nbytes):
            best = (cost, enc, variant)
    sparse, enc, variant = best or smallest
    gs = enc.group_sparsity
    speed = dense / sparse
    facts = (
        f"{gs:.0%} of 4-weight groups pruned, est. {sparse:,.0f} vs {dense:,.0f} "
        f"dense cycles ({speed:.2f}x)"
    )
    if mode == "always":
        return Choice(
            "sparse",
            f"sparse='always'; {facts}",
            gs,
            dense,
            sparse,
            int(rows.size),
            enc.nbytes,
            enc,
            conv_variant=variant,
        )
    if best is None:
        why = f"sparse storage would be larger ({enc.nbytes:,} vs {rows.size:,} bytes): {facts}"
        return Choice("dense", why, gs, dense, sparse, int(rows.size), enc.nbytes, None)
    if sparse < dense:
        return Choice(
            "sparse",
            facts,
            gs,
            dense,
            sparse,
            int(rows.size),
            enc.nbytes,
            enc,
            conv_variant=variant,
        )
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
