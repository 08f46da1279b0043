"""Running an int8 ``.tflite``: TFLite Micro (the reference for integer results) and
LiteRT (reference or default kernels), and the input quantization they share.

Both runtimes are the optional ``tflm`` extra; ``require_runtime`` names the install
command when one is missing.
"""

from __future__ import annotations

import re

import numpy as np

from keras_prune.export.int8.convert import capture_fd2

__all__ = [
    "require_runtime",
    "litert_interpreter",
    "run_tflm",
    "run_tflm_raw",
    "output_order",
    "quantize_input",
    "n_outputs",
    "measure_arena",
]


def require_runtime(module: str):
    """Import ``module`` of the optional TFLite runtimes, or say how to install them."""
    try:
        return __import__(module, fromlist=["_"])
    except ImportError as e:
        raise ImportError(
            f"This needs the TFLite runtimes ({module}): pip install 'keras-prune[tflm]'."
        ) from e


def litert_interpreter(model_bytes: bytes, reference: bool = False):
    """A LiteRT interpreter: reference kernels, or the default ones without XNNPACK."""
    litert = require_runtime("ai_edge_litert.interpreter")
    kind = (
        litert.OpResolverType.BUILTIN_REF
        if reference
        else litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    )
    return litert.Interpreter(model_content=model_bytes, experimental_op_resolver_type=kind)


def output_order(model_bytes: bytes) -> tuple[list[int], list[tuple], tuple]:
    """For the signature outputs ``output_0, output_1, ...``: their positions among the
    subgraph outputs (TFLM's ``get_output(i)`` order), their (scale, zero point), and the
    input's (scale, zero point)."""
    litert = require_runtime("ai_edge_litert.interpreter")
    interp = litert.Interpreter(model_content=model_bytes)  # signature runners need defaults
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
    """Float inputs on the int8 grid of the model's input tensor."""
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
    runtime = require_runtime("tflite_micro").runtime
    from tqdm.auto import tqdm

    kwargs = {}
    if extra:  # every tensor gets its own buffer: give the planner room for all of them
        kwargs["intrepreter_config"] = runtime.InterpreterConfig.kPreserveAllTensors
        arena_size = 4 * arena_size + (1 << 20)
    interp = runtime.Interpreter.from_bytes(model_bytes, arena_size=arena_size, **kwargs)
    n_out = n_outputs(model_bytes)
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


def n_outputs(model_bytes: bytes) -> int:
    """How many outputs the model's subgraph has."""
    return len(litert_interpreter(model_bytes).get_output_details())


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


def measure_arena(model_bytes: bytes, arena_size: int = 1 << 22) -> dict[str, int]:
    """TFLM's own count of the arena bytes after one inference: total, head, tail.

    Measured with the x86-64 build of TFLM's reference kernels. The head (activation
    buffers) carries over to a Cortex-M4 unchanged; the tail (persistent structs with
    pointers) is smaller on a 32-bit core, so it is an upper bound there.
    """
    runtime = require_runtime("tflite_micro").runtime
    inp = litert_interpreter(model_bytes).get_input_details()[0]
    interp = runtime.Interpreter.from_bytes(model_bytes, arena_size=arena_size)
    interp.set_input(np.zeros(inp["shape"], inp["dtype"]), 0)
    interp.invoke()
    with capture_fd2() as box:
        interp.print_allocations()
    found = {
        k: int(v)
        for k, v in re.findall(r"Arena allocation (total|head|tail) (\d+) bytes", box["text"])
    }
    if "total" not in found:
        raise RuntimeError("TFLM did not report its arena use; got:\n" + box["text"][:500])
    return found
