"""TFLite Micro export sizes: dense vs 90%-pruned LeNet-300-100 and LeNet-5 (MNIST-5k).

For each model: train dense on the 4,000 training digits, prune to 90% SIMDGroups(4)
sparsity (PolynomialDecay, then fine-tune; the demo's recipe), and export both with
``kp.export.tflm``. Printed side by side: the ``.tflite`` bytes (what TFLM keeps in
flash: it stores zeros like any other weight), the same file compressed with zlib (what
a flash compressor exploits), the arena ``KP_ARENA_SIZE`` (TFLM's measured arena +
CMSIS-NN scratch + 10%), float and int8 (TFLM) accuracy on the 1,000 test digits, and
TFLM vs LiteRT (reference kernels) agreement on those digits: equal values, largest
output difference and its tolerance, and the largest difference of the softmax logits.

    python benchmarks/tflm_size.py [--models lenet_300_100 lenet5] [--seed 0]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from keras_prune.datasets import mnist_5k  # noqa: E402
from keras_prune.recipes import mnist  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["lenet_300_100", "lenet5"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sparsity", type=float, default=0.9)
    args = parser.parse_args()
    x, y, xt, yt = mnist_5k()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            r = mnist.run_one(
                name,
                (x, y, xt, yt),
                Path(tmp),
                sparsity=args.sparsity,
                seed=args.seed,
                overwrite=True,
            )
            for row in mnist.run_tflm(r, (x, xt, yt), Path(tmp), overwrite=True):
                rows.append(
                    {
                        "model": name,
                        "sparsity": r.sparsity if row["variant"] == "pruned" else 0.0,
                        **row,
                    }
                )
    head = (
        f"{'model':<15}{'variant':<8}{'sparsity':>9}{'.tflite B':>11}{'zlib B':>9}"
        f"{'zlib/dense':>11}{'arena B':>9}{'float':>8}{'int8':>8}{'TFLM=LiteRT':>12}"
        f"{'max diff':>9}{'tol':>5}{'logits':>7}{'top-1':>8}"
    )
    print(head)
    print("-" * len(head))
    for row in rows:
        dense = next(d for d in rows if d["model"] == row["model"] and d["variant"] == "dense")
        print(
            f"{row['model']:<15}{row['variant']:<8}{row['sparsity']:>9.1%}"
            f"{row['tflite_bytes']:>11,}{row['zlib_bytes']:>9,}"
            f"{row['zlib_bytes'] / dense['zlib_bytes']:>11.2f}{row['arena_bytes']:>9,}"
            f"{row['float_accuracy']:>8.2%}{row['int8_accuracy']:>8.2%}"
            f"{row['exact_match']:>12.2%}{row['max_diff_lsb']:>9}{row['tolerance_lsb']:>5}"
            f"{row['logits_diff_lsb'] if row['logits_diff_lsb'] is not None else '-':>7}"
            f"{row['top1_agreement']:>8.1%}"
        )
    print(
        "\n.tflite: TFLM stores pruned zeros like any weight, so the file barely shrinks; "
        "zlib shows what a flash compressor gains."
    )


if __name__ == "__main__":
    main()
