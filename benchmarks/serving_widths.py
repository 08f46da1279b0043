"""How CPU speed follows channel widths: a ResNet-8-style CNN at several stage widths, side
by side in one run, to show which 0.5-FLOPs shapes TensorFlow's CPU convolutions turn into
real speed.

The model is ``benchmarks/serving.py``'s shape (3x3 convs, residual adds, 1x1
projections, stages of 16/32/64 filters on 32x32/16x16/8x8 maps) without BatchNorm, built
for each ``(stage 1, stage 2, stage 3)`` width and called as a ``tf.function`` at batch 32 in
interleaved rounds; weights are random (speed does not depend on them). Reported: the
MACs and the median time, each against the full-width model.

    python benchmarks/serving_widths.py [--batch 32] [--rounds 10] [--calls 10]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

WIDTHS = [
    (16, 32, 64),
    (12, 24, 48),
    (8, 24, 48),
    (12, 20, 40),
    (16, 16, 32),
    (14, 16, 32),
    (16, 16, 16),
    (12, 16, 32),
    (8, 16, 32),
]


def resnet8(w1: int, w2: int, w3: int) -> keras.Model:
    layers = keras.layers
    inp = keras.Input((32, 32, 3))
    x = layers.Conv2D(w1, 3, padding="same", activation="relu")(inp)

    def block(x, filters: int, stride: int):
        y = layers.Conv2D(filters, 3, strides=stride, padding="same", activation="relu")(x)
        y = layers.Conv2D(filters, 3, padding="same")(y)
        if stride != 1 or x.shape[-1] != filters:
            x = layers.Conv2D(filters, 1, strides=stride)(x)
        return layers.ReLU()(layers.Add()([x, y]))

    x = block(block(block(x, w1, 1), w2, 2), w3, 2)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, layers.Dense(10)(x))


def conv_macs(model: keras.Model) -> int:
    return sum(
        int(np.prod(la.output.shape[1:])) * int(np.prod(la.kernel.shape[:3]))
        for la in model.layers
        if isinstance(la, keras.layers.Conv2D)
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--calls", type=int, default=10)
    args = ap.parse_args()
    keras.utils.set_random_seed(0)
    x = tf.constant(np.random.default_rng(0).random((args.batch, 32, 32, 3), np.float32))
    models = {w: resnet8(*w) for w in WIDTHS}
    fns = {w: tf.function(m) for w, m in models.items()}
    for f in fns.values():
        f(x)
    times: dict = {w: [] for w in WIDTHS}
    for _ in range(args.rounds):
        for w, f in fns.items():
            start = time.perf_counter()
            for _ in range(args.calls):
                f(x).numpy()
            times[w].append((time.perf_counter() - start) / args.calls)
    base_macs, base_t = conv_macs(models[WIDTHS[0]]), float(np.median(times[WIDTHS[0]]))
    print(
        f"batch {args.batch}, median of {args.rounds} interleaved rounds x {args.calls} "
        f"calls, {os.cpu_count()} cores, TensorFlow {tf.__version__}"
    )
    print(f"{'widths':<14}{'MACs':>8}{'ms':>9}{'speedup':>9}")
    for w in WIDTHS:
        t = float(np.median(times[w]))
        print(
            f"{str(w):<14}{conv_macs(models[w]) / base_macs:>8.2f}{t * 1e3:>9.2f}"
            f"{base_t / t:>8.2f}x"
        )


if __name__ == "__main__":
    main()
