"""Trained LeNet-300-100 and LeNet-5 on MNIST-5k as C for a Cortex-M4: dense against
pruned variants, all measured in one run (``keras_prune.recipes.m4_variants`` lists the
variants and how each is measured).

Per model, one dense training, one SIMDGroups(4) pruning to 90% and Integral Pruning on
top of it (the demo's recipe), one unstructured pruning of the dense model to 90%; then
every variant as C, checked against TFLM, its cycles counted under unicorn.

    python benchmarks/m4_sparse.py [--out bench_out/m4_sparse] [--models lenet_300_100]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from keras_prune.datasets import mnist_5k, validation_subset  # noqa: E402
from keras_prune.mcu import firmware as m4  # noqa: E402
from keras_prune.mcu import profiler as m4_profile  # noqa: E402
from keras_prune.recipes import m4_variants, mnist  # noqa: E402


def run_model(name: str, data, out: Path, csr: m4_variants.CsrBench, samples: int) -> list:
    x, y, xt, yt = data
    xv, yv = validation_subset(x, y)  # as the demo: rates chosen on the last 500
    r = mnist.run_one(name, (x, y, xt, yt), out, sparsity=0.9, overwrite=True)
    integral = mnist.run_integral(r, (x, y, xv, yv, xt, yt), out, overwrite=True)
    return m4_variants.variants(r, integral, (x, y, xt, yt), out, csr, 0.9, samples)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="bench_out/m4_sparse")
    ap.add_argument(
        "--models", nargs="+", default=["lenet_300_100", "lenet5"], choices=list(mnist.MODELS)
    )
    ap.add_argument(
        "--samples",
        type=int,
        default=1000,
        help="test digits checked bit for bit against TFLM per export, and the "
        "accuracy's (default all 1,000)",
    )
    args = ap.parse_args()
    if not m4_profile.available() or m4.find_cross_toolchain() is None:
        raise SystemExit(
            "needs arm-none-eabi-gcc with newlib and unicorn: "
            "pip install 'keras-prune[mcu]' and see `make toolchain`."
        )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = mnist_5k()
    csr = m4_variants.CsrBench()
    for name in args.models:
        rows = run_model(name, data, out / name, csr, args.samples)
        print(m4_variants.table(name, rows), flush=True)
        print(f"  plot: {m4_variants.plot(name, rows, out / name / 'variants.png', True)}")


if __name__ == "__main__":
    main()
