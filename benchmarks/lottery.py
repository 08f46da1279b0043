"""Lottery tickets on LeNet-300-100 / MNIST-5k: IMP with rewinding vs random re-init.

Frankle & Carbin (2019) prune LeNet-300-100 by 20% per round (10% for the output layer),
rewind the survivors and retrain; the tickets keep dense accuracy down to about 3.6% of
the weights, while the same masks with fresh random weights fall behind. This script runs
that procedure with ``kp.lottery.imp`` on MNIST-5k (3,500 training digits, the last 500
for validation, the 1,000 test digits for the reported accuracies), unstructured and with
``SIMDGroups(4)``, and trains the random re-init control at several rounds. The
SIMDGroups(4) ticket is then exported with ``kp.export.cmsis``: its layers run on the
sparse kernels, and the estimated Cortex-M4 cycles are compared with the dense model's.

    python benchmarks/lottery.py [--rounds 15] [--epochs 20] [--seeds 0 1 2] [--only simd4]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_prune as kp  # noqa: E402
from keras_prune.datasets import mnist_5k  # noqa: E402
from keras_prune.export.int8.runtime import quantize_input  # noqa: E402

PAPER = "Frankle & Carbin 2019, LeNet-300-100 on MNIST: tickets match dense down to ~3.6%"


def test_accuracy(model, xt, yt) -> float:
    return float(np.mean(np.argmax(model.predict(xt, verbose=0), -1) == yt))


def run(name, granularity, data, args, seed: int) -> dict:
    x, y, xv, yv, xt, yt = data
    start = time.perf_counter()
    keras.utils.set_random_seed(seed)  # the same initial weights for every granularity
    result = kp.lottery.imp(
        kp.models.lenet_300_100(),
        (x, y),
        (xv, yv),
        rounds=args.rounds,
        rate=0.2,
        rewind_epoch=args.rewind_epoch,
        epochs=args.epochs,
        granularity=granularity,
        layer_rates={"fc3": 0.1},
        seed=seed,
        early_stopping=not args.no_early_stopping,
    )
    reinits = {}
    for r in sorted({args.rounds // 3, 2 * args.rounds // 3, args.rounds} - {0}):
        reinits[r] = result.random_reinit(r)
    seconds = time.perf_counter() - start
    result.plot(args.out / f"lottery_{name}_seed{seed}.png")
    last = reinits[args.rounds]
    return {
        "name": name,
        "seed": seed,
        "result": result,
        "dense": test_accuracy(result.dense, xt, yt),
        "ticket": test_accuracy(result.ticket, xt, yt),
        "reinit": test_accuracy(last.model, xt, yt),
        "reinits": {r: test_accuracy(rr.model, xt, yt) for r, rr in reinits.items()},
        "seconds": seconds,
    }


def to_c(row, data, out: Path) -> str:
    """The SIMDGroups(4) ticket as C for a Cortex-M4, against the dense model."""
    x, _, _, _, xt, yt = data
    lines = []
    cycles = {}
    for label, model, sparse in (
        ("dense", row["result"].dense, "never"),
        ("ticket", row["result"].ticket, "auto"),
    ):
        rep = kp.export.cmsis(
            model,
            out / f"c_{label}",
            x[:500],
            validation_data=(xt, yt),
            samples=200,
            sparse=sparse,
            force=True,
            print_fn=None,
            progress=False,
        )
        kernels = [la["kernel"] for la in rep.manifest["layers"] if la["op"] == "FULLY_CONNECTED"]
        exact = rep.manifest["verification"].get("host", {}).get("bit_exact")
        if kp.mcu.profiler.available():
            inp = rep.manifest["io"]["input"]
            xq = quantize_input(xt[:1], inp["scale"], inp["zero_point"])
            cycles[label] = kp.mcu.profile_model(out / f"c_{label}", xq).cycles
        lines.append(
            f"  {label:<7} int8 C acc {rep.manifest['accuracy']['int8_c']:.2%} on 200 digits, "
            f"bit-exact with TFLM: {exact}, const bytes "
            f"{rep.manifest['sizes']['const_bytes']:,}, kernels: {', '.join(kernels)}"
            + (f", est. cycles {cycles[label]:,}" if label in cycles else "")
        )
    if len(cycles) == 2:
        lines.append(f"  ticket vs dense: {cycles['dense'] / cycles['ticket']:.2f}x fewer cycles")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", type=Path, default=Path("bench_out/lottery"))
    ap.add_argument(
        "--rewind-epoch", type=int, default=0, help="0 (default): the initial weights, as the paper"
    )
    ap.add_argument("--no-early-stopping", action="store_true")
    ap.add_argument("--only", choices=["unstructured", "simd4"], help="one granularity")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    tf.config.experimental.enable_op_determinism()  # one seed, one result
    x, y, xt, yt = mnist_5k()
    data = (x[:-500], y[:-500], x[-500:], y[-500:], xt, yt)
    grans = {"unstructured": "unstructured", "simd4": kp.granularity.SIMDGroups(4)}
    rows = [
        run(n, g, data, args, seed)
        for n, g in grans.items()
        if args.only in (None, n)
        for seed in args.seeds
    ]
    print(
        f"\nLeNet-300-100, MNIST-5k, {args.rounds} rounds of IMP (20%/round, fc3 10%), "
        f"rewind to epoch {args.rewind_epoch}, {args.epochs} epochs per round; "
        "test accuracy on 1,000 digits"
    )
    print(
        f"{'granularity':<14}{'seed':>5}{'remaining':>10}{'dense':>8}{'ticket':>8}"
        f"{'re-init':>9}{'ticket-dense':>14}{'ticket-reinit':>15}{'time':>7}"
    )

    def line(name, seed, rem, dense, ticket, reinit, seconds):
        print(
            f"{name:<14}{seed:>5}{rem:>10.2%}{dense:>8.2%}{ticket:>8.2%}{reinit:>9.2%}"
            f"{100 * (ticket - dense):>+13.1f}pt{100 * (ticket - reinit):>+14.1f}pt"
            f"{seconds:>6.0f}s"
        )

    for name in dict.fromkeys(r["name"] for r in rows):
        mine = [r for r in rows if r["name"] == name]
        for r in mine:
            line(
                name,
                r["seed"],
                r["result"].remaining,
                r["dense"],
                r["ticket"],
                r["reinit"],
                r["seconds"],
            )
        mean = {k: float(np.mean([r[k] for r in mine])) for k in ("dense", "ticket", "reinit")}
        line(
            name,
            "mean",
            mine[0]["result"].remaining,
            mean["dense"],
            mean["ticket"],
            mean["reinit"],
            sum(r["seconds"] for r in mine),
        )
    for row in rows:
        print(
            f"\n{row['name']}, seed {row['seed']}: per round (validation accuracy on 500 "
            "digits; test accuracy for the re-init control)"
        )
        for h in row["result"].history:
            extra = ""
            if h["round"] in row["reinits"]:
                extra = f"   re-init test {row['reinits'][h['round']]:.2%}"
            print(
                f"  round {h['round']:>2}  remaining {h['remaining']:>7.2%}  "
                f"val {h['val_accuracy']:.2%}{extra}"
            )
        png = args.out / f"lottery_{row['name']}_seed{row['seed']}.png"
        print(f"  plot: {png}")
    simd = [row for row in rows if row["name"] == "simd4"]
    if simd:
        print(
            f"\nThe SIMDGroups(4) ticket (seed {simd[0]['seed']}) on a Cortex-M4 (kp.export.cmsis):"
        )
        print(to_c(simd[0], data, args.out))
    print(f"\nReference: {PAPER}.")


if __name__ == "__main__":
    main()
