"""Regularized evolution (aging evolution) over per-group affine transforms.

Pure NumPy and JSON-serializable, so a run can stop after any generation and resume
with the same random stream.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["Member", "Evolution"]


@dataclass
class Member:
    alpha: list[float]
    kappa: list[float]
    fitness: float
    born: int  # generation that created it; the smallest is the oldest


class Evolution:
    """Population ``population``, tournament of ``sample``, oldest member replaced.

    Generation 0 evaluates the identity transform (plain global L2 ranking). Generation
    1, when ``norm_mean`` is given, evaluates the standardizing transform
    ``alpha = 1 / std``, ``kappa = -mean / std`` of each group's norms: one threshold
    then cuts about the same share of every group, close to uniform pruning. Until the
    population is full, each new member is the identity with every group perturbed;
    after that, the best of ``sample`` random members is copied and ``mutate_fraction``
    of its groups are perturbed: ``alpha *= exp(N(0, sigma))`` with ``sigma`` decaying
    geometrically from ``sigma[0]`` to ``sigma[1]`` over the run, and
    ``kappa += N(0, std of that group's norms)``.
    """

    def __init__(
        self,
        norm_std: np.ndarray,
        generations: int,
        population: int = 64,
        sample: int = 16,
        sigma: tuple[float, float] = (1.0, 0.2),
        mutate_fraction: float = 0.1,
        seed: int = 0,
        norm_mean: np.ndarray | None = None,
    ):
        if population < 1 or not 1 <= sample <= population:
            raise ValueError(
                f"Need population >= 1 and 1 <= sample <= population, got "
                f"population={population}, sample={sample}."
            )
        if generations < 1:
            raise ValueError(f"generations must be >= 1, got {generations}.")
        self.norm_std = np.asarray(norm_std, dtype=np.float64)
        self.norm_mean = None if norm_mean is None else np.asarray(norm_mean, np.float64)
        self.generations = int(generations)
        self.population_size = int(population)
        self.sample = int(sample)
        self.sigma = (float(sigma[0]), float(sigma[1]))
        self.mutate_fraction = float(mutate_fraction)
        self.rng = np.random.default_rng(seed)
        self.population: list[Member] = []
        self.generation = 0  # candidates evaluated so far
        self.best: Member | None = None
        self.history: list[float] = []  # best fitness after each generation

    def sigma_at(self, generation: int) -> float:
        s0, s1 = self.sigma
        t = generation / max(1, self.generations - 1)
        return s0 * (s1 / s0) ** t

    def _perturb(self, alpha, kappa, groups, sigma):
        alpha, kappa = np.array(alpha, dtype=np.float64), np.array(kappa, dtype=np.float64)
        for g in groups:
            alpha[g] *= math.exp(self.rng.normal(0.0, sigma))
            kappa[g] += self.rng.normal(0.0, self.norm_std[g]) if self.norm_std[g] > 0 else 0.0
        return alpha, kappa

    def propose(self) -> tuple[np.ndarray, np.ndarray]:
        """The next candidate (alpha, kappa)."""
        return self._propose(self.generation)

    def propose_batch(self, k: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """The next ``k`` candidates (fewer if the run ends sooner), all bred from the
        population as it is now, so they can be evaluated in parallel and then ``add``-ed
        in order. ``propose_batch(1)`` draws exactly what ``propose()`` draws."""
        if k < 1:
            raise ValueError(f"batch must be >= 1, got {k}.")
        k = min(k, self.generations - self.generation)
        return [self._propose(self.generation + i) for i in range(k)]

    def _propose(self, generation: int) -> tuple[np.ndarray, np.ndarray]:
        n = len(self.norm_std)
        if generation == 0:
            return np.ones(n), np.zeros(n)
        if generation == 1 and self.norm_mean is not None:
            spread = self.norm_std > 0  # a group of equal norms keeps the identity
            std = np.where(spread, self.norm_std, 1.0)
            return (np.where(spread, 1.0 / std, 1.0), np.where(spread, -self.norm_mean / std, 0.0))
        sigma = self.sigma_at(generation)
        if len(self.population) < self.population_size:
            return self._perturb(np.ones(n), np.zeros(n), range(n), sigma)
        picks = self.rng.choice(len(self.population), size=self.sample, replace=False)
        parent = min((self.population[i] for i in sorted(picks)), key=lambda m: m.fitness)
        k = max(1, round(self.mutate_fraction * n))
        groups = sorted(self.rng.choice(n, size=k, replace=False).tolist())
        return self._perturb(parent.alpha, parent.kappa, groups, sigma)

    def add(self, alpha, kappa, fitness: float) -> Member:
        member = Member(
            [float(a) for a in alpha], [float(k) for k in kappa], float(fitness), self.generation
        )
        self.population.append(member)
        if len(self.population) > self.population_size:
            self.population.pop(0)  # the oldest, whatever its fitness
        if self.best is None or member.fitness < self.best.fitness:
            self.best = member
        self.generation += 1
        self.history.append(self.best.fitness)
        return member

    @property
    def done(self) -> bool:
        return self.generation >= self.generations

    # ------------------------------------------------------------------ checkpoint
    def state(self) -> dict:
        return {
            "generation": self.generation,
            "generations": self.generations,
            "population": [asdict(m) for m in self.population],
            "best": None if self.best is None else asdict(self.best),
            "history": self.history,
            "rng": self.rng.bit_generator.state,
        }

    def load_state(self, state: dict) -> None:
        self.generation = int(state["generation"])
        self.population = [Member(**m) for m in state["population"]]
        self.best = None if state["best"] is None else Member(**state["best"])
        self.history = [float(h) for h in state["history"]]
        self.rng.bit_generator.state = state["rng"]
