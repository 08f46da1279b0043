"""Lottery tickets: iterative magnitude pruning (IMP) with weight rewinding.

Train the model; prune the lowest-magnitude surviving units of each layer; rewind the
survivors to their values early in training; retrain; repeat. The subnetwork left after
the last round is the *ticket*. Frankle & Carbin (2019) found LeNet-300-100 tickets that
match dense accuracy down to a few percent of the weights, where the same mask with fresh
random weights does not; ``LotteryResult.random_reinit`` runs that control.

Example:

```python
result = kp.lottery.imp(kp.models.lenet_300_100(), (x, y), (xv, yv), rounds=15,
                        rate=0.2, rewind_epoch=1, epochs=20, layer_rates={"fc3": 0.1})
result.remaining          # 0.036: fraction of prunable weights left
result.history[-1]        # {"round": 15, "remaining": ..., "val_accuracy": ...}
result.random_reinit()    # the same mask, fresh initial weights, trained the same way
result.plot("lottery.png")
kp.export.cmsis(result.ticket, "out/c", x[:500])   # SIMDGroups(4) tickets run sparse
```

The masks are ``PruneWrapper``'s (``kp.prune``): exact counts per layer, no regrowth,
each round pruned from the surviving units of any granularity that lets sparsity grow
(unstructured, ``SIMDGroups``, ``Channels``). Layer ``l`` keeps ``(1 - rate_l) ** r`` of
its units after round ``r``. With ``checkpoint``, the state is saved after every round
and a killed run resumes where it stopped, with the same masks.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from keras_prune import granularity as gr
from keras_prune import io
from keras_prune._data import check_data, check_splits, quiet_retracing
from keras_prune.callbacks import PruningScheduler
from keras_prune.layers import PruneWrapper
from keras_prune.model_utils import check_model
from keras_prune.pruning import prune, strip, wrappers
from keras_prune.schedules import ConstantSparsity

__all__ = ["imp", "IMP", "LotteryResult", "ReinitResult"]

_STATE = "state.json"
_WEIGHTS = "model.weights.h5"
_REWIND = "rewind.npz"
_MASKS = "masks.npz"
_DENSE = "dense.weights.h5"


def _check_rate(rate, what: str) -> float:
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate < 1:
        raise ValueError(
            f"{what} must be a fraction in (0, 1) of the surviving weights pruned per "
            f"round, got {rate!r} (the paper uses 0.2, and 0.1 for the output layer)."
        )
    return float(rate)


@dataclass
class ReinitResult:
    """The control: a round's mask on fresh random weights, trained like the ticket."""

    round: int
    remaining: float
    val_accuracy: float
    model: keras.Model = field(repr=False)


@dataclass
class LotteryResult:
    """What ``imp`` found.

    ``dense``: the trained dense model (round 0); ``ticket``: the trained ticket, a plain
    Keras model with its pruned weights exactly zero; ``mask``: per pruned layer, its
    masks (one per kernel); ``remaining``: the fraction of prunable weights left;
    ``history``: per round, ``remaining`` and ``val_accuracy`` (and
    ``random_reinit_accuracy`` once ``random_reinit`` ran for that round).
    """

    dense: keras.Model = field(repr=False)
    ticket: keras.Model = field(repr=False)
    mask: dict[str, list[np.ndarray]] = field(repr=False)
    remaining: float
    history: list[dict]
    search: IMP = field(repr=False)

    def random_reinit(self, round: int | None = None, seed: int | None = None) -> ReinitResult:
        """Train ``round``'s mask (default: the last) from fresh random weights, the
        same way and as long as the ticket was trained; recorded in ``history``."""
        return self.search.random_reinit(round, seed)

    def plot(self, path: str | os.PathLike, overwrite: bool = True) -> Path:
        """Validation accuracy against weights remaining: ticket vs random re-init (PNG)."""
        return plot_history(self.history, path, self.search.name, overwrite=overwrite)


def plot_history(
    history: list[dict], path: str | os.PathLike, title: str = "", overwrite: bool = True
) -> Path:
    """The ticket's and the random re-inits' accuracy against weights remaining."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    rem = [100 * h["remaining"] for h in history]
    acc = [100 * h["val_accuracy"] for h in history]
    ax.plot(rem, acc, "o-", label="ticket (rewound weights)")
    reinit = [
        (100 * h["remaining"], 100 * h["random_reinit_accuracy"])
        for h in history
        if h.get("random_reinit_accuracy") is not None
    ]
    if reinit:
        ax.plot(*zip(*reinit, strict=True), "s--", label="same mask, random re-init")
    ax.axhline(acc[0], color="grey", lw=0.8, ls=":", label="dense")
    ax.set_xscale("log")
    ticks = [t for t in (100, 50, 20, 10, 5, 2, 1, 0.5) if t >= 0.9 * min(rem)]
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.minorticks_off()
    ax.invert_xaxis()
    ax.set_xlabel("weights remaining (%)")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title(f"Iterative magnitude pruning with rewinding{': ' + title if title else ''}")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="lower left", fontsize=8)
    return io.save_figure(fig, path, overwrite=overwrite)


class IMP:
    """Iterative magnitude pruning with rewinding, one step at a time (``imp`` runs it).

    The steps, for tests and custom loops: ``train_dense()`` (also records the rewind
    point), then per round ``prune_round(r)``, ``rewind()`` and ``train()``.
    """

    def __init__(
        self,
        model: keras.Model,
        train_data,
        val_data,
        rounds: int,
        rate: float = 0.2,
        rewind_epoch: int | None = 1,
        rewind_step: int | None = None,
        epochs: int = 20,
        granularity="unstructured",
        layer_rates: dict[str, float] | None = None,
        batch_size: int = 64,
        learning_rate: float = 1.2e-3,
        loss="sparse_categorical_crossentropy",
        seed: int = 0,
        progress: bool = True,
        checkpoint: str | os.PathLike | None = None,
        early_stopping: bool = True,
    ):
        check_model(model, "kp.lottery.imp")
        if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
            raise ValueError(f"rounds must be an integer >= 1, got {rounds!r}.")
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise ValueError(f"epochs must be an integer >= 1, got {epochs!r}.")
        self.rate = _check_rate(rate, "rate")
        self.granularity = gr.get(granularity)
        if isinstance(self.granularity, gr.NofM):
            raise ValueError(
                f"{self.granularity!r} fixes each layer's sparsity at 1 - N/M; iterative "
                "pruning needs a sparsity that grows round by round. Use 'unstructured', "
                "SIMDGroups or Channels."
            )
        self.x, self.y = self._data(model, train_data, "train_data")
        self.xv, self.yv = self._data(model, val_data, "val_data")
        self.steps_per_epoch = math.ceil(len(self.x) / batch_size)
        if rewind_step is not None and rewind_epoch not in (None, 1):
            raise ValueError("Give rewind_epoch or rewind_step, not both.")
        if rewind_step is None:
            if rewind_epoch is None:
                raise ValueError("Give rewind_epoch (0 = the initial weights) or rewind_step.")
            if isinstance(rewind_epoch, bool) or not isinstance(rewind_epoch, int):
                raise ValueError(f"rewind_epoch must be an integer, got {rewind_epoch!r}.")
            rewind_step = rewind_epoch * self.steps_per_epoch
        if isinstance(rewind_step, bool) or not isinstance(rewind_step, int) or rewind_step < 0:
            raise ValueError(f"rewind_step must be an integer >= 0, got {rewind_step!r}.")
        total = epochs * self.steps_per_epoch
        if rewind_step > total:
            raise ValueError(
                f"The rewind point (step {rewind_step}) is past training ({epochs} epochs = "
                f"{total} steps of batch {batch_size}); rewind to an earlier epoch or step, "
                "or train longer."
            )
        self.rounds, self.epochs, self.rewind_step = rounds, epochs, rewind_step
        self.batch_size, self.learning_rate, self.loss = batch_size, learning_rate, loss
        self.seed, self.progress = seed, progress
        self.early_stopping = bool(early_stopping)
        self.name = model.name
        self.original = model
        keras.utils.set_random_seed(seed)
        # The schedule never moves the masks during fit: IMP sets them between rounds.
        self.model = prune(
            model, ConstantSparsity(0.0, begin_step=0, end_step=0), granularity=self.granularity
        )
        self.wrappers = {w.name: w for w in wrappers(self.model)}
        if not self.wrappers:
            raise ValueError(f"Model '{model.name}' has no prunable layer (Dense, Conv).")
        layer_rates = dict(layer_rates or {})
        unknown = sorted(set(layer_rates) - set(self.wrappers))
        if unknown:
            raise ValueError(
                f"layer_rates names {unknown}, which are not prunable layers of "
                f"'{model.name}' (those are {sorted(self.wrappers)})."
            )
        self.layer_rates = {
            n: _check_rate(layer_rates.get(n, self.rate), f"layer_rates[{n!r}]")
            for n in self.wrappers
        }
        # rewound: the weights a rewind restores, all but the wrappers' masks and counters
        state = {
            id(v)
            for w in self.wrappers.values()
            for v in (*w.masks, w.bias_mask, w.pruning_step, w.step_offset)
            if v is not None
        }
        self.rewound = [v for v in self.model.weights if id(v) not in state]
        self.rewind_values: list[np.ndarray] | None = None
        self.history: list[dict] = []
        self.round_masks: dict[int, dict[str, list[np.ndarray]]] = {}
        self.dense: keras.Model | None = None
        self.checkpoint = Path(checkpoint) if checkpoint is not None else None
        self.units = {n: self._units(w) for n, w in self.wrappers.items()}

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _data(model, data, what):
        if not isinstance(data, (tuple, list)) or len(data) != 2:
            raise ValueError(f"{what} must be (x, y), got {type(data).__name__}.")
        x, y = check_data(model, data[0], data[1], what)
        if y is None:
            raise ValueError(f"{what} has no labels: IMP trains, so it needs (x, y).")
        return x, y

    def _units(self, w: PruneWrapper) -> int:
        return sum(
            self.granularity.units(k.shape, lay)
            for k, lay in zip(w.kernels, w.layouts, strict=True)
        )

    def _fit(self, model: keras.Model, round_: int, callbacks=()) -> None:
        """Train ``model`` for ``epochs`` from a fresh optimizer, seeded per round; with
        ``early_stopping``, end on the weights of its best validation epoch."""
        keras.utils.set_random_seed(self.seed + round_)
        model.compile(keras.optimizers.Adam(self.learning_rate), self.loss, metrics=["accuracy"])
        callbacks = [PruningScheduler(), *callbacks]
        if self.early_stopping:
            callbacks.append(
                keras.callbacks.EarlyStopping(
                    "val_accuracy", patience=self.epochs, mode="max", restore_best_weights=True
                )
            )
        with quiet_retracing():  # every round recompiles, so fit and predict trace anew
            model.fit(
                self.x,
                self.y,
                batch_size=self.batch_size,
                epochs=self.epochs,
                verbose=0,
                callbacks=callbacks,
                validation_data=(self.xv, self.yv) if self.early_stopping else None,
            )
        for w in wrappers(model):
            w.zero_pruned_weights()

    def _accuracy(self, model: keras.Model | None = None) -> float:
        m = model or self.model
        with quiet_retracing():
            pred = m.predict(self.xv, batch_size=256, verbose=0)
        y = self.yv.reshape(len(self.yv), -1).argmax(-1) if self.yv.ndim > 1 else self.yv
        return float(np.mean(np.argmax(pred, -1) == y))

    def masks(self) -> dict[str, list[np.ndarray]]:
        """The current masks, per wrapped layer (one per kernel)."""
        return {
            n: [keras.ops.convert_to_numpy(m).copy() for m in w.masks]
            for n, w in self.wrappers.items()
        }

    def remaining(self) -> float:
        """Fraction of the prunable kernels' weights still unmasked."""
        kept = total = 0
        for w in self.wrappers.values():
            for m in w.masks:
                m = keras.ops.convert_to_numpy(m)
                kept, total = kept + int(m.sum()), total + m.size
        return kept / total

    def _record(self, round_: int) -> None:
        self.round_masks[round_] = self.masks()
        entry = {
            "round": round_,
            "remaining": self.remaining(),
            "val_accuracy": self._accuracy(),
        }
        self.history = [h for h in self.history if h["round"] < round_] + [entry]

    # ------------------------------------------------------------------ steps
    def train_dense(self) -> None:
        """Round 0: train the dense model, keeping the weights at the rewind point."""
        self.rewind_values = None
        if self.rewind_step == 0:
            self.rewind_values = [keras.ops.convert_to_numpy(v).copy() for v in self.rewound]
        search = self

        class _Snapshot(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                step = int(self.model.optimizer.iterations.numpy())
                if step == search.rewind_step and search.rewind_values is None:
                    search.rewind_values = [
                        keras.ops.convert_to_numpy(v).copy() for v in search.rewound
                    ]

        self._fit(self.model, 0, [_Snapshot()])
        self.dense = strip(self.model)
        self._record(0)

    def prune_round(self, round_: int) -> None:
        """Prune every layer to its round-``round_`` sparsity, from its survivors, by the
        magnitude of the trained weights."""
        for n, w in self.wrappers.items():
            w.update_masks(1.0 - (1.0 - self.layer_rates[n]) ** round_)

    def rewind(self) -> None:
        """Set every weight to its value at the rewind point; pruned ones stay zero."""
        if self.rewind_values is None:
            raise RuntimeError("rewind() before train_dense(): there is no rewind point yet.")
        for v, value in zip(self.rewound, self.rewind_values, strict=True):
            v.assign(value)
        for w in self.wrappers.values():
            w.zero_pruned_weights()

    def train(self, round_: int) -> None:
        """Retrain the rewound subnetwork as long as the dense model trained."""
        self._fit(self.model, round_)
        self._record(round_)

    # ------------------------------------------------------------------ checkpoint
    def _config(self) -> dict:
        return {
            "model": self.name,
            "rounds": self.rounds,
            "epochs": self.epochs,
            "rate": self.rate,
            "layer_rates": self.layer_rates,
            "rewind_step": self.rewind_step,
            "batch_size": self.batch_size,
            "learning_rate": self.learning_rate,
            "seed": self.seed,
            "early_stopping": self.early_stopping,
            "granularity": keras.saving.serialize_keras_object(self.granularity),
        }

    def save(self, directory: str | os.PathLike) -> None:
        """Write the state after the last finished round (atomically)."""
        directory = Path(directory)
        masks = {
            f"{r}/{n}/{i}": m
            for r, ms in self.round_masks.items()
            for n, arrays in ms.items()
            for i, m in enumerate(arrays)
        }
        with io.atomic_dir(directory, overwrite=True) as tmp:
            self.model.save_weights(tmp / _WEIGHTS)
            self.dense.save_weights(tmp / _DENSE)
            np.savez(tmp / _REWIND, *self.rewind_values)
            np.savez(tmp / _MASKS, **masks)
            state = {"config": self._config(), "history": self.history}
            (tmp / _STATE).write_text(json.dumps(state, indent=1))

    def load(self, directory: str | os.PathLike) -> int:
        """Restore a saved state; returns the last finished round."""
        directory = Path(directory)
        state = json.loads((directory / _STATE).read_text())
        if state["config"] != json.loads(json.dumps(self._config())):
            raise ValueError(
                f"The checkpoint '{directory}' was made with other settings "
                f"({state['config']}); resume with the same ones, or delete it to start over."
            )
        self.model.load_weights(directory / _WEIGHTS)
        with np.load(directory / _REWIND) as f:
            self.rewind_values = [f[f"arr_{i}"] for i in range(len(f.files))]
        with np.load(directory / _MASKS) as f:
            self.round_masks = {}
            for key in f.files:
                r, n, _ = key.split("/")
                self.round_masks.setdefault(int(r), {}).setdefault(n, []).append(f[key])
        self.dense = strip(self.model)
        self.dense.load_weights(directory / _DENSE)
        self.history = state["history"]
        return self.history[-1]["round"]

    # ------------------------------------------------------------------ run
    def run(self) -> LotteryResult:
        """All rounds; resumes from ``checkpoint`` when it holds a saved state."""
        from tqdm.auto import tqdm

        done = -1
        if self.checkpoint is not None and (self.checkpoint / _STATE).exists():
            done = self.load(self.checkpoint)
        bar = tqdm(
            total=self.rounds + 1,
            initial=done + 1,
            desc=f"IMP {self.name}",
            unit="round",
            disable=not self.progress,
        )
        for r in range(done + 1, self.rounds + 1):
            if r == 0:
                self.train_dense()
            else:
                self.prune_round(r)
                self.rewind()
                self.train(r)
            h = self.history[-1]
            bar.set_postfix(remaining=f"{h['remaining']:.1%}", val=f"{h['val_accuracy']:.3f}")
            bar.update(1)
            if self.checkpoint is not None:
                self.save(self.checkpoint)
        bar.close()
        return LotteryResult(
            self.dense, strip(self.model), self.masks(), self.remaining(), self.history, self
        )

    def random_reinit(self, round_: int | None = None, seed: int | None = None) -> ReinitResult:
        """See ``LotteryResult.random_reinit``."""
        round_ = self.history[-1]["round"] if round_ is None else round_
        if round_ not in self.round_masks:
            raise ValueError(f"No round {round_}; rounds run: {sorted(self.round_masks)}.")
        keras.utils.set_random_seed(self.seed + 10_000 + (seed or 0) + round_)
        fresh = keras.models.clone_model(self.original)  # new initial weights
        model = prune(
            fresh, ConstantSparsity(0.0, begin_step=0, end_step=0), granularity=self.granularity
        )
        for w in wrappers(model):
            for mask, value in zip(w.masks, self.round_masks[round_][w.name], strict=True):
                mask.assign(value)
            w.zero_pruned_weights()
        self._fit(model, round_)
        acc = self._accuracy(model)
        for h in self.history:
            if h["round"] == round_:
                h["random_reinit_accuracy"] = acc
        if self.checkpoint is not None and (self.checkpoint / _STATE).exists():
            self.save(self.checkpoint)
        remaining = next(h["remaining"] for h in self.history if h["round"] == round_)
        return ReinitResult(round_, remaining, acc, strip(model))


def imp(
    model: keras.Model,
    train_data,
    val_data,
    rounds: int,
    rate: float = 0.2,
    rewind_epoch: int | None = 1,
    rewind_step: int | None = None,
    epochs: int = 20,
    granularity="unstructured",
    layer_rates: dict[str, float] | None = None,
    seed: int = 0,
    progress: bool = True,
    checkpoint: str | os.PathLike | None = None,
    batch_size: int = 64,
    learning_rate: float = 1.2e-3,
    loss="sparse_categorical_crossentropy",
    early_stopping: bool = True,
) -> LotteryResult:
    """Find a lottery ticket by iterative magnitude pruning with rewinding.

    Args:
        model: a built Keras model (``kp.io.load`` models too); never modified.
        train_data, val_data: ``(x, y)``; validation accuracy is recorded every round.
        rounds: pruning rounds after the dense one (>= 1).
        rate: fraction of each layer's surviving units pruned per round, in (0, 1).
        rewind_epoch: rewind the survivors to their values after this many epochs of
            dense training (0: the initial weights, Frankle & Carbin's original).
        rewind_step: rewind to this training step instead of an epoch.
        epochs: epochs of training per round (the dense model and every retraining).
        granularity: ``"unstructured"``, ``kp.granularity.SIMDGroups(4)``, ``Channels()``...
        layer_rates: per-layer rates, e.g. ``{"fc3": 0.1}`` (the paper's output layer).
        seed: makes masks, rewinding and the history reproducible.
        checkpoint: a directory saved after each round; an existing one is resumed.
        early_stopping: end every training (dense, each round, the re-init control) on
            the weights of its best validation epoch, as the paper reports accuracy at
            early stopping; the validation accuracies are then selected on, so report a
            held-out test set.

    Raises ``ValueError`` for a rate outside (0, 1), rounds < 1, a rewind point past
    training, unknown layers in ``layer_rates`` or data that does not fit the model.
    """
    return IMP(
        model,
        train_data,
        val_data,
        rounds,
        rate=rate,
        rewind_epoch=rewind_epoch,
        rewind_step=rewind_step,
        epochs=epochs,
        granularity=granularity,
        layer_rates=layer_rates,
        batch_size=batch_size,
        learning_rate=learning_rate,
        loss=loss,
        seed=seed,
        progress=progress,
        checkpoint=checkpoint,
        early_stopping=early_stopping,
    ).run()


def run_job(
    model: keras.Model,
    data: dict,
    out: str | os.PathLike,
    resume: bool = False,
    force: bool = False,
    random_reinit: bool = True,
    print_fn: Callable[[str], None] = print,
    **kwargs,
) -> LotteryResult:
    """The ``keras-prune lottery`` job: ``imp`` on ``data`` (x_train, y_train, x_val,
    y_val), then write ``dense.keras``, ``ticket.keras``, ``history.json`` and
    ``lottery.png`` to ``out`` atomically. The checkpoint lives beside ``out`` until the
    job completes."""
    out = Path(out)
    writer = io.atomic_dir(out, overwrite=force)
    writer.check()
    check_splits(data, "The lottery job")
    ckpt = out.parent / f".{out.name}.lottery-checkpoint"
    if ckpt.exists() and not resume:
        raise FileExistsError(
            f"An interrupted lottery run left '{ckpt}'; pass --resume to continue it, or "
            "delete it to start over."
        )
    search = IMP(
        model,
        (data["x_train"], data["y_train"]),
        (data["x_val"], data["y_val"]),
        checkpoint=ckpt,
        **kwargs,
    )
    result = search.run()
    if random_reinit:
        result.random_reinit()
    with writer as tmp:
        result.dense.save(tmp / "dense.keras")
        result.ticket.save(tmp / "ticket.keras")
        (tmp / "history.json").write_text(json.dumps(result.history, indent=1) + "\n")
        result.plot(tmp / "lottery.png")
    import shutil

    shutil.rmtree(ckpt, ignore_errors=True)
    last = result.history[-1]
    line = (
        f"lottery ticket of '{model.name}': {last['remaining']:.1%} of weights left, "
        f"val accuracy {last['val_accuracy']:.2%} (dense {result.history[0]['val_accuracy']:.2%}"
    )
    if last.get("random_reinit_accuracy") is not None:
        line += f", same mask re-initialized {last['random_reinit_accuracy']:.2%}"
    print_fn(line + f"); wrote {out}/")
    return result
