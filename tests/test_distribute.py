"""MirroredStrategy (two logical CPU devices, one process) and MultiWorkerMirroredStrategy
(two local worker processes) give the same masks as one device."""

import json
import os
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

# subprocesses with their own TensorFlow: one trains on one device and then under
# MirroredStrategy; two more are the workers of a MultiWorkerMirroredStrategy
pytestmark = pytest.mark.slow

SCRIPT = textwrap.dedent(r"""
    import sys
    import numpy as np
    import tensorflow as tf
    out_dir, modes = sys.argv[1], sys.argv[2:]
    if modes == ["multiworker"]:
        # the first TensorFlow call: reads TF_CONFIG and starts this worker's server
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    else:
        cpu = tf.config.list_physical_devices("CPU")[0]
        two = [tf.config.LogicalDeviceConfiguration()] * 2
        tf.config.set_logical_device_configuration(cpu, two)
    tf.config.experimental.enable_op_determinism()
    import keras
    import keras_prune as kp

    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(8, 3, activation="relu")(inp)
    x = keras.layers.Flatten()(x)
    model = keras.Model(inp, keras.layers.Dense(10)(x))
    sched = kp.schedules.PolynomialDecay(0.0, 0.8, 0, 20, frequency=2)
    rng = np.random.default_rng(0)
    x = rng.random((64, 8, 8, 1), dtype=np.float32)
    y = rng.random((64, 10), dtype=np.float32)
    BATCH, EPOCHS = 16, 6  # the global batch in every mode: 4 steps an epoch, 24 in all

    def build():
        pruned = kp.prune(model, sched, kp.granularity.SIMDGroups(4))
        pruned.compile(keras.optimizers.SGD(0.05), keras.losses.MeanSquaredError())
        return pruned

    def fit(pruned):
        pruned.fit(x, y, batch_size=BATCH, epochs=EPOCHS, verbose=0, shuffle=False,
                   callbacks=[kp.callbacks.PruningScheduler()])

    def train_multiworker(strategy, pruned):
        # Keras 3's fit fails under MultiWorkerMirroredStrategy with 2+ workers
        # (keras-team/keras#20585), so a custom loop, with the math of fit: per-example
        # MSE averaged over the global batch, gradients summed over the replicas.
        pruned.optimizer.build(pruned.trainable_variables)
        options = tf.data.Options()  # split each global batch between the workers
        policy = tf.data.experimental.AutoShardPolicy.DATA
        options.experimental_distribute.auto_shard_policy = policy
        data = tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH).with_options(options)
        batches = strategy.experimental_distribute_dataset(data)

        def step(xb, yb):
            with tf.GradientTape() as tape:
                per_example = keras.losses.mean_squared_error(yb, pruned(xb, training=True))
                loss = tf.nn.compute_average_loss(per_example, global_batch_size=BATCH)
            grads = tape.gradient(loss, pruned.trainable_variables)
            pruned.optimizer.apply(grads, pruned.trainable_variables)
            return tf.shape(xb)[0]

        @tf.function
        def train_step(batch):
            return strategy.run(step, args=batch)

        scheduler = kp.callbacks.PruningScheduler()
        scheduler.set_model(pruned)
        scheduler.on_train_begin()
        local_batches = set()
        for epoch in range(EPOCHS):
            for i, batch in enumerate(batches):
                scheduler.on_train_batch_begin(i)
                local_batches.add(int(train_step(batch)))
            scheduler.on_epoch_end(epoch)
        scheduler.on_train_end()
        return sorted(local_batches)

    for mode in modes:
        extra = {}
        if mode == "single":
            pruned = build()
            fit(pruned)
        elif mode == "mirrored":
            strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
            assert strategy.num_replicas_in_sync == 2
            with strategy.scope():
                pruned = build()
            fit(pruned)
        else:
            assert mode == "multiworker" and strategy.num_replicas_in_sync == 2
            with strategy.scope():
                pruned = build()
            extra["local_batches"] = train_multiworker(strategy, pruned)
            mode += str(strategy.cluster_resolver.task_id)
        ws = kp.pruning.wrappers(pruned)
        np.savez(f"{out_dir}/{mode}.npz", steps=[int(w.pruning_step.numpy()) for w in ws],
                 **{f"mask{i}": w.masks[0].numpy() for i, w in enumerate(ws)},
                 **{f"kernel{i}": w.kernels[0].numpy() for i, w in enumerate(ws)}, **extra)
""")

TIMEOUT_S = 240  # per test; a run takes 10-20 s on 2 cores, this only bounds a hang


def _env(**extra) -> dict:
    # gRPC honours proxy variables: without them the workers talk on 127.0.0.1 only
    drop = ("tf_config", "http_proxy", "https_proxy", "grpc_proxy")
    env = {k: v for k, v in os.environ.items() if k.lower() not in drop}
    return {**env, "TF_CPP_MIN_LOG_LEVEL": "3", **extra}


def _free_loopback_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))  # all open at once, so the n ports differ
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _start(name, out_dir, modes, env):
    log = open(out_dir / f"{name}.log", "w+")  # a file, not a pipe: never blocks the child
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(out_dir), *modes],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    return name, proc, log


def _start_workers(out_dir):
    ports = _free_loopback_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    configs = [{"cluster": cluster, "task": {"type": "worker", "index": i}} for i in range(2)]
    return [
        _start(f"worker{i}", out_dir, ["multiworker"], _env(TF_CONFIG=json.dumps(config)))
        for i, config in enumerate(configs)
    ]


def _wait(started, deadline) -> dict:
    """name -> None (exit 0) or what went wrong, with the tail of its output. When one
    worker fails the other is killed: it would wait for its peer until the deadline."""
    errors, killed = {}, set()
    running = {name: (proc, log) for name, proc, log in started}
    try:
        while running:
            for name, (proc, log) in list(running.items()):
                if proc.poll() is None and time.monotonic() < deadline:
                    continue
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                    errors[name] = f"timed out after {TIMEOUT_S} s"
                elif name in killed:
                    errors[name] = "killed when its peer failed"
                elif proc.returncode:
                    errors[name] = f"exit code {proc.returncode}"
                else:
                    errors[name] = None
                if errors[name]:
                    log.seek(0)
                    errors[name] += f", output:\n{log.read()[-3000:]}"
                    if name.startswith("worker"):
                        for other, (peer, _) in running.items():
                            if other.startswith("worker") and peer.poll() is None:
                                peer.kill()
                                killed.add(other)
                log.close()
                del running[name]
            time.sleep(0.1)
    finally:  # also on Ctrl-C: leave nothing behind
        for proc, log in running.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()
    return errors


def _check(errors: dict) -> None:
    failed = [f"{name}: {error}" for name, error in errors.items() if error]
    assert not failed, "\n\n".join(failed)


def _load(out_dir) -> dict:
    return {p.stem: dict(np.load(p)) for p in out_dir.glob("*.npz")}


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    """One process, run once for both tests: training on one device, then under
    MirroredStrategy over two logical CPU devices."""
    out = tmp_path_factory.mktemp("reference")
    started = [_start("reference", out, ["single", "mirrored"], _env())]
    _check(_wait(started, time.monotonic() + TIMEOUT_S))
    return _load(out)


def _check_same_masks(one, other):
    assert list(one["steps"]) == list(other["steps"]) == [24, 24]
    for key in ("mask0", "mask1"):
        assert 0.7 < 1 - one[key].mean() < 0.85
        np.testing.assert_array_equal(one[key], other[key])
    for key in ("kernel0", "kernel1"):
        mask = one[key.replace("kernel", "mask")]
        assert np.all(other[key][mask == 0] == 0)  # zeroed after training under the strategy too


def test_mirrored_strategy_gives_the_same_masks(reference):
    _check_same_masks(reference["single"], reference["mirrored"])


def test_multi_worker_mirrored_strategy_gives_the_same_masks(reference, tmp_path):
    """Two worker processes on loopback ports, global batch 16 (8 a worker), as one
    device with batch 16: the same pruning steps and masks on both workers."""
    deadline = time.monotonic() + TIMEOUT_S
    errors = _wait(_start_workers(tmp_path), deadline)
    if any("could not start grpc server" in (e or "").lower() for e in errors.values()):
        # a port was taken between our pick and the worker's bind: pick again, once
        errors = _wait(_start_workers(tmp_path), deadline)
    _check(errors)
    results = _load(tmp_path)
    w0, w1 = results["multiworker0"], results["multiworker1"]
    for w in (w0, w1):
        assert list(w["local_batches"]) == [8]  # each worker, every step: half the global 16
        _check_same_masks(reference["single"], w)
    for key in ("steps", "mask0", "mask1", "kernel0", "kernel1"):
        np.testing.assert_array_equal(w0[key], w1[key])  # the workers agree bit for bit
