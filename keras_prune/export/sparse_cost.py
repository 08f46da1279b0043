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

from dataclasses import dataclass

import numpy as np

from keras_prune.export.sparse_format import SparseGroups, encode_groups

__all__ = ["SPARSE_MODES", "Choice", "choose", "fc_dense_cycles", "fc_sparse_cycles",
           "conv_dense_cycles", "conv_sparse_cycles"]

SPARSE_MODES = ("auto", "never", "always")

# Fitted by benchmarks/m4_cost_model.py (2026-11-24, -O2, DSP build).
FC_DENSE = {"call": 463.0, "row": 47.4, "mac": 1.69}
FC_SPARSE = {"call": 0.0, "row": 82.7, "run_pair": 17.6,
             "group": {"abs16": 10.5, "delta8": 12.6, "runs": 27.6}}
CONV_DENSE = {"call": 0.0, "pixel": 105.0, "tap": 35.4, "value": 7.95, "mac": 1.59,
              "row": 41.6}
CONV_SPARSE = {"call": 0.0, "pixel": 96.9, "tap": 21.0}


def fc_dense_cycles(batches: int, k: int, rows: int) -> float:
    c = FC_DENSE
    return c["call"] + batches * (c["row"] * rows + c["mac"] * rows * k)


def runs_pairs(sparse: SparseGroups) -> int:
    """(skip, run) pairs of a ``runs`` stream (0 for the other kinds): its decoder pays
    per pair."""
    return int(sparse.index.size) // 2 if sparse.index_kind == "runs" else 0


def groups_cycles(sparse: SparseGroups) -> float:
    return (FC_SPARSE["group"][sparse.index_kind] * sparse.n_groups
            + FC_SPARSE["run_pair"] * runs_pairs(sparse))


def fc_sparse_cycles(batches: int, sparse: SparseGroups) -> float:
    c = FC_SPARSE
    return c["call"] + batches * (c["row"] * sparse.rows + groups_cycles(sparse))


def conv_dense_cycles(pixels: int, kh: int, kw: int, cin: int, rows: int) -> float:
    c, k = CONV_DENSE, kh * kw * cin
    return c["call"] + pixels * (c["pixel"] + c["tap"] * kh * kw + c["value"] * k
                                 + c["mac"] * k * rows + c["row"] * rows)


def conv_sparse_cycles(pixels: int, kh: int, kw: int, cin: int,
                       sparse: SparseGroups) -> float:
    c = CONV_SPARSE
    return c["call"] + pixels * (c["pixel"] + c["tap"] * kh * kw
                                 + FC_SPARSE["row"] * sparse.rows + groups_cycles(sparse))


@dataclass(frozen=True)
class Choice:
    """What the exporter decided for one layer, and why."""

    kernel: str                  # "dense" or "sparse"
    reason: str
    group_sparsity: float
    dense_cycles: float
    sparse_cycles: float
    dense_bytes: int             # int8 weights
    sparse_bytes: int            # packed groups + index + counts
    sparse: SparseGroups | None  # the encoding, when kernel == "sparse"

    def as_dict(self) -> dict:
        return {"kernel": self.kernel, "reason": self.reason,
                "group_sparsity": round(self.group_sparsity, 4),
                "index": self.sparse.index_kind if self.sparse is not None else None,
                "est_dense_cycles": int(round(self.dense_cycles)),
                "est_sparse_cycles": (None if np.isnan(self.sparse_cycles)
                                      else int(round(self.sparse_cycles))),
                "dense_weight_bytes": self.dense_bytes,
                "sparse_weight_bytes": self.sparse_bytes}


def choose(op: str, rows: np.ndarray, shape: dict, mode: str = "auto") -> Choice:
    """Dense or sparse for one layer.

    Args:
        op: ``"fc"`` or ``"conv"``.
        rows: the int8 weights as (output channels, k), TFLite's row layout (a
            convolution's OHWI filter flattened per output channel).
        shape: ``{"batches"}`` for ``fc``; ``{"pixels", "kh", "kw", "cin"}`` for ``conv``.
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
        dense = conv_dense_cycles(shape["pixels"], shape["kh"], shape["kw"], shape["cin"],
                                  n_out)
    else:
        raise ValueError(f"op={op!r}: expected 'fc' or 'conv'.")
    if mode == "never":
        return Choice("dense", "sparse kernels disabled (sparse='never')", 0.0, dense,
                      float("nan"), int(rows.size), 0, None)
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
            cost = conv_sparse_cycles(shape["pixels"], shape["kh"], shape["kw"],
                                      shape["cin"], enc)
        if best is None or cost < best[0] or (cost == best[0] and enc.nbytes < best[1].nbytes):
            best = (cost, enc)
    sparse, enc = best
    gs = enc.group_sparsity
    speed = dense / sparse
    facts = (f"{gs:.0%} of 4-weight groups pruned, est. {sparse:,.0f} vs {dense:,.0f} "
             f"dense cycles ({speed:.2f}x)")
    if mode == "always" or sparse < dense:
        why = facts if mode == "auto" else f"sparse='always'; {facts}"
        return Choice("sparse", why, gs, dense, sparse, int(rows.size), enc.nbytes, enc)
    return Choice("dense", f"dense is faster: {facts}", gs, dense, sparse, int(rows.size),
                  enc.nbytes, None)
