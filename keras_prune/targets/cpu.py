"""Latency on this machine's CPU, as TensorFlow serves the model.

```python
cpu = kp.targets.CPU(batch=32)
views = kp.targets.layer_views(model)
print(cpu.estimate(views))          # {"latency_ms": ...} per batch of 32
print(cpu.measure(model))           # the whole model, timed the same way
```
"""

from __future__ import annotations

import json
import math
import statistics
import time
import warnings

import keras
import numpy as np

from keras_prune.targets.base import LayerView, Target, op_kind

__all__ = ["CPU"]

L = keras.layers

# Config keys that change nothing at inference (weights come from random initializers).
_IGNORED_KEYS = {"name", "trainable", "momentum", "activity_regularizer"}
_IGNORED_SUFFIXES = ("_initializer", "_regularizer", "_constraint")
# Layers the SavedModel export (kp.export.saved_model -> kp.surgery.fold_batchnorm) merges
# a following BatchNorm into; keep in step with surgery._FOLDS_BN.
_FOLDS_BN = (L.Dense, L.Conv1D, L.Conv2D, L.Conv3D, L.DepthwiseConv2D)
# Element-wise layers: timed together with the layer that feeds them (see CPU's docstring).
_ELEMENTWISE = ("bn", "activation", "add")
_MAX_TAIL = 4
# A layer is timed once and _K times in a row within one call; the difference is its cost.
_K = 4
# One timed repeat runs the call enough times to last at least this long, so that a
# sub-millisecond layer is not timed at the clock's and the scheduler's resolution.
_MIN_REPEAT_S = 0.002
_MAX_NUMBER = 200


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"CPU: {name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


# ---------------------------------------------------------------- the layers' neighbours
# Read from each layer's own Keras connectivity (its inbound and outbound nodes), so that a
# single LayerView is enough: the planner asks about one layer at a time.


def _called_once(layer) -> bool:
    return len(getattr(layer, "_inbound_nodes", None) or []) == 1


def _input_tensors(layer) -> list:
    return list(layer._inbound_nodes[0].input_tensors) if _called_once(layer) else []


def _producer(tensor):
    return tensor._keras_history[0]


def _sole_consumer(layer):
    """The one layer that reads ``layer``'s output, if both are called once."""
    if not _called_once(layer):
        return None
    nodes = getattr(layer, "_outbound_nodes", None) or []
    if len(nodes) != 1 or not _called_once(nodes[0].operation):
        return None
    return nodes[0].operation


def _bn_source(bn):
    """The layer ``bn`` is folded into by the SavedModel export, or ``None``.

    The rule of ``kp.surgery.fold_batchnorm``: a Dense or convolution without
    activation, called once, whose only consumer is this BatchNorm (of the last axis,
    called once).
    """
    if not isinstance(bn, L.BatchNormalization):
        return None
    tensors = _input_tensors(bn)
    if len(tensors) != 1:
        return None
    producer = _producer(tensors[0])
    if (
        isinstance(producer, _FOLDS_BN)
        and _sole_consumer(producer) is bn
        and keras.activations.serialize(producer.activation) in ("linear", None)
        and bn.axis in (-1, len(tensors[0].shape) - 1)
    ):
        return producer
    return None


def _feeds(layer, consumer) -> bool:
    """``consumer`` continues ``layer``'s chain: it is an element-wise layer, ``layer`` is
    its only producer in the chain's sense, and (for a merge) ``layer`` feeds its first
    input that comes from a layer with no other consumer."""
    if _sole_consumer(layer) is not consumer or op_kind(consumer) not in _ELEMENTWISE:
        return False
    tensors = _input_tensors(consumer)
    if op_kind(consumer) != "add":
        return len(tensors) == 1
    for t in tensors:
        p = _producer(t)
        if not isinstance(p, L.InputLayer) and _sole_consumer(p) is consumer:
            return p is layer
    return False


def _head(layer):
    """The first layer of the chain ``layer`` is timed in (``layer`` itself if it starts
    one): element-wise layers are timed with the layer that feeds them."""
    if op_kind(layer) not in _ELEMENTWISE:
        return layer
    feeder = next(
        (_producer(t) for t in _input_tensors(layer) if _feeds(_producer(t), layer)), None
    )
    if feeder is None:
        return layer
    head = _head(feeder)
    return head if any(t is layer for t in _tail(head)) else layer


def _tail(head) -> list:
    """The element-wise layers timed with ``head``, in order."""
    out, layer = [], head
    while len(out) < _MAX_TAIL:
        consumer = _sole_consumer(layer)
        if consumer is None or not _feeds(layer, consumer):
            break
        out.append(consumer)
        layer = consumer
    return out


def _key_config(config: dict) -> dict:
    return {
        k: v
        for k, v in config.items()
        if k not in _IGNORED_KEYS and not k.endswith(_IGNORED_SUFFIXES)
    }


def _layer_key(layer, config: dict) -> tuple:
    return (
        f"{type(layer).__module__}.{type(layer).__qualname__}",
        json.dumps(_key_config(config), sort_keys=True, default=str),
    )


class CPU(Target):
    """Latency (ms per batch of ``batch`` inputs) on this machine's CPU, run by TensorFlow
    as the SavedModel export (``kp.export.saved_model``) serves it.

    Each layer is measured on its own at its kept shapes: a fresh Keras layer from the
    layer's config (``filters``/``units`` set to the kept output channels; depthwise and
    element-wise layers take their channels from the input), random weights, random
    inputs of ``(batch, *in_shape)``, called through a compiled ``tf.function`` (no
    XLA). Its cost is what running it ``K`` times in a row adds over running it once
    within one call (medians of ``repeats`` timings after ``warmup`` calls, the two
    timed in turns): the fixed cost of calling into TensorFlow cancels out, and is
    added back once per model (``call_overhead_ms``). Results are cached by layer class,
    inference-relevant config and shapes, so a planner asking about the same layer at
    the same width again costs nothing (``table()`` lists the cache).

    What it models of the export and of TensorFlow's graph optimizer:

    - BatchNorm: the export merges each BatchNorm that follows a Dense or convolution
      without activation into that layer (``fold_bn=True``, the export's default), so
      such a BatchNorm costs 0 and its producer is measured with a bias.
    - Element-wise layers (activations, merges, unfolded BatchNorms) that directly
      follow another layer, as its only consumer, are timed together with it and cost 0
      themselves: TensorFlow fuses e.g. convolution + bias + add + ReLU into one kernel,
      so alone they would be timed as passes over memory that the served model never
      makes. The chain's cost is reported on its first layer.
    - Flatten/Reshape (op ``"reshape"``) and Dropout-like layers (``"identity"``) cost 0:
      a TensorFlow reshape only relabels the buffer and Keras leaves the no-ops out of
      the inference graph, so timing them would only measure noise.

    Sparsity does not count: TensorFlow's dense CPU kernels multiply zeros at full
    cost, so the cost depends on the kept shapes only and ``view.rows`` is ignored. Only
    whole channels removed (``kp.shrink``, ``kp.surgery.compact``) make the model faster.

    The costs are measurements, not a model: they vary from run to run and with the
    machine's load (other processes on the cores slow every layer), and they describe
    this machine only. ``measure(model)`` times a whole model the same way, to check an
    estimate at the end of a run.

    Args:
        batch: inputs per call; latency is per batch.
        repeats: timed repeats per layer (the median is kept).
        warmup: untimed calls before timing.
        threads: TensorFlow's intra-op threads; ``None`` leaves TensorFlow's setting. It
            can only change before TensorFlow starts its runtime (create the target
            first in the program).
        fold_bn: model the export's BatchNorm folding (as ``kp.export.saved_model``'s
            ``fold_bn``).

    Example:

    ```python
    cpu = kp.targets.CPU(batch=32)
    graph = kp.graph.build(model)
    alive = graph.element_keep({"conv1": mask})          # a candidate cut
    views = kp.targets.layer_views(model, graph, alive)
    cpu.estimate(views)                                  # {"latency_ms": ...}
    cpu.measure(kp.shrink(model, {"conv1": mask}))       # the real thing, for a check
    ```
    """

    name = "cpu"
    metrics = ("latency_ms",)
    sparse_pays = False  # zeros inside kept channels cost as much as any weight
    channel_step = 8  # AVX2's float lanes: a count like 12 can run slower than 16

    def __init__(
        self,
        batch: int = 32,
        repeats: int = 15,
        warmup: int = 3,
        threads: int | None = None,
        fold_bn: bool = True,
    ):
        self.batch = _check_int("batch", batch, 1)
        self.repeats = _check_int("repeats", repeats, 1)
        self.warmup = _check_int("warmup", warmup, 0)
        if threads is not None:
            threads = _check_int("threads", threads, 1)
            _set_threads(threads)
        self.threads = threads
        if not isinstance(fold_bn, (bool, np.bool_)):
            raise ValueError(f"CPU: fold_bn must be True or False, got {fold_bn!r}.")
        self.fold_bn = bool(fold_bn)
        self._cache: dict[tuple, float] = {}
        self._rows: dict[tuple, dict] = {}
        self._overhead: float | None = None
        self.measured = 0  # measurements made so far (cache misses)

    def get_config(self) -> dict:
        return {
            "batch": self.batch,
            "repeats": self.repeats,
            "warmup": self.warmup,
            "threads": self.threads,
            "fold_bn": self.fold_bn,
        }

    @classmethod
    def from_config(cls, config: dict) -> CPU:
        return cls(**config)

    # ------------------------------------------------------------------ costs

    def layer_costs(self, view: LayerView) -> dict[str, float]:
        """``{"latency_ms": ...}``: what ``view`` adds to a call of the whole model."""
        return {"latency_ms": self._layer_ms(view)}

    def estimate(
        self, views: list[LayerView], details: list[dict] | None = None
    ) -> dict[str, float]:
        """The candidate's latency: the per-call overhead plus each layer's cost."""
        details = details if details is not None else [self.layer_detail(v) for v in views]
        total = self.call_overhead_ms() + sum(d["costs"]["latency_ms"] for d in details)
        return {"latency_ms": total}

    def measure(self, model: keras.Model) -> float:
        """The latency (ms per batch) of a whole plain Keras model, timed like the layers
        (BatchNorms folded first as the export does, when ``fold_bn``)."""
        if not isinstance(model, keras.Model) or not model.built:
            raise ValueError(f"CPU.measure: expected a built Keras model, got {model!r}.")
        if self.fold_bn:
            from keras_prune.surgery import fold_batchnorm

            model, _ = fold_batchnorm(model)
        shapes = [tuple(int(d) for d in t.shape[1:]) for t in model.inputs]
        xs = self._inputs(shapes, [t.dtype for t in model.inputs])

        def call(*args):
            return model(list(args) if len(args) > 1 else args[0], training=False)

        import tensorflow as tf

        fn = tf.function(call, jit_compile=False, autograph=False).get_concrete_function(*xs)
        return self._timings([fn], [xs])[0]

    def call_overhead_ms(self) -> float:
        """The fixed cost of one call of a compiled model (ms), measured once: the part
        of a call of a one-op model that does not grow with more ops."""
        if self._overhead is None:
            import tensorflow as tf

            t1, tk, k = self._runs(tf.nn.relu, [(1,)], ["float32"])
            self._overhead = max(t1 - (tk - t1) / (k - 1), 0.0)
        return self._overhead

    def table(self) -> list[dict]:
        """Every measurement so far: the layers timed (class names, the first one's
        config), kept shapes and latency (ms)."""
        return [dict(row, latency_ms=self._cache[key]) for key, row in self._rows.items()]

    def clear(self) -> None:
        """Forget every measurement (e.g. after the machine's load changed)."""
        self._cache.clear()
        self._rows.clear()
        self._overhead = None

    # ------------------------------------------------------------------ internals

    def _fold(self, view: LayerView) -> bool:
        # kp.surgery.fold_batchnorm folds nothing in a model with nested models
        return self.fold_bn and "/" not in view.path

    def _layer_ms(self, view: LayerView) -> float:
        if view.op in ("identity", "reshape"):
            return 0.0
        layer, fold = view.layer, self._fold(view)
        if view.op == "bn" and fold and _bn_source(layer) is not None:
            return 0.0
        if _head(layer) is not layer:
            return 0.0  # timed with the layer that feeds it
        config = layer.get_config()
        for k in ("filters", "units"):
            if k in config:
                config[k] = int(view.out_shape[-1])
        tail = [t for t in _tail(layer) if not (fold and _bn_source(t) is layer)]
        if fold and "use_bias" in config and any(_bn_source(t) is layer for t in _tail(layer)):
            config["use_bias"] = True
        key = (
            _layer_key(layer, config),
            tuple(_layer_key(t, t.get_config()) for t in tail),
            tuple(tuple(s) for s in view.in_shapes),
            tuple(view.out_shape),
        )
        if key not in self._cache:
            self._cache[key] = self._measure_chain(layer, config, tail, view)
            self._rows[key] = {
                "layers": [type(la).__name__ for la in (layer, *tail)],
                "in_shapes": key[2],
                "out_shape": key[3],
                "config": _key_config(config),
            }
            self.measured += 1
        return self._cache[key]

    def _measure_chain(self, layer, config: dict, tail: list, view: LayerView) -> float:
        """The cost of ``layer`` (rebuilt from ``config``) followed by fresh copies of the
        ``tail`` layers, at the view's kept shapes."""
        dtype = layer.compute_dtype
        shapes = [tuple(s) for s in view.in_shapes]
        n = len(shapes)
        # a merge in the tail takes the chain's tensor and its other inputs (random here)
        others = [len(_input_tensors(t)) - 1 if op_kind(t) == "add" else 0 for t in tail]
        shapes += [tuple(view.out_shape)] * sum(others)
        try:
            first = type(layer).from_config({**config, "name": f"cpu_probe_{layer.name}"})
            rest = [
                type(t).from_config({**t.get_config(), "name": f"cpu_probe_{t.name}"}) for t in tail
            ]

            def call(*xs):
                y = first(xs[0] if n == 1 else list(xs[:n]), training=False)
                i = n
                for t, m in zip(rest, others, strict=True):
                    if m:
                        y, i = t([y, *xs[i : i + m]]), i + m
                    else:
                        y = t(y, training=False)
                return y

            t1, tk, k = self._runs(call, shapes, [dtype] * len(shapes))
        except Exception as e:  # a layer that cannot be rebuilt or run at these shapes
            if tail:
                return self._measure_chain(layer, config, [], view)
            return self._scaled_original(layer, view, e)
        return max((tk - t1) / (k - 1), 0.0)

    def _scaled_original(self, layer, view: LayerView, error: Exception) -> float:
        """The layer itself at its own shapes, scaled by elements to the kept ones."""
        node = layer._inbound_nodes[0]
        full = [tuple(int(d) for d in t.shape[1:]) for t in node.input_tensors]
        out = tuple(int(d) for d in node.output_tensors[0].shape[1:])
        warnings.warn(
            f"CPU: could not time '{layer.name}' ({type(layer).__name__}) at "
            f"{list(view.in_shapes)} ({error}); timing it at its own shapes {full} and "
            "scaling by elements.",
            stacklevel=4,
        )

        def call(*xs):
            return layer(xs[0] if len(xs) == 1 else list(xs), training=False)

        t1, tk, k = self._runs(call, full, [layer.compute_dtype] * len(full))
        ms = max((tk - t1) / (k - 1), 0.0)
        kept = sum(math.prod(s) for s in view.in_shapes) + math.prod(view.out_shape)
        whole = sum(math.prod(s) for s in full) + math.prod(out)
        return ms * kept / whole if whole else ms

    def _inputs(self, shapes, dtypes) -> list:
        import tensorflow as tf

        rng = np.random.default_rng(0)
        return [
            tf.constant(rng.normal(size=(self.batch, *s)).astype(np.dtype(d)))
            for s, d in zip(shapes, dtypes, strict=True)
        ]

    def _timings(self, fns: list, args: list) -> list[float]:
        """ms per call of each ``fns[i](*args[i])``: the median of ``repeats`` timings,
        the functions timed in turns so that a change of the machine's load hits all
        alike."""
        for fn, xs in zip(fns, args, strict=True):
            for _ in range(self.warmup):
                fn(*xs)
        numbers = []
        for fn, xs in zip(fns, args, strict=True):
            start = time.perf_counter()
            fn(*xs)
            once = time.perf_counter() - start
            numbers.append(max(1, min(_MAX_NUMBER, math.ceil(_MIN_REPEAT_S / max(once, 1e-7)))))
        times: list[list[float]] = [[] for _ in fns]
        for _ in range(self.repeats):
            for fn, xs, number, out in zip(fns, args, numbers, times, strict=True):
                start = time.perf_counter()
                for _ in range(number):
                    fn(*xs)
                out.append((time.perf_counter() - start) / number)
        return [1000.0 * statistics.median(t) for t in times]

    def _compiled(self, call, xs: list, k: int):
        """``call`` run ``k`` times in a row on the inputs ``xs``, as one concrete graph
        function.

        Each run waits for the one before (a control dependency, which also keeps
        TensorFlow from merging the identical runs or running them side by side) and
        returns the first example of its outputs (else TensorFlow would prune all but the
        last run, and keeping every full output alive to the end would time fresh memory
        that a model's call reuses). The inputs are the same for every run: in a model a
        layer reads what the layer before it has just written, from the cache.
        """
        import tensorflow as tf

        first = self.batch > 1

        def chain(*args):
            outs: list = []
            for _ in range(k):
                with tf.control_dependencies(outs[-1:]):
                    outs += [y[:1] if first else y for y in tf.nest.flatten(call(*args))]
            return outs

        return tf.function(chain, jit_compile=False, autograph=False).get_concrete_function(*xs)

    def _runs(self, call, shapes, dtypes) -> tuple[float, float, int]:
        """ms per call of a function running ``call`` once, of one running it ``k``
        times in a row, and ``k``."""
        xs = self._inputs(shapes, dtypes)
        call(*xs)  # builds fresh layers' weights outside the traced functions
        t1, tk = self._timings(
            [self._compiled(call, xs, 1), self._compiled(call, xs, _K)], [xs, xs]
        )
        return t1, tk, _K


def _set_threads(threads: int) -> None:
    import tensorflow as tf

    if tf.config.threading.get_intra_op_parallelism_threads() == threads:
        return
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
    except RuntimeError as e:
        raise RuntimeError(
            f"CPU: threads={threads} cannot be applied: TensorFlow's runtime has already "
            "started (create the CPU target before building any model, or leave "
            "threads=None)."
        ) from e
