"""Input validation and batched inference shared by the analysis tools."""

from __future__ import annotations

import contextlib

import keras
import numpy as np
import tensorflow as tf

__all__ = ["check_data", "check_shape", "check_splits", "predict", "batches", "quiet_retracing"]


def check_shape(model, x: np.ndarray, what: str, lead: str = "batch") -> None:
    """``x`` must be a non-empty stack of the model's (single) input; the error names
    ``what`` and the shape expected, ``(lead, ...)``."""
    expected = tuple(model.inputs[0].shape[1:])
    if x.ndim != len(expected) + 1 or any(
        e is not None and e != s for e, s in zip(expected, x.shape[1:], strict=True)
    ):
        raise ValueError(
            f"{what} has shape {x.shape}, but model '{model.name}' expects ({lead}, "
            f"{', '.join(str(e) for e in expected)})."
        )
    if not len(x):
        raise ValueError(f"{what} is empty.")


def check_data(model, x, y=None, what: str = "x") -> tuple[np.ndarray, np.ndarray | None]:
    if len(model.inputs) != 1:
        raise ValueError(
            f"Model '{model.name}' has {len(model.inputs)} inputs; this "
            "tool takes models with one input."
        )
    x = np.asarray(x)
    check_shape(model, x, what, "batch")
    x = x.astype(model.inputs[0].dtype, copy=False)
    if y is not None:
        y = np.asarray(y)
        if len(y) != len(x):
            raise ValueError(f"x has {len(x)} samples but y has {len(y)}.")
    return x, y


def check_splits(data: dict, job: str) -> None:
    """The training and validation arrays a job reads from an ``.npz`` must all be there."""
    missing = [k for k in ("x_train", "y_train", "x_val", "y_val") if k not in data]
    if missing:
        raise ValueError(
            f"{job} needs x_train, y_train, x_val and y_val in the data; missing "
            f"{', '.join(missing)}."
        )


@contextlib.contextmanager
def quiet_retracing():
    # Each configuration of a scan is a new graph by design; TF's "excessive retracing"
    # warning would only be noise.
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel("ERROR")
    try:
        yield
    finally:
        logger.setLevel(level)


def batches(model, x: np.ndarray, batch_size: int = 256, outputs=None):
    """Yield, batch by batch, the list of outputs on ``x`` in inference mode.

    ``outputs`` are symbolic tensors of ``model``'s graph to return instead of its
    outputs. The last batch is zero-padded (and cut back) so one trace serves all.
    """
    target = model if outputs is None else keras.Model(model.inputs, outputs)
    fn = tf.function(lambda b: target(b, training=False))
    batch_size = min(batch_size, len(x))
    with quiet_retracing():
        for i in range(0, len(x), batch_size):
            b = x[i : i + batch_size]
            n = len(b)
            if n < batch_size:
                b = np.concatenate([b, np.zeros((batch_size - n, *b.shape[1:]), b.dtype)])
            out = fn(b)
            out = out if isinstance(out, (list, tuple)) else [out]
            yield [np.asarray(o)[:n] for o in out]


def predict(model, x: np.ndarray, batch_size: int = 256, outputs=None) -> list[np.ndarray]:
    """All outputs on ``x`` (see ``batches``), concatenated."""
    chunks = list(batches(model, x, batch_size, outputs))
    return [np.concatenate(parts) for parts in zip(*chunks, strict=True)]
