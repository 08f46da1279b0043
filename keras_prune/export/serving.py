"""SavedModel export for CPU/GPU serving, with pruned channels physically removed.

Example:

```python
report = kp.export.saved_model(kp.strip(channel_pruned), "out/serving", version=1)
print(report)          # channels removed, MACs, signature, reload check, speed notes
```

What it writes (TF Serving's layout; the version directory appears atomically):

==============================  ======================================================
``out/serving/1/saved_model.pb``  the graph, with a ``serving_default`` signature
``out/serving/1/variables/``      the weights
``out/serving/1/signature.json``  input and output names, shapes and dtypes, plus what
                                  was removed and the reload check
==============================  ======================================================

On servers only whole channels make inference faster: TensorFlow runs a conv or matmul
with zeros in it at full cost. So the export removes every channel that pruning left
without weights (``kp.surgery.compact``), keeps a LeGR/``kp.shrink`` model as it is,
and says so when the remaining zeros are scattered (unstructured, N:M or SIMD groups)
and give no server-side speedup.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from keras_prune.export import pipeline
from keras_prune.model_utils import check_model
from keras_prune.pruning import strip, summary
from keras_prune.surgery import CompactReport, compact, fold_batchnorm

__all__ = ["saved_model", "SavedModelExport", "scattered_zeros"]

SIGNATURE = "serving_default"
#: largest allowed output difference after reloading, relative to the largest output
RELOAD_TOLERANCE = 1e-4


@dataclass
class SavedModelExport:
    """What ``kp.export.saved_model`` wrote and checked."""

    path: Path  # the version directory
    version: int
    inputs: dict = field(default_factory=dict)  # name -> {"shape", "dtype"}
    outputs: dict = field(default_factory=dict)
    compact: CompactReport | None = None
    reload_error: dict = field(default_factory=dict)  # loader -> max abs difference
    zero_fraction: float = 0.0  # zeros left in the kernels after compaction
    folded_batchnorm: list[str] = field(default_factory=list)  # merged into the layer before
    notes: list[str] = field(default_factory=list)
    show: str = ""  # what `saved_model_cli show --all` printed

    def __str__(self) -> str:
        lines = [
            f"SavedModel version {self.version} written to {self.path}/ (signature '{SIGNATURE}')"
        ]
        for kind, specs in (("input", self.inputs), ("output", self.outputs)):
            for name, spec in specs.items():
                lines.append(f"  {kind} {name}: {spec['dtype']} {spec['shape']}")
        if self.compact is not None:
            lines.append(str(self.compact))
        if self.folded_batchnorm:
            lines.append(
                f"BatchNorm folded into the layer before it: {len(self.folded_batchnorm)} "
                f"({', '.join(self.folded_batchnorm)})"
            )
        checks = ", ".join(f"{k} {v:.2e}" for k, v in self.reload_error.items())
        lines.append(f"reloaded and compared with the Keras model (max |difference|): {checks}")
        lines += [f"note: {n}" for n in self.notes]
        block = _serving_block(self.show)
        if block:
            source = (
                "read with tf.saved_model.load"
                if self.show.startswith("(read with")
                else "saved_model_cli show --all"
            )
            lines.append(f"the '{SIGNATURE}' signature ({source}):")
            lines.append(block)
        return "\n".join(lines)


def _serving_block(show: str) -> str:
    """The ``serving_default`` part of ``saved_model_cli show --all``."""
    start = show.find(f"signature_def['{SIGNATURE}']")
    if start < 0:
        return ""
    rest = show[start:]
    ends = [
        i
        for i in (
            rest.find("signature_def[", 1),
            rest.find("The MetaGraph", 1),
            rest.find("\nConcrete Functions", 1),
        )
        if i > 0
    ]
    return rest[: min(ends)].rstrip() if ends else rest.rstrip()


def _check_version(version) -> int:
    if isinstance(version, bool) or not isinstance(version, (int, np.integer)) or version < 1:
        raise ValueError(
            f"version must be a positive integer (TF Serving's version "
            f"directory name), got {version!r}."
        )
    return int(version)


def scattered_zeros(model: keras.Model) -> float:
    """The fraction of prunable-kernel weights that are zeros but not whole channels (what
    ``kp.summary`` calls any pattern other than "whole channels")."""
    rows = summary(model, print_fn=lambda _: None)
    total = sum(r.params for r in rows)
    zeros = sum(r.params - r.nonzeros for r in rows if not r.pattern.startswith("whole channels"))
    return zeros / total if total else 0.0


def _signature(model: keras.Model, batch: int | None):
    import tensorflow as tf

    return [tf.TensorSpec((batch, *t.shape[1:]), t.dtype, name=t.name) for t in model.inputs]


def _probe(model: keras.Model, data, batch: int | None, seed: int = 0) -> list[np.ndarray]:
    n = batch or 8
    if data is not None:
        xs = data if isinstance(data, (list, tuple)) else [data]
        xs = [np.asarray(x)[:n] for x in xs]
        if batch is None or all(len(x) == batch for x in xs):
            return [x.astype(t.dtype) for x, t in zip(xs, model.inputs, strict=True)]
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(n, *t.shape[1:])).astype(t.dtype) for t in model.inputs]


def _show(path: Path, use_cli: bool = True) -> str:
    """`saved_model_cli show --all` if TensorFlow ships it, else the same from Python."""
    cli = use_cli and (
        shutil.which("saved_model_cli")
        or shutil.which("saved_model_cli", path=str(Path(sys.executable).parent))
    )
    if cli:
        done = subprocess.run(
            [cli, "show", "--dir", str(path), "--all"], capture_output=True, text=True, timeout=300
        )
        if done.returncode == 0:
            return done.stdout
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))
    lines = ["(read with tf.saved_model.load)"]
    for name, fn in loaded.signatures.items():
        lines.append(f"signature_def['{name}']:")
        for key, spec in fn.structured_input_signature[1].items():
            lines.append(f"  input {key}: dtype {spec.dtype.name}, shape {spec.shape}")
        for key, spec in fn.structured_outputs.items():
            lines.append(f"  output {key}: dtype {spec.dtype.name}, shape {spec.shape}")
    return "\n".join(lines)


def saved_model(
    model: keras.Model,
    out_dir,
    version: int = 1,
    batch: int | None = None,
    force: bool = False,
    activation_masks: str = "keep",
    representative_data=None,
    show: bool = True,
    fold_bn: bool = True,
    print_fn=print,
) -> SavedModelExport:
    """Export ``model`` as a SavedModel for TF Serving, with pruned channels removed.

    Preparation: pruning wrappers are stripped (``kp.strip``), and every channel that
    pruning left without weights is physically removed along the dependency graph
    (``kp.surgery.compact``; constants such channels still carried through a
    BatchNorm are folded into the next layer). A LeGR or ``kp.shrink`` model is already
    small and passes through unchanged. Every inference-mode BatchNorm that follows a
    Dense or convolution is then merged into it (``kp.surgery.fold_batchnorm``):
    TensorFlow would otherwise run it as element-wise passes over each activation map.
    Activation masks stay as dynamic top-k ops (``activation_masks="keep"``, TensorFlow
    has them) or become calibrated thresholds (``"threshold"``, needs
    ``representative_data``).

    Export: Keras ``model.export`` with a ``serving_default`` signature, written to
    ``out_dir/<version>/`` atomically with a ``signature.json``. The SavedModel is then
    reloaded with ``tf.saved_model.load`` and ``keras.layers.TFSMLayer`` and both must
    reproduce the input model's outputs (on ``representative_data``, else random inputs).

    Args:
        model: a built Sequential or functional model (pruned or plain).
        out_dir: the model's base directory (TF Serving's ``model_base_path``).
        version: the version directory, a positive integer.
        batch: a fixed batch size for the signature; ``None`` (default) is dynamic.
        force: replace an existing version directory.
        activation_masks: ``"keep"`` or ``"threshold"`` (see above).
        representative_data: inputs for thresholds and for the reload check.
        show: run ``saved_model_cli show --all`` (if TensorFlow ships it) and report its
            signature; it starts a second TensorFlow, several seconds. ``False`` prints
            the same signature read from Python.
        fold_bn: merge BatchNorms into the layer before them (default); ``False`` keeps
            them as layers (e.g. to fine-tune the reloaded model further).
        print_fn: prints the report (``None`` for silence).

    Returns a ``SavedModelExport``.
    """
    version = _check_version(version)
    if batch is not None and (
        isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1
    ):
        raise ValueError(f"batch must be a positive integer or None (dynamic), got {batch!r}.")
    check_model(model, "kp.export.saved_model")
    target = pipeline.destination(Path(out_dir) / str(version), force)  # before the slow part

    plain = strip(model, representative_data, activation_masks=activation_masks)
    small, report = compact(plain)
    result = SavedModelExport(path=Path(out_dir) / str(version), version=version, compact=report)
    if fold_bn:
        small, result.folded_batchnorm = fold_batchnorm(small)
    result.zero_fraction = scattered_zeros(small)
    if result.zero_fraction > 0.01:
        result.notes.append(
            f"{result.zero_fraction:.0%} of the remaining weights are zeros that are not whole "
            "channels (unstructured, N:M or SIMD-group sparsity). TensorFlow runs them at "
            "full cost, so they give no speedup on a CPU or GPU server. For server speed, "
            "prune with granularity=kp.granularity.Channels() or shrink with kp.legr.LeGR."
        )
    if report.channels_removed == 0 and report.macs[0] and result.zero_fraction <= 0.01:
        result.notes.append("no pruned channels to remove: the model is exported as it is.")

    probe = _probe(plain, representative_data, batch)
    feed = probe if len(probe) > 1 else probe[0]
    expected = [
        keras.ops.convert_to_numpy(y) for y in keras.tree.flatten(plain(feed, training=False))
    ]
    scale = max(1.0, max(float(np.max(np.abs(y))) for y in expected))
    with target as tmp:
        small.export(
            str(tmp),
            format="tf_saved_model",
            verbose=False,
            input_signature=_signature(small, batch),
        )
        result.inputs, result.outputs, result.reload_error = _verify(tmp, small, probe, expected)
        bad = {k: v for k, v in result.reload_error.items() if v > RELOAD_TOLERANCE * scale}
        if bad:
            raise RuntimeError(
                f"kp.export.saved_model: the reloaded SavedModel of '{model.name}' differs "
                f"from the Keras model ({bad}, tolerance {RELOAD_TOLERANCE * scale:.2e}); "
                "nothing was written."
            )
        result.show = _show(tmp, use_cli=show)
        meta = {
            "signature_name": SIGNATURE,
            "inputs": result.inputs,
            "outputs": result.outputs,
            "batch": batch or "dynamic",
            "keras_prune": {
                "channels_removed": report.removed,
                "batchnorm_folded": result.folded_batchnorm,
                "macs": list(report.macs),
                "params": list(report.params),
                "zero_fraction": result.zero_fraction,
                "reload_max_difference": result.reload_error,
                "notes": result.notes,
            },
        }
        (tmp / "signature.json").write_text(json.dumps(meta, indent=1) + "\n")
    if print_fn is not None:
        print_fn(str(result))
    return result


def _verify(path: Path, model: keras.Model, probe, expected):
    """Reload two ways; the signature's specs and each loader's largest difference."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))
    fn = loaded.signatures[SIGNATURE]
    in_specs = fn.structured_input_signature[1]
    out_specs = fn.structured_outputs
    names = [t.name for t in model.inputs]
    if len(names) == 1:  # a Sequential's key is its InputLayer's name, not the tensor's
        names = list(in_specs)
    elif sorted(in_specs) != sorted(names):
        raise RuntimeError(
            f"the SavedModel's inputs {sorted(in_specs)} do not match the model's {names}."
        )
    got = fn(**{n: tf.constant(x) for n, x in zip(names, probe, strict=True)})
    outs = [got[k].numpy() for k in sorted(got)]
    errors = {"tf.saved_model.load": _max_diff(outs, expected)}
    layer = keras.layers.TFSMLayer(str(path), call_endpoint=SIGNATURE)
    got = layer(*probe) if len(probe) > 1 else layer(probe[0])
    got = [got[k] for k in sorted(got)] if isinstance(got, dict) else keras.tree.flatten(got)
    errors["keras.layers.TFSMLayer"] = _max_diff(
        [keras.ops.convert_to_numpy(g) for g in got], expected
    )

    def spec(s):
        return {"shape": [None if d is None else int(d) for d in s.shape], "dtype": s.dtype.name}

    return (
        {k: spec(s) for k, s in in_specs.items()},
        {k: spec(s) for k, s in out_specs.items()},
        errors,
    )


def _max_diff(got: list[np.ndarray], expected: list[np.ndarray]) -> float:
    if len(got) != len(expected):
        raise RuntimeError(f"the SavedModel returns {len(got)} outputs, the model {len(expected)}.")
    return max(float(np.max(np.abs(g - e))) for g, e in zip(got, expected, strict=True))
