"""SIMD-aware sparse storage of an int8 FULLY_CONNECTED weight matrix (Scalpel's idea).

A matrix pruned with ``granularity.SIMDGroups(4)`` is zero in whole runs of 4
consecutive weights along each output row. ``encode_groups`` stores, per output row, only
the *kept* groups (any non-zero weight), each as one little-endian 32-bit word ready for
the Cortex-M4's SXTB16/SMLAD (byte ``i`` of the word is weight ``4g + i``), plus a
compact stream saying where each kept group sits. The C kernel is
``kp_sparse_fully_connected_s8`` (csrc/kernels/kp_nn_sparse.h); docs/sparse-format.md
has a worked example.

Layout (all little-endian):

* ``counts``: uint16 per row, kept groups of that row (at most ``ceil(k / 4)``);
* ``words``: uint32 per kept group, row after row, groups in increasing index order. A
  group that is partly zero is kept whole. When ``k`` is not a multiple of 4 the last
  group of a row is shorter: its word holds zeros in the bytes past ``k`` (storage
  padding only: the kernel never reads input past ``k``);
* ``index``: one stream for the whole matrix, in one of three encodings:

  - ``"runs"`` (``KP_SPARSE_RUNS8``): per row, uint8 pairs ``(skip, run)``: skip
    ``skip`` groups, then ``run`` kept groups in a row. A skip over 255 is written as
    ``(255, 0)`` pairs, a run over 255 as ``(.., 255)`` then ``(0, rest)``. A row's pairs
    end when their runs add up to its count;
  - ``"delta8"`` (``KP_SPARSE_DELTA8``): per kept group one uint8, the number of groups
    skipped since the previous kept group of the row (or the row's start); the byte 255
    is an escape meaning "255 more groups skipped, read the next byte";
  - ``"abs16"`` (``KP_SPARSE_ABS16``): per kept group its uint16 group index in the row
    (needs ``ceil(k / 4) <= 65536``).

Rule: ``encode_groups`` computes the byte size of the three index streams and keeps the
smallest; on a tie it prefers ``runs``, then ``delta8``, then ``abs16`` (in that order
the kernel decodes fewer index bytes per group). ``delta8`` is never larger than
``abs16`` unless a row skips 255 groups or more between kept groups, which is where
``abs16`` wins.

Flash size ``nbytes`` = 4 bytes per kept group + the index stream + 2 bytes per row
(``counts``); ``dense_bytes`` = ``rows * k``, what the dense kernel stores.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "SparseGroups",
    "encode_groups",
    "decode",
    "InputGroups",
    "encode_input_groups",
    "depthwise_rows",
    "INDEX_KINDS",
    "WIDTH",
]

WIDTH = 4
#: Index encodings, in tie-break order; the value is the C enum (kp_sparse_index_kind).
INDEX_KINDS = {"runs": 0, "delta8": 1, "abs16": 2}
_ESC = 255


@dataclass(frozen=True)
class SparseGroups:
    """An int8 (rows x k) matrix stored as kept 4-weight groups (see the module docs).

    Attributes:
        rows: output rows (FULLY_CONNECTED output channels).
        k: input length (the accumulation axis).
        counts: uint16 (rows,), kept groups per row.
        words: uint32 (n_groups,), the kept groups' weights, byte i = weight 4g + i.
        index: uint8 stream (``abs16``: uint16 values, stored here as their bytes).
        index_kind: ``"runs"``, ``"delta8"`` or ``"abs16"``.
        width: weights per group (4).
    """

    rows: int
    k: int
    counts: np.ndarray
    words: np.ndarray
    index: np.ndarray
    index_kind: str
    width: int = WIDTH

    @property
    def n_groups(self) -> int:
        """Kept groups in the whole matrix."""
        return int(self.words.size)

    @property
    def groups_per_row(self) -> int:
        """Groups of a dense row, ``ceil(k / 4)``."""
        return -(-self.k // self.width)

    @property
    def nbytes(self) -> int:
        """Flash bytes: packed words + index stream + per-row counts."""
        return 4 * self.n_groups + int(self.index.size) + 2 * self.rows

    @property
    def dense_bytes(self) -> int:
        """Flash bytes of the same matrix stored dense (int8)."""
        return self.rows * self.k

    @property
    def group_sparsity(self) -> float:
        """Fraction of groups removed."""
        total = self.rows * self.groups_per_row
        return 1.0 - self.n_groups / total if total else 0.0

    def group_indices(self) -> list[np.ndarray]:
        """The kept group indices of each row, decoded from the index stream."""
        return _decode_index(self.index, self.index_kind, self.counts)

    def decode(self) -> np.ndarray:
        """The dense int8 (rows x k) matrix; see ``decode``."""
        return decode(self)


def depthwise_rows(filter_taps: np.ndarray) -> np.ndarray:
    """A depthwise filter as ``kp_sparse_depthwise_conv_s8`` stores it: ``filter_taps``
    (taps, channels), channels a multiple of 4, becomes (channels / 4, 4 * taps) with
    group ``t`` of row ``q`` = channels ``4q..4q+3`` at tap ``t``, so that
    ``encode_groups`` keeps exactly the SIMD groups ``SIMDGroups`` prunes in a depthwise
    kernel (4 consecutive channels at one tap)."""
    taps, channels = filter_taps.shape
    if channels % WIDTH:
        raise ValueError(f"depthwise_rows: {channels} channels is not a multiple of {WIDTH}.")
    quads = channels // WIDTH
    return np.ascontiguousarray(
        filter_taps.reshape(taps, quads, WIDTH).transpose(1, 0, 2).reshape(quads, taps * WIDTH)
    )


def row_groups(weights: np.ndarray, width: int) -> np.ndarray:
    """(rows, groups, width): each row cut into groups of `width`, the last zero-padded."""
    rows, k = weights.shape
    pad = (-k) % width
    padded = np.pad(weights, ((0, 0), (0, pad)))
    return padded.reshape(rows, -1, width)


def _runs(idx: np.ndarray) -> list[int]:
    out: list[int] = []
    prev = 0  # next group index after the previous run
    i = 0
    while i < idx.size:
        j = i
        while j + 1 < idx.size and idx[j + 1] == idx[j] + 1:
            j += 1
        skip, run = int(idx[i]) - prev, j - i + 1
        while skip > _ESC:
            out += [_ESC, 0]
            skip -= _ESC
        while run > _ESC:
            out += [skip, _ESC]
            skip, run = 0, run - _ESC
        out += [skip, run]
        prev = int(idx[j]) + 1
        i = j + 1
    return out


def _delta8(idx: np.ndarray) -> list[int]:
    out: list[int] = []
    prev = 0
    for g in idx.tolist():
        gap = g - prev
        while gap >= _ESC:
            out.append(_ESC)
            gap -= _ESC
        out.append(gap)
        prev = g + 1
    return out


def _encode_index(per_row: list[np.ndarray], kind: str) -> np.ndarray:
    if kind == "abs16":
        flat = np.concatenate([np.zeros(0, np.int64), *per_row])
        return flat.astype("<u2").view(np.uint8).copy()
    enc = _runs if kind == "runs" else _delta8
    return np.array([b for idx in per_row for b in enc(idx)], np.uint8)


def _decode_index(index: np.ndarray, kind: str, counts: np.ndarray) -> list[np.ndarray]:
    out = []
    if kind == "abs16":
        vals = np.asarray(index, np.uint8).view("<u2").astype(np.int64)
        starts = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)]).astype(np.int64)
        return [vals[starts[r] : starts[r + 1]] for r in range(len(counts))]
    stream = np.asarray(index, np.uint8).tolist()
    p = 0
    for n in np.asarray(counts).tolist():
        idx: list[int] = []
        g = 0
        if kind == "runs":
            while len(idx) < n:
                skip, run = stream[p], stream[p + 1]
                p += 2
                g += skip
                idx.extend(range(g, g + run))
                g += run
        elif kind == "delta8":
            while len(idx) < n:
                d = stream[p]
                p += 1
                g += d
                if d != _ESC:
                    idx.append(g)
                    g += 1
        else:
            raise ValueError(f"unknown index encoding {kind!r}; one of {list(INDEX_KINDS)}")
        out.append(np.array(idx, np.int64))
    if p != len(stream):
        raise ValueError(f"index stream has {len(stream) - p} trailing bytes")
    return out


def encode_groups(
    weights: np.ndarray, width: int = WIDTH, index: str | None = None
) -> SparseGroups:
    """Encode an int8 (rows x k) matrix as its kept ``width``-weight groups.

    A group is kept when any of its weights is non-zero (a partly zero group is stored
    whole), so any matrix round-trips; SIMDGroups(4) pruning makes it compact.

    Args:
        weights: int8 array (rows, k), TFLite's FULLY_CONNECTED layout (out x in).
        width: weights per group; only 4 (one 32-bit word of int8) is supported.
        index: force an index encoding (``"runs"``, ``"delta8"``, ``"abs16"``); None
            picks the smallest (ties: runs, delta8, abs16).

    Returns:
        A ``SparseGroups``.

    Example:

    >>> w = np.zeros((2, 10), np.int8)
    >>> w[0, 4:8] = [1, -2, 3, 4]
    >>> w[1, 8:10] = [5, 6]
    >>> s = encode_groups(w)
    >>> s.counts.tolist(), [hex(v) for v in s.words], s.index_kind, s.index.tolist()
    ([1, 1], ['0x403fe01', '0x605'], 'delta8', [1, 2])
    >>> bool((decode(s) == w).all()), s.nbytes, s.dense_bytes
    (True, 14, 20)
    """
    if width != WIDTH:
        raise ValueError(
            f"only width={WIDTH} (one 32-bit word of int8) is supported, got {width!r}"
        )
    w = np.asarray(weights)
    if w.ndim != 2 or w.dtype != np.int8:
        raise ValueError(f"weights must be a 2-D int8 array (rows x k), got {w.dtype} {w.shape}")
    rows, k = map(int, w.shape)
    if rows < 1 or k < 1:
        raise ValueError(f"empty matrix {w.shape}")
    g = row_groups(w, width)
    if g.shape[1] > 1 << 16:
        raise ValueError(f"k={k}: more than 65536 groups per row")
    kept = np.any(g != 0, axis=-1)
    counts = kept.sum(axis=1).astype(np.uint16)
    words = g[kept].view(np.uint8).reshape(-1, width).copy().view("<u4").reshape(-1)
    words = words.astype(np.uint32)
    per_row = [np.flatnonzero(kept[r]) for r in range(rows)]
    kinds = [index] if index is not None else list(INDEX_KINDS)
    for kind in kinds:
        if kind not in INDEX_KINDS:
            raise ValueError(f"unknown index encoding {kind!r}; one of {list(INDEX_KINDS)}")
    streams = {kind: _encode_index(per_row, kind) for kind in kinds}
    best = min(kinds, key=lambda kind: (streams[kind].size, INDEX_KINDS[kind]))
    return SparseGroups(
        rows=rows,
        k=k,
        counts=counts,
        words=words,
        index=streams[best],
        index_kind=best,
        width=width,
    )


def decode(sparse: SparseGroups) -> np.ndarray:
    """The dense int8 (rows x k) matrix ``sparse`` encodes (the storage padding of a
    short last group is dropped).

    >>> w = np.arange(-12, 12, dtype=np.int8).reshape(2, 12)
    >>> bool((decode(encode_groups(w)) == w).all())
    True
    """
    gpr = sparse.groups_per_row
    dense = np.zeros((sparse.rows, gpr, sparse.width), np.int8)
    groups = np.asarray(sparse.words, "<u4").view(np.int8).reshape(-1, sparse.width)
    p = 0
    for r, idx in enumerate(sparse.group_indices()):
        if idx.size and (idx.min() < 0 or idx.max() >= gpr or np.any(np.diff(idx) <= 0)):
            raise ValueError(f"row {r}: group indices out of order or range")
        dense[r, idx] = groups[p : p + idx.size]
        p += idx.size
    if p != sparse.n_groups:
        raise ValueError(f"counts add up to {p} groups, words hold {sparse.n_groups}")
    flat = dense.reshape(sparse.rows, -1)
    if np.any(flat[:, sparse.k :]):
        raise ValueError("non-zero storage padding past k")
    return flat[:, : sparse.k].copy()


@dataclass(frozen=True)
class InputGroups:
    """An int8 (rows x k) matrix stored by input groups, for the input-stationary
    zero-skipping kernel (``kp_zero_skip_fully_connected_s8``, csrc/kernels/
    kp_nn_activation.h): input group ``g`` (inputs ``4g .. 4g + 3``) lists, in entries
    ``starts[g] .. starts[g + 1] - 1``, every row keeping a weight there, as one word of
    its four weights (the same word ``encode_groups`` stores) and the row's number.

    Attributes:
        rows, k: the matrix shape.
        starts: int32 (ceil(k / 4) + 1,), entry offsets per input group.
        words: uint32 (entries,), byte i = the weight of input 4g + i.
        row_index: uint8 (rows <= 256) or uint16 row numbers per entry; None when every
            group keeps every row (dense weights: the rows are implicit, in order).
    """

    rows: int
    k: int
    starts: np.ndarray
    words: np.ndarray
    row_index: np.ndarray | None

    @property
    def entries(self) -> int:
        return int(self.words.size)

    @property
    def implicit_rows(self) -> bool:
        return self.row_index is None

    @property
    def nbytes(self) -> int:
        """Flash bytes: words, row numbers and group offsets."""
        rows = 0 if self.row_index is None else int(self.row_index.nbytes)
        return 4 * self.entries + rows + 4 * int(self.starts.size)

    def decode(self) -> np.ndarray:
        """The dense int8 (rows x k) matrix."""
        g = -(-self.k // WIDTH)
        dense = np.zeros((self.rows, g, WIDTH), np.int8)
        groups = np.asarray(self.words, "<u4").view(np.int8).reshape(-1, WIDTH)
        for j in range(g):
            a, b = int(self.starts[j]), int(self.starts[j + 1])
            rows = np.arange(self.rows) if self.implicit_rows else self.row_index[a:b]
            dense[rows, j] = groups[a:b]
        return dense.reshape(self.rows, -1)[:, : self.k].copy()


def encode_input_groups(weights: np.ndarray) -> InputGroups:
    """Encode an int8 (rows x k) matrix by input groups of 4 (see ``InputGroups``): a
    row's group is listed when any of its 4 weights is non-zero.

    >>> w = np.zeros((3, 6), np.int8)
    >>> w[0, :4] = [1, 2, 3, 4]; w[2, 4:] = [5, 6]
    >>> s = encode_input_groups(w)
    >>> s.starts.tolist(), [hex(v) for v in s.words], s.row_index.tolist()
    ([0, 1, 2], ['0x4030201', '0x605'], [0, 2])
    >>> bool((s.decode() == w).all())
    True
    """
    w = np.asarray(weights)
    if w.ndim != 2 or w.dtype != np.int8 or min(w.shape) < 1:
        raise ValueError(
            f"weights must be a non-empty 2-D int8 array (rows x k), got {w.dtype} {w.shape}"
        )
    rows, k = map(int, w.shape)
    if rows > 1 << 16:
        raise ValueError(f"{rows} rows: row numbers are stored as uint16 (at most 65536)")
    g = row_groups(w, WIDTH)  # (rows, groups, 4)
    kept = np.any(g != 0, axis=-1).T  # (groups, rows)
    by_group = np.ascontiguousarray(g.transpose(1, 0, 2))
    words = by_group[kept].view("<u4").reshape(-1).astype(np.uint32)
    counts = kept.sum(axis=1)
    starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    row_index = None
    if not kept.all():
        row_index = np.nonzero(kept)[1].astype(np.uint8 if rows <= 256 else "<u2")
    return InputGroups(rows, k, starts, words, row_index)
