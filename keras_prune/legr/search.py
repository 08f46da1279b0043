"""``LeGR``: learn the global filter ranking once, then shrink to any FLOPs target."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from keras_prune import io
from keras_prune._data import check_data, quiet_retracing
from keras_prune.graph import DependencyGraph
from keras_prune.legr.evolution import Evolution
from keras_prune.legr.executors import make_executor
from keras_prune.legr.ranking import Ranking
from keras_prune.surgery import check_plain, masked, shrink

__all__ = ["LeGR", "ParetoPoint", "ParetoResult", "METHODS"]

METHODS = ("learned", "l2", "uniform")


def check_labels(model: keras.Model, y: np.ndarray, what: str) -> np.ndarray:
    """Integer class labels (or one-hot rows) that fit the model's output."""
    classes = model.outputs[0].shape[-1]
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == classes and y.shape[1] > 1:
        return y
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(
            f"{what}: labels must be integer classes of shape (n,) or one-hot "
            f"(n, {classes}); got dtype {y.dtype}, shape {y.shape}."
        )
    if y.min() < 0 or y.max() >= classes:
        raise ValueError(
            f"{what}: labels span {y.min()}..{y.max()} but model "
            f"'{model.name}' outputs {classes} classes."
        )
    return y


def default_loss(model: keras.Model, y: np.ndarray):
    """The model's compiled loss, else cross-entropy matching the labels and whether the
    output layer already applies softmax."""
    if getattr(model, "loss", None) is not None:
        return keras.losses.deserialize(keras.losses.serialize(keras.losses.get(model.loss)))
    last = model.layers[-1]
    probs = "softmax" in getattr(getattr(last, "activation", None), "__name__", "")
    if y.ndim == 2:
        return keras.losses.CategoricalCrossentropy(from_logits=not probs)
    return keras.losses.SparseCategoricalCrossentropy(from_logits=not probs)


def _optimizer(spec):
    if spec is None:
        return keras.optimizers.Adam(1e-3)
    if isinstance(spec, keras.optimizers.Optimizer):
        return type(spec).from_config(spec.get_config())  # fresh slots, same settings
    return keras.optimizers.get(spec)


@dataclass
class ParetoPoint:
    method: str
    target: float
    macs: int
    macs_ratio: float
    params: int
    acc_before: float
    acc_after: float
    loss_after: float


@dataclass
class ParetoResult:
    """One fine-tuned model per target, and the table that compares them."""

    points: list[ParetoPoint] = field(default_factory=list)
    models: dict = field(default_factory=dict)  # (method, target) -> keras.Model
    original: ParetoPoint | None = None

    def table(self) -> str:
        head = (
            f"{'method':<9}{'target':>7}{'MACs':>12}{'of orig':>9}{'params':>10}"
            f"{'acc (cut)':>11}{'acc (tuned)':>13}"
        )
        lines = [head, "-" * len(head)]
        rows = ([self.original] if self.original else []) + self.points
        for p in rows:
            lines.append(
                f"{p.method:<9}{p.target:>7.2f}{p.macs:>12,}{p.macs_ratio:>9.1%}"
                f"{p.params:>10,}{p.acc_before:>11.2%}{p.acc_after:>13.2%}"
            )
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


class LeGR:
    """Learned global ranking of filters (Chin et al., CVPR 2020) for Keras models.

    One affine transform ``(alpha_l, kappa_l)`` per channel group turns squared filter
    norms into globally comparable scores; regularized evolution learns the transforms
    once at the most aggressive target ``learn_at``, scoring each candidate by the
    validation loss after ``tau`` fine-tuning steps. Any FLOPs target is then one cut
    through the ranking. Before ``learn()`` (or without data) ``prune`` uses the
    identity transform: plain global L2-norm ranking.

    Args:
        model: a built Sequential or functional model (e.g. from ``kp.io.load``).
        train, val: ``(x, y)`` tuples; needed by ``learn`` and ``pareto`` only.
        learn_at: the FLOPs fraction the ranking is learned at, or several: the fitness
            is then the mean validation loss over the cuts at each (one fine-tuning per
            cut, so the cost per generation grows with their number). One target is the
            paper's choice; a transform learned at one aggressive target can rank the
            channels of a cheap layer first at milder targets, which several targets
            prevent (see docs/legr.md).
        seed: seeds the evolution, the fine-tuning batches and the weights' RNG.
        min_fraction, min_channels: the safeguard (per group, at least
            ``max(min_channels, ceil(min_fraction * channels))`` stay).
        round_to: keep every group's channel count a multiple of this (or the whole
            group), in learning and in every cut unless ``prune`` says otherwise. 1
            (default) cuts channel by channel; 8 suits AVX2 CPUs (8 float lanes), 16
            AVX-512; a count between multiples runs about as slowly as the next one.
        loss, optimizer: for fine-tuning; default to the model's compiled loss (else
            cross-entropy) and a fresh copy of its optimizer (else Adam(1e-3)).

    ```python
    legr = kp.legr.LeGR(kp.io.load("model.h5"), train=(x, y), val=(xv, yv), learn_at=0.3)
    legr.learn(generations=400, tau=200, checkpoint="legr_state.json")
    small = legr.prune(flops=0.5)
    server = legr.prune(flops=0.5, round_to=8)   # channel counts in multiples of 8
    front = legr.pareto([0.7, 0.5, 0.3], finetune_epochs=5)
    ```
    """

    def __init__(
        self,
        model: keras.Model,
        train: tuple | None = None,
        val: tuple | None = None,
        learn_at: float | Sequence[float] = 0.3,
        seed: int = 0,
        min_fraction: float = 0.1,
        min_channels: int = 2,
        loss=None,
        optimizer=None,
        batch_size: int = 64,
        round_to: int = 1,
    ):
        check_plain(model, "kp.legr.LeGR")
        # what another process needs to rebuild this LeGR (see ``to_spec``)
        self._settings = {
            "learn_at": learn_at,
            "seed": seed,
            "min_fraction": min_fraction,
            "min_channels": min_channels,
            "batch_size": batch_size,
            "round_to": round_to,
        }
        self.model = model
        self.graph = DependencyGraph(model)
        self.ranking = Ranking(self.graph, min_fraction, min_channels, round_to)
        many = isinstance(learn_at, (list, tuple, np.ndarray))
        if many and not len(learn_at):
            raise ValueError("learn_at: give one FLOPs fraction or a non-empty list of them.")
        targets = [
            self.ranking.check_target(t, "learn_at") for t in (learn_at if many else [learn_at])
        ]
        #: a float, or a tuple of floats (descending) when several targets were given
        self.learn_at = tuple(sorted(set(targets), reverse=True)) if many else targets[0]
        self.seed = int(seed)
        self.batch_size = int(batch_size)
        self.train = self._data(train, "train")
        self.val = self._data(val, "val")
        y = self.train[1] if self.train else None
        self.loss = (
            loss if loss is not None else (default_loss(model, y) if y is not None else None)
        )
        self.optimizer = optimizer if optimizer is not None else getattr(model, "optimizer", None)
        self.alpha, self.kappa = self.ranking.identity()
        self.evolution: Evolution | None = None
        #: the process ids that evaluated candidates in the last ``learn`` call
        self.worker_pids: list[int] = []
        self._evaluator = None

    def _data(self, data, what):
        if data is None:
            return None
        if not isinstance(data, (tuple, list)) or len(data) != 2:
            raise ValueError(f"kp.legr.LeGR: `{what}` must be an (x, y) tuple.")
        x, y = check_data(self.model, data[0], data[1], f"{what} x")
        return x, check_labels(self.model, y, f"{what} y")

    # ------------------------------------------------------------------ cutting
    @property
    def learned(self) -> bool:
        return self.evolution is not None and self.evolution.best is not None

    def masks(
        self, flops: float, method: str = "learned", round_to: int | None = None
    ) -> list[np.ndarray]:
        """Boolean keep mask per prunable group at ``flops``."""
        if method == "learned":
            return self.ranking.cut(self.alpha, self.kappa, flops, round_to)
        if method == "l2":
            return self.ranking.cut(*self.ranking.identity(), flops, round_to)
        if method == "uniform":
            return self.ranking.uniform(flops, round_to)
        raise ValueError(f"method must be one of {METHODS}, got {method!r}.")

    def keep(
        self, flops: float, method: str = "learned", round_to: int | None = None
    ) -> dict[str, np.ndarray]:
        """{group name: kept channel indices} at ``flops`` (for ``kp.shrink``)."""
        return {
            k: np.flatnonzero(m)
            for k, m in self.ranking.keep_dict(self.masks(flops, method, round_to)).items()
        }

    def prune(
        self, flops: float, method: str = "learned", round_to: int | None = None
    ) -> keras.Model:
        """A physically smaller copy of the model with at most ``flops`` x its MACs.

        ``method``: "learned" (the learned transform; the identity before ``learn``),
        "l2" (plain global L2-norm ranking) or "uniform" (the same fraction per group).
        ``round_to``: channel counts in multiples of it (default: the constructor's).
        """
        masks = self.masks(flops, method, round_to)
        return shrink(self.model, self.ranking.keep_dict(masks), graph=self.graph)

    # ------------------------------------------------------------------ learning
    def _need_data(self, what):
        if self.train is None or self.val is None:
            raise ValueError(
                f"LeGR.{what} needs data: build it as LeGR(model, train=(x, y), "
                "val=(x_val, y_val))."
            )

    def _fingerprint(self, config: dict) -> str:
        h = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
        for w in self.model.get_weights():
            h.update(np.ascontiguousarray(w).tobytes())
        for arr in (*self.train, *self.val):
            h.update(np.ascontiguousarray(arr).tobytes())
        return h.hexdigest()

    def learn(
        self,
        generations: int = 400,
        tau: int = 200,
        checkpoint: str | os.PathLike | None = None,
        population: int = 64,
        sample: int = 16,
        progress: bool = True,
        batch: int | None = None,
        executor="serial",
        num_workers: int | None = None,
    ) -> LeGR:
        """Learn the per-group transforms by regularized evolution.

        Each generation evaluates one candidate: cut at ``learn_at``, fine-tune ``tau``
        steps (the same batches for every candidate), and take the validation loss.
        With ``checkpoint``, the state is written atomically after every batch of
        candidates and an existing checkpoint of the same run is resumed exactly where
        it stopped (with either executor).

        ``batch=K`` breeds K candidates at a time from the same population and
        evaluates them together: ``executor="ray"`` spreads them over ``num_workers``
        Ray actors (default: one per CPU of the cluster; see ``RayExecutor``),
        ``"serial"`` evaluates them here. The same seed and K give the same transforms
        and cuts with either executor; K=1 is the one-at-a-time algorithm. K defaults
        to ``num_workers`` with Ray and to 1 otherwise. ``executor`` may also be an
        object with ``evaluate(candidates, tau) -> [(loss, pid)]`` and ``close()``.
        """
        self._need_data("learn")
        if tau < 0:
            raise ValueError(f"tau must be >= 0, got {tau}.")
        if batch is not None and (isinstance(batch, bool) or int(batch) != batch or batch < 1):
            raise ValueError(f"batch must be a positive integer, got {batch!r}.")
        ranking = self.ranking
        norm_std = np.array([float(np.std(n)) for n in ranking.norms])
        norm_mean = np.array([float(np.mean(n)) for n in ranking.norms])
        config = {
            "generations": int(generations),
            "tau": int(tau),
            "start": ["identity", "standardized"],  # older checkpoints had one
            "population": int(population),
            "sample": int(sample),
            "learn_at": (
                list(self.learn_at) if isinstance(self.learn_at, tuple) else self.learn_at
            ),
            "seed": self.seed,
            "batch_size": self.batch_size,
            "min_keep": ranking.min_keep.tolist(),
            "groups": [g.name for g in ranking.groups],
        }
        if ranking.round_to != 1:  # absent when 1, so checkpoints from before it resume
            config["round_to"] = ranking.round_to
        evo = Evolution(
            norm_std, generations, population, sample, seed=self.seed, norm_mean=norm_mean
        )
        path = Path(checkpoint) if checkpoint is not None else None
        owned = isinstance(executor, str)
        runner = make_executor(executor, self, num_workers)  # checks Ray before any work
        try:
            if batch is None:
                batch = runner.num_workers if getattr(runner, "name", None) == "ray" else 1
            if batch != 1:  # absent when 1, so checkpoints from before it resume
                config["batch"] = int(batch)
            fingerprint = self._fingerprint(config)  # hashes every weight and sample: once
            if path is not None and path.exists():
                self._resume(evo, path, config, fingerprint)
            self._evolve(evo, runner, int(batch), tau, progress, path, config, fingerprint)
        finally:
            if owned:
                runner.close()
        self.evolution = evo
        self.alpha = np.array(evo.best.alpha)
        self.kappa = np.array(evo.best.kappa)
        return self

    def _evolve(self, evo, runner, batch, tau, progress, path, config, fingerprint) -> None:
        self.worker_pids = []
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=evo.generations, initial=evo.generation, desc="LeGR", unit="gen")
        try:
            while not evo.done:
                candidates = evo.propose_batch(batch)
                scored = runner.evaluate(candidates, tau)
                for (alpha, kappa), (loss, pid) in zip(candidates, scored, strict=True):
                    evo.add(alpha, kappa, loss)
                    if pid not in self.worker_pids:
                        self.worker_pids = sorted([*self.worker_pids, pid])
                if path is not None:
                    self._save(evo, path, config, fingerprint)
                if bar is not None:
                    bar.update(len(candidates))
                    bar.set_postfix(
                        best_loss=f"{evo.best.fitness:.4f}", loss=f"{scored[-1][0]:.4f}"
                    )
        finally:
            if bar is not None:
                bar.close()

    # ------------------------------------------------------------------ other processes
    def to_spec(self) -> dict:
        """Everything another process needs to rebuild this LeGR with ``from_spec``:
        the model's config and weights, the data, the loss, the optimizer and the
        settings. Checked here, so a model or loss that cannot be rebuilt fails before
        a cluster is started."""
        self._need_data("learn")
        try:
            model = self.model.to_json()  # plain text: survives any transport
            keras.models.model_from_json(model)
        except Exception as e:
            raise ValueError(
                f"LeGR cannot ship model '{self.model.name}' to other processes: its "
                f"config does not rebuild with Keras's safe deserialization ({e}). Use the "
                "serial executor, or rebuild the model from standard layers."
            ) from e
        spec = {"model": model, "weights": self.model.get_weights()}
        for what, obj, kind in (
            ("loss", self.loss, keras.losses),
            ("optimizer", self.optimizer, keras.optimizers),
        ):
            if obj is None or isinstance(obj, str):
                spec[what] = obj
                continue
            try:
                spec[what] = json.loads(json.dumps(kind.serialize(obj)))
                _restore(kind, spec[what])
            except Exception as e:
                raise ValueError(
                    f"LeGR cannot ship its {what} {obj!r} to other processes ({e}); pass "
                    f"a built-in {what} (a name or a keras.{kind.__name__.split('.')[-1]} "
                    "object) or use the serial executor."
                ) from e
        settings = dict(self._settings)
        if isinstance(settings["learn_at"], (list, tuple, np.ndarray)):
            settings["learn_at"] = [float(t) for t in settings["learn_at"]]
        return {
            **spec,
            "train": self.train,
            "val": self.val,
            "settings": settings,
            "format": "keras-prune/legr-spec",
        }

    @classmethod
    def from_spec(cls, spec: dict) -> LeGR:
        """The LeGR that ``to_spec`` described, in this process."""
        if spec.get("format") != "keras-prune/legr-spec":
            raise ValueError("from_spec: not a keras-prune LeGR spec (see LeGR.to_spec).")
        model = keras.models.model_from_json(spec["model"])
        model.set_weights(spec["weights"])
        loss, opt = spec["loss"], spec["optimizer"]
        return cls(
            model,
            train=spec["train"],
            val=spec["val"],
            loss=_restore(keras.losses, loss) if isinstance(loss, dict) else loss,
            optimizer=_restore(keras.optimizers, opt) if isinstance(opt, dict) else opt,
            **spec["settings"],
        )

    def _save(self, evo, path, config, fingerprint) -> None:
        state = {
            "format": "keras-prune/legr-checkpoint",
            "version": 1,
            "config": config,
            "fingerprint": fingerprint,
            "evolution": evo.state(),
            "worker_pids": self.worker_pids,  # this session's, for the record only
        }
        with io.atomic_path(path, overwrite=True) as tmp:
            tmp.write_text(json.dumps(state))

    def _resume(self, evo, path, config, fingerprint) -> None:
        try:
            state = json.loads(path.read_text())
            assert state.get("format") == "keras-prune/legr-checkpoint"
        except (ValueError, AssertionError, OSError) as e:
            raise ValueError(
                f"LeGR checkpoint '{path}' is not a keras-prune LeGR checkpoint "
                "(or is damaged); delete it or choose another path."
            ) from e
        diff = sorted(k for k in config if state["config"].get(k) != config[k])
        if diff or state["fingerprint"] != fingerprint:
            what = ", ".join(diff) if diff else "the model weights or the data"
            raise ValueError(
                f"LeGR checkpoint '{path}' belongs to a different run (differs "
                f"in {what}); use the same settings to resume or another path."
            )
        evo.load_state(state["evolution"])

    def fitness(self, alpha, kappa, tau: int) -> float:
        """What the evolution minimizes for one candidate transform ``(alpha, kappa)``:
        the mean, over the ``learn_at`` targets, of ``evaluate_cut`` on its cut."""
        targets = self.learn_at if isinstance(self.learn_at, tuple) else (self.learn_at,)
        return float(
            np.mean([self.evaluate_cut(self.ranking.cut(alpha, kappa, t), tau) for t in targets])
        )

    def evaluate_cut(self, masks, tau: int) -> float:
        """Validation loss of one cut (``ranking.cut``'s masks) after ``tau`` fine-tuning
        steps from the original weights; equal cuts are scored once."""
        if self._evaluator is None:
            self._evaluator = _Evaluator(self)
        return self._evaluator(masks, tau)

    # ------------------------------------------------------------------ Pareto set
    def pareto(
        self,
        targets: Sequence[float],
        finetune_epochs: int = 5,
        methods: Sequence[str] = ("learned",),
        progress: bool = True,
        print_fn: Callable[[str], None] | None = print,
        seed: int | None = None,
    ) -> ParetoResult:
        """One fine-tuned model per target (and per method), plus a table.

        Accuracy is measured on ``val`` right after the cut and after
        ``finetune_epochs`` epochs on ``train``. Every model is fine-tuned from the same
        seed (``seed``, default the LeGR seed; set through
        ``keras.utils.set_random_seed``), so methods compare fairly.
        """
        self._need_data("pareto")
        targets = [self.ranking.check_target(t, "target") for t in targets]
        for m in methods:
            if m not in METHODS:
                raise ValueError(f"method must be one of {METHODS}, got {m!r}.")
        result = ParetoResult()
        total = self.ranking.total
        acc0, loss0 = self._evaluate(
            self._compiled(keras.models.clone_model(self.model), weights=self.model.get_weights())
        )
        result.original = ParetoPoint(
            "original", 1.0, total, 1.0, self.model.count_params(), acc0, acc0, loss0
        )
        jobs = [(m, t) for m in methods for t in targets]
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(jobs), desc="fine-tuning", unit="model")
        with quiet_retracing():  # one new model per job, by design
            for method, t in jobs:
                self._pareto_point(
                    result, method, t, finetune_epochs, self.seed if seed is None else int(seed)
                )
                if bar is not None:
                    bar.update(1)
        if bar is not None:
            bar.close()
        if print_fn is not None:
            print_fn(result.table())
        return result

    def _pareto_point(self, result, method, t, finetune_epochs, seed) -> None:
        total = self.ranking.total
        small = self._compiled(self.prune(t, method))
        macs = sum(DependencyGraph(small).macs().values())
        before, _ = self._evaluate(small)
        if finetune_epochs:
            keras.utils.set_random_seed(seed)
            small.fit(
                *self.train,
                epochs=finetune_epochs,
                batch_size=self.batch_size,
                verbose=0,
                shuffle=True,
            )
        after, loss = self._evaluate(small)
        result.points.append(
            ParetoPoint(method, t, macs, macs / total, small.count_params(), before, after, loss)
        )
        result.models[(method, t)] = small

    def _compiled(self, model, weights=None):
        if weights is not None:
            model.set_weights(weights)
        # XLA would compile every cut model anew; on these small models that costs more
        # than it saves
        model.compile(
            optimizer=_optimizer(self.optimizer),
            loss=self.loss,
            metrics=["accuracy"],
            jit_compile=False,
        )
        return model

    def _evaluate(self, model) -> tuple[float, float]:
        out = model.evaluate(*self.val, batch_size=256, verbose=0, return_dict=True)
        return float(out["accuracy"]), float(out["loss"])


def _restore(kind, config):
    # Keras hands back a bare name for a function it cannot find, and "__lambda__" for a
    # lambda (whose code it won't run): both must fail here, not later on a worker
    obj = kind.deserialize(config)
    return kind.get(obj) if isinstance(obj, str) else obj


class _Evaluator:
    """Scores candidate cuts without rebuilding: one gated copy of the model, compiled
    once; each call restores every variable, sets the gates and fine-tunes."""

    def __init__(self, legr: LeGR):
        self.legr = legr
        # the copy's own random state (dropout seeds) comes from the LeGR seed, so every
        # process that rebuilds this LeGR scores a candidate the same way
        keras.utils.set_random_seed(legr.seed)
        self.model, self.gates = masked(legr.model, graph=legr.graph)
        self.model.compile(optimizer=_optimizer(legr.optimizer), loss=legr.loss, jit_compile=False)
        self.model.optimizer.build(self.model.trainable_variables)
        self.variables = list(self.model.variables) + list(self.model.optimizer.variables)
        self.snapshot = [np.array(v.numpy()) for v in self.variables]
        x, _ = legr.train
        rng = np.random.default_rng(legr.seed)
        self.order = rng.permutation(len(x))
        self.uses = {u.path: u for u in legr.graph.layers}
        self.cache: dict[tuple[bytes, int], float] = {}

    def __call__(self, masks, tau: int) -> float:
        # the score is a pure function of the cut: equal cuts are not fine-tuned twice
        key = (np.packbits(np.concatenate(masks)).tobytes(), tau)
        if key not in self.cache:
            self.cache[key] = self._score(masks, tau)
        return self.cache[key]

    def _score(self, masks, tau: int) -> float:
        for v, value in zip(self.variables, self.snapshot, strict=True):
            v.assign(value)
        alive = self.legr.ranking.alive(masks)
        for path, gate in self.gates.items():
            gate.mask.assign(alive[self.uses[path].in_slots].astype("float32"))
        x, y = self.legr.train
        b = self.legr.batch_size
        for step in range(tau):
            idx = self.order[np.arange(step * b, (step + 1) * b) % len(x)]
            self.model.train_on_batch(x[idx], y[idx])
        xv, yv = self.legr.val
        return float(self.model.evaluate(xv, yv, batch_size=256, verbose=0))
