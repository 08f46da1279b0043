"""Filter norms, the per-group affine transform, and cutting a global ranking to a FLOPs
target under the safeguard."""

from __future__ import annotations

import math

import numpy as np

from keras_prune.graph import DependencyGraph, filter_norms

__all__ = ["Ranking", "filter_norms"]


class Ranking:
    """Everything needed to cut many candidate rankings quickly.

    ``cut(alpha, kappa, flops)`` scores channel i of group l as
    ``alpha[l] * norm[l][i] + kappa[l]``, removes the lowest globally until the MACs are
    at most ``flops`` x the original, and never leaves a group with fewer than
    ``max(min_channels, ceil(min_fraction * channels))``. Removed channels that fit
    back under the target are then restored, best-ranked first, so the cut lands close
    to the target rather than one coarse step below it.
    """

    def __init__(self, graph: DependencyGraph, min_fraction: float = 0.1,
                 min_channels: int = 2):
        if not 0 <= min_fraction < 1:
            raise ValueError(f"min_fraction must be in [0, 1), got {min_fraction}.")
        if min_channels < 1:
            raise ValueError(f"min_channels must be >= 1, got {min_channels}.")
        self.graph = graph
        self.groups = graph.prunable_groups
        if not self.groups:
            raise ValueError(
                f"Model '{graph.model.name}' has no prunable channel groups:\n{graph.table()}")
        self.norms = filter_norms(graph)
        self.sizes = np.array([g.channels for g in self.groups])
        self.min_keep = np.array([min(n, max(min_channels, math.ceil(min_fraction * n)))
                                  for n in self.sizes])
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)])
        chan_of_root = {}
        for gi, g in enumerate(self.groups):
            for i, elems in enumerate(g.elements):
                chan_of_root[int(graph.root[elems[0]])] = self.offsets[gi] + i
        self._chan_of_elem = np.array([chan_of_root.get(int(r), -1) for r in graph.root])
        self._layers = [u for u in graph.layers if u.macs]
        self.n_in0 = np.array([len(u.in_slots) for u in self._layers])
        self.n_out0 = np.array([len(u.out_slots) for u in self._layers])
        self._affected: list[list[tuple[int, int, int]]] = [[] for _ in range(self.offsets[-1])]
        for li, u in enumerate(self._layers):
            cin = self._counts(u.in_slots)
            cout = self._counts(u.out_slots)
            for c in set(cin) | set(cout):
                self._affected[c].append((li, cin.get(c, 0), cout.get(c, 0)))
        self.total = self._macs(self.n_in0, self.n_out0)
        floor = np.zeros(self.offsets[-1], dtype=bool)
        for gi in range(len(self.groups)):  # keep the strongest min_keep of each group
            top = np.argsort(-self.norms[gi], kind="stable")[: self.min_keep[gi]]
            floor[self.offsets[gi] + top] = True
        self.min_flops = self.macs(self.split(floor)) / self.total

    def _counts(self, slots) -> dict[int, int]:
        ch = self._chan_of_elem[slots]
        ids, counts = np.unique(ch[ch >= 0], return_counts=True)
        return dict(zip(ids.tolist(), counts.tolist(), strict=True))

    def _layer_macs(self, li: int, n_in: int, n_out: int) -> int:
        return sum(t.coef * (n_in if t.use_in else 1) * (n_out if t.use_out else 1)
                   for t in self._layers[li].macs)

    def _macs(self, n_in, n_out) -> int:
        return sum(self._layer_macs(i, a, b) for i, (a, b) in enumerate(zip(n_in, n_out,
                                                                             strict=True)))

    def split(self, flat: np.ndarray) -> list[np.ndarray]:
        return [flat[self.offsets[i]:self.offsets[i + 1]] for i in range(len(self.groups))]

    def macs(self, masks: list[np.ndarray]) -> int:
        return sum(self.graph.macs(self.alive(masks)).values())

    def alive(self, masks: list[np.ndarray]) -> np.ndarray:
        return self.graph.element_keep(self.keep_dict(masks))

    def keep_dict(self, masks: list[np.ndarray]) -> dict[str, np.ndarray]:
        return {g.name: m for g, m in zip(self.groups, masks, strict=True)}

    def check_target(self, flops: float, what: str = "flops") -> float:
        try:
            flops = float(flops)
        except (TypeError, ValueError):
            raise ValueError(f"{what} must be a number in (0, 1), got {flops!r}.") from None
        if not 0 < flops < 1:
            raise ValueError(f"{what}={flops} is outside (0, 1): it is the fraction of the "
                             "original MACs to keep, e.g. 0.5.")
        if flops < self.min_flops - 1e-12:
            raise ValueError(
                f"{what}={flops} is unreachable: the safeguard keeps at least "
                f"{self.min_keep.sum()} channels, so the minimum reachable is "
                f"{self.min_flops:.3f} of the original MACs. Lower min_fraction / min_channels "
                "or choose a target >= that.")
        return flops

    def identity(self) -> tuple[np.ndarray, np.ndarray]:
        n = len(self.groups)
        return np.ones(n), np.zeros(n)

    def cut(self, alpha, kappa, flops: float) -> list[np.ndarray]:
        """Boolean keep mask per group for the global ranking under (alpha, kappa)."""
        flops = self.check_target(flops)
        scores = np.concatenate([a * n + k for a, n, k in zip(alpha, self.norms, kappa,
                                                              strict=True)])
        order = np.argsort(scores, kind="stable")  # ties: earlier group, lower index first
        target = flops * self.total
        n_in, n_out = self.n_in0.copy(), self.n_out0.copy()
        kept = self.sizes.copy()
        group_of = np.repeat(np.arange(len(self.groups)), self.sizes)
        keep = np.ones(self.offsets[-1], dtype=bool)
        current = self.total

        def move(c, sign):  # remove (sign -1) or restore (+1) channel c; the MAC change
            delta = 0
            for li, din, dout in self._affected[c]:
                before = self._layer_macs(li, n_in[li], n_out[li])
                n_in[li] += sign * din
                n_out[li] += sign * dout
                delta += self._layer_macs(li, n_in[li], n_out[li]) - before
            return delta

        removed = []
        for c in order:
            if current <= target:
                break
            g = group_of[c]
            if kept[g] <= self.min_keep[g]:
                continue
            current += move(c, -1)
            kept[g] -= 1
            keep[c] = False
            removed.append(c)
        # One channel of an early layer can carry several percent of the MACs, so the last
        # removal may land far below the target: give back the best-ranked removed
        # channels that still fit.
        for c in reversed(removed):
            delta = move(c, +1)
            if current + delta <= target:
                current += delta
                keep[c] = True
            else:
                move(c, -1)
        return self.split(keep)

    def uniform(self, flops: float) -> list[np.ndarray]:
        """Baseline: the same fraction of each group kept (its largest norms), the largest
        fraction that meets the target."""
        flops = self.check_target(flops)

        def masks_at(r):
            out = []
            for gi, n in enumerate(self.sizes):
                k = min(n, max(self.min_keep[gi], math.ceil(r * n)))
                m = np.zeros(n, dtype=bool)
                m[np.argsort(-self.norms[gi], kind="stable")[:k]] = True
                out.append(m)
            return out

        lo, hi = 0.0, 1.0
        for _ in range(40):
            mid = (lo + hi) / 2
            if self.macs(masks_at(mid)) <= flops * self.total:
                lo = mid
            else:
                hi = mid
        return masks_at(lo)
