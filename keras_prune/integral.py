"""Integral Pruning: activation masks, per-layer sensitivity, winner-rate choice, thresholds.

The flow (Yang et al., "Integral Pruning"): prune weights first, then keep only the
strongest activations of each input with per-layer winner rates chosen by a sensitivity
scan, then fine-tune.

```python
rates = kp.integral.choose_winner_rates(pruned, x_val, y_val, max_loss=0.005)
masked = kp.add_activation_masks(pruned, winner_rate=rates)
masked.compile(...); masked.fit(x, y, callbacks=[kp.callbacks.PruningScheduler()])
plain = kp.strip(masked, representative_data=x[:500])     # masks -> calibrated thresholds
kp.count_macs(plain, x_val)                                # dense / weights / weights x acts
```
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from keras_prune import io
from keras_prune._data import check_data as _check_data
from keras_prune._data import predict as _predict
from keras_prune.activation_thresholds import activation_masks, calibrate_thresholds
from keras_prune.activation_thresholds import with_thresholds as with_thresholds
from keras_prune.layers.activation_mask import (
    ActivationMask,
    ActivationThreshold,
    check_winner_rate,
)
from keras_prune.layers.prune_wrapper import PruneWrapper
from keras_prune.model_utils import LayerGraph, all_layers, check_model, clone_with_weights, fresh
from keras_prune.pruning import strip

__all__ = [
    "add_activation_masks",
    "sensitivity_scan",
    "choose_winner_rates",
    "calibrate_thresholds",
    "check_thresholds_int8",
    "mask_sites",
    "SensitivityScan",
    "WinnerRates",
    "ThresholdCheck",
    "DEFAULT_RATES",
]

DEFAULT_RATES = (0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.7)

RELU_FAMILY = ("relu", "relu6")
# activations whose outputs are never negative: a mask may follow them if asked for by name
NONNEGATIVE = RELU_FAMILY + ("sigmoid", "hard_sigmoid", "softmax", "softplus", "exponential")

L = keras.layers
# layers that move or select values without making any negative: a mask can sit after them
PASS_THROUGH = (
    L.MaxPooling1D,
    L.MaxPooling2D,
    L.MaxPooling3D,
    L.AveragePooling1D,
    L.AveragePooling2D,
    L.AveragePooling3D,
    L.GlobalMaxPooling1D,
    L.GlobalMaxPooling2D,
    L.GlobalMaxPooling3D,
    L.GlobalAveragePooling1D,
    L.GlobalAveragePooling2D,
    L.GlobalAveragePooling3D,
    L.Flatten,
    L.Reshape,
    L.Permute,
    L.Dropout,
    L.SpatialDropout1D,
    L.SpatialDropout2D,
    L.SpatialDropout3D,
    L.ZeroPadding1D,
    L.ZeroPadding2D,
    L.ZeroPadding3D,
    L.Cropping1D,
    L.Cropping2D,
    L.Cropping3D,
    ActivationMask,
    ActivationThreshold,
)


# ---------------------------------------------------------------------- where masks go
def _activation(layer) -> str | None:
    """The name of the activation applied to ``layer``'s output, or None if it has none."""
    inner = layer.layer if isinstance(layer, PruneWrapper) else layer
    if isinstance(inner, L.ReLU):
        if float(inner.negative_slope) == 0.0 and float(inner.threshold) >= 0.0:
            return "relu6" if inner.max_value is not None else "relu"
        return f"ReLU(negative_slope={inner.negative_slope})"
    if isinstance(inner, (L.LeakyReLU, L.PReLU, L.ELU)):
        return type(inner).__name__
    act = getattr(inner, "activation", None)
    if act is None:
        return None
    name = keras.activations.serialize(act) if callable(act) else act
    return name if isinstance(name, str) else getattr(act, "__name__", str(act))


def _nonnegative(layer, graph: LayerGraph, relu_only: bool) -> bool:
    """Whether ``layer``'s output is >= 0 (a ReLU-family output, or one moved unchanged)."""
    if isinstance(layer, PASS_THROUGH):
        producers = graph.producers(layer)
        return bool(producers) and all(_nonnegative(p, graph, relu_only) for p in producers)
    allowed = RELU_FAMILY if relu_only else NONNEGATIVE
    return _activation(layer) in allowed


def _move_to_consumer(layer, graph: LayerGraph):
    """Follow single-consumer pass-through layers so the mask sits right before the layer
    that multiplies the activations (after pooling, the consumer's zeros are the pooled
    ones, so that is where the winner rate must be measured)."""
    while True:
        consumers = graph.consumers(layer)
        if len(consumers) != 1 or graph.calls[id(layer)] != 1:
            return layer
        nxt = consumers[0]
        if not isinstance(nxt, PASS_THROUGH) or isinstance(
            nxt, (ActivationMask, ActivationThreshold)
        ):
            return layer
        if len(graph.producers(nxt)) != 1 or graph.calls[id(nxt)] != 1:
            return layer
        layer = nxt


def mask_sites(model: keras.Model) -> list[str]:
    """Where ``add_activation_masks`` puts masks by default, as layer names.

    One site per ReLU-family output (a fused ``activation="relu"``/``"relu6"``, a ReLU
    layer, or an ``Activation`` layer), moved past the pooling/flatten/dropout/padding
    layers that follow it, so the mask sits right before the layer that consumes it.
    Outputs of the model itself are not masked. Only the top-level graph is searched.
    """
    check_model(model, "kp.integral.mask_sites")
    graph = LayerGraph(model)
    sites = []
    for layer in graph.layers:
        if isinstance(layer, (keras.Model, ActivationMask, ActivationThreshold)):
            continue
        if _activation(layer) in RELU_FAMILY:
            site = _move_to_consumer(layer, graph)
            if graph.consumers(site) and site.name not in sites:
                sites.append(site.name)
    return sites


def _resolve_sites(model, winner_rate, after) -> dict[str, float]:
    """{layer name: rate} from the two ways of saying where masks go; validates both."""
    graph = LayerGraph(model)
    if isinstance(winner_rate, dict):
        if after is not None:
            raise ValueError(
                "Give the mask positions once: either winner_rate={layer_name: rate} or "
                "after=[...] with one winner_rate, not both."
            )
        rates = {
            name: check_winner_rate(r, f"winner_rate[{name!r}]") for name, r in winner_rate.items()
        }
        names = list(rates)
    else:
        rate = check_winner_rate(winner_rate)
        if after is None:
            names = mask_sites(model)
            if not names:
                raise ValueError(
                    f"Model '{model.name}' has no ReLU-family activation whose output feeds "
                    "another layer, so there is nowhere to put a mask. Name the layers with "
                    "after=[...]."
                )
        else:
            names = [after] if isinstance(after, str) else list(after)
        rates = dict.fromkeys(names, rate)
    for name in names:
        layer = graph.by_name(name)
        if layer is None:
            nested = [
                m.name
                for m in graph.layers
                if isinstance(m, keras.Model) and any(la.name == name for la in m.layers)
            ]
            if nested:
                raise ValueError(
                    f"Layer '{name}' is inside the nested model '{nested[0]}'; activation "
                    "masks go in the top-level graph only."
                )
            raise ValueError(
                f"Model '{model.name}' has no layer named '{name}'. Its layers: "
                f"{', '.join(la.name for la in graph.layers)}."
            )
        if isinstance(layer, (ActivationMask, ActivationThreshold)) or any(
            isinstance(c, ActivationMask) for c in graph.consumers(layer)
        ):
            raise ValueError(f"Layer '{name}' already has an activation mask.")
        if not _nonnegative(layer, graph, relu_only=False):
            act = _activation(layer) or "none"
            follow = [
                c.name for c in graph.consumers(layer) if _nonnegative(c, graph, relu_only=True)
            ]
            hint = (
                f" Put the mask after its ReLU instead: after={follow!r}."
                if follow
                else " Put it after a ReLU-family activation (after=[...]), or add one."
            )
            raise ValueError(
                f"Layer '{name}' ({type(layer).__name__}, activation {act!r}) can output "
                "negative values, so keeping the top activations by value would drop strong "
                f"negative ones and keep weak ones.{hint}"
            )
        if not graph.consumers(layer) and graph.calls[id(layer)] == 1 and layer in graph.outputs:
            raise ValueError(
                f"Layer '{name}' is an output of model '{model.name}'; masking it would "
                "change the model's answers rather than the work inside it."
            )
    return rates


def add_activation_masks(
    model: keras.Model, winner_rate: float | dict = 0.3, after: str | Sequence[str] | None = None
) -> keras.Model:
    """A new model with an ``ActivationMask`` after each chosen layer.

    Args:
        model: a built Sequential or functional model, plain or with ``PruneWrapper``
            layers (masks state and schedule step are kept, so weight pruning goes on).
        winner_rate: one rate in (0, 1] for every mask, or ``{layer_name: rate}`` (then
            the names say where masks go), e.g. the result of ``choose_winner_rates``.
        after: names of the layers to put masks after. ``None``: every ReLU-family
            output, moved past any pooling/flatten/dropout/padding that follows it (see
            ``mask_sites``). A named layer must have non-negative outputs.

    The input model is not modified; the result is not compiled. Masks are named
    ``<layer>_mask``.

    Example:

    ```python
    masked = kp.add_activation_masks(pruned, winner_rate={"pool1": 0.3, "fc1": 0.2})
    masked.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    masked.fit(x, y, epochs=5, callbacks=[kp.callbacks.PruningScheduler()])
    ```
    """
    check_model(model, "kp.add_activation_masks")
    rates = _resolve_sites(model, winner_rate, after)
    taken = {la.name for la in all_layers(model)}

    def mask_name(site: str) -> str:
        name, i = f"{site}_mask", 1
        while name in taken:
            name, i = f"{site}_mask_{i}", i + 1
        taken.add(name)
        return name

    names = {site: mask_name(site) for site in rates}

    def make(site):
        return ActivationMask(rates[site], name=names[site])

    return clone_with_weights(model, fresh, after={site: make for site in rates})


# ---------------------------------------------------------------------- metrics
def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Top-1 accuracy for integer labels or one-hot targets (a 1-unit output: > 0.5)."""
    y_pred = np.asarray(y_pred)
    y_true = np.asarray(y_true)
    if y_pred.shape[-1] == 1:
        pred = (y_pred[..., 0] > 0.5).astype(np.int64)
    else:
        pred = y_pred.argmax(-1)
    if y_true.ndim == y_pred.ndim and y_true.shape[-1] == y_pred.shape[-1] > 1:
        y_true = y_true.argmax(-1)
    return float(np.mean(pred == y_true.reshape(pred.shape)))


def _evaluate(model, x, y, metric, batch_size) -> float:
    out = _predict(model, x, batch_size)
    return float(metric(y, out[0] if len(out) == 1 else out))


def _bar(total: int, desc: str, progress: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not progress, leave=False)


# ---------------------------------------------------------------------- sensitivity
@dataclass
class SensitivityScan:
    """Accuracy at each winner rate, one masked layer at a time (the others unmasked)."""

    model: str
    baseline: float
    rates: tuple
    accuracy: dict = field(default_factory=dict)  # site -> [accuracy per rate]
    consumers: dict = field(default_factory=dict)  # site -> the layer(s) it feeds

    def lowest_rate(self, site: str, max_loss: float) -> float:
        """The lowest scanned rate of ``site`` within ``max_loss`` of the baseline (1.0
        if none is)."""
        ok = [
            r
            for r, a in zip(self.rates, self.accuracy[site], strict=True)
            if a >= self.baseline - max_loss - 1e-12
        ]
        return min(ok) if ok else 1.0

    def table(self) -> str:
        head = f"{'mask after':<16}{'feeds':<14}" + "".join(f"{r:>8.0%}" for r in self.rates)
        lines = [
            f"Sensitivity of '{self.model}' (accuracy; unmasked {self.baseline:.2%})",
            head,
            "-" * len(head),
        ]
        for site, accs in self.accuracy.items():
            lines.append(
                f"{site[:15]:<16}{self.consumers.get(site, '')[:13]:<14}"
                + "".join(f"{a:>8.2%}" for a in accs)
            )
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "baseline": self.baseline,
            "rates": list(self.rates),
            "accuracy": self.accuracy,
            "consumers": self.consumers,
        }

    def plot(
        self, path: str | os.PathLike, max_loss: float | None = None, overwrite: bool = True
    ) -> Path:
        """Accuracy vs winner rate, one line per masked layer (PNG, written atomically)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4.2))
        for site, accs in self.accuracy.items():
            ax.plot(
                [100 * r for r in self.rates],
                [100 * a for a in accs],
                marker="o",
                ms=4,
                label=f"after {site} (feeds {self.consumers.get(site, '?')})",
            )
        ax.axhline(
            100 * self.baseline,
            color="black",
            lw=0.8,
            ls=":",
            label=f"no masks ({100 * self.baseline:.2f}%)",
        )
        if max_loss:
            ax.axhspan(
                100 * (self.baseline - max_loss),
                100 * self.baseline,
                color="green",
                alpha=0.12,
                label=f"within {100 * max_loss:.1f} points",
            )
        ax.set_xlabel("winner rate (% of activations kept per input)")
        ax.set_ylabel("accuracy (%)")
        ax.set_title(f"Activation sensitivity of {self.model}, one layer masked at a time")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
        return io.save_figure(fig, path, overwrite=overwrite)


def _scan_model(model, sites) -> tuple[keras.Model, dict[str, ActivationMask]]:
    """One copy of ``model`` with a (switched-off) mask at every site."""
    masked = add_activation_masks(model, winner_rate=dict.fromkeys(sites, 1.0))
    graph = LayerGraph(masked)
    masks = {}
    for m in activation_masks(masked):
        masks[graph.producers(m)[0].name] = m
    return masked, masks


def _sites_for(model, layers) -> list[str]:
    if layers is None:
        sites = mask_sites(model)
        if not sites:
            raise ValueError(
                f"Model '{model.name}' has no ReLU-family activation to mask; "
                "name the layers with layers=[...]."
            )
        return sites
    sites = [layers] if isinstance(layers, str) else list(layers)
    _resolve_sites(model, 1.0, sites)
    return sites


def sensitivity_scan(
    model: keras.Model,
    x_val,
    y_val,
    rates: Iterable[float] = DEFAULT_RATES,
    layers: Sequence[str] | None = None,
    metric: Callable[[np.ndarray, np.ndarray], float] | None = None,
    batch_size: int = 256,
    plot: str | os.PathLike | None = None,
    progress: bool = True,
) -> SensitivityScan:
    """Accuracy at each winner rate for each mask site, the other sites unmasked.

    Args:
        model: the model to scan (plain or weight-pruned, without activation masks).
        x_val, y_val: validation data; ``y_val`` as integer labels or one-hot.
        rates: winner rates to try, each in (0, 1].
        layers: mask sites (layer names); default ``mask_sites(model)``.
        metric: ``metric(y_true, y_pred) -> float``, higher is better; default top-1
            accuracy.
        plot: if given, a PNG of accuracy vs rate is written there.

    Returns a ``SensitivityScan``; ``print(scan)`` shows the table.

    Example: ``scan = kp.integral.sensitivity_scan(model, xv, yv, plot="sens.png")``
    """
    check_model(model, "kp.integral.sensitivity_scan")
    if activation_masks(model):
        raise ValueError(
            f"Model '{model.name}' already has activation masks; scan the model without them."
        )
    x_val, y_val = _check_data(model, x_val, y_val, "x_val")
    rates = tuple(sorted({check_winner_rate(r, "rates[...]") for r in rates}))
    if not rates:
        raise ValueError("rates is empty; give at least one winner rate in (0, 1].")
    metric = metric or accuracy
    sites = _sites_for(model, layers)
    masked, masks = _scan_model(model, sites)
    graph = LayerGraph(masked)
    scan = SensitivityScan(model.name, 0.0, rates)
    with _bar(1 + len(sites) * len(rates), f"sensitivity {model.name}", progress) as bar:
        scan.baseline = _evaluate(masked, x_val, y_val, metric, batch_size)
        bar.update(1)
        for site in sites:
            mask = masks[site]
            scan.consumers[site] = ", ".join(c.name for c in graph.consumers(mask))
            accs = []
            for r in rates:
                mask.winner_rate = r
                accs.append(_evaluate(masked, x_val, y_val, metric, batch_size))
                bar.update(1)
            mask.winner_rate = 1.0
            scan.accuracy[site] = accs
    if plot is not None:
        scan.plot(plot)
    return scan


class WinnerRates(dict):
    """``{layer name: winner rate}`` chosen by ``choose_winner_rates``, with its evidence.

    Pass it straight to ``kp.add_activation_masks(model, winner_rate=rates)``.
    Attributes: ``baseline`` and ``accuracy`` (all masks together, before fine-tuning),
    ``max_loss``, ``scan`` (the SensitivityScan) and ``steps`` (the back-off log).
    """

    baseline: float
    accuracy: float
    max_loss: float
    scan: SensitivityScan
    steps: list

    def report(self) -> str:
        lines = [
            f"winner rates (max loss {100 * self.max_loss:.2f} points): "
            + ", ".join(f"{k} {v:.0%}" for k, v in self.items())
        ]
        lines.append(
            f"accuracy with all masks {self.accuracy:.2%} (unmasked "
            f"{self.baseline:.2%}, {100 * (self.accuracy - self.baseline):+.2f} pt)"
        )
        lines += [f"  backed off: {s}" for s in self.steps]
        return "\n".join(lines)


def choose_winner_rates(
    model: keras.Model,
    x_val,
    y_val,
    max_loss: float = 0.005,
    rates: Iterable[float] = DEFAULT_RATES,
    layers: Sequence[str] | None = None,
    metric: Callable | None = None,
    scan: SensitivityScan | None = None,
    batch_size: int = 256,
    progress: bool = True,
) -> WinnerRates:
    """The lowest winner rate per layer within ``max_loss``, checked in combination.

    Each site gets the lowest scanned rate whose accuracy, that layer alone masked, is
    at least ``baseline - max_loss``. Then all masks are applied together; while the
    combination loses more than ``max_loss``, the site that loses most on its own at its
    current rate moves up to its next scanned rate (a site at 100% gets no mask).

    Args:
        max_loss: accuracy budget as a fraction (0.005 = half a point).
        scan: a ``sensitivity_scan`` result to reuse; computed if not given.
        Other args as in ``sensitivity_scan``.

    Returns ``WinnerRates``, a dict ``{layer name: rate}`` (sites that keep everything are
    left out) with the evidence attached.

    Example:

    ```python
    rates = kp.integral.choose_winner_rates(model, x_val, y_val, max_loss=0.005)
    print(rates.report())
    masked = kp.add_activation_masks(model, winner_rate=rates)
    ```
    """
    if not (isinstance(max_loss, (int, float)) and 0 <= max_loss < 1):
        raise ValueError(
            f"max_loss must be a fraction in [0, 1), e.g. 0.005 for half a point; got {max_loss!r}."
        )
    metric = metric or accuracy
    if scan is None:
        scan = sensitivity_scan(
            model,
            x_val,
            y_val,
            rates=rates,
            layers=layers,
            metric=metric,
            batch_size=batch_size,
            progress=progress,
        )
    else:
        check_model(model, "kp.integral.choose_winner_rates")
    x_val, y_val = _check_data(model, x_val, y_val, "x_val")
    ladder = (*scan.rates, 1.0) if scan.rates[-1] < 1.0 else scan.rates
    chosen = {s: scan.lowest_rate(s, max_loss) for s in scan.accuracy}
    masked, masks = _scan_model(model, list(chosen))

    def loss_alone(site):
        r = chosen[site]
        return scan.baseline - (
            scan.accuracy[site][scan.rates.index(r)] if r in scan.rates else scan.baseline
        )

    steps = []
    with _bar(len(chosen) * len(ladder), f"winner rates {model.name}", progress) as bar:
        while True:
            for site, mask in masks.items():
                mask.winner_rate = chosen[site]
            combined = _evaluate(masked, x_val, y_val, metric, batch_size)
            bar.update(1)
            if combined >= scan.baseline - max_loss - 1e-12:
                break
            movable = [s for s in chosen if chosen[s] < 1.0]
            if not movable:
                break
            site = max(movable, key=lambda s: (loss_alone(s), -chosen[s]))
            new = ladder[ladder.index(chosen[site]) + 1]
            steps.append(f"{site} {chosen[site]:.0%} -> {new:.0%} (all masks: {combined:.2%})")
            chosen[site] = new
    result = WinnerRates({s: r for s, r in chosen.items() if r < 1.0})
    result.baseline, result.accuracy, result.max_loss = scan.baseline, combined, max_loss
    result.scan, result.steps = scan, steps
    return result


@dataclass
class ThresholdCheck:
    """Top-k masks vs their threshold form, in float and int8 in the TFLM interpreter."""

    layers: list  # dicts: name, winner_rate, threshold, density_topk/float/int8
    accuracy_topk: float | None
    accuracy_threshold: float | None
    accuracy_int8: float | None
    samples: int
    tolerance: float

    @property
    def ok(self) -> bool:
        return all(
            abs(r["density_int8"] - r["density_topk"]) <= self.tolerance for r in self.layers
        )

    def table(self) -> str:
        head = (
            f"{'mask':<16}{'rate':>6}{'threshold':>11}{'top-k':>9}{'thr float':>11}"
            f"{'thr int8':>10}{'diff':>8}"
        )
        lines = [
            "activation density (non-zero fraction) of each mask, top-k vs threshold "
            f"form; {self.samples} samples, int8 in the TFLM interpreter",
            head,
            "-" * len(head),
        ]
        for r in self.layers:
            diff = 100 * (r["density_int8"] - r["density_topk"])
            lines.append(
                f"{r['name'][:15]:<16}{r['winner_rate']:>6.0%}{r['threshold']:>11.4f}"
                f"{r['density_topk']:>9.1%}{r['density_float']:>11.1%}"
                f"{r['density_int8']:>10.1%}{diff:>+7.1f}pt"
            )
        if self.accuracy_topk is not None:
            lines.append(
                f"accuracy: top-k {self.accuracy_topk:.2%}, threshold float "
                f"{self.accuracy_threshold:.2%}, threshold int8 (TFLM) "
                f"{self.accuracy_int8:.2%}"
            )
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def check_thresholds_int8(
    masked: keras.Model,
    representative_data,
    x,
    y=None,
    stripped: keras.Model | None = None,
    tolerance: float = 0.05,
    batch_size: int = 256,
    progress: bool = True,
) -> ThresholdCheck:
    """Measure each mask's activation density: top-k (``masked``), its threshold form in
    float, and the int8 threshold form run in the TFLite Micro interpreter.

    ``stripped`` defaults to ``kp.strip(masked, representative_data)``. The densities are
    the fraction of non-zero mask outputs on ``x``. Top-k keeps ``ceil(rate * n)`` per
    sample, or fewer non-zeros where the ReLU left fewer; the check compares the int8
    density with that measured top-k density (``ok`` when within ``tolerance``). With
    ``y``, the three accuracies are reported too. Needs ``pip install keras-prune[tflm]``.
    """
    from keras_prune.export.int8.convert import convert_int8
    from keras_prune.export.int8.runtime import run_tflm

    x, y = _check_data(masked, x, y, "x")
    masks = activation_masks(masked)
    if not masks:
        raise ValueError(f"Model '{masked.name}' has no ActivationMask layers to check.")
    if stripped is None:
        stripped = strip(masked, representative_data=representative_data)
    thresholds = [la for la in LayerGraph(stripped).layers if isinstance(la, ActivationThreshold)]
    by_name = {t.name: t for t in thresholds}
    missing = [m.name for m in masks if m.name not in by_name]
    if missing:
        raise ValueError(f"The stripped model has no ActivationThreshold for {missing}.")
    thresholds = [by_name[m.name] for m in masks]
    topk = _predict(masked, x, batch_size, outputs=[*masked.outputs, *[m.output for m in masks]])
    flt = _predict(
        stripped, x, batch_size, outputs=[*stripped.outputs, *[t.output for t in thresholds]]
    )
    probe = keras.Model(
        stripped.inputs,
        [*stripped.outputs, *[t.output for t in thresholds]],
        name=f"{stripped.name}_probe",
    )
    rep, _ = _check_data(masked, representative_data, None, "representative_data")
    model_bytes = convert_int8(probe, rep)
    outs = run_tflm(model_bytes, x, progress=progress)
    n_out = len(stripped.outputs)
    rows = []
    for i, (m, t) in enumerate(zip(masks, thresholds, strict=True)):
        q, (_, zero_point) = outs[n_out + i]
        rows.append(
            {
                "name": m.name,
                "winner_rate": m.winner_rate,
                "threshold": t.threshold,
                "density_topk": float(np.mean(topk[1 + i] != 0)),
                "density_float": float(np.mean(flt[1 + i] != 0)),
                "density_int8": float(np.mean(q != zero_point)),
            }
        )
    accs = (None, None, None)
    if y is not None and n_out == 1:
        accs = (accuracy(y, topk[0]), accuracy(y, flt[0]), accuracy(y, outs[0][0]))
    return ThresholdCheck(rows, *accs, samples=len(x), tolerance=tolerance)
