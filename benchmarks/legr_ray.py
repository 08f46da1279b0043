"""LeGR's evolution in one process vs on Ray workers, side by side in one run.

The small ResNet of ``legr_pareto.py`` is trained for a few epochs on MNIST-5k, then
LeGR learns its ranking (``--generations`` candidates, ``--tau`` fine-tuning steps each,
at the three default FLOPs targets) three ways:

- ``serial K=1``: today's one-at-a-time evolution in this process (TensorFlow using every
  core);
- ``serial K=W``: the batched evolution (``batch=W``), still in this process;
- ``ray K=W``: the same batches on ``W`` Ray actors (``--workers``) on a local cluster
  this script starts, each running TensorFlow with this process's thread count (the
  default, so the results reproduce the serial run);
- ``ray K=W, 1 thread``: the same with one TensorFlow thread per actor (``threads=1``):
  no oversubscription when the actors outnumber the cores, but other last bits.

``serial K=W`` and ``ray K=W`` must give identical transforms and cuts (checked). The
Ray times are shown with and without starting the cluster and its actors (a fixed cost
a long run amortizes). The scaling estimate at the end extrapolates the measured cost of
one candidate on one 1-thread worker to a cluster: ``generations / workers`` rounds of
it.

    python benchmarks/legr_ray.py [--generations 32] [--tau 50] [--workers 2] [--seed 0]
"""

from __future__ import annotations

import argparse
import math
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from legr_pareto import BATCH, TARGETS, VAL, small_resnet, thread_info  # noqa: E402

from keras_prune.datasets import mnist_5k  # noqa: E402
from keras_prune.legr import LeGR  # noqa: E402
from keras_prune.legr.executors import RayExecutor  # noqa: E402


def learn(dense, data, args, batch, executor="serial"):
    x, y, xv, yv = data
    legr = LeGR(dense, train=(x, y), val=(xv, yv), learn_at=tuple(TARGETS), seed=args.seed)
    start = time.perf_counter()
    legr.learn(
        generations=args.generations, tau=args.tau, batch=batch, executor=executor, progress=False
    )
    return legr, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--generations", type=int, default=32)
    parser.add_argument("--tau", type=int, default=50)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3, help="dense training epochs")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    w = args.workers

    x, y, _, _ = mnist_5k()
    data = (x[:-VAL], y[:-VAL], x[-VAL:], y[-VAL:])
    keras.utils.set_random_seed(args.seed)
    dense = small_resnet()
    dense.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy())
    dense.fit(data[0], data[1], batch_size=BATCH, epochs=args.epochs, verbose=0)
    print(thread_info())
    print(
        f"small ResNet, {args.generations} generations, tau {args.tau}, learn_at "
        f"{TARGETS} ({len(TARGETS)} fine-tunes per candidate), {w} Ray workers\n",
        flush=True,
    )

    one, t_one = learn(dense, data, args, 1)
    print(f"serial K=1 done in {t_one:.1f} s", flush=True)
    serial, t_serial = learn(dense, data, args, w)
    print(f"serial K={w} done in {t_serial:.1f} s", flush=True)
    probe = LeGR(dense, train=data[:2], val=data[2:], learn_at=tuple(TARGETS), seed=args.seed)
    ray_runs = {}
    for threads in (None, 1):
        start = time.perf_counter()
        ray_exec = RayExecutor(probe, num_workers=w, threads=threads)
        t_start = time.perf_counter() - start
        try:
            ray_runs[threads] = (*learn(dense, data, args, w, executor=ray_exec), t_start)
        finally:
            ray_exec.close()
        print(
            f"ray K={w} with {ray_exec.threads[0]} TF threads each done in "
            f"{ray_runs[threads][1]:.1f} s (+{t_start:.1f} s to start)",
            flush=True,
        )
    ray, t_ray, t_start = ray_runs[None]
    ray1, t_ray1, t_start1 = ray_runs[1]
    print()

    same = (
        np.array_equal(serial.alpha, ray.alpha)
        and np.array_equal(serial.kappa, ray.kappa)
        and serial.evolution.population == ray.evolution.population
        and all(
            np.array_equal(np.concatenate(serial.masks(t)), np.concatenate(ray.masks(t)))
            for t in TARGETS
        )
    )
    g = args.generations
    rows = [
        ("serial K=1", t_one, t_one, one.evolution.best.fitness, 1),
        (f"serial K={w}", t_serial, t_serial, serial.evolution.best.fitness, 1),
        (f"ray K={w}", t_ray + t_start, t_ray, ray.evolution.best.fitness, len(ray.worker_pids)),
        (
            f"ray K={w}, 1 thread",
            t_ray1 + t_start1,
            t_ray1,
            ray1.evolution.best.fitness,
            len(ray1.worker_pids),
        ),
    ]
    head = f"{'run':<20}{'wall s':>9}{'learn s':>9}{'s/cand':>8}{'vs serial K=1':>15}"
    head += f"{'best loss':>11}{'processes':>11}"
    print(head + "\n" + "-" * len(head))
    for name, wall, learn_s, best, procs in rows:
        print(
            f"{name:<20}{wall:>9.1f}{learn_s:>9.1f}{learn_s / g:>8.2f}{t_one / wall:>14.2f}x"
            f"{best:>11.4f}{procs:>11}"
        )
    print(f"\nserial K={w} and ray K={w} identical (alpha, kappa, population, cuts): {same}")

    # one worker's cost per candidate, from the Ray run: each worker did g / w of them
    per_worker = t_ray1 / math.ceil(g / w)
    print(
        f"\nScaling estimate: one candidate costs {per_worker:.2f} s on a 1-CPU worker; "
        f"a run of G generations on N workers takes about G / N x {per_worker:.2f} s "
        f"plus ~{t_start:.0f} s to start:"
    )
    print(f"{'generations':>12}{'workers':>9}{'estimate':>11}")
    for gens in (400,):
        for n in (1, 2, 8, 32, 64):
            est = math.ceil(gens / n) * per_worker + (t_start if n > 1 else 0)
            print(f"{gens:>12}{n:>9}{est / 60:>9.1f} m")
    if not same:
        raise SystemExit("serial and Ray runs differ")


if __name__ == "__main__":
    main()
