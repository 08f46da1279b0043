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
             masks_epochs=args.masks_epochs, tflm=not args.no_tflm)
    return 0


def _load_npz(path: str) -> dict:
    import numpy as np

    if not os.path.isfile(path):
        raise FileNotFoundError(f"--data: no file at '{path}'.")
    try:
        with np.load(path, allow_pickle=False) as f:
            data = {k: f[k] for k in f.files}
    except (ValueError, OSError) as e:
        raise ValueError(f"--data: '{path}' is not a readable .npz file ({e}).") from e
    if "x_train" not in data:
        raise ValueError(f"--data: '{path}' has arrays {sorted(data)}; it needs x_train "
                         "(calibration inputs), and optionally y_train, x_val, y_val.")
    return data


def _export_tflm(args) -> int:
    from keras_prune import export, io

    io.atomic_dir(args.out, overwrite=args.force).check()  # before the slow part
    data = _load_npz(args.data)
    model = io.load(args.model, compile=False)
    validation = None
    if "x_val" in data:
        validation = (data["x_val"], data["y_val"]) if "y_val" in data else data["x_val"]
    export.tflm(model, args.out, data["x_train"], labels=data.get("y_train"),
                int8_io=not args.float_io, force=args.force, validation_data=validation,
                samples=args.samples)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="keras-prune",
        description="Prune Keras 3 models for real speed, from a workstation to a Cortex-M4.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    d = sub.add_parser(
        "demo", help="train LeNet-300-100 and LeNet-5 on MNIST-5k, prune to >=90%% "
                     "SIMDGroups(4) sparsity, add Integral Pruning, export for TFLite Micro, "
                     "and report",
        description="Train LeNet-300-100 and a LeNet-5-style CNN on MNIST-5k, prune each to "
                    "SIMD-aware sparsity with PolynomialDecay and fine-tune; then add "
                    "activation masks (Integral Pruning) with winner rates chosen on a "
                    "validation split, fine-tune, and report accuracies and MACs (dense, "
                    "kept weights, weights x activations); finally export the dense and "
                    "pruned models for TFLite Micro and verify them in TFLM. Models, plots, "
                    "exports and results.json go to --out.")
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
    d.add_argument("--no-tflm", action="store_true",
                   help="skip the TFLite Micro export of the dense and pruned models")
    d.add_argument("--seed", type=int, default=0)
    d.set_defaults(func=_demo)

    e = sub.add_parser("export", help="export a model for a target",
                       description="Export a Keras model (.keras or .h5) for a target.")
    targets = e.add_subparsers(dest="target", required=True, metavar="TARGET")
    t = targets.add_parser(
        "tflm", help="int8 .tflite + C array + op resolver + arena size, verified in TFLM",
        description="Convert MODEL to an int8 .tflite for TensorFlow Lite Micro, verify it "
                    "in the TFLM interpreter against LiteRT, and write model.tflite, "
                    "model_data.h/.cc, op_resolver.h, model_settings.h, manifest.json and "
                    "README.md to --out (atomically).")
    t.add_argument("model", help="a .keras or .h5 model (pruned or plain)")
    t.add_argument("--data", required=True,
                   help=".npz with x_train (calibration; y_train optional) and optionally "
                        "x_val, y_val (verification and accuracy)")
    t.add_argument("--out", required=True, help="output directory to create")
    t.add_argument("--force", action="store_true", help="replace an existing --out")
    t.add_argument("--samples", type=int, default=500,
                   help="verification inputs run in TFLM and LiteRT (default 500)")
    t.add_argument("--float-io", action="store_true",
                   help="keep float input/output tensors (default: int8)")
    t.set_defaults(func=_export_tflm)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError, OSError, ImportError) as e:
        name = " ".join(filter(None, [args.command, getattr(args, "target", None)]))
        print(f"keras-prune {name}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
