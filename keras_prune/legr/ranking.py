"""Filter norms, the per-group affine transform, and cutting a global ranking to a FLOPs
target under the safeguard."""

from __future__ import annotations

import math

import numpy as np

from keras_prune.graph import DependencyGraph, filter_norms

__all__ = ["Ranking", "filter_norms", "check_round_to"]


def check_round_to(round_to) -> int:
    if isinstance(round_to, bool) or not isinstance(round_to, (int, np.integer)) or round_to < 1:
        raise ValueError(
            f"round_to must be a positive integer (keep channel counts in "
            f"multiples of it, e.g. 8 for AVX2 CPUs), got {round_to!r}."
        )
    return int(round_to)


class Ranking:
    """Everything needed to cut many candidate rankings quickly.

    ``cut(alpha, kappa, flops)`` scores channel i of group l as
    ``alpha[l] * norm[l][i] + kappa[l]``, removes the lowest globally until the MACs are
    at most ``flops`` x the original, and never leaves a group with fewer than
    ``max(min_channels, ceil(min_fraction * channels))``. Removed channels that fit
    back under the target are then restored, best-ranked first, so the cut lands close
    to the target rather than one coarse step below it.

    With ``round_to=r`` > 1 every group keeps a multiple of ``r`` channels (or all of
    them): the unit of removal is then a run of ``r`` consecutive channels of a group's
    ascending order (the first run takes the remainder when the size is not a multiple
    of ``r``), scored by the mean of its channels' scores. CPUs and GPUs run a
    convolution over channels in SIMD lanes of 8 or 16 floats, so 11 channels can cost
    as much as 16; rounded counts turn the removed MACs into time.
    """

    def __init__(
        self,
        graph: DependencyGraph,
        min_fraction: float = 0.1,
        min_channels: int = 2,
        round_to: int = 1,
    ):
        if not 0 <= min_fraction < 1:
            raise ValueError(f"min_fraction must be in [0, 1), got {min_fraction}.")
        if min_channels < 1:
            raise ValueError(f"min_channels must be >= 1, got {min_channels}.")
        self.round_to = check_round_to(round_to)
        self.graph = graph
        self.groups = graph.prunable_groups
        if not self.groups:
            raise ValueError(
                f"Model '{graph.model.name}' has no prunable channel groups:\n{graph.table()}"
            )
        self.norms = filter_norms(graph)
        self.sizes = np.array([g.channels for g in self.groups])
        self.min_keep = np.array(
            [min(n, max(min_channels, math.ceil(min_fraction * n))) for n in self.sizes]
        )
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
        self._min_flops: dict[int, float] = {}

    def _step(self, round_to: int | None) -> int:
        """``round_to`` checked, or the constructor's when None."""
        return self.round_to if round_to is None else check_round_to(round_to)

    def floor(self, round_to: int | None = None) -> np.ndarray:
        """Per group, the fewest channels the safeguard keeps at ``round_to``: ``min_keep``
        rounded up to a multiple of it, or the whole group."""
        r = self._step(round_to)
        return np.minimum(self.sizes, -(-self.min_keep // r) * r)

    def min_flops(self, round_to: int | None = None) -> float:
        """The smallest reachable fraction of the MACs (every group at its ``floor``)."""
        r = self._step(round_to)
        if r not in self._min_flops:
            keep = np.zeros(self.offsets[-1], dtype=bool)
            for gi, k in enumerate(self.floor(r)):  # the strongest of each group
                keep[self.offsets[gi] + np.argsort(-self.norms[gi], kind="stable")[:k]] = True
            self._min_flops[r] = self.macs(self.split(keep)) / self.total
        return self._min_flops[r]

    def _counts(self, slots) -> dict[int, int]:
        ch = self._chan_of_elem[slots]
        ids, counts = np.unique(ch[ch >= 0], return_counts=True)
        return dict(zip(ids.tolist(), counts.tolist(), strict=True))

    def _layer_macs(self, li: int, n_in: int, n_out: int) -> int:
        return sum(
            t.coef * (n_in if t.use_in else 1) * (n_out if t.use_out else 1)
            for t in self._layers[li].macs
        )

    def _macs(self, n_in, n_out) -> int:
        return sum(
            self._layer_macs(i, a, b) for i, (a, b) in enumerate(zip(n_in, n_out, strict=True))
        )

    def split(self, flat: np.ndarray) -> list[np.ndarray]:
        return [flat[self.offsets[i] : self.offsets[i + 1]] for i in range(len(self.groups))]

    def macs(self, masks: list[np.ndarray]) -> int:
        return sum(self.graph.macs(self.alive(masks)).values())

    def alive(self, masks: list[np.ndarray]) -> np.ndarray:
        return self.graph.element_keep(self.keep_dict(masks))

    def keep_dict(self, masks: list[np.ndarray]) -> dict[str, np.ndarray]:
        return {g.name: m for g, m in zip(self.groups, masks, strict=True)}

    def check_target(self, flops: float, what: str = "flops", round_to: int | None = None) -> float:
        try:
            flops = float(flops)
        except (TypeError, ValueError):
            raise ValueError(f"{what} must be a number in (0, 1), got {flops!r}.") from None
        if not 0 < flops < 1:
            raise ValueError(
                f"{what}={flops} is outside (0, 1): it is the fraction of the "
                "original MACs to keep, e.g. 0.5."
            )
        r = self._step(round_to)
        floor = self.min_flops(r)
        if flops < floor - 1e-12:
            rounded = f" in multiples of round_to={r}" if r > 1 else ""
            raise ValueError(
                f"{what}={flops} is unreachable: the safeguard keeps at least "
                f"{self.floor(r).sum()} channels{rounded}, so the minimum reachable is "
                f"{floor:.3f} of the original MACs. Lower min_fraction / min_channels"
                f"{' / round_to' if rounded else ''} or choose a target >= that."
            )
        return flops

    def identity(self) -> tuple[np.ndarray, np.ndarray]:
        n = len(self.groups)
        return np.ones(n), np.zeros(n)

    def units(self, scores: np.ndarray, round_to: int) -> list[np.ndarray]:
        """The removal units (arrays of flat channel indices), in global removal order."""
        if round_to == 1:  # ties: earlier group, lower index first
            return [np.array([c]) for c in np.argsort(scores, kind="stable")]
        units, keys = [], []
        for gi, n in enumerate(self.sizes):
            off = self.offsets[gi]
            order = off + np.argsort(scores[off : off + n], kind="stable")
            bounds = list(range(n % round_to or round_to, n + 1, round_to))
            start = 0
            for end in bounds:
                units.append(order[start:end])
                keys.append((float(np.mean(scores[order[start:end]])), gi, start))
                start = end
        return [units[i] for i in sorted(range(len(units)), key=keys.__getitem__)]

    def cut(self, alpha, kappa, flops: float, round_to: int | None = None) -> list[np.ndarray]:
        """Boolean keep mask per group for the global ranking under (alpha, kappa)."""
        r = self._step(round_to)
        flops = self.check_target(flops, round_to=r)
        scores = np.concatenate(
            [a * n + k for a, n, k in zip(alpha, self.norms, kappa, strict=True)]
        )
        min_keep = self.floor(r)
        target = flops * self.total
        n_in, n_out = self.n_in0.copy(), self.n_out0.copy()
        kept = self.sizes.copy()
        group_of = np.repeat(np.arange(len(self.groups)), self.sizes)
        keep = np.ones(self.offsets[-1], dtype=bool)
        current = self.total

        def move(unit, sign):  # remove (sign -1) or restore (+1) channels; the MAC change
            delta = 0
            for c in unit:
                for li, din, dout in self._affected[c]:
                    before = self._layer_macs(li, n_in[li], n_out[li])
                    n_in[li] += sign * din
                    n_out[li] += sign * dout
                    delta += self._layer_macs(li, n_in[li], n_out[li]) - before
            return delta

        removed = []
        for unit in self.units(scores, r):
            if current <= target:
                break
            g = group_of[unit[0]]
            if kept[g] - len(unit) < min_keep[g]:
                continue
            current += move(unit, -1)
            kept[g] -= len(unit)
            keep[unit] = False
            removed.append(unit)
        # One channel of an early layer can carry several percent of the MACs, so the last
        # removal may land far below the target: give back the best-ranked removed
        # units that still fit (with round_to, only while the count stays a multiple).
        for unit in reversed(removed):
            g = group_of[unit[0]]
            after = kept[g] + len(unit)
            if after % r and after != self.sizes[g]:
                continue
            delta = move(unit, +1)
            if current + delta <= target:
                current += delta
                kept[g] = after
                keep[unit] = True
            else:
                move(unit, -1)
        return self.split(keep)

    def uniform(self, flops: float, round_to: int | None = None) -> list[np.ndarray]:
        """Baseline: the same fraction of each group kept (its largest norms), the largest
        fraction that meets the target (each count at the nearest multiple of
        ``round_to``, and at least the safeguard's ``floor``)."""
        step = self._step(round_to)
        flops = self.check_target(flops, round_to=step)
        min_keep = self.floor(step)

        def masks_at(r):
            out = []
            for gi, n in enumerate(self.sizes):
                # nearest multiple: rounding up would overshoot the target by a whole step
                k = math.ceil(r * n) if step == 1 else math.floor(r * n / step + 0.5) * step
                k = min(n, max(min_keep[gi], k))
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
