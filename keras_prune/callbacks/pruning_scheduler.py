"""PruningScheduler: connects the pruning wrappers to the optimizer's step."""

from __future__ import annotations

import keras

from keras_prune.pruning import wrappers

__all__ = ["PruningScheduler"]


class PruningScheduler(keras.callbacks.Callback):
    """Drives the pruning schedule of every ``PruneWrapper`` during ``fit``.

    The wrappers read the step from the optimizer's iteration counter inside the
    compiled train step, so every optimizer step is seen -- also with
    ``steps_per_execution > 1``, where callbacks run only once per execution. This
    callback only connects that counter and keeps each wrapper's saved
    ``pruning_step`` continuous across ``fit`` calls, saves and restores.

    Example:

    ```python
    pruned.fit(x, y, epochs=5, callbacks=[kp.callbacks.PruningScheduler()])
    ```
    """

    def __init__(self):
        super().__init__()
        self._wrappers = []
        self._synced = False

    def on_train_begin(self, logs=None):
        self._wrappers = wrappers(self.model)
        if not self._wrappers:
            raise ValueError(
                f"PruningScheduler: model '{self.model.name}' has no PruneWrapper layers. "
                "Train the model returned by kp.prune(...), not the original one."
            )
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is None:
            raise ValueError("PruningScheduler: the model has no optimizer; compile it first.")
        for w in self._wrappers:
            w._attach_step(optimizer.iterations)
        self._synced = False

    def on_train_batch_begin(self, batch, logs=None):
        # After every on_train_begin (BackupAndRestore restores there), before the first
        # step runs: continue each wrapper's count from its saved pruning_step.
        if self._synced:
            return
        iterations = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        for w in self._wrappers:
            done = int(keras.ops.convert_to_numpy(w.pruning_step))
            w.step_offset.assign(done - iterations)
        self._synced = True

    def on_epoch_end(self, epoch, logs=None):
        for w in self._wrappers:
            w.zero_pruned_weights()

    def on_train_end(self, logs=None):
        for w in self._wrappers:
            w.zero_pruned_weights()
        self._synced = False

    def get_config(self) -> dict:
        return {}
