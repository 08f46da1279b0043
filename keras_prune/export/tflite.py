"""Int8 TFLite conversion and TFLite Micro runs, shared by the exporters and checks.

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

__all__ = [
    "convert_int8",
    "run_tflm",
    "run_tflm_raw",
    "output_order",
    "quantize_input",
    "capture_fd2",
]

MAX_CALIBRATION_SAMPLES = 500


def _need(module: str):
    try:
        return __import__(module, fromlist=["_"])
    except ImportError as e:
        raise ImportError(
            f"This needs the TFLite runtimes ({module}): pip install 'keras-prune[tflm]'."
        ) from e


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


def output_order(model_bytes: bytes) -> tuple[list[int], list[tuple], tuple]:
    """For the signature outputs ``output_0, output_1, ...``: their positions among the
    subgraph outputs (TFLM's ``get_output(i)`` order), their (scale, zero point), and the
    input's (scale, zero point)."""
    litert = _need("ai_edge_litert.interpreter")
    interp = litert.Interpreter(model_content=model_bytes)
    details = interp.get_output_details()
    position = {d["index"]: i for i, d in enumerate(details)}
    runner = interp.get_signature_runner()
    named = runner.get_output_details()
    keys = sorted(
        named, key=lambda k: int(k.rsplit("_", 1)[-1]) if k.rsplit("_", 1)[-1].isdigit() else k
    )
    order = [position[named[k]["index"]] for k in keys]
    quant = [tuple(details[p]["quantization"]) for p in order]
    return order, quant, tuple(interp.get_input_details()[0]["quantization"])


def quantize_input(x: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    return np.clip(np.round(x / scale) + zero_point, -128, 127).astype(np.int8)


def run_tflm_raw(
    model_bytes: bytes,
    xq: np.ndarray,
    arena_size: int = 1 << 21,
    progress: bool = False,
    extra: tuple[int, ...] = (),
) -> list[np.ndarray]:
    """Run already-quantized inputs ``xq`` (one sample per row) in TFLite Micro.

    Returns the raw outputs in subgraph order (TFLM's ``get_output(i)``), stacked over
    samples, followed by the flattened ``extra`` intermediate tensors (asking for those
    makes TFLM keep every tensor, which needs a larger arena).
    """
    runtime = _need("tflite_micro").runtime
    from tqdm.auto import tqdm

    kwargs = {}
    if extra:  # every tensor gets its own buffer: give the planner room for all of them
        kwargs["intrepreter_config"] = runtime.InterpreterConfig.kPreserveAllTensors
        arena_size = 4 * arena_size + (1 << 20)
    interp = runtime.Interpreter.from_bytes(model_bytes, arena_size=arena_size, **kwargs)
    n_out = _n_outputs(model_bytes)
    outs: list[list] = [[] for _ in range(n_out + len(extra))]
    for sample in tqdm(xq, desc="TFLM", disable=not progress, leave=False):
        interp.set_input(sample[None], 0)
        interp.invoke()
        for j in range(n_out):
            outs[j].append(np.array(interp.get_output(j))[0])
        for j, idx in enumerate(extra):
            data = np.array(interp.GetTensor(int(idx), 0)["tensor_data"])
            outs[n_out + j].append(data.reshape(-1).copy())
    return [np.stack(o) for o in outs]


def _n_outputs(model_bytes: bytes) -> int:
    litert = _need("ai_edge_litert.interpreter")
    return len(
        litert.Interpreter(
            model_content=model_bytes,
            experimental_op_resolver_type=litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        ).get_output_details()
    )


def run_tflm(
    model_bytes: bytes, x: np.ndarray, arena_size: int = 1 << 21, progress: bool = False
) -> list[tuple[np.ndarray, tuple]]:
    """Run each sample of float ``x`` through the TFLite Micro interpreter.

    Returns, per signature output (``output_0`` first), the stacked raw int8 outputs and
    their (scale, zero point).
    """
    order, quant, (scale, zero_point) = output_order(model_bytes)
    q = quantize_input(np.asarray(x, np.float32), scale, zero_point)
    raw = run_tflm_raw(model_bytes, q, arena_size, progress)
    return [(raw[pos], qp) for pos, qp in zip(order, quant, strict=True)]
