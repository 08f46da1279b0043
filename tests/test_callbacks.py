"""SparsityLogger and PruningScheduler."""

import csv

import keras
import numpy as np
import pytest
from conftest import compile_mse, mlp

import keras_prune as kp

SCHED = kp.schedules.PolynomialDecay(0.0, 0.5, begin_step=0, end_step=8, frequency=2)


def _fit(model, callbacks, epochs=3):
    x, y = np.random.rand(32, 16).astype("float32"), np.random.rand(32, 4).astype("float32")
    return model.fit(x, y, epochs=epochs, batch_size=8, verbose=0, callbacks=callbacks)


def test_sparsity_logger_feeds_history_csv_and_tensorboard(tmp_path):
    model = compile_mse(kp.prune(mlp(), SCHED, kp.granularity.SIMDGroups(4)))
    logger = kp.callbacks.SparsityLogger(log_dir=tmp_path / "tb", update_freq=2)
    hist = _fit(
        model,
        [
            kp.callbacks.PruningScheduler(),
            logger,
            keras.callbacks.CSVLogger(str(tmp_path / "log.csv")),
        ],
    )
    assert set(hist.history) >= {"loss", "sparsity", "sparsity/fc1", "sparsity/fc2"}
    assert hist.history["sparsity/fc1"][-1] == pytest.approx(0.5)
    assert hist.history["sparsity"][0] < hist.history["sparsity"][-1]
    measured = kp.callbacks.measure_sparsity(model)
    assert measured["sparsity"] == pytest.approx((256 + 64) / (512 + 128))
    with open(tmp_path / "log.csv") as f:
        rows = list(csv.DictReader(f))
    assert float(rows[-1]["sparsity/fc2"]) == pytest.approx(0.5)
    # every 2 batches + every epoch end, each with its optimizer step
    steps = [s for s, _ in logger.history]
    assert steps == sorted(steps) and len(steps) == 3 * 2 + 3
    events = list((tmp_path / "tb").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0


def test_sparsity_logger_shows_in_progress_bar(capsys):
    model = compile_mse(kp.prune(mlp(), SCHED))
    x, y = np.random.rand(16, 16), np.random.rand(16, 4)
    model.fit(
        x,
        y,
        epochs=1,
        verbose=2,
        callbacks=[kp.callbacks.PruningScheduler(), kp.callbacks.SparsityLogger()],
    )
    assert "sparsity/fc1" in capsys.readouterr().out


def test_callbacks_on_an_unpruned_model_say_so():
    model = compile_mse(mlp())
    with pytest.raises(ValueError, match="no PruneWrapper.*kp.prune"):
        _fit(model, [kp.callbacks.PruningScheduler()])
    with pytest.raises(ValueError, match="no PruneWrapper"):
        _fit(model, [kp.callbacks.SparsityLogger()])
    with pytest.raises(ValueError, match="update_freq"):
        kp.callbacks.SparsityLogger(update_freq=0)


def test_step_continues_across_fit_calls_and_new_optimizers():
    model = compile_mse(kp.prune(mlp(), SCHED))
    _fit(model, [kp.callbacks.PruningScheduler()], epochs=1)
    compile_mse(model, lr=0.001)  # a fresh optimizer starts at iteration 0
    _fit(model, [kp.callbacks.PruningScheduler()], epochs=1)
    assert [int(w.pruning_step.numpy()) for w in kp.pruning.wrappers(model)] == [8, 8]
    # The last update ran at step 6 (frequency 2, end_step 8 not reached): s(6) = 0.4921875
    assert kp.callbacks.measure_sparsity(model)["sparsity/fc1"] == pytest.approx(float(SCHED(6)[1]))
    assert float(SCHED(6)[1]) == pytest.approx(0.4921875)
