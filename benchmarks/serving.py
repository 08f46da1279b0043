"""SavedModel serving speed: dense vs channel-pruned, side by side, on this machine's CPU.

A ResNet-8-style CNN (MLPerf Tiny's image-classification shape: 32x32x3 input, stacks of
16/32/64 filters with residual adds and 1x1 projections; ``--width 32`` doubles every
stack) is trained briefly on MNIST-5k digits padded to 32x32 and repeated over 3
channels, then:

- **LeGR 0.5**: ``kp.legr.LeGR`` learns a ranking (a short run: ``--generations``) and
  shrinks the model to at most 0.5 of the dense MACs;
- **LeGR 0.5 /8**: the same ranking cut with ``round_to=8`` (``--round-to``): every
  channel count a multiple of 8, the float lanes of an AVX2 register;
- **uniform 0.5** and **uniform 0.5 /8**: the same fraction of every channel group kept
  (LeGR's baseline), at most 0.5 of the dense MACs, without and with rounding;
- **Channels 50%**: ``kp.prune(granularity=Channels())`` at 50% sparsity per layer, one
  fine-tuning epoch, ``kp.strip``; the export then removes the zeroed channels
  (``kp.surgery.compact``). Per-layer pruning zeroes different channels in the layers an
  Add ties together, and a tied channel can only go when it is zero in all of them, so
  this variant keeps more MACs than its 50% suggests;

and all are exported with ``kp.export.saved_model`` (which folds BatchNorms into the
convolutions, reloads each and checks its outputs). **dense, BN kept** is the dense
model exported with ``fold_bn=False``, to show what folding alone is worth. Each
SavedModel is loaded with ``tf.saved_model.load`` and its ``serving_default`` signature
is called in interleaved rounds (dense, LeGR, Channels, dense, ...), so machine noise
hits all of them alike. Reported: the median latency of one
call, throughput (samples per second at that median) and the speedup over dense.

    python benchmarks/serving.py [--width 16] [--round-to 8] [--batches 1 32]
        [--rounds 15] [--calls 20] [--generations 24] [--out results.json] [--quick]

TensorFlow's pip wheel runs convolutions with Eigen unless ``TF_ENABLE_ONEDNN_OPTS=1``
is set (the header line says which); run it both ways to compare.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_prune as kp  # noqa: E402
from keras_prune.datasets import mnist_5k  # noqa: E402


def digits32(x: np.ndarray) -> np.ndarray:
    return np.repeat(np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0))), 3, axis=-1)


def build_variants(args, log) -> dict[str, keras.Model]:
    x, y, xt, yt = mnist_5k()
    x, xt = digits32(x), digits32(xt)
    keras.utils.set_random_seed(args.seed)
    dense = kp.models.resnet8(width=args.width)
    dense.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    dense.fit(x, y, batch_size=64, epochs=args.epochs, verbose=0)
    acc = {"dense": dense.evaluate(xt, yt, verbose=0)[1]}

    legr = kp.legr.LeGR(
        dense, train=(x[:-500], y[:-500]), val=(x[-500:], y[-500:]), learn_at=0.5, seed=args.seed
    )
    legr.learn(
        generations=args.generations,
        tau=args.tau,
        population=min(64, args.generations),
        sample=min(16, args.generations),
        progress=False,
    )
    shrunk = {}
    r = args.round_to
    for name, method, rt in (
        ("LeGR 0.5", "learned", 1),
        (f"LeGR 0.5 /{r}", "learned", r),
        ("uniform 0.5", "uniform", 1),
        (f"uniform 0.5 /{r}", "uniform", r),
    ):
        keras.utils.set_random_seed(args.seed)
        small = shrunk[name] = legr.prune(0.5, method, round_to=rt)
        small.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
        small.fit(x, y, batch_size=64, epochs=1, verbose=0)
        acc[name] = small.evaluate(xt, yt, verbose=0)[1]

    pruned = kp.prune(
        dense,
        kp.schedules.ConstantSparsity(0.5, begin_step=0, frequency=50),
        granularity=kp.granularity.Channels(),
    )
    pruned.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    pruned.fit(
        x, y, batch_size=64, epochs=1, verbose=0, callbacks=[kp.callbacks.PruningScheduler()]
    )
    channels = kp.strip(pruned)
    channels.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    acc["Channels 50%"] = channels.evaluate(xt, yt, verbose=0)[1]
    log(
        "test accuracy on 1,000 digits (short training; for orientation only): "
        + ", ".join(f"{k} {v:.1%}" for k, v in acc.items())
    )
    return {"dense": dense, **shrunk, "Channels 50%": channels}


def time_calls(fns: dict, x: np.ndarray, rounds: int, calls: int) -> dict[str, list[float]]:
    import tensorflow as tf

    feed = tf.constant(x)
    for fn in fns.values():  # warm up: the first calls trace and allocate
        for _ in range(3):
            fn(image=feed)
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            for _ in range(calls):
                fn(image=feed)["output_0"].numpy()
            times[name].append((time.perf_counter() - start) / calls)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--width", type=int, default=16, help="filters of the first stack")
    parser.add_argument(
        "--round-to",
        type=int,
        default=8,
        help="channel multiple of the rounded LeGR and uniform variants",
    )
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--rounds", type=int, default=15, help="interleaved timing rounds")
    parser.add_argument("--calls", type=int, default=20, help="calls per model per round")
    parser.add_argument("--epochs", type=int, default=3, help="dense training epochs")
    parser.add_argument("--generations", type=int, default=24, help="LeGR generations")
    parser.add_argument("--tau", type=int, default=20, help="LeGR fine-tuning steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="also write the results as JSON here")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run (1 epoch, 4 generations, 3 rounds of 3 calls)",
    )
    args = parser.parse_args()
    if args.quick:
        args.epochs, args.generations, args.tau, args.rounds, args.calls = 1, 4, 5, 3, 3
    import tensorflow as tf
    from tensorflow.python.util import _pywrap_util_port

    onednn = _pywrap_util_port.IsMklEnabled()
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, TensorFlow "
        f"{tf.__version__}, Keras {keras.__version__}; devices: "
        + ", ".join(d.device_type for d in tf.config.list_physical_devices())
        + f"; oneDNN CPU kernels {'on' if onednn else 'off'} (TF_ENABLE_ONEDNN_OPTS="
        f"{os.environ.get('TF_ENABLE_ONEDNN_OPTS', 'unset')})"
    )
    variants = build_variants(args, print)
    rows, fns = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        # "dense, BN kept": the same dense model exported without folding its BatchNorms
        exports = [
            ("dense", variants["dense"], True),
            ("dense, BN kept", variants["dense"], False),
            *((k, m, True) for k, m in variants.items() if k != "dense"),
        ]
        for i, (name, model, fold) in enumerate(exports):
            report = kp.export.saved_model(
                model, os.path.join(tmp, str(i)), print_fn=None, fold_bn=fold
            )
            macs = report.compact.macs[1]
            rows.append(
                {
                    "variant": name,
                    "macs": macs,
                    "params": report.compact.params[1],
                    "reload_error": max(report.reload_error.values()),
                    "channels": [
                        g.channels - report.compact.removed.get(g.name, (0,))[0]
                        for g in kp.graph.build(model).prunable_groups
                    ],
                }
            )
            fns[name] = tf.saved_model.load(str(report.path)).signatures["serving_default"]
        dense_macs = rows[0]["macs"]
        results = []
        for batch in args.batches:
            x = np.random.default_rng(args.seed).random((batch, 32, 32, 3), dtype=np.float32)
            times = time_calls(fns, x, args.rounds, args.calls)
            base = float(np.median(times["dense"]))
            for row in rows:
                med = float(np.median(times[row["variant"]]))
                results.append(
                    {
                        **row,
                        "batch": batch,
                        "median_ms": med * 1e3,
                        "throughput": batch / med,
                        "speedup": base / med,
                        "macs_ratio": row["macs"] / dense_macs,
                    }
                )
    head = (
        f"{'variant':<17}{'batch':>6}{'MACs':>12}{'of dense':>9}{'params':>9}"
        f"{'median ms':>11}{'samples/s':>11}{'speedup':>9}"
    )
    print(
        f"\nmedian of {args.rounds} interleaved rounds x {args.calls} calls of the "
        f"serving_default signature (tf.saved_model.load), CPU\n{head}\n{'-' * len(head)}"
    )
    for r in results:
        print(
            f"{r['variant']:<17}{r['batch']:>6}{r['macs']:>12,}{r['macs_ratio']:>9.1%}"
            f"{r['params']:>9,}{r['median_ms']:>11.3f}{r['throughput']:>11,.0f}"
            f"{r['speedup']:>8.2f}x"
        )
    print(
        "channels per group ("
        + ", ".join(g.name for g in kp.graph.build(variants["dense"]).prunable_groups)
        + "): "
        + "; ".join(f"{r['variant']} {'/'.join(map(str, r['channels']))}" for r in rows)
    )
    print(
        "max |reloaded - Keras| per variant: "
        + ", ".join(f"{r['variant']} {r['reload_error']:.1e}" for r in rows)
    )
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"config": vars(args), "onednn": onednn, "results": results}, f, indent=1)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
