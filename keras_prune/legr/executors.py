"""Where LeGR's candidates are evaluated: in this process, or on a Ray cluster.

A candidate's fitness is a pure function of its transform: the cut, the fine-tuning
batches and the starting weights are all fixed by the LeGR settings. So any process that
rebuilds the same ``LeGR`` from the same model, data and settings scores a candidate
exactly as this one would, and the executor only decides where that happens.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence

import numpy as np

__all__ = ["EXECUTORS", "SerialExecutor", "RayExecutor", "make_executor"]

EXECUTORS = ("serial", "ray")

RAY_INSTALL = 'pip install "keras-prune[distributed]"  (or: pip install "ray>=2.40,<3")'

Candidates = Sequence[tuple[np.ndarray, np.ndarray]]


class SerialExecutor:
    """Evaluates candidates one after another in this process."""

    name = "serial"

    def __init__(self, legr):
        self.legr = legr
        self.num_workers = 1

    def evaluate(self, candidates: Candidates, tau: int) -> list[tuple[float, int]]:
        """``(fitness, pid)`` per candidate, in order."""
        return [(self.legr.fitness(a, k, tau), os.getpid()) for a, k in candidates]

    def close(self) -> None:
        pass


class _Worker:
    """One Ray actor: rebuilds the LeGR once from the shared spec, then scores candidates.

    Defined without the ``ray.remote`` decorator so this module imports without Ray."""

    def __init__(self, legr_class: type, spec: dict, threads: tuple[int, int]):
        import tensorflow as tf

        # before TensorFlow starts its thread pools
        tf.config.threading.set_intra_op_parallelism_threads(threads[0])
        tf.config.threading.set_inter_op_parallelism_threads(threads[1])
        self.legr = legr_class.from_spec(spec)

    def fitness(self, alpha, kappa, tau: int) -> tuple[float, int]:
        return self.legr.fitness(np.asarray(alpha), np.asarray(kappa), tau), os.getpid()

    def pid(self) -> int:
        return os.getpid()


def tensorflow_threads() -> tuple[int, int]:
    """This process's TensorFlow (intra-op, inter-op) thread counts, "auto" resolved to
    the cores it may run on, as TensorFlow resolves it."""
    import tensorflow as tf

    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    intra = tf.config.threading.get_intra_op_parallelism_threads() or cores
    inter = tf.config.threading.get_inter_op_parallelism_threads() or cores
    return intra, inter


def _import_ray():
    try:
        import ray
    except ImportError as e:
        raise ImportError(
            f"executor='ray' needs Ray, which is not installed. Install it with: {RAY_INSTALL}"
        ) from e
    return ray


class RayExecutor:
    """Evaluates candidates on ``num_workers`` Ray actors.

    The model, its weights and the data go into Ray's object store once (``ray.put``)
    and every actor builds its LeGR from that one copy, so a generation ships only the
    transforms (two floats per channel group) and gets back one loss each.

    ``ray.init()`` joins the cluster named by ``address`` or the ``RAY_ADDRESS``
    environment variable and otherwise starts a local one (with Ray's usage reporting
    off). A Ray that is already initialized is used as it is.

    Each actor asks Ray for ``cpus_per_worker`` CPUs and runs TensorFlow with
    ``threads`` threads. A fine-tune's floating-point sums are split over TensorFlow's
    threads, so its last bits, and after a few hundred steps the loss's fourth digit,
    depend on the thread count. By default the actors use this process's count, so a
    Ray run reproduces a serial run exactly (on the same kind of CPU). ``threads=1``
    runs faster on a node with more actors than cores, but then matches only other
    runs with one thread.

    ```python
    legr.learn(generations=400, tau=200, batch=8, executor="ray", num_workers=8)
    print(legr.worker_pids)   # the processes that did the evaluating
    ```
    """

    name = "ray"

    def __init__(
        self,
        legr,
        num_workers: int | None = None,
        address: str | None = None,
        cpus_per_worker: int = 1,
        threads: int | None = None,
    ):
        ray = _import_ray()
        if cpus_per_worker < 1:
            raise ValueError(f"cpus_per_worker must be >= 1, got {cpus_per_worker}.")
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be >= 1 (or None: this process's), got {threads}.")
        self.threads = tensorflow_threads() if threads is None else (int(threads), int(threads))
        spec = legr.to_spec()  # fails here, before any cluster starts, if it cannot
        self._ray, self._started, local = ray, False, False
        if not ray.is_initialized():
            address = address or os.environ.get("RAY_ADDRESS") or None
            kwargs = {"address": address, "include_dashboard": False, "log_to_driver": False}
            if address is None:
                # a local cluster for this run: report nothing to anyone
                os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
                local = True
            ray.init(**kwargs)
            self._started = True
        cpus = int(ray.cluster_resources().get("CPU", 1))
        if num_workers is None:
            num_workers = max(1, cpus // cpus_per_worker)
        if num_workers < 1:
            self.close()
            raise ValueError(f"num_workers must be >= 1, got {num_workers}.")
        self.num_workers = int(num_workers)
        need = self.num_workers * cpus_per_worker
        if need > cpus:
            msg = (
                f"{self.num_workers} Ray workers x {cpus_per_worker} CPU need {need} CPUs; "
                f"the cluster has {cpus}."
            )
            if local:  # nothing will ever add CPUs to the local cluster we started
                self.close()
                raise ValueError(f"{msg} Ask for at most {cpus // cpus_per_worker} workers.")
            warnings.warn(f"{msg} The others wait until the cluster grows.", stacklevel=2)
        if threads is None and self.threads[0] * self.num_workers > cpus:
            warnings.warn(
                f"Each of the {self.num_workers} Ray workers runs TensorFlow on "
                f"{self.threads[0]} threads (this process's count, so results match a "
                f"serial run): {self.threads[0] * self.num_workers} threads on {cpus} CPUs. "
                "For speed pass threads=1 (CLI: --worker-threads 1); results then match "
                "other 1-thread runs only.",
                stacklevel=2,
            )
        remote = ray.remote(num_cpus=cpus_per_worker)(_Worker)
        spec_ref = ray.put(spec)
        self.actors = [
            remote.remote(type(legr), spec_ref, self.threads) for _ in range(self.num_workers)
        ]
        try:
            # surface a worker that cannot rebuild the model now, not mid-run
            self.pids = ray.get([a.pid.remote() for a in self.actors])
        except Exception as e:
            self.close()
            raise RuntimeError(
                f"The Ray workers could not rebuild the LeGR run (is keras-prune, with the "
                f"same TensorFlow and Keras, installed on every node?): {e}"
            ) from e

    def evaluate(self, candidates: Candidates, tau: int) -> list[tuple[float, int]]:
        """``(fitness, pid)`` per candidate, in order; candidates are dealt to the
        actors round-robin, each actor working through its share in order."""
        refs = [
            self.actors[i % self.num_workers].fitness.remote(
                np.asarray(a, np.float64), np.asarray(k, np.float64), int(tau)
            )
            for i, (a, k) in enumerate(candidates)
        ]
        return [(float(loss), int(pid)) for loss, pid in self._ray.get(refs)]

    def close(self) -> None:
        for actor in getattr(self, "actors", []):
            self._ray.kill(actor)
        self.actors = []
        if getattr(self, "_started", False):
            self._ray.shutdown()
            self._started = False


def make_executor(executor, legr, num_workers: int | None = None, address: str | None = None):
    """An executor from its name ("serial" or "ray") or an object with
    ``evaluate(candidates, tau)`` and ``close()``, used as it is."""
    if hasattr(executor, "evaluate") and hasattr(executor, "close"):
        return executor
    if executor == "serial":
        if num_workers not in (None, 1):
            raise ValueError(
                f"num_workers={num_workers} needs executor='ray'; the serial executor "
                "evaluates in this process."
            )
        return SerialExecutor(legr)
    if executor == "ray":
        return RayExecutor(legr, num_workers=num_workers, address=address)
    raise ValueError(
        f"executor must be one of {EXECUTORS} (or an executor object), got {executor!r}."
    )
