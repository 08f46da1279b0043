"""prune / strip / summary: the model-level entry points of weight pruning."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import keras
import numpy as np

from keras_prune import granularity as gr
from keras_prune import schedules as sch
from keras_prune.activation_thresholds import activation_masks as _masks_of
from keras_prune.activation_thresholds import calibrate_thresholds, with_thresholds
from keras_prune.layers.prunable import PRUNABLE_CLASSES, kernel_specs
from keras_prune.layers.prune_wrapper import PruneWrapper
from keras_prune.model_utils import all_layers, check_model, clone_with_weights, fresh

__all__ = ["prune", "strip", "summary", "wrappers", "LayerSummary"]


def wrappers(model) -> list[PruneWrapper]:
    """Every PruneWrapper of a model, nested models included, in layer order."""
    return [layer for layer in all_layers(model) if isinstance(layer, PruneWrapper)]


def _make_filter(layers, model) -> Callable[[keras.layers.Layer], bool]:
    """The ``layers=`` argument of ``prune`` as a predicate; unknown names are an error."""
    if layers is None:
        return lambda layer: True
    if callable(layers) and not isinstance(layers, type):
        return layers
    items = [layers] if isinstance(layers, (str, type)) else list(layers)
    names = {x for x in items if isinstance(x, str)}
    classes = tuple(x for x in items if isinstance(x, type))
    bad = [x for x in items if not isinstance(x, (str, type))]
    if bad:
        raise TypeError(f"`layers` must be layer names, layer classes or a predicate; got {bad!r}.")
    missing = sorted(names - {layer.name for layer in all_layers(model)})
    if missing:
        raise ValueError(f"`layers` names {missing} that are not in model '{model.name}'.")
    return lambda layer: layer.name in names or (bool(classes) and isinstance(layer, classes))


def prune(model: keras.Model, schedule, granularity="unstructured", layers=None) -> keras.Model:
    """A new model whose prunable layers are wrapped in ``PruneWrapper``.

    Prunable layers are Dense, Conv1D, Conv2D, DepthwiseConv2D, SeparableConv2D (both
    kernels) and Conv2DTranspose; biases are not pruned (except by ``Channels``, which
    removes a channel whole). Nested models are pruned too. The input model is never
    modified; the result is not compiled.

    Args:
        model: a built Sequential or functional Keras 3 model.
        schedule: a ``kp.schedules`` schedule, or any ``step -> (should_prune, sparsity)``
            callable (tfmot's schedules work too).
        granularity: a ``kp.granularity`` object or name.
        layers: which prunable layers to wrap: names, classes, a mix of both, or a
            predicate ``layer -> bool``. ``None`` wraps every prunable layer.

    Example:

    ```python
    pruned = kp.prune(model,
                      schedule=kp.schedules.PolynomialDecay(0.0, 0.9, 0, 2000, frequency=100),
                      granularity=kp.granularity.SIMDGroups(width=4))
    pruned.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    pruned.fit(x, y, callbacks=[kp.callbacks.PruningScheduler()])
    ```
    """
    check_model(model, "kp.prune")
    already = wrappers(model)
    if already:
        raise ValueError(
            f"Model '{model.name}' is already pruned (PruneWrapper layers: "
            f"{', '.join(w.name for w in already)}). Call kp.strip(model) first to prune again "
            "with new settings."
        )
    schedule = _to_native_schedule(sch.get(schedule))
    granularity = gr.get(granularity)
    keep = _make_filter(layers, model)
    prunable = [layer for layer in all_layers(model) if kernel_specs(layer)]
    if not prunable:
        kinds = sorted({type(layer).__name__ for layer in all_layers(model)})
        raise ValueError(
            f"Model '{model.name}' has no prunable layers (it has {', '.join(kinds)}). "
            f"Prunable: {', '.join(c.__name__ for c in PRUNABLE_CLASSES)}."
        )
    chosen = {id(layer) for layer in prunable if keep(layer)}
    if not chosen:
        raise ValueError(
            f"`layers={layers!r}` matches none of the prunable layers of '{model.name}': "
            f"{', '.join(f'{la.name} ({type(la).__name__})' for la in prunable)}."
        )

    def clone(layer):
        if id(layer) in chosen:
            return PruneWrapper(fresh(layer), schedule=schedule, granularity=granularity)
        return fresh(layer)

    return clone_with_weights(model, clone)


def _to_native_schedule(schedule):
    """tfmot's two schedules become ours (same semantics) so models save without tfmot."""
    mod = type(schedule).__module__ or ""
    name = type(schedule).__name__
    if mod.startswith("tensorflow_model_optimization") and name in (
        "ConstantSparsity",
        "PolynomialDecay",
    ):
        return getattr(sch, name).from_config(schedule.get_config()["config"])
    return schedule


def strip(
    model: keras.Model, representative_data=None, activation_masks: str = "threshold"
) -> keras.Model:
    """A plain Keras model: PruneWrappers replaced by their layers with the zeros baked in,
    and activation masks in their export form.

    Args:
        model: a built Sequential or functional model.
        representative_data: inputs on which each ``ActivationMask`` is turned into an
            ``ActivationThreshold`` keeping, on average, its winner rate (see
            ``kp.integral.calibrate_thresholds``). Needed only if the model has masks.
        activation_masks: ``"threshold"`` (default; int8 TFLite / TFLM can run it) or
            ``"keep"`` (dynamic top-k masks stay, e.g. for a TensorFlow server).

    The result has the original layer names and classes. A model without wrappers or
    masks comes back as an equal copy. The input model is never modified.

    Example: ``plain = kp.strip(pruned); plain.save("pruned.keras")``.
    """
    check_model(model, "kp.strip")
    if activation_masks not in ("threshold", "keep"):
        raise ValueError(
            f"activation_masks must be 'threshold' or 'keep', got {activation_masks!r}."
        )
    thresholds = {}
    if activation_masks == "threshold" and _masks_of(model):
        if representative_data is None:
            names = ", ".join(m.name for m in _masks_of(model))
            raise ValueError(
                f"Model '{model.name}' has activation masks ({names}). Pass "
                "representative_data=<a few hundred inputs> to turn them into calibrated "
                "thresholds, or activation_masks='keep' to keep the top-k masks."
            )
        thresholds = calibrate_thresholds(model, representative_data)
    return with_thresholds(model, thresholds, unwrap=True)


@dataclass
class LayerSummary:
    """One row of ``kp.summary``."""

    name: str
    kind: str
    params: int
    nonzeros: int
    pattern: str
    pattern_ok: bool
    dense_bytes: int
    sparse_bytes: int

    @property
    def sparsity(self) -> float:
        return 1.0 - self.nonzeros / self.params if self.params else 0.0


_DETECT = (gr.Channels(), gr.SIMDGroups(8), gr.SIMDGroups(4), gr.NofM(2, 4))


def _detect(kernels, layouts) -> gr.Granularity:
    """The coarsest granularity whose pattern every kernel of a plain layer follows."""
    for g in _DETECT:
        if all(g.check_pattern(k, lay)[0] for k, lay in zip(kernels, layouts, strict=True)):
            return g
    return gr.Unstructured()


def summary(model: keras.Model, granularity=None, print_fn=None) -> list[LayerSummary]:
    """Per-layer parameters, non-zeros, sparsity, pattern check and int8 sizes.

    Works on pruned models (the masks are applied) and on plain ones. The pattern column
    checks the layer's granularity (the wrapper's, else ``granularity``, else the coarsest
    one the zeros follow), e.g. "groups of 4 aligned: yes". Sizes are int8 bytes of the
    prunable kernels: dense, and in the granularity's sparse form (values + indices).

    Returns the rows; prints a table with ``print_fn`` (default ``print``).
    """
    check_model(model, "kp.summary")
    rows = []
    for layer in all_layers(model):
        if isinstance(layer, PruneWrapper):
            kernels = layer.masked_kernels()
            layouts, g = layer.layouts, layer.granularity
        elif kernel_specs(layer):
            specs = kernel_specs(layer)
            kernels = [keras.ops.convert_to_numpy(getattr(layer, s.attr)) for s in specs]
            layouts = [s.layout for s in specs]
            g = gr.get(granularity) if granularity is not None else _detect(kernels, layouts)
        else:
            continue
        params = sum(k.size for k in kernels)
        nonzeros = sum(int(np.count_nonzero(k)) for k in kernels)
        checks = [g.check_pattern(k, lay) for k, lay in zip(kernels, layouts, strict=True)]
        ok = all(c[0] for c in checks)
        label = checks[-1][1] if ok else next(c[1] for c in checks if not c[0])
        if nonzeros == params:
            label, ok = "dense", True
        elif ok:
            label += ": yes"
        sparse = sum(g.sparse_bytes(k, lay) for k, lay in zip(kernels, layouts, strict=True))
        rows.append(
            LayerSummary(
                layer.name,
                type(layer.layer if isinstance(layer, PruneWrapper) else layer).__name__,
                params,
                nonzeros,
                label,
                ok,
                params,
                params if nonzeros == params else sparse,
            )
        )
    _print_summary(model, rows, print_fn or print)
    return rows


def _print_summary(model, rows: list[LayerSummary], print_fn) -> None:
    head = (
        f"{'layer':<22}{'type':<17}{'params':>10}{'non-zero':>10}{'sparsity':>10}  "
        f"{'pattern':<30}{'int8 dense':>11}{'int8 sparse':>12}"
    )
    lines = [f"keras-prune summary of '{model.name}'", head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r.name[:21]:<22}{r.kind[:16]:<17}{r.params:>10,}{r.nonzeros:>10,}"
            f"{r.sparsity:>9.1%}  {r.pattern[:29]:<30}{r.dense_bytes:>11,}"
            f"{r.sparse_bytes:>12,}"
        )
    total = sum(r.params for r in rows)
    nz = sum(r.nonzeros for r in rows)
    dense = sum(r.dense_bytes for r in rows)
    sparse = sum(r.sparse_bytes for r in rows)
    lines.append("-" * len(head))
    lines.append(
        f"{'total':<39}{total:>10,}{nz:>10,}{(1 - nz / total if total else 0):>9.1%}  "
        f"{'':<30}{dense:>11,}{sparse:>12,}"
    )
    sparse = [r for r in rows if r.nonzeros < r.params]
    if sparse and not all(r.pattern.startswith("whole channels: yes") for r in sparse):
        kind = (
            "unstructured"
            if all(r.pattern.startswith(("unstructured", "dense")) for r in rows)
            else "not whole channels"
        )
        lines.append(
            f"note: these zeros are {kind}: they shrink a compressed file but give no "
            "speedup on a CPU/GPU server (TensorFlow runs the layers dense), and unstructured "
            "zeros rarely speed up inference anywhere. For server speed prune whole channels "
            "(granularity=Channels()) or shrink with kp.legr.LeGR; for microcontrollers use "
            "SIMDGroups."
        )
    print_fn("\n".join(lines))
