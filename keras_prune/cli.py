"""The ``keras-prune`` command line."""

from __future__ import annotations

import argparse
import os
import sys

__all__ = ["main"]


def _demo(args) -> int:
    from keras_prune import demo

    models = tuple(m.strip() for m in args.models.split(",") if m.strip())
    demo.run(args.out, models=models, overwrite=args.force, sparsity=args.sparsity,
             dense_epochs=args.dense_epochs, prune_epochs=args.prune_epochs,
             finetune_epochs=args.finetune_epochs, seed=args.seed,
             integral=not args.no_integral, max_loss=args.max_loss,
             masks_epochs=args.masks_epochs)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="keras-prune",
        description="Prune Keras 3 models for real speed, from a workstation to a Cortex-M4.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    d = sub.add_parser(
        "demo", help="train LeNet-300-100 and LeNet-5 on MNIST-5k, prune to >=90%% "
                     "SIMDGroups(4) sparsity, add Integral Pruning, and report",
        description="Train LeNet-300-100 and a LeNet-5-style CNN on MNIST-5k, prune each to "
                    "SIMD-aware sparsity with PolynomialDecay and fine-tune; then add "
                    "activation masks (Integral Pruning) with winner rates chosen on a "
                    "validation split, fine-tune, and report accuracies and MACs (dense, "
                    "kept weights, weights x activations). Models, plots and results.json "
                    "go to --out.")
    d.add_argument("--out", default="demo_out", help="output directory (default: demo_out)")
    d.add_argument("--force", action="store_true", help="overwrite earlier demo outputs")
    d.add_argument("--models", default="lenet_300_100,lenet5",
                   help="comma-separated: lenet_300_100, lenet5")
    d.add_argument("--sparsity", type=float, default=0.9, help="final sparsity (default 0.9)")
    d.add_argument("--dense-epochs", type=int, default=20)
    d.add_argument("--prune-epochs", type=int, default=10,
                   help="epochs over which the sparsity ramps up")
    d.add_argument("--finetune-epochs", type=int, default=10,
                   help="epochs at final sparsity")
    d.add_argument("--no-integral", action="store_true",
                   help="skip the Integral Pruning (activation mask) stage")
    d.add_argument("--max-loss", type=float, default=0.005,
                   help="validation accuracy the winner rates may cost (default 0.005)")
    d.add_argument("--masks-epochs", type=int, default=5,
                   help="fine-tuning epochs with activation masks (default 5)")
    d.add_argument("--seed", type=int, default=0)
    d.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError, FileExistsError, FileNotFoundError, ImportError) as e:
        print(f"keras-prune {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
