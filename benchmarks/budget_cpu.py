"""Prune to a CPU latency budget, then serve: ResNet-8 at 0.6x of its measured dense time.

ResNet-8 (MLPerf Tiny's layout; ``--width`` filters in the first stack) is trained on
MNIST-5k digits padded to 32x32 and repeated over 3 channels (as
``benchmarks/serving.py``). ``kp.auto.prune_to_budget`` then cuts channels until the
``kp.targets.CPU(batch=32)`` estimate is at most ``--budget`` of the dense model's
(SIMD-group sparsity does not speed up TensorFlow's dense kernels, so the CPU target
never buys it). The target times each layer alone at its kept shape on this machine,
so widths the CPU runs badly (counts that do not fill the SIMD lanes) cost what they
really cost.

Both models are exported with ``kp.export.saved_model`` (BatchNorm folded, channels
removed) and served side by side: ``serving_default`` called in interleaved rounds at
batch 32. Reported: median milliseconds per call, throughput, and the speedup.

    python benchmarks/budget_cpu.py [--width 16] [--budget 0.6] [--rounds 15] [--calls 20]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_prune as kp  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from serving import digits32, time_calls  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--budget", type=float, default=0.6, help="fraction of dense CPU latency")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=3, help="dense training epochs")
    ap.add_argument("--recovery-epochs", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--calls", type=int, default=20)
    ap.add_argument("--out", default="bench_out/budget_cpu")
    args = ap.parse_args()
    import tensorflow as tf

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    x, y, xt, yt = kp.datasets.mnist_5k()
    x, xt = digits32(x), digits32(xt)
    keras.utils.set_random_seed(0)
    model = kp.models.resnet8(input_shape=(32, 32, 3), classes=10, width=args.width)
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    model.fit(x[:3500], y[:3500], epochs=args.epochs, batch_size=64, verbose=0)
    target = kp.targets.CPU(batch=args.batch)
    t = time.time()
    r = kp.auto.prune_to_budget(
        model,
        (x[:3500], y[:3500]),
        (x[3500:], y[3500:]),
        target=target,
        latency_ms=f"{100 * args.budget:g}%",
        epochs=args.recovery_epochs,
        int8=False,
        print_fn=print,
    )
    secs = time.time() - t
    r.plot(out / "plan.png")
    measured = {"dense": target.measure(model), "pruned": target.measure(r.model)}
    with tempfile.TemporaryDirectory() as tmp:
        fns = {}
        for name, m in (("dense", model), ("pruned", r.model)):
            rep = kp.export.saved_model(m, os.path.join(tmp, name), print_fn=None)
            fns[name] = tf.saved_model.load(str(rep.path)).signatures["serving_default"]
        feed = np.random.default_rng(0).random((args.batch, 32, 32, 3), dtype=np.float32)
        times = time_calls(fns, feed, args.rounds, args.calls)
    med = {k: float(np.median(v)) * 1e3 for k, v in times.items()}
    speedup = med["dense"] / med["pruned"]
    acc = {
        name: float(np.mean(np.argmax(m.predict(xt, verbose=0), -1) == yt))
        for name, m in (("dense", model), ("pruned", r.model))
    }
    channels = [(p.name, p.channels, p.channels_original) for p in r.plan if p.op == "conv"]
    row = {
        "width": args.width,
        "batch": args.batch,
        "budget": args.budget,
        "estimate_ms": r.estimate["latency_ms"],
        "original_estimate_ms": r.original["latency_ms"],
        "keras_measured_ms": measured,
        "serving_ms": med,
        "speedup": speedup,
        "test_accuracy": acc,
        "channels": channels,
        "prune_seconds": round(secs, 1),
    }
    (out / "budget_cpu.json").write_text(json.dumps(row, indent=1))
    print(
        f"\nResNet-8 width {args.width}, batch {args.batch}, budget {args.budget:g}x of the "
        f"dense CPU estimate ({r.original['latency_ms']:.2f} ms -> "
        f"{r.estimate['latency_ms']:.2f} ms estimated)"
    )
    print("| model | serving ms/call | samples/s | speedup | test acc. |")
    print("|---|---:|---:|---:|---:|")
    for name in ("dense", "pruned"):
        print(
            f"| {name} | {med[name]:.2f} | {args.batch / med[name] * 1e3:,.0f} | "
            f"{med['dense'] / med[name]:.2f}x | {acc[name]:.3f} |"
        )
    print("channels kept: " + ", ".join(f"{n} {c}/{o}" for n, c, o in channels))
    print(f"prune_to_budget took {secs:.0f} s")


if __name__ == "__main__":
    main()
