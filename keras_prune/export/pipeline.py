"""The steps every int8 exporter shares, in order, so each exporter is only its own part.

1. ``destination``: the output directory is checked before any work (exists, is a
   directory, can be written), with a plain message;
2. ``check_int8_model`` and ``export_data``: the model and the data, named in every error;
3. ``prepare``: pruning wrappers stripped, activation masks turned into calibrated
   thresholds;
4. ``convert``: the int8 ``.tflite``, with one error message for a failed conversion;
5. ``file_digests`` and ``write``: the manifest's sha256 of every file, then one atomic
   write of the whole directory (a temporary directory renamed at the end).

Example (what ``kp.export.tflm`` and ``kp.export.cmsis`` do):

```python
dest = pipeline.destination(out_dir, force)
pipeline.check_int8_model(model, "kp.export.tflm", outputs=None)
rep, x_val, y_val = pipeline.export_data(model, rep, labels, validation_data, samples)
plain = pipeline.prepare(model, rep, "kp.export.tflm")
model_bytes = pipeline.convert(plain, rep, model.name)
...
pipeline.write(dest, files)
```
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import keras
import numpy as np

from keras_prune import io as kp_io
from keras_prune._data import check_shape
from keras_prune.export.int8 import convert as int8_convert
from keras_prune.export.int8.convert import MAX_CALIBRATION_SAMPLES
from keras_prune.layers import ActivationMask, PruneWrapper
from keras_prune.model_utils import all_layers, check_model

__all__ = [
    "MIN_CALIBRATION_SAMPLES",
    "destination",
    "check_samples",
    "check_int8_model",
    "export_data",
    "prepare",
    "convert",
    "file_digests",
    "write",
]

MIN_CALIBRATION_SAMPLES = 100


def destination(out_dir: str | os.PathLike, force: bool) -> kp_io.atomic_dir:
    """The atomic writer of ``out_dir``, checked now (``atomic_dir.check``) so that a bad
    destination fails before minutes of work, with a plain message."""
    dest = kp_io.atomic_dir(out_dir, overwrite=force)
    dest.check()
    return dest


def check_samples(samples) -> None:
    """``samples`` (how many verification inputs run) must be a positive integer."""
    if not isinstance(samples, int) or isinstance(samples, bool) or samples < 1:
        raise ValueError(f"samples must be a positive integer, got {samples!r}.")


def check_int8_model(model, api: str, outputs: int | None = 1) -> None:
    """A built Keras 3 model with one input (and ``outputs`` outputs, when not None)."""
    check_model(model, api)  # before reading the data, to name the real fault
    if not model.inputs:
        raise ValueError(
            f"{api}: model '{model.name}' has no inputs; build it with a keras.Input first."
        )
    if len(model.inputs) != 1:
        raise ValueError(
            f"{api}: model '{model.name}' has {len(model.inputs)} inputs; int8 exports "
            "take models with one input (concatenate the features into one tensor)."
        )
    if outputs is not None and len(model.outputs) != outputs:
        raise ValueError(
            f"{api}: model '{model.name}' has {len(model.outputs)} outputs; this export "
            f"takes {outputs}."
        )


def _check_array(x, model: keras.Model, what: str) -> np.ndarray:
    try:
        arr = np.asarray(x)
    except Exception as e:  # ragged lists and the like
        raise TypeError(f"{what} must be an array of inputs; could not read it ({e}).") from e
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
    ):
        raise TypeError(
            f"{what} has dtype {arr.dtype}; it must hold numbers (float32 inputs "
            "as the model takes them)."
        )
    check_shape(model, arr, what, "samples")
    arr = arr.astype(np.float32)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{what} holds NaN or infinite values.")
    return arr


def _check_labels(y, n: int, model: keras.Model) -> np.ndarray:
    y = np.asarray(y)
    if len(y) != n:
        raise ValueError(f"labels have {len(y)} entries but the data has {n} samples.")
    units = int(model.outputs[0].shape[-1])
    if y.ndim > 1 and y.shape[-1] == units and units > 1:
        y = y.argmax(-1)
    y = y.reshape(n)
    if not np.issubdtype(y.dtype, np.integer):
        if not np.all(np.equal(np.mod(y, 1), 0)):
            raise ValueError("labels must be class indices (integers) or one-hot rows.")
        y = y.astype(np.int64)
    top = max(units, 2)
    if y.min() < 0 or y.max() >= top:
        raise ValueError(
            f"labels hold classes {int(y.min())}..{int(y.max())}, but model "
            f"'{model.name}' has {units} output units (classes 0..{top - 1})."
        )
    return y


def export_data(
    model: keras.Model, representative_data, labels, validation_data, samples: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The checked calibration inputs, and the first ``samples`` verification inputs and
    labels: ``validation_data`` (``(x, y)`` or ``x``) when given, else the calibration
    inputs with ``labels``. Warns when there are too few calibration samples."""
    rep = _check_array(representative_data, model, "representative_data")
    if len(rep) < MIN_CALIBRATION_SAMPLES:
        warnings.warn(
            f"representative_data has only {len(rep)} samples; int8 ranges are "
            f"calibrated better with at least {MIN_CALIBRATION_SAMPLES} "
            f"(up to {MAX_CALIBRATION_SAMPLES} are used).",
            stacklevel=3,
        )
    if validation_data is None:
        x_val, y_val = rep, labels
    elif isinstance(validation_data, (tuple, list)) and len(validation_data) == 2:
        x_val, y_val = validation_data
    else:
        x_val, y_val = validation_data, None
    x_val = _check_array(
        x_val, model, "validation_data" if validation_data is not None else "representative_data"
    )[:samples]
    if y_val is not None:
        y_val = _check_labels(np.asarray(y_val)[: len(x_val)], len(x_val), model)
    return rep, x_val, y_val


def prepare(model: keras.Model, representative_data, api: str) -> keras.Model:
    """The plain model that gets converted: wrappers stripped, masks as thresholds."""
    from keras_prune.pruning import strip  # strip sits above the exporters' helpers

    check_model(model, api)
    if not model.inputs:
        raise ValueError(
            f"{api}: model '{model.name}' has no inputs; build it with a keras.Input first."
        )
    if any(isinstance(la, (PruneWrapper, ActivationMask)) for la in all_layers(model)):
        return strip(model, representative_data=representative_data, activation_masks="threshold")
    return model


def convert(
    plain: keras.Model, representative_data, model_name: str, int8_io: bool = True
) -> bytes:
    """The int8 ``.tflite`` of ``plain``; a failed conversion is the model's fault (the
    data was checked before), said once for every exporter."""
    try:
        return int8_convert.convert_int8(plain, representative_data, int8_io=int8_io)
    except Exception as e:
        first = str(e).strip().splitlines()
        raise ValueError(
            f"int8 conversion of model '{model_name}' failed: "
            f"{first[0] if first else type(e).__name__}. Every layer must lower to int8 "
            "TFLite built-ins."
        ) from e


def _bytes(content: str | bytes) -> bytes:
    return content if isinstance(content, bytes) else content.encode()


def file_digests(files: dict[str, str | bytes], sizes: bool = False) -> dict:
    """The manifest's record of each file: its sha256, or ``{"bytes", "sha256"}``."""
    import hashlib

    digest = {name: hashlib.sha256(_bytes(c)).hexdigest() for name, c in files.items()}
    if not sizes:
        return digest
    return {name: {"bytes": len(_bytes(c)), "sha256": digest[name]} for name, c in files.items()}


def write(dest: kp_io.atomic_dir, files: dict[str, str | bytes]) -> None:
    """Write every file into the destination at once: all of them or none."""
    with dest as tmp:
        for name, content in files.items():
            path = Path(tmp) / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content)
