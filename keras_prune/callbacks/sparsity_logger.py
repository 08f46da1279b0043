"""SparsityLogger: global and per-layer sparsity in the training logs and TensorBoard."""

from __future__ import annotations

import os

import keras
import numpy as np
import tensorflow as tf

from keras_prune.pruning import wrappers

__all__ = ["SparsityLogger", "measure_sparsity"]


def measure_sparsity(model) -> dict[str, float]:
    """``{"sparsity": global, "sparsity/<layer>": ...}`` over the masked kernels.

    Global sparsity is the fraction of zero weights across every pruned kernel.
    """
    out, zeros, total = {}, 0, 0
    for w in wrappers(model):
        z = n = 0
        for v in w.masked_kernels():
            z += int(v.size - np.count_nonzero(v))
            n += int(v.size)
        out[f"sparsity/{w.name}"] = z / n if n else 0.0
        zeros, total = zeros + z, total + n
    return {"sparsity": zeros / total if total else 0.0, **out}


class SparsityLogger(keras.callbacks.Callback):
    """Adds sparsity to the logs, so it shows in the progress bar, History and CSVLogger.

    Put it before ``CSVLogger`` in the callback list. With ``log_dir`` it also writes
    TensorBoard scalars (``sparsity``, ``sparsity/<layer>``) at the optimizer step.
    ``history`` keeps ``(step, {key: value})`` for every logging point, for plots.

    Args:
        log_dir: TensorBoard directory, or None.
        update_freq: ``"epoch"``, or an integer N to also log every N batches
            (each measurement reads the masks back from the device).

    Example:

    ```python
    pruned.fit(x, y, callbacks=[kp.callbacks.PruningScheduler(),
                                kp.callbacks.SparsityLogger(log_dir="logs")])
    ```
    """

    def __init__(self, log_dir: str | os.PathLike | None = None, update_freq="epoch"):
        super().__init__()
        if update_freq != "epoch" and (
            isinstance(update_freq, bool) or not isinstance(update_freq, int) or update_freq < 1
        ):
            raise ValueError(
                f"SparsityLogger: `update_freq` must be 'epoch' or a positive integer, "
                f"got {update_freq!r}."
            )
        if log_dir is not None:
            try:
                import tensorboard  # noqa: F401  (tf.summary writes through it)
            except ImportError as e:
                raise ImportError(
                    "SparsityLogger(log_dir=...) writes TensorBoard scalars and needs the "
                    "`tensorboard` package: pip install tensorboard."
                ) from e
        self.log_dir = None if log_dir is None else os.fspath(log_dir)
        self.update_freq = update_freq
        self.history: list[tuple[int, dict[str, float]]] = []
        self._writer = None

    def _log(self, logs):
        values = measure_sparsity(self.model)
        step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        self.history.append((step, values))
        if logs is not None:
            logs.update(values)
        if self.log_dir is not None:
            if self._writer is None:
                self._writer = tf.summary.create_file_writer(self.log_dir)
            with self._writer.as_default(step=step):
                for key, value in values.items():
                    tf.summary.scalar(key, value)
            self._writer.flush()

    def on_train_begin(self, logs=None):
        if not wrappers(self.model):
            raise ValueError(
                f"SparsityLogger: model '{self.model.name}' has no PruneWrapper layers."
            )

    def on_train_batch_end(self, batch, logs=None):
        if self.update_freq != "epoch" and (batch + 1) % self.update_freq == 0:
            self._log(logs)

    def on_epoch_end(self, epoch, logs=None):
        self._log(logs)

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def get_config(self) -> dict:
        return {"log_dir": self.log_dir, "update_freq": self.update_freq}
