"""Integral Pruning on MNIST-5k: effective MACs and accuracy, weights only vs weights + masks.

For each model and seed, one run: train dense on the 4,000 training digits, prune
weights with SIMDGroups(4) (PolynomialDecay, then fine-tune), choose winner rates on
the last 500 training digits (max loss 0.5 points), insert activation masks, fine-tune,
strip the masks to calibrated thresholds and run the int8 model in TFLite Micro. All
accuracies are on the 1,000 test images; MACs are per inference, averaged over them.

MAC levels (see kp.count_macs): "weights" counts kept weights only; "x ReLU" also skips
zero inputs of the weight-pruned model without masks (the image's blank pixels and
ReLU's own zeros), so the masks' own contribution is "x masks" minus "x ReLU".

    python benchmarks/integral_macs.py [--seeds 0 1 2] [--models lenet_300_100 lenet5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from keras_prune.datasets import mnist_5k, validation_subset  # noqa: E402
from keras_prune.recipes import mnist  # noqa: E402
from keras_prune.recipes.reports import format_integral  # noqa: E402

# weight sparsity per model: LeNet-5's small conv layers lose > 0.5 pt at 90% (see README)
SPARSITY = {"lenet_300_100": 0.9, "lenet5": 0.8}
BAR_CUT, BAR_LOSS = 0.90, 0.005


def run(name: str, seed: int, data, out: Path) -> mnist.RecipeResult:
    x, y, xv, yv, xt, yt = data
    r = mnist.run_one(name, (x, y, xt, yt), out, sparsity=SPARSITY[name], seed=seed, overwrite=True)
    r.integral = mnist.run_integral(r, data, out, overwrite=True)
    return r


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--models", nargs="+", default=list(SPARSITY), choices=list(SPARSITY))
    args = parser.parse_args()
    x, y, xt, yt = mnist_5k()
    data = (x, y, *validation_subset(x, y), xt, yt)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            for seed in args.seeds:
                r = run(name, seed, data, Path(tmp))
                print(format_integral([r.integral]), flush=True)
                rows.append((name, seed, r.integral))
    head = (
        f"{'model':<15}{'seed':>5}{'w-sparsity':>11}{'dense':>8}{'weights':>9}"
        f"{'+masks':>8}{'thresh':>8}{'int8':>8}{'change':>9}  {'MAC cut: weights':>16}"
        f"{'x ReLU':>8}{'x masks':>9}{'x thr':>8}  bar"
    )
    print("\n" + head + "\n" + "-" * len(head))
    for name, seed, r in rows:
        loss = r.dense_accuracy - r.topk_accuracy
        ok = r.cut("weights_x_masks") >= BAR_CUT and loss <= BAR_LOSS + 1e-9
        int8 = "n/a" if r.int8_accuracy is None else f"{r.int8_accuracy:.2%}"
        print(
            f"{name:<15}{seed:>5}{SPARSITY[name]:>11.0%}{r.dense_accuracy:>8.2%}"
            f"{r.weights_accuracy:>9.2%}{r.topk_accuracy:>8.2%}{r.threshold_accuracy:>8.2%}"
            f"{int8:>8}{-100 * loss:>+7.2f}pt   {r.cut('weights'):>16.1%}"
            f"{r.cut('weights_x_relu'):>8.1%}{r.cut('weights_x_masks'):>9.1%}"
            f"{r.cut('weights_x_thresholds'):>8.1%}  {'yes' if ok else 'NO'}"
        )
    print("\nmedians over seeds")
    for name in args.models:
        rs = [r for n, _, r in rows if n == name]

        def med(f, rs=rs):
            return statistics.median(f(r) for r in rs)

        print(
            f"{name:<15} accuracy change (masks vs dense) "
            f"{100 * med(lambda r: r.topk_accuracy - r.dense_accuracy):+.2f}pt, "
            f"MAC cut: weights {med(lambda r: r.cut('weights')):.1%}, "
            f"x ReLU {med(lambda r: r.cut('weights_x_relu')):.1%}, "
            f"x masks {med(lambda r: r.cut('weights_x_masks')):.1%}, "
            f"x thresholds {med(lambda r: r.cut('weights_x_thresholds')):.1%}"
        )


if __name__ == "__main__":
    main()
