"""Int8 TFLite conversion, shared by the exporters and checks.

The conversion path is the one that gives TFLM a clean op set: a SavedModel with a
static batch-1 signature, then ``TFLiteConverter.from_saved_model`` with full-integer
int8 (per-channel weights) and int8 input/output.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile

import keras
import numpy as np

__all__ = ["convert_int8", "capture_fd2", "MAX_CALIBRATION_SAMPLES"]

MAX_CALIBRATION_SAMPLES = 500


@contextlib.contextmanager
def capture_fd2():
    """Capture what C code writes to file descriptor 2 (TFLM reports there)."""
    sys.stderr.flush()
    with tempfile.TemporaryFile(mode="w+b") as f:
        saved = os.dup(2)
        os.dup2(f.fileno(), 2)
        box: dict[str, str] = {}
        try:
            yield box
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            f.seek(0)
            box["text"] = f.read().decode(errors="replace")


def convert_int8(model: keras.Model, representative_data, int8_io: bool = True) -> bytes:
    """The int8 ``.tflite`` of ``model`` (one input; batch fixed to 1), as bytes.

    ``representative_data`` calibrates the activation ranges; up to the first
    ``MAX_CALIBRATION_SAMPLES`` samples are used.
    """
    import tensorflow as tf

    if len(model.inputs) != 1:
        raise ValueError(
            f"Model '{model.name}' has {len(model.inputs)} inputs; the int8 "
            "conversion takes models with one input."
        )
    spec = model.inputs[0]
    data = np.asarray(representative_data, dtype=spec.dtype)[:MAX_CALIBRATION_SAMPLES]
    if data.shape[1:] != tuple(spec.shape[1:]):
        raise ValueError(
            f"representative_data has shape {data.shape}; model '{model.name}' "
            f"expects (batch, {', '.join(map(str, spec.shape[1:]))})."
        )
    with tempfile.TemporaryDirectory(prefix="kp_tflite_") as tmp:
        saved = os.path.join(tmp, "saved_model")
        with contextlib.redirect_stdout(None):
            model.export(
                saved,
                input_signature=[tf.TensorSpec((1, *spec.shape[1:]), spec.dtype)],
                verbose=False,
            )
        converter = tf.lite.TFLiteConverter.from_saved_model(saved)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([data[i : i + 1]] for i in range(len(data)))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if int8_io:
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
        # The converter's C++ log lines would bury the report; show them only on failure.
        with capture_fd2() as log:
            try:
                return converter.convert()
            except Exception as e:
                error = e
        raise RuntimeError(f"{error}\n{log['text'][-2000:]}") from error
