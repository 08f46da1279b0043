"""Prune to a Cortex-M4 latency budget: LeNet-5, ResNet-8 and DS-CNN on MNIST-5k.

Each model is trained dense on MNIST-5k (3,500 training digits, 500 validation digits
that ``prune_to_budget`` scores sensitivity and picks the recovered model on; the 1,000
test digits are used for the numbers below only), up to 40 epochs with early stopping
on the validation digits (best weights restored; BatchNorm statistics measured afresh on
512 training digits before each validation and at the end). ResNet-8 takes the digits zero-padded
to 32x32; DS-CNN keeps its layout (strided 10x4 stem, four depthwise-separable blocks) on
28x28 inputs with 10 classes. Then, for budgets of 0.5x and 0.3x of the dense model's
estimated Cortex-M4 time, ``kp.auto.prune_to_budget`` runs twice with the same recovery
(distillation from the dense model, the same epochs): with the sensitivity allocation
(channel cuts and SIMD-group sparsity per layer) and with the uniform baseline (one
channel fraction for every group, no sparsity).

Every pruned model is exported with ``kp.export.cmsis`` and run layer by layer under
unicorn (``kp.mcu.profile_model``): the table gives the measured time against the budget
and the estimate's error against the measurement. Accuracy is top-1 on the test digits, float and
int8 (TFLite Micro).

With ``--mobilenet`` it first times a MobileNetV1-0.25-96 run with the defaults on 300
training images (MNIST digits resized to 96x96x3, two classes).

    python benchmarks/budget.py [--out bench_out/budget] [--models lenet5 resnet8 ds_cnn]
        [--budgets 0.5 0.3] [--epochs 10] [--mobilenet]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_prune as kp  # noqa: E402
from keras_prune.auto.budget import _int8_accuracy  # noqa: E402
from keras_prune.auto.recover import recalibrate_batchnorm  # noqa: E402
from keras_prune.mcu import cycles as m4_cycles  # noqa: E402

MODELS = {
    "lenet5": (kp.models.lenet5, 0),
    "resnet8": (lambda: kp.models.resnet8(input_shape=(32, 32, 1), classes=10), 2),
    "ds_cnn": (lambda: kp.models.ds_cnn(input_shape=(28, 28, 1), classes=10), 0),
}
DENSE_EPOCHS = 40  # at most: early stopping on the validation digits restores the best


class Recalibrate(keras.callbacks.Callback):
    """BatchNorm statistics measured afresh before each validation: DS-CNN's nine
    BatchNorms at momentum 0.99 lag its weights early on, and validation (hence early
    stopping) would see a broken model."""

    def __init__(self, x):
        super().__init__()
        self.x = x

    def on_test_begin(self, logs=None):
        recalibrate_batchnorm(self.model, self.x)


def data(pad: int):
    x, y, xt, yt = kp.datasets.mnist_5k()
    if pad:
        widths = ((0, 0), (pad, pad), (pad, pad), (0, 0))
        x, xt = np.pad(x, widths), np.pad(xt, widths)
    return (x[:3500], y[:3500]), (x[3500:], y[3500:]), (xt, yt)


def test_accuracy(model, xt, yt) -> float:
    pred = np.argmax(model.predict(xt, batch_size=256, verbose=0), axis=-1)
    return float(np.mean(pred == yt))


def measured_ms(model, path: Path, x_cal) -> float:
    report = kp.export.cmsis(
        model, path, x_cal, samples=8, verify_m4=False, print_fn=None, progress=False, force=True
    )
    io = report.manifest["io"]["input"]
    q = np.clip(np.round(x_cal[:1] / io["scale"]) + io["zero_point"], -128, 127).astype(np.int8)
    return m4_cycles.profile_model(path, q.reshape(-1)).ms()


def run_model(name: str, budgets, epochs: int, out: Path, log) -> dict:
    build, pad = MODELS[name]
    train, val, (xt, yt) = data(pad)
    keras.utils.set_random_seed(0)
    model = build()
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    t = time.time()
    stop = keras.callbacks.EarlyStopping(patience=6, restore_best_weights=True)
    model.fit(
        *train,
        validation_data=val,
        epochs=DENSE_EPOCHS,
        batch_size=64,
        verbose=0,
        callbacks=[Recalibrate(train[0][:512]), stop],
    )
    recalibrate_batchnorm(model, train[0][:512])
    row = {
        "model": name,
        "dense_train_s": round(time.time() - t, 1),
        "dense_test": test_accuracy(model, xt, yt),
        "dense_int8_test": _int8_accuracy(model, train[0], xt, yt, None),
        "dense_ms_measured": measured_ms(model, out / f"{name}_dense", train[0][:300]),
        "runs": [],
    }
    log(f"{name}: dense test {row['dense_test']:.4f}, {row['dense_ms_measured']:.2f} ms")
    for b in budgets:
        for allocation in ("sensitivity", "uniform"):
            t = time.time()
            r = kp.auto.prune_to_budget(
                model,
                train,
                val,
                latency_ms=f"{100 * b:g}%",
                allocation=allocation,
                epochs=epochs,
                seed=0,
                progress=False,
                print_fn=None,
                int8=False,
            )
            secs = time.time() - t
            ms = measured_ms(r.model, out / f"{name}_{allocation}_{b:g}", train[0][:300])
            run = {
                "budget": b,
                "allocation": allocation,
                "budget_ms": r.budget["latency_ms"],
                "estimated_ms": r.estimate["latency_ms"],
                "measured_ms": ms,
                "measured_fraction": ms / row["dense_ms_measured"],
                "estimate_error": r.estimate["latency_ms"] / ms - 1,
                "within_budget": ms <= r.budget["latency_ms"],
                "estimate_within_10pct": abs(r.estimate["latency_ms"] / ms - 1) <= 0.10,
                "val": r.accuracy,
                "test": test_accuracy(r.model, xt, yt),
                "int8_test": _int8_accuracy(r.model, train[0], xt, yt, None),
                "flash_kb": r.estimate["flash_kb"],
                "ram_kb": r.estimate["ram_kb"],
                "seconds": round(secs, 1),
                "plan": [p.as_dict() for p in r.plan],
            }
            row["runs"].append(run)
            log(
                f"  {b:g}x {allocation:<11} est {run['estimated_ms']:.2f} ms, measured "
                f"{ms:.2f} ms ({run['measured_fraction']:.2f}x), test {run['test']:.4f} "
                f"(int8 {run['int8_test']:.4f}), {secs:.0f} s"
            )
            if allocation == "sensitivity":
                r.plot(out / f"{name}_{b:g}_plan.png")
    return row


def time_mobilenet(out: Path, log) -> dict:
    """The run-time check: MobileNetV1-0.25 at 96x96 with the defaults on a few hundred
    images (MNIST digits resized to 96x96x3, two classes: below 5 or not; 300 to train,
    200 to validate), pruned to half its estimated Cortex-M4 time."""
    import tensorflow as tf

    x, y, _, _ = kp.datasets.mnist_5k()
    x = tf.image.resize(tf.image.grayscale_to_rgb(tf.constant(x[:500])), (96, 96)).numpy()
    y = (y[:500] >= 5).astype("int64")
    keras.utils.set_random_seed(0)
    model = kp.models.mobilenet_v1()
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    model.fit(x[:300], y[:300], epochs=5, batch_size=32, verbose=0)
    t = time.time()
    r = kp.auto.prune_to_budget(
        model, (x[:300], y[:300]), (x[300:], y[300:]), latency_ms="50%", print_fn=None
    )
    secs = time.time() - t
    row = {
        "seconds": round(secs, 1),
        "phases": r.seconds,
        "accuracy": r.accuracy,
        "estimate": r.estimate,
        "original": r.original,
    }
    r.plot(out / "mobilenet_v1_plan.png")
    log(
        f"mobilenet_v1 (96x96, 300 images, defaults): {secs / 60:.1f} min "
        f"({r.seconds}); est {r.estimate['latency_ms']:.1f} of {r.original['latency_ms']:.1f} "
        f"ms; val accuracy {r.accuracy}"
    )
    return row


def table(rows: list[dict]) -> str:
    head = (
        "| model | budget | allocation | est. ms | measured ms (x dense) | est. error | "
        "test acc. (int8) | loss vs dense | run s |"
    )
    lines = [head, "|" + "---|" * 9]
    for row in rows:
        lines.append(
            f"| {row['model']} | dense | - | - | {row['dense_ms_measured']:.2f} (1.00) | - | "
            f"{row['dense_test']:.3f} ({row['dense_int8_test']:.3f}) | - | - |"
        )
        for r in row["runs"]:
            lines.append(
                f"| {row['model']} | {r['budget']:g}x | {r['allocation']} | "
                f"{r['estimated_ms']:.2f} | "
                f"{r['measured_ms']:.2f} ({r['measured_fraction']:.2f}) | "
                f"{100 * r['estimate_error']:+.1f}% | {r['test']:.3f} ({r['int8_test']:.3f}) | "
                f"{100 * (row['dense_test'] - r['test']):+.1f} pt | {r['seconds']:.0f} |"
            )
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(rows), figsize=(4.2 * len(rows), 3.6), squeeze=False)
    for ax, row in zip(axes[0], rows, strict=True):
        ax.scatter([1.0], [row["dense_test"]], marker="*", s=120, color="k", label="dense")
        for alloc, marker, color in (("sensitivity", "o", "#4c72b0"), ("uniform", "s", "#dd8452")):
            runs = [r for r in row["runs"] if r["allocation"] == alloc]
            ax.plot(
                [r["measured_fraction"] for r in runs],
                [r["test"] for r in runs],
                marker=marker,
                color=color,
                label=alloc,
            )
        for b in sorted({r["budget"] for r in row["runs"]}):
            ax.axvline(b, color="#bbbbbb", lw=0.8, ls="--")
        ax.set_title(row["model"])
        ax.set_xlabel("measured Cortex-M4 time (x dense)")
        ax.set_ylabel("test accuracy")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="bench_out/budget")
    ap.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--budgets", nargs="+", type=float, default=[0.5, 0.3])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--mobilenet", action="store_true", help="also time a MobileNetV1-0.25-96 run")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.mobilenet:
        row = time_mobilenet(out, print)
        (out / "mobilenet_time.json").write_text(json.dumps(row, indent=1))
    rows = []
    for name in args.models:
        rows.append(run_model(name, args.budgets, args.epochs, out, print))
        (out / "budget.json").write_text(json.dumps(rows, indent=1))
    if rows:
        print()
        print(table(rows))
        print(f"\nplot: {plot(rows, out / 'budget.png')}")


if __name__ == "__main__":
    main()
