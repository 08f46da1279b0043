"""The allocation: which channels each group keeps and which SIMD-group sparsity each kernel
gets, so that the target's estimate meets every budget with the least estimated loss.

Two kinds of knobs, each with a ladder of levels:

- a prunable **channel group** (``kp.graph``: channels that must go together) keeps a
  fraction of its channels, the strongest by filter norm (the order LeGR ranks a layer's
  filters in: its per-layer transform is increasing), counts rounded to multiples of 4
  so that the SIMD kernels see whole words;
- a **kernel** (Conv2D, DepthwiseConv2D, Dense) loses a fraction of its 4-weight SIMD
  groups, the weakest by L2 norm (``kp.granularity.SIMDGroups(4)``).

**Sensitivity.** Each knob level is applied alone to the original model and the loss on
``val_data`` measured (channel gates for the cut, zeroed groups for the sparsity): one
forward pass per level. **Cost.** A candidate (every knob at some level) is costed
exactly by the target from its ``LayerView`` rows, so a level where the sparse kernel
does not pay, or costs more flash than it saves, buys nothing and is never bought.

**Greedy.** From the original model, repeatedly take the move (one knob to any higher
level) that removes the most budget excess per unit of estimated loss (the sum of the
levels' measured loss increases), until every budget is met; then undo any move that is
no longer needed. Estimated loss is additive; it is an estimate, and recovery then
fine-tunes the whole.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import keras
import numpy as np

from keras_prune.auto.recover import batchnorm_state, recalibrate_batchnorm, restore_batchnorm
from keras_prune.graph import DependencyGraph, filter_norms
from keras_prune.surgery import masked
from keras_prune.targets.base import METRICS, LayerView, Target, kernel_rows, layer_views

__all__ = [
    "CHANNEL_LEVELS",
    "SPARSITY_LEVELS",
    "Space",
    "Plan",
    "allocate",
    "uniform",
    "smallest",
    "prune_groups",
]

CHANNEL_LEVELS = (1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25)
SPARSITY_LEVELS = (0.0, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9)
GROUP = 4  # weights per SIMD group (one 32-bit word of int8)


def prune_groups(rows: np.ndarray, sparsity: float, op: str) -> np.ndarray:
    """``rows`` with ``round(sparsity * groups)`` of its 4-weight groups zeroed, weakest
    first by L2 norm, ties to the first in reading order (``SIMDGroups(4)``'s rule).
    Groups run along each row (for ``dw``, 4 consecutive channels at one tap)."""
    if sparsity <= 0:
        return rows
    n, k = rows.shape
    groups = -(-k // GROUP)
    padded = np.zeros((n, groups * GROUP), rows.dtype)
    padded[:, :k] = rows
    g = padded.reshape(n, groups, GROUP)
    norms = np.sqrt(np.sum(np.square(g.astype(np.float64)), axis=-1)).reshape(-1)
    cut = int(round(sparsity * norms.size))
    order = np.argsort(norms, kind="stable")[:cut]
    keep = np.ones(norms.size, bool)
    keep[order] = False
    out = g * keep.reshape(n, groups, 1)
    return out.reshape(n, groups * GROUP)[:, :k].astype(rows.dtype)


def channel_counts(n: int, round_to: int = GROUP, min_fraction: float = 0.25) -> list[int]:
    """Kept-channel count at each ``CHANNEL_LEVELS`` level of a group of ``n`` (distinct,
    decreasing; never below ``max(round_to, min_fraction * n)``)."""
    step = round_to if n >= 2 * round_to else 1
    floor = max(step, math.ceil(min_fraction * n / step) * step)
    counts = []
    for f in CHANNEL_LEVELS:
        c = n if f == 1.0 else max(floor, int(round(f * n / step)) * step)
        c = min(c, n)
        if not counts or c < counts[-1]:
            counts.append(c)
    return counts


@dataclass
class Knob:
    kind: str  # "channels" or "sparsity"
    name: str  # group name or layer path
    levels: list  # kept counts (channels) or sparsities
    loss: list[float] = field(default_factory=list)  # measured val loss per level

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.name}"


class Space:
    """A model's knobs and how to cost and evaluate any setting of them."""

    def __init__(
        self,
        model: keras.Model,
        graph: DependencyGraph,
        target: Target,
        sparsity: bool = True,
        min_fraction: float = 0.25,
    ):
        self.model, self.graph, self.target = model, graph, target
        self.groups = graph.prunable_groups
        self.norms = filter_norms(graph)
        self.knobs: list[Knob] = []
        self.step = int(getattr(target, "channel_step", GROUP))
        for g in self.groups:
            counts = channel_counts(g.channels, self.step, min_fraction)
            self.knobs.append(Knob("channels", g.name, counts))
        self.base = layer_views(model, graph)
        self.kernel_ops = {v.path: v.op for v in self.base if v.rows is not None}
        if sparsity and getattr(target, "sparse_pays", True):
            for v in self.base:
                if v.rows is not None and v.rows.size >= 64:
                    self.knobs.append(Knob("sparsity", v.path, list(SPARSITY_LEVELS)))
        self.knob_index = {k.key: i for i, k in enumerate(self.knobs)}
        self._detail_cache: dict = {}

    # ------------------------------------------------------------------ settings
    def zero_state(self) -> tuple[int, ...]:
        return (0,) * len(self.knobs)

    def strongest(self, gi: int, n: int) -> np.ndarray:
        """Boolean mask keeping the ``n`` channels of group ``gi`` with the largest norms."""
        mask = np.zeros(self.groups[gi].channels, bool)
        mask[np.argsort(-self.norms[gi], kind="stable")[:n]] = True
        return mask

    def keep(self, state) -> dict[str, np.ndarray]:
        """{group name: boolean mask of kept channels} (the strongest by filter norm)."""
        out = {}
        for gi, g in enumerate(self.groups):
            knob = self.knobs[self.knob_index[f"channels:{g.name}"]]
            n = knob.levels[state[self.knob_index[knob.key]]]
            if n < g.channels:
                out[g.name] = self.strongest(gi, n)
        return out

    def sparsities(self, state) -> dict[str, float]:
        return {
            k.name: float(k.levels[s])
            for k, s in zip(self.knobs, state, strict=True)
            if k.kind == "sparsity" and k.levels[s] > 0
        }

    def views(self, state) -> list[LayerView]:
        return self.views_of(self.keep(state), self.sparsities(state))

    def views_of(self, keep: dict[str, np.ndarray], sp: dict[str, float]) -> list[LayerView]:
        alive = self.graph.element_keep(keep) if keep else None
        views = layer_views(self.model, self.graph, alive) if keep else list(self.base)
        return [
            replace(v, rows=prune_groups(v.rows, sp[v.path], v.op)) if v.path in sp else v
            for v in views
        ]

    def details_of(self, keep, sp) -> tuple[list[LayerView], list[dict]]:
        views = self.views_of(keep, sp)
        details = []
        for v in views:
            key = (v.path, v.in_shapes, v.out_shape, sp.get(v.path, 0.0))
            d = self._detail_cache.get(key)
            if d is None:
                d = self._detail_cache[key] = self._detail(v)
            details.append(d)
        return views, details

    def _detail(self, view: LayerView) -> dict:
        return self.target.layer_detail(view)

    def estimate(self, state) -> dict[str, float]:
        return self.estimate_of(self.keep(state), self.sparsities(state))

    def estimate_of(self, keep, sp) -> dict[str, float]:
        return self.target.estimate(*self.details_of(keep, sp))

    # ------------------------------------------------------------------ sensitivity
    def scan(
        self,
        loss_fn: Callable[[keras.Model], float],
        progress=None,
        calibration: np.ndarray | None = None,
    ) -> float:
        """Measure each knob level's loss alone; returns the original model's loss.

        With ``calibration`` inputs, every BatchNormalization's statistics are measured
        again on them for each setting (and for the original, so all compare alike):
        what the cut will get before its loss counts."""
        gated, gates = masked(self.model, None, self.graph)
        by_name = {la.name: la for la in gated.layers}
        if calibration is not None:
            recalibrate_batchnorm(gated, calibration)
        stats = batchnorm_state(gated)

        def measure() -> float:
            if calibration is None:
                return loss_fn(gated)
            recalibrate_batchnorm(gated, calibration)
            value = loss_fn(gated)
            restore_batchnorm(gated, stats)
            return value

        base = loss_fn(gated)
        for knob in self.knobs:
            knob.loss = [base]
            if knob.kind == "channels":
                for n in knob.levels[1:]:
                    state = list(self.zero_state())
                    state[self.knob_index[knob.key]] = knob.levels.index(n)
                    self._set_gates(gates, self.keep(state))
                    knob.loss.append(measure())
                    if progress:
                        progress()
                self._set_gates(gates, {})
            else:
                layer = by_name[knob.name.split("/")[-1]]
                original = keras.ops.convert_to_numpy(layer.kernel)
                op = self.kernel_ops[knob.name]
                rows = kernel_rows(layer, op, original)
                for s in knob.levels[1:]:
                    layer.kernel.assign(_from_rows(prune_groups(rows, s, op), op, original.shape))
                    knob.loss.append(measure())
                    if progress:
                        progress()
                layer.kernel.assign(original)
        return base

    def _set_gates(self, gates: dict, keep: dict[str, np.ndarray]) -> None:
        alive = self.graph.element_keep(keep)
        for use in self.graph.layers:
            gate = gates.get(use.path)
            if gate is not None and use.in_slots is not None:
                gate.mask.assign(alive[use.in_slots].astype("float32"))

    def scan_size(self) -> int:
        return sum(len(k.levels) - 1 for k in self.knobs)


def _from_rows(rows: np.ndarray, op: str, shape) -> np.ndarray:
    """Inverse of ``kernel_rows``."""
    if op == "fc":
        return rows.T.reshape(shape)
    if op == "dw":
        return rows.reshape(shape)
    kh, kw, cin, cout = shape
    return np.moveaxis(rows.reshape(cout, kh, kw, cin), 0, -1)


@dataclass
class Plan:
    """The chosen setting: knob levels, the estimate, and the estimated loss."""

    state: tuple[int, ...]
    estimate: dict[str, float]
    loss: float
    keep: dict[str, np.ndarray]
    sparsity: dict[str, float]
    moves: int = 0
    met: bool = True


def excess(estimate: dict[str, float], budget: dict[str, float]) -> float:
    return sum(max(0.0, estimate[m] / b - 1.0) for m, b in budget.items())


def estimated_loss(space: Space, state) -> float:
    """Base loss plus each knob's measured increase at its level (made non-decreasing
    along the ladder and never negative)."""
    total = 0.0
    base = None
    for knob, s in zip(space.knobs, state, strict=True):
        if not knob.loss:
            continue
        base = knob.loss[0]
        inc = np.maximum.accumulate(np.maximum(np.asarray(knob.loss) - knob.loss[0], 0.0))
        total += float(inc[s])
    return (base or 0.0) + total


def allocate(
    space: Space,
    budget: dict[str, float],
    use_loss: bool = True,
    kinds: tuple[str, ...] = ("channels", "sparsity"),
    max_moves: int = 10_000,
) -> Plan:
    """The greedy allocation (module docstring) under ``budget`` ({metric: limit}).

    A move sets one knob to any other level: costs are not monotone in the levels (a
    channel cut can make a layer's sparse kernel stop paying), so a move down can be the
    one that removes excess. Every move strictly lowers the excess, so it ends. With
    ``use_loss=False`` it ignores sensitivity and takes the largest cost cut each time
    (the feasibility probe). ``kinds`` limits the moves to channel cuts or to sparsity.
    ``Plan.met`` says whether every budget holds.
    """
    unknown = [m for m in budget if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown budget metric(s) {unknown}; expected {list(METRICS)}.")

    def loss_of(state):
        return estimated_loss(space, state) if use_loss else 0.0

    state = space.zero_state()
    est = space.estimate(state)
    loss = loss_of(state)
    moves = 0
    while excess(est, budget) > 0 and moves < max_moves:
        best = None
        now = excess(est, budget)
        for i, knob in enumerate(space.knobs):
            if knob.kind not in kinds:
                continue
            for lvl in range(len(knob.levels)):
                if lvl == state[i]:
                    continue
                cand = state[:i] + (lvl,) + state[i + 1 :]
                e = space.estimate(cand)
                gain = now - excess(e, budget)
                if gain <= 1e-12:
                    continue
                dl = loss_of(cand) - loss
                score = gain / (max(dl, 0.0) + 1e-4)
                if best is None or score > best[0] + 1e-12:
                    best = (score, cand, e)
        if best is None:
            break
        _, state, est = best
        loss = loss_of(state)
        moves += 1
    met = excess(est, budget) == 0
    if met and use_loss:
        # undo what is no longer needed: lower any knob while the budget still holds
        improved = True
        while improved:
            improved = False
            for i in range(len(space.knobs)):
                for lvl in range(0, state[i]):
                    cand = state[:i] + (lvl,) + state[i + 1 :]
                    e = space.estimate(cand)
                    if excess(e, budget) == 0 and loss_of(cand) < loss:
                        state, est, loss, improved = cand, e, loss_of(cand), True
                        break
    return Plan(state, est, loss, space.keep(state), space.sparsities(state), moves, met)


def smallest(space: Space, metric: str) -> float:
    """The smallest ``metric`` the knobs reach (by the greedy of ``allocate``, which takes
    the largest cut each time: a local minimum, not a proof)."""
    return allocate(space, {metric: 1e-12}, use_loss=False).estimate[metric]


def uniform(space: Space, budget: dict[str, float], sparsity: bool = True) -> Plan:
    """The baseline: the same setting everywhere. Every group keeps the same fraction of
    its channels (counts rounded to multiples of 4) and every kernel loses the same
    fraction of its SIMD groups (``sparsity=False``: none). The largest channel fraction
    (in steps of 1/16) for which some sparsity (in steps of 5%) meets the budget wins,
    with the least sparsity that does."""
    kernels = [p for p, v in ((v.path, v) for v in space.base) if v.rows is not None]
    kernels = [p for p in kernels if f"sparsity:{p}" in space.knob_index] if sparsity else []
    levels = [i / 20 for i in range(0, 20)] if kernels else [0.0]
    last = None
    for step in range(16, 0, -1):
        keep = {}
        for gi, g in enumerate(space.groups):
            n = g.channels
            unit = space.step if n >= 2 * space.step else 1
            count = min(n, max(unit, int(round(step / 16 * n / unit)) * unit))
            if count < n:
                keep[g.name] = space.strongest(gi, count)
        for s in levels:
            sp = dict.fromkeys(kernels, s) if s > 0 else {}
            est = space.estimate_of(keep, sp)
            last = (keep, sp, est)
            if excess(est, budget) == 0:
                return Plan(None, est, float("nan"), keep, sp, 0)
    keep, sp, est = last
    return Plan(None, est, float("nan"), keep, sp, 0, met=False)
