"""The ``keras-prune`` command line."""

from __future__ import annotations

import argparse
import os
import sys

__all__ = ["main"]


def _demo(args) -> int:
    from keras_prune.recipes import demo

    models = tuple(m.strip() for m in args.models.split(",") if m.strip())
    demo.run(
        args.out,
        models=models,
        overwrite=args.force,
        sparsity=args.sparsity,
        dense_epochs=args.dense_epochs,
        prune_epochs=args.prune_epochs,
        finetune_epochs=args.finetune_epochs,
        seed=args.seed,
        integral=not args.no_integral,
        max_loss=args.max_loss,
        masks_epochs=args.masks_epochs,
        tflm=not args.no_tflm,
        legr=not args.no_legr,
        budget=not args.no_budget,
        budget_epochs=args.budget_epochs,
        cortex_m4=not args.no_c,
        legr_generations=args.legr_generations,
        legr_epochs=args.legr_epochs,
    )
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
        raise ValueError(
            f"--data: '{path}' has arrays {sorted(data)}; it needs x_train "
            "(calibration inputs), and optionally y_train, x_val, y_val."
        )
    return data


def _export_tflm(args) -> int:
    from keras_prune import export, io

    io.atomic_dir(args.out, overwrite=args.force).check()  # before loading anything
    data = _load_npz(args.data)
    model = io.load(args.model, compile=False)
    validation = None
    if "x_val" in data:
        validation = (data["x_val"], data["y_val"]) if "y_val" in data else data["x_val"]
    export.tflm(
        model,
        args.out,
        data["x_train"],
        labels=data.get("y_train"),
        int8_io=not args.float_io,
        force=args.force,
        validation_data=validation,
        samples=args.samples,
    )
    return 0


def _export_cmsis(args) -> int:
    from keras_prune import export, io

    io.atomic_dir(args.out, overwrite=args.force).check()  # before loading anything
    data = _load_npz(args.data)
    model = io.load(args.model, compile=False, safe_mode=not args.unsafe)
    validation = None
    if "x_val" in data:
        validation = (data["x_val"], data["y_val"]) if "y_val" in data else data["x_val"]
    export.cmsis(
        model,
        args.out,
        data["x_train"],
        target=args.target,
        force=args.force,
        labels=data.get("y_train"),
        validation_data=validation,
        samples=args.samples,
        verify_m4=True if args.require_m4 else None,
        sparse=args.sparse,
        masks=args.masks,
    )
    return 0


def _export_savedmodel(args) -> int:
    from pathlib import Path

    from keras_prune import export, io

    io.atomic_dir(Path(args.out) / str(args.version), overwrite=args.force).check()
    data = _load_npz(args.data) if args.data else {}
    if args.activation_masks == "threshold" and "x_train" not in data:
        raise ValueError(
            "--activation-masks threshold calibrates on inputs: pass --data DATA.npz with x_train."
        )
    model = io.load(args.model, compile=False, safe_mode=not args.unsafe)
    export.saved_model(
        model,
        args.out,
        version=args.version,
        batch=args.batch,
        force=args.force,
        activation_masks=args.activation_masks,
        representative_data=data.get("x_train"),
        fold_bn=not args.keep_batchnorm,
    )
    return 0


def _floats(text: str, flag: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(
            f"{flag} takes comma-separated numbers, e.g. 0.7,0.5,0.3; got {text!r}."
        ) from None


def _legr(args) -> int:
    from keras_prune import io
    from keras_prune.legr import job

    targets = _floats(args.flops, "--flops")
    io.atomic_dir(args.out, overwrite=args.force).check()  # before loading anything
    data = _load_npz(args.data)
    model = io.load(args.model, compile=False, safe_mode=not args.unsafe)
    job.run(
        model,
        data,
        targets,
        args.out,
        generations=args.generations,
        tau=args.tau,
        finetune_epochs=args.finetune_epochs,
        seed=args.seed,
        resume=args.resume,
        force=args.force,
        population=args.population,
        sample=args.sample,
        round_to=args.round_to,
        executor=args.executor,
        workers=args.workers,
        batch=args.batch,
        worker_threads=args.worker_threads,
    )
    return 0


def _granularity(text: str):
    from keras_prune import granularity as gr

    if text.startswith("simd"):
        width = text[4:] or "4"
        if not width.isdigit():
            raise ValueError(f"--granularity {text!r}: expected simd4, simd8, ...")
        return gr.SIMDGroups(int(width))
    return gr.get(text)


def _layer_rates(items: list[str] | None) -> dict[str, float]:
    rates = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        try:
            rates[name] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name:
            raise ValueError(f"--layer-rate {item!r}: expected NAME=RATE, e.g. fc3=0.1.")
    return rates


def _lottery(args) -> int:
    from keras_prune import io, lottery

    io.atomic_dir(args.out, overwrite=args.force).check()  # before loading anything
    data = _load_npz(args.data)
    model = io.load(args.model, compile=False, safe_mode=not args.unsafe)
    lottery.run_job(
        model,
        data,
        args.out,
        resume=args.resume,
        force=args.force,
        random_reinit=not args.no_random_reinit,
        rounds=args.rounds,
        rate=args.rate,
        rewind_epoch=None if args.rewind_step is not None else args.rewind_epoch,
        rewind_step=args.rewind_step,
        epochs=args.epochs,
        granularity=_granularity(args.granularity),
        layer_rates=_layer_rates(args.layer_rate),
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        seed=args.seed,
    )
    return 0


def _budget_value(text: str | None, flag: str):
    if text is None:
        return None
    t = text.strip()
    if t.endswith("%"):
        return t
    try:
        return float(t)
    except ValueError:
        raise ValueError(
            f"{flag}: expected a number or a percentage such as 50%, got {text!r}."
        ) from None


def _target(args):
    from keras_prune import targets

    if args.target == "cortex-m4":
        return targets.CortexM4(clock_mhz=args.clock_mhz)
    if args.target == "cpu":
        return targets.CPU(batch=args.batch)
    if args.target == "macs":
        return targets.MACs()
    raise ValueError(f"--target must be cortex-m4, cpu or macs, got {args.target!r}.")


def _prune(args) -> int:
    from keras_prune import io
    from keras_prune.auto import job

    io.atomic_dir(args.out, overwrite=args.force).check()  # before loading anything
    if args.export is not None and args.export not in job.EXPORTS:
        raise ValueError(f"--export must be one of {', '.join(job.EXPORTS)}, got {args.export!r}.")
    target = _target(args)
    budgets = {
        "latency_ms": _budget_value(args.latency_ms, "--latency-ms"),
        "flash_kb": _budget_value(args.flash_kb, "--flash-kb"),
        "ram_kb": _budget_value(args.ram_kb, "--ram-kb"),
        "macs": _budget_value(args.macs, "--macs"),
    }
    data = _load_npz(args.data)
    model = io.load(args.model, compile=False, safe_mode=not args.unsafe)
    job.run_job(
        model,
        data,
        args.out,
        export=args.export,
        resume=args.resume,
        force=args.force,
        target=target,
        allocation=args.allocation,
        epochs=args.epochs,
        batch_size=args.batch_size,
        seed=args.seed,
        **budgets,
    )
    return 0


def _inspect(args) -> int:
    import numpy as np

    from keras_prune import io
    from keras_prune.flops import count_flops
    from keras_prune.graph import build

    model = io.load(args.model, compile=False, safe_mode=not args.unsafe)
    graph = build(model)
    macs = graph.macs()
    head = f"{'layer':<30}{'type':<24}{'output shape':<22}{'params':>10}{'MACs':>14}"
    lines = [f"Layers of '{model.name}'", head, "-" * len(head)]
    for use in graph.layers:
        shape = getattr(use.layer, "output", None)
        shape = str(tuple(shape.shape[1:])) if hasattr(shape, "shape") else ""
        params = sum(int(np.prod(w.shape)) for w in use.layer.weights)
        lines.append(
            f"{use.path[:29]:<30}{type(use.layer).__name__[:23]:<24}{shape[:21]:<22}"
            f"{params:>10,}{macs.get(use.path, 0):>14,}"
        )
    print("\n".join(lines) + "\n")
    print(graph.table() + "\n")
    report = count_flops(model, print_fn=None, graph=graph)
    print(
        f"Total: {report.total:,} MACs per inference, {model.count_params():,} parameters; "
        f"{len(graph.prunable_groups)} of {len(graph.groups)} channel groups prunable."
    )
    return 0


def _export_io_flags(p: argparse.ArgumentParser) -> None:
    """MODEL, --data and --out, shared by the exporters that calibrate int8."""
    p.add_argument("model", help="a .keras or .h5 model (pruned or plain)")
    p.add_argument(
        "--data",
        required=True,
        help=".npz with x_train (calibration; y_train optional) and optionally "
        "x_val, y_val (verification and accuracy)",
    )
    p.add_argument("--out", required=True, help="output directory to create")


def _unsafe_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--unsafe",
        action="store_true",
        help="allow Lambda layers (runs code stored in the model file; only for files you trust)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="keras-prune",
        description="Prune Keras 3 models for real speed, from a workstation to a Cortex-M4.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    d = sub.add_parser(
        "demo",
        help="train LeNet-300-100 and LeNet-5 on MNIST-5k, prune to >=90%% "
        "SIMDGroups(4) sparsity, add Integral Pruning, export for TFLite Micro, "
        "run LeGR on the CNN, and report",
        description="Train LeNet-300-100 and a LeNet-5-style CNN on MNIST-5k, prune each to "
        "SIMD-aware sparsity with PolynomialDecay and fine-tune; then add "
        "activation masks (Integral Pruning) with winner rates chosen on a "
        "validation split, fine-tune, and report accuracies and MACs (dense, "
        "kept weights, weights x activations); finally export the dense and "
        "pruned models for TFLite Micro and verify them in TFLM; and run LeGR "
        "filter pruning on the CNN reloaded from .h5 (Pareto plot against "
        "uniform and global L2 pruning). Models, plots, exports and "
        "results.json go to --out.",
    )
    d.add_argument("--out", default="demo_out", help="output directory (default: demo_out)")
    d.add_argument("--force", action="store_true", help="overwrite earlier demo outputs")
    d.add_argument(
        "--models", default="lenet_300_100,lenet5", help="comma-separated: lenet_300_100, lenet5"
    )
    d.add_argument("--sparsity", type=float, default=0.9, help="final sparsity (default 0.9)")
    d.add_argument("--dense-epochs", type=int, default=20)
    d.add_argument(
        "--prune-epochs", type=int, default=10, help="epochs over which the sparsity ramps up"
    )
    d.add_argument("--finetune-epochs", type=int, default=10, help="epochs at final sparsity")
    d.add_argument(
        "--no-integral",
        action="store_true",
        help="skip the Integral Pruning (activation mask) stage",
    )
    d.add_argument(
        "--max-loss",
        type=float,
        default=0.005,
        help="validation accuracy the winner rates may cost (default 0.005)",
    )
    d.add_argument(
        "--masks-epochs",
        type=int,
        default=5,
        help="fine-tuning epochs with activation masks (default 5)",
    )
    d.add_argument(
        "--no-c",
        action="store_true",
        help="skip the C export of LeNet-5 and its Cortex-M4 cycle table",
    )
    d.add_argument(
        "--no-tflm",
        action="store_true",
        help="skip the TFLite Micro export of the dense and pruned models",
    )
    d.add_argument(
        "--no-legr", action="store_true", help="skip LeGR filter pruning of the reloaded .h5 CNN"
    )
    d.add_argument(
        "--no-budget",
        action="store_true",
        help="skip pruning the CNN to half its Cortex-M4 time (kp.auto.prune_to_budget)",
    )
    d.add_argument(
        "--budget-epochs", type=int, default=4, help="recovery epochs of that stage (default 4)"
    )
    d.add_argument(
        "--legr-generations",
        type=int,
        default=32,
        help="LeGR candidates evaluated in the demo (default 32)",
    )
    d.add_argument(
        "--legr-epochs",
        type=int,
        default=2,
        help="fine-tuning epochs per LeGR target and baseline (default 2)",
    )
    d.add_argument("--seed", type=int, default=0)
    d.set_defaults(func=_demo)

    e = sub.add_parser(
        "export",
        help="export a model for a target",
        description="Export a Keras model (.keras or .h5) for a target.",
    )
    targets = e.add_subparsers(dest="export_target", required=True, metavar="TARGET")
    t = targets.add_parser(
        "tflm",
        help="int8 .tflite + C array + op resolver + arena size, verified in TFLM",
        description="Convert MODEL to an int8 .tflite for TensorFlow Lite Micro, verify it "
        "in the TFLM interpreter against LiteRT, and write model.tflite, "
        "model_data.h/.cc, op_resolver.h, model_settings.h, manifest.json and "
        "README.md to --out (atomically).",
    )
    _export_io_flags(t)
    t.add_argument("--force", action="store_true", help="replace an existing --out")
    t.add_argument(
        "--samples",
        type=int,
        default=500,
        help="verification inputs run in TFLM and LiteRT (default 500)",
    )
    t.add_argument(
        "--float-io", action="store_true", help="keep float input/output tensors (default: int8)"
    )
    t.set_defaults(func=_export_tflm)

    c = targets.add_parser(
        "cmsis",
        help="C99 library for Cortex-M4 (our kernels or CMSIS-NN), bit-exact with TFLM",
        description="Convert MODEL to int8, generate a self-contained C99 library "
        "(kp_model.h/.c, kp_weights.c, kernels/, model.tflite, manifest.json, "
        "README.md) with a static memory plan, compile it for the host and check "
        "it bit for bit against the TFLM interpreter, then (when "
        "arm-none-eabi-gcc and qemu-system-arm are installed) build it for a "
        "Cortex-M4 and check it on QEMU's mps2-an386 board.",
    )
    _export_io_flags(c)
    c.add_argument(
        "--target",
        default="cortex-m4",
        choices=("cortex-m4",),
        help="the core to generate for (default cortex-m4)",
    )
    c.add_argument("--force", action="store_true", help="replace an existing --out")
    c.add_argument(
        "--samples",
        type=int,
        default=100,
        help="inputs compared with TFLM, on the host and the Cortex-M4 (default 100)",
    )
    c.add_argument(
        "--require-m4",
        action="store_true",
        help="fail if the Cortex-M4 build and QEMU run cannot be done",
    )
    c.add_argument(
        "--sparse",
        default="auto",
        choices=("auto", "always", "never"),
        help="run FULLY_CONNECTED/CONV_2D layers on their SIMD-group sparse "
        "weights where estimated faster (auto, the default), wherever "
        "possible (always) or never; also whether a layer fed by an "
        "activation mask skips the zeroed inputs",
    )
    c.add_argument(
        "--masks",
        default="threshold",
        choices=("threshold", "topk"),
        help="activation masks as the .tflite runs them (threshold, the default, "
        "bit-exact with TFLM) or as run-time top-k winners (topk, the Keras "
        "layer's semantics)",
    )
    _unsafe_flag(c)
    c.set_defaults(func=_export_cmsis)

    s = targets.add_parser(
        "savedmodel",
        help="SavedModel for TF Serving with pruned channels removed",
        description="Strip pruning wrappers, physically remove pruned channels along the "
        "dependency graph, fold BatchNorms into the layer before them, export "
        "a SavedModel (serving_default signature) to "
        "OUT/VERSION/ atomically with signature.json, then reload it with "
        "tf.saved_model.load and TFSMLayer and check the outputs.",
    )
    s.add_argument("model", help="a .keras or .h5 model (pruned or plain)")
    s.add_argument("--out", required=True, help="the model's base directory")
    s.add_argument("--version", type=int, default=1, help="version directory (default 1)")
    s.add_argument(
        "--batch",
        type=int,
        default=None,
        help="fixed batch size of the signature (default: dynamic)",
    )
    s.add_argument(
        "--data",
        default=None,
        help=".npz with x_train: inputs for the reload check (and for "
        "--activation-masks threshold); random inputs otherwise",
    )
    s.add_argument(
        "--activation-masks",
        choices=("keep", "threshold"),
        default="keep",
        help="keep top-k activation masks (default) or turn them into calibrated thresholds",
    )
    s.add_argument(
        "--keep-batchnorm",
        action="store_true",
        help="keep BatchNorm layers instead of folding them into the layer "
        "before (folding saves an element-wise pass per BatchNorm)",
    )
    s.add_argument("--force", action="store_true", help="replace an existing version")
    _unsafe_flag(s)
    s.set_defaults(func=_export_savedmodel)

    g = sub.add_parser(
        "legr",
        help="learn a global filter ranking (LeGR) and shrink to FLOPs targets",
        description="Learn LeGR's per-layer transforms of filter norms once (regularized "
        "evolution on the mean loss at all --flops targets), cut the global "
        "ranking at each --flops target, fine-tune, and compare with uniform "
        "per-layer pruning and plain global L2-norm ranking. Writes "
        "legr_<target>.keras/.h5, results.csv, pareto.png and legr_state.json "
        "to --out (atomically).",
    )
    g.add_argument("model", help="a .keras or .h5 model (Keras 3 or Keras 2-era)")
    g.add_argument("--data", required=True, help=".npz with x_train, y_train, x_val, y_val")
    g.add_argument(
        "--flops",
        required=True,
        help="comma-separated fractions of the original MACs, e.g. 0.7,0.5,0.3",
    )
    g.add_argument("--out", required=True, help="output directory to create")
    g.add_argument(
        "--generations",
        type=int,
        default=400,
        help="candidates evaluated by the evolution (default 400)",
    )
    g.add_argument(
        "--tau",
        type=int,
        default=200,
        help="fine-tuning steps before each candidate's validation loss (default 200)",
    )
    g.add_argument("--population", type=int, default=64, help="default 64")
    g.add_argument("--sample", type=int, default=16, help="tournament size (default 16)")
    g.add_argument(
        "--finetune-epochs",
        type=int,
        default=5,
        help="fine-tuning epochs per target model (default 5)",
    )
    g.add_argument(
        "--round-to",
        type=int,
        default=1,
        help="keep channel counts in multiples of this: 8 for AVX2 CPU serving, "
        "16 for AVX-512 (default 1: any count)",
    )
    g.add_argument("--seed", type=int, default=0)
    g.add_argument(
        "--executor",
        choices=["serial", "ray"],
        default="serial",
        help="where candidates are evaluated: in this process, or on Ray actors (joins "
        "$RAY_ADDRESS, else starts a local cluster; needs keras-prune[distributed])",
    )
    g.add_argument(
        "--workers",
        type=int,
        help="Ray actors (default: one per CPU of the cluster)",
    )
    g.add_argument(
        "--worker-threads",
        type=int,
        help="TensorFlow threads per Ray worker (default: this process's count, so the "
        "result equals a serial run's; 1 is faster when workers outnumber cores)",
    )
    g.add_argument(
        "--batch",
        type=int,
        help="candidates bred and evaluated together per step (default: --workers with "
        "Ray, else 1); the same --seed and --batch give the same result on either executor",
    )
    g.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run from its checkpoint beside --out",
    )
    g.add_argument("--force", action="store_true", help="replace an existing --out")
    _unsafe_flag(g)
    g.set_defaults(func=_legr)

    lt = sub.add_parser(
        "lottery",
        help="find a lottery ticket: iterative magnitude pruning with weight rewinding",
        description="Train the model, prune --rate of each layer's surviving weights, "
        "rewind the survivors to their values after --rewind-epoch epochs, retrain, and "
        "repeat for --rounds rounds; then train the same mask from fresh random weights "
        "as a control. Writes dense.keras, ticket.keras, history.json and lottery.png to "
        "--out (atomically); an interrupted run resumes with --resume.",
    )
    lt.add_argument("model", help="a .keras or .h5 model (Keras 3 or Keras 2-era)")
    lt.add_argument("--data", required=True, help=".npz with x_train, y_train, x_val, y_val")
    lt.add_argument("--out", required=True, help="output directory to create")
    lt.add_argument("--rounds", type=int, required=True, help="pruning rounds (>= 1)")
    lt.add_argument(
        "--rate", type=float, default=0.2, help="fraction of survivors pruned per round"
    )
    lt.add_argument(
        "--layer-rate",
        action="append",
        metavar="NAME=RATE",
        help="a layer's own rate, e.g. fc3=0.1 (repeatable)",
    )
    lt.add_argument(
        "--rewind-epoch", type=int, default=1, help="rewind to this epoch (0: the initial weights)"
    )
    lt.add_argument("--rewind-step", type=int, help="rewind to this training step instead")
    lt.add_argument("--epochs", type=int, default=20, help="training epochs per round (default 20)")
    lt.add_argument(
        "--granularity",
        default="unstructured",
        help="unstructured (default), simd4 (SIMDGroups(4)), simd8, channels",
    )
    lt.add_argument("--batch-size", type=int, default=64)
    lt.add_argument("--learning-rate", type=float, default=1.2e-3, help="Adam's (default 1.2e-3)")
    lt.add_argument("--seed", type=int, default=0)
    lt.add_argument(
        "--no-random-reinit", action="store_true", help="skip the random re-init control"
    )
    lt.add_argument(
        "--resume", action="store_true", help="continue an interrupted run from its checkpoint"
    )
    lt.add_argument("--force", action="store_true", help="replace an existing --out")
    _unsafe_flag(lt)
    lt.set_defaults(func=_lottery)

    pr = sub.add_parser(
        "prune",
        help="prune to a latency, flash, RAM or MACs budget on a target",
        description="Choose per-layer channel cuts and SIMD-group sparsity by measured "
        "sensitivity against the target's cost until every budget is met, recover "
        "accuracy by fine-tuning with distillation from the original, and write "
        "model.keras, plan.json, plan.png (and --export) to --out atomically. Budgets are "
        "numbers in the metric's unit or percentages of the original (e.g. 50%%). An "
        "interrupted run resumes with --resume.",
    )
    pr.add_argument("model", help="a .keras or .h5 model (Keras 3 or Keras 2-era)")
    pr.add_argument("--data", required=True, help=".npz with x_train, y_train, x_val, y_val")
    pr.add_argument("--out", required=True, help="output directory to create")
    pr.add_argument("--target", default="cortex-m4", help="cortex-m4 (default), cpu or macs")
    pr.add_argument("--clock-mhz", type=float, default=120.0, help="Cortex-M4 clock (default 120)")
    pr.add_argument("--batch", type=int, default=32, help="CPU target: batch (default 32)")
    pr.add_argument("--latency-ms", help="latency budget: ms, or a percentage such as 50%%")
    pr.add_argument("--flash-kb", help="flash budget (Cortex-M4): KiB or a percentage")
    pr.add_argument("--ram-kb", help="RAM budget (Cortex-M4): KiB or a percentage")
    pr.add_argument("--macs", help="MACs budget (macs target): a count or a percentage")
    pr.add_argument(
        "--allocation",
        default="sensitivity",
        help="sensitivity (default) or uniform (same channel fraction everywhere)",
    )
    pr.add_argument("--epochs", type=int, default=10, help="recovery epochs (default 10)")
    pr.add_argument("--batch-size", type=int, default=32)
    pr.add_argument("--export", help="also export: cmsis, tflm or savedmodel")
    pr.add_argument("--seed", type=int, default=0)
    pr.add_argument(
        "--resume", action="store_true", help="continue an interrupted run from its checkpoint"
    )
    pr.add_argument("--force", action="store_true", help="replace an existing --out")
    _unsafe_flag(pr)
    pr.set_defaults(func=_prune)

    i = sub.add_parser(
        "inspect",
        help="print the layers, channel groups and MACs of a model",
        description="Print every layer with its output shape, parameters and "
        "MACs, the channel dependency groups (prunable or why "
        "not), and the totals.",
    )
    i.add_argument("model", help="a .keras or .h5 model")
    _unsafe_flag(i)
    i.set_defaults(func=_inspect)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError, OSError, ImportError) as e:
        name = " ".join(filter(None, [args.command, getattr(args, "export_target", None)]))
        print(f"keras-prune {name}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
