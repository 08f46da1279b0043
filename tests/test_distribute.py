"""MirroredStrategy over two logical CPU devices gives the same masks as one device."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

# a subprocess with its own TensorFlow, training twice
pytestmark = pytest.mark.slow

SCRIPT = textwrap.dedent(r"""
    import os, sys
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    tf.config.experimental.enable_op_determinism()
    import keras
    import keras_prune as kp

    mode, out = sys.argv[1], sys.argv[2]
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(8, 3, activation="relu")(inp)
    x = keras.layers.Flatten()(x)
    model = keras.Model(inp, keras.layers.Dense(10)(x))
    sched = kp.schedules.PolynomialDecay(0.0, 0.8, 0, 20, frequency=2)

    def build():
        pruned = kp.prune(model, sched, kp.granularity.SIMDGroups(4))
        pruned.compile(keras.optimizers.SGD(0.05), keras.losses.MeanSquaredError())
        return pruned

    if mode == "mirrored":
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        assert strategy.num_replicas_in_sync == 2
        with strategy.scope():
            pruned = build()
    else:
        pruned = build()
    rng = np.random.default_rng(0)
    x = rng.random((64, 8, 8, 1), dtype=np.float32)
    y = rng.random((64, 10), dtype=np.float32)
    pruned.fit(x, y, batch_size=16, epochs=6, verbose=0, shuffle=False,
               callbacks=[kp.callbacks.PruningScheduler()])
    ws = kp.pruning.wrappers(pruned)
    np.savez(out, steps=[int(w.pruning_step.numpy()) for w in ws],
             **{f"mask{i}": w.masks[0].numpy() for i, w in enumerate(ws)},
             **{f"kernel{i}": w.kernels[0].numpy() for i, w in enumerate(ws)})
""")


def test_mirrored_strategy_gives_the_same_masks(tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    results = {}
    for mode in ("single", "mirrored"):
        out = tmp_path / f"{mode}.npz"
        proc = subprocess.run(
            [sys.executable, "-c", SCRIPT, mode, str(out)],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        results[mode] = np.load(out)
    one, two = results["single"], results["mirrored"]
    assert list(one["steps"]) == list(two["steps"]) == [24, 24]
    for key in ("mask0", "mask1"):
        assert 0.7 < 1 - one[key].mean() < 0.85
        np.testing.assert_array_equal(one[key], two[key])
    for key in ("kernel0", "kernel1"):
        mask = one[key.replace("kernel", "mask")]
        assert np.all(two[key][mask == 0] == 0)  # zeroed after training under the strategy too
