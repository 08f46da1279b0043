"""LeGR on MNIST-5k: learned global filter ranking vs global L2 and uniform, per FLOPs target.

For each model: train dense on 3,500 of the 4,000 training digits (the last 500 are
LeGR's selection set: the evolution's fitness is the loss on them after ``tau``
fine-tuning steps, and ``acc (cut)`` below is measured on them); learn the ranking once
with ``kp.legr.LeGR`` (default population 64, tournament 16) on the mean loss over all
targets (``--learn-at min``: at the most aggressive target only, as in the paper);
then cut the dense model to every target with the learned ranking, plain global L2-norm
ranking and uniform per-layer pruning, physically shrink it, and fine-tune each
cut model with the same seeds and schedule (``--finetune-seeds`` seeds; the tables show
medians, since one seed's noise on 1,000 digits is about 0.7 points). Test accuracy (1,000
test digits) is measured here, after fine-tuning; LeGR's own ``acc_after`` is on the
selection set.

Models: the demo's LeNet-5-style CNN, and a small ResNet (stride-2 stem conv 16 + BN, two
identity residual blocks of 16 channels, one strided block to 32 channels with a 1x1
projection shortcut, global average pooling). The Adds tie the channels of the stem and
the 16-channel blocks into one group, and those of the strided block and its projection
into another.

    python benchmarks/legr_pareto.py [--models lenet5 resnet] [--generations 150]
        [--tau 50] [--targets 0.7 0.5 0.3] [--finetune-seeds 3] [--seed 0]
        [--out results.json] [--quick]

``--quick`` (8 generations, population 4, one target, one epoch each) only checks that
everything runs (about 2 minutes on 2 cores); its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from dataclasses import asdict

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_prune.datasets import mnist_5k  # noqa: E402
from keras_prune.legr import LeGR  # noqa: E402
from keras_prune.models import lenet5  # noqa: E402

VAL = 500  # the last VAL training digits: LeGR's selection set
BATCH = 64
TARGETS = [0.7, 0.5, 0.3]
QUICK = {
    "generations": 8,
    "population": 4,
    "sample": 2,
    "tau": 5,
    "epochs": 1,
    "finetune_epochs": 1,
    "finetune_seeds": 1,
    "targets": [0.5],
}  # --targets still overrides the target


def small_resnet() -> keras.Model:
    """A small ResNet-style CNN (about 25k parameters) with identity and projection adds.

    The stem convolution has stride 2, so the residual blocks run at 14x14 and 7x7 and
    one LeGR generation stays cheap on 2 cores. BatchNorm momentum 0.9: with momentum
    0.99 the moving statistics lag far behind after a few hundred steps on 3,500 digits
    (inference accuracy stayed near chance after 8 epochs).
    """
    L = keras.layers

    def conv_bn(x, filters, name, strides=1, kernel=3, relu=True):
        x = L.Conv2D(
            filters, kernel, strides=strides, padding="same", use_bias=False, name=f"{name}_conv"
        )(x)
        x = L.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
        return L.ReLU(name=f"{name}_relu")(x) if relu else x

    inp = keras.Input((28, 28, 1), name="image")
    x = conv_bn(inp, 16, "stem", strides=2)
    for b in (1, 2):
        h = conv_bn(x, 16, f"block{b}a")
        h = conv_bn(h, 16, f"block{b}b", relu=False)
        x = L.ReLU(name=f"block{b}_out")(L.Add(name=f"block{b}_add")([x, h]))
    h = conv_bn(x, 32, "block3a", strides=2)
    h = conv_bn(h, 32, "block3b", relu=False)
    s = conv_bn(x, 32, "block3_proj", strides=2, kernel=1, relu=False)
    x = L.ReLU(name="block3_out")(L.Add(name="block3_add")([s, h]))
    x = L.GlobalAveragePooling2D(name="gap")(x)
    out = L.Dense(10, activation="softmax", name="fc")(x)
    return keras.Model(inp, out, name="small_resnet")


MODELS = {"lenet5": lenet5, "resnet": small_resnet}


def thread_info() -> str:
    cores = os.cpu_count()
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = cores
    info = f"os.cpu_count()={cores}, usable cores={usable}"
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        intra = tf.config.threading.get_intra_op_parallelism_threads()
        inter = tf.config.threading.get_inter_op_parallelism_threads()
        info += f", TF intra-op threads={intra or 'auto'}, inter-op threads={inter or 'auto'}"
    return (
        f"{info}, Keras {keras.__version__} ({keras.backend.backend()} backend), "
        f"{platform.processor() or platform.machine()}"
    )


def run(name: str, data, args) -> dict:
    x, y, xv, yv, xt, yt = data
    keras.utils.set_random_seed(args.seed)
    dense = MODELS[name]()
    dense.compile(
        keras.optimizers.Adam(1e-3),
        keras.losses.SparseCategoricalCrossentropy(),
        metrics=["accuracy"],
    )
    start = time.perf_counter()
    dense.fit(x, y, batch_size=BATCH, epochs=args.epochs, verbose=0)
    train_s = time.perf_counter() - start
    dense_acc = float(dense.evaluate(xt, yt, batch_size=256, verbose=0)[1])
    print(
        f"\n== {name}: {dense.count_params():,} params, dense test accuracy "
        f"{dense_acc:.2%} ({args.epochs} epochs, {train_s:.0f} s)",
        flush=True,
    )

    learn_at = min(args.targets) if args.learn_at == "min" else tuple(args.targets)
    legr = LeGR(
        dense, train=(x, y), val=(xv, yv), learn_at=learn_at, seed=args.seed, batch_size=BATCH
    )
    print(
        f"{len(legr.ranking.groups)} prunable channel groups: "
        + ", ".join(f"{g.name} ({g.channels})" for g in legr.ranking.groups),
        flush=True,
    )
    start = time.perf_counter()
    legr.learn(
        generations=args.generations,
        tau=args.tau,
        population=args.population,
        sample=args.sample,
        progress=args.progress,
    )
    learn_s = time.perf_counter() - start
    evo = legr.evolution
    identity_loss = evo.history[0]  # generation 0 is the identity: plain global L2
    # equal cuts are scored once (LeGR caches them); a private detail, shown when present
    cache = getattr(getattr(legr, "_evaluator", None), "cache", None)
    distinct = f", {len(cache)} distinct cuts fine-tuned" if cache is not None else ""
    print(
        f"learn(): {args.generations} generations, population {args.population}, sample "
        f"{args.sample}, tau {args.tau}, learn_at {learn_at}: {learn_s:.1f} s "
        f"({learn_s / args.generations:.2f} s/generation{distinct}); fitness (val loss after tau "
        f"steps) L2 {identity_loss:.4f} -> best {evo.best.fitness:.4f} "
        f"(generation {evo.best.born})",
        flush=True,
    )

    start = time.perf_counter()
    rows, fronts = [], []
    for k in range(args.finetune_seeds):  # fine-tuning noise: median over seeds
        front = legr.pareto(
            args.targets,
            finetune_epochs=args.finetune_epochs,
            methods=("learned", "l2", "uniform"),
            progress=args.progress,
            print_fn=None,
            seed=args.seed + k,
        )
        fronts.append(front)
        for i, p in enumerate(front.points):
            model = front.models[(p.method, p.target)]
            test = float(
                model.evaluate(xt, yt, batch_size=256, verbose=0, return_dict=True)["accuracy"]
            )
            if k == 0:
                rows.append({**asdict(p), "test_accs": [], "val_accs": []})
            rows[i]["test_accs"].append(test)
            rows[i]["val_accs"].append(p.acc_after)
        front.models.clear()
    for r in rows:
        r["test_acc"] = float(np.median(r["test_accs"]))
        r["acc_after"] = float(np.median(r["val_accs"]))
    pareto_s = time.perf_counter() - start
    front = fronts[0]
    head = (
        f"{'method':<9}{'target':>7}{'MACs':>11}{'of dense':>9}{'params':>9}"
        f"{'val acc (cut)':>14}{'val acc (tuned)':>16}{'test acc (tuned)':>17}"
    )
    print(head + "\n" + "-" * len(head))
    o = front.original
    print(
        f"{'dense':<9}{1.0:>7.2f}{o.macs:>11,}{1.0:>9.1%}{o.params:>9,}{o.acc_before:>14.2%}"
        f"{'':>16}{dense_acc:>17.2%}"
    )
    for r in sorted(rows, key=lambda r: (-r["target"], r["method"] != "learned", r["method"])):
        print(
            f"{r['method']:<9}{r['target']:>7.2f}{r['macs']:>11,}{r['macs_ratio']:>9.1%}"
            f"{r['params']:>9,}{r['acc_before']:>14.2%}{r['acc_after']:>16.2%}"
            f"{r['test_acc']:>17.2%}"
        )
    verdicts = []
    for t in sorted(args.targets, reverse=True):
        at = {r["method"]: r for r in rows if r["target"] == t}
        acc = {m: r["test_acc"] for m, r in at.items()}
        wins = acc["learned"] >= acc["l2"] and acc["learned"] >= acc["uniform"]
        verdicts.append({"target": t, "learned_ge_both": wins})
        print(
            f"target {t:.2f}: test accuracy (MACs kept) learned {acc['learned']:.2%} "
            f"({at['learned']['macs_ratio']:.1%}), l2 {acc['l2']:.2%} "
            f"({at['l2']['macs_ratio']:.1%}), uniform {acc['uniform']:.2%} "
            f"({at['uniform']['macs_ratio']:.1%}) -> learned >= both baselines: "
            f"{'yes' if wins else 'NO'}"
        )
    print(
        f"(accuracies after fine-tuning: median over {args.finetune_seeds} fine-tuning "
        "seeds; each cut keeps at most the target's MACs, compare at the MACs shown)"
    )
    print(
        f"fine-tuning {len(rows)} models x {args.finetune_epochs} epochs x "
        f"{args.finetune_seeds} seeds: {pareto_s:.1f} s"
    )
    return {
        "model": name,
        "params": dense.count_params(),
        "dense_test_acc": dense_acc,
        "dense_val_acc": o.acc_before,
        "dense_macs": o.macs,
        "train_seconds": train_s,
        "learn_seconds": learn_s,
        "pareto_seconds": pareto_s,
        "learn_at": learn_at,
        "groups": {g.name: g.channels for g in legr.ranking.groups},
        "fitness_l2": identity_loss,
        "fitness_best": evo.best.fitness,
        "best_generation": evo.best.born,
        "history": evo.history,
        "alpha": evo.best.alpha,
        "kappa": evo.best.kappa,
        "points": rows,
        "verdicts": verdicts,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=8, help="dense training epochs")
    parser.add_argument("--generations", type=int, default=150)
    parser.add_argument("--tau", type=int, default=50, help="fine-tuning steps per candidate")
    parser.add_argument("--population", type=int, default=64)
    parser.add_argument("--sample", type=int, default=16)
    parser.add_argument(
        "--targets",
        type=float,
        nargs="+",
        default=None,
        help=f"FLOPs fractions to keep (default {TARGETS})",
    )
    parser.add_argument(
        "--learn-at",
        choices=("min", "all"),
        default="all",
        help="learn the ranking on the mean loss over all targets (all, "
        "the default, as the legr job does) or at the most aggressive "
        "target only (min, the paper's choice)",
    )
    parser.add_argument("--finetune-epochs", type=int, default=3)
    parser.add_argument(
        "--finetune-seeds",
        type=int,
        default=3,
        help="fine-tune every cut with this many seeds; report medians",
    )
    parser.add_argument("--out", default=None, help="also write the results as JSON here")
    parser.add_argument("--progress", action="store_true", help="show tqdm bars")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: " + ", ".join(f"{k}={v}" for k, v in QUICK.items()),
    )
    args = parser.parse_args()
    if args.quick:
        for k, v in QUICK.items():
            if k != "targets" or args.targets is None:
                setattr(args, k, v)
    args.targets = args.targets or TARGETS
    print(thread_info())
    print(
        f"seed {args.seed}, dense epochs {args.epochs}, targets {args.targets}, "
        f"fine-tuning {args.finetune_epochs} epochs, batch {BATCH}"
    )
    x, y, xt, yt = mnist_5k()
    data = (x[:-VAL], y[:-VAL], x[-VAL:], y[-VAL:], xt, yt)
    results = [run(name, data, args) for name in args.models]
    if args.out:
        config = {k: v for k, v in vars(args).items() if k not in ("out", "progress")}
        with open(args.out, "w") as f:
            json.dump(
                {"config": config, "threads": thread_info(), "results": results},
                f,
                indent=1,
                default=lambda v: v.tolist() if isinstance(v, np.ndarray) else float(v),
            )
        print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
