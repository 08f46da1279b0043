"""TFLite Micro export: int8 ``.tflite``, C array, op resolver, arena size, verified in TFLM.

Example:

```python
report = kp.export.tflm(pruned, "out/tflm", representative_data=x_train[:500],
                        validation_data=(x_val, y_val))
print(report)                  # ops, sizes, arena, accuracy, TFLM vs LiteRT agreement
```

The directory it writes (atomically: a temporary directory renamed at the end):

=================  =====================================================================
``model.tflite``   the int8 model (per-channel weights, static batch 1)
``model_data.h``   ``g_model`` (a 16-byte aligned ``const unsigned char`` array) and
``model_data.cc``  ``g_model_len``; valid C (C99 and later) and C++
``op_resolver.h``  a ``tflite::MicroMutableOpResolver`` with exactly the model's ops
``model_settings.h`` arena size (with margin), input/output shapes, scales, zero points
``manifest.json``  ops, sizes, quantization, arena, accuracies, agreement, zero checks
``README.md``      how to use the files with TFLM on a board
=================  =====================================================================

TFLM is the reference for the integer results (it is what runs on the board, and
CMSIS-NN matches it bit for bit). LiteRT's reference kernels are run beside it, and
their agreement is reported: see ``docs/tflm-export.md`` for why the two differ by a
least significant bit on a few outputs.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import warnings
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import keras
import numpy as np

from keras_prune import io as kp_io
from keras_prune.export import tflite
from keras_prune.export._tflm_ops import TFLM_OPS, remedy
from keras_prune.layers.prunable import kernel_specs

__all__ = [
    "tflm",
    "TflmExport",
    "Agreement",
    "UnsupportedOpsError",
    "model_ops",
    "check_ops",
    "measure_arena",
    "compare_runtimes",
]

MIN_CALIBRATION_SAMPLES = 100
ARENA_MARGIN = 0.10  # on top of the measured arena plus CMSIS-NN scratch; see arena_budget
MIN_TOP1_AGREEMENT = 0.99


class UnsupportedOpsError(ValueError):
    """The model needs ops that TFLite Micro does not have."""


def _litert(model_bytes: bytes, reference: bool = False):
    """A LiteRT interpreter: reference kernels, or the default ones without XNNPACK."""
    litert = tflite._need("ai_edge_litert.interpreter")
    kind = (
        litert.OpResolverType.BUILTIN_REF
        if reference
        else litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    )
    return litert.Interpreter(model_content=model_bytes, experimental_op_resolver_type=kind)


# ------------------------------------------------------------------------ op analysis
@dataclass(frozen=True)
class Op:
    """One operator of the ``.tflite`` and the Keras layers it came from."""

    index: int
    name: str
    layers: tuple[str, ...]
    layer_classes: tuple[str, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]


def _layer_classes(model: keras.Model | None) -> dict[str, str]:
    out: dict[str, str] = {}

    def walk(m):
        for layer in m.layers:
            out[layer.name] = type(layer).__name__
            if isinstance(layer, keras.Model):
                walk(layer)

    if model is not None:
        walk(model)
    return out


def _layers_in(tensor_name: str, classes: dict[str, str]) -> list[str]:
    """Keras layer names in a converter tensor name like ``model_1/conv_1/Relu;...``.

    Keras scopes a layer's ops as ``<name>_<k>``; the deepest path component that names a
    layer wins (a nested model's layers over the model itself).
    """
    found = []
    for path in tensor_name.split(";"):
        hit = None
        for part in path.split("/"):
            for cand in (part, re.sub(r"_\d+$", "", part)):
                if cand in classes:
                    hit = cand
                    break
        if hit and hit not in found:
            found.append(hit)
    return found


def model_ops(model_bytes: bytes, model: keras.Model | None = None) -> list[Op]:
    """The operators of an int8 model, each with the Keras layers it came from."""
    interp = _litert(model_bytes)
    names = {t["index"]: t["name"] for t in interp.get_tensor_details()}
    classes = _layer_classes(model)
    ops = []
    for d in interp._get_ops_details():
        ins = tuple(i for i in d["inputs"] if i >= 0)
        outs = tuple(d["outputs"])
        layers: list[str] = []
        for group in (outs, ins):
            for i in group:
                layers += [n for n in _layers_in(names.get(i, ""), classes) if n not in layers]
            if layers:
                break
        ops.append(
            Op(
                d["index"],
                d["op_name"],
                tuple(layers),
                tuple(classes[n] for n in layers),
                ins,
                outs,
            )
        )
    return ops


def check_ops(ops: list[Op]) -> None:
    """Raise ``UnsupportedOpsError`` naming every op TFLM lacks, its layer and a fix."""
    bad = [op for op in ops if op.name not in TFLM_OPS]
    if not bad:
        return
    lines = []
    seen = set()
    for op in bad:
        where = (
            ", ".join(f"'{n}' ({c})" for n, c in zip(op.layers, op.layer_classes, strict=True))
            or "an unnamed layer"
        )
        key = (op.name, where)
        if key in seen:
            continue
        seen.add(key)
        lines.append(
            f"  - {op.name} from layer {where}: "
            f"{remedy(op.name, op.layer_classes[0] if op.layer_classes else None)}"
        )
    raise UnsupportedOpsError(
        "The int8 model uses ops that TFLite Micro does not have, so it cannot run on a "
        "microcontroller:\n" + "\n".join(lines)
    )


# ------------------------------------------------------------------------ runtimes
def _io_details(model_bytes: bytes):
    interp = _litert(model_bytes)
    return interp, interp.get_input_details()[0], interp.get_output_details()


def _to_input(x: np.ndarray, detail) -> np.ndarray:
    if detail["dtype"] == np.int8:
        scale, zero_point = detail["quantization"]
        return tflite.quantize_input(np.asarray(x, np.float32), scale, zero_point)
    return np.asarray(x, detail["dtype"])


def _run_litert_reference(
    model_bytes: bytes, xq: np.ndarray, extra: tuple[int, ...] = ()
) -> list[np.ndarray]:
    """Like ``tflite.run_tflm_raw``, in LiteRT with its reference kernels."""
    litert = tflite._need("ai_edge_litert.interpreter")
    interp = litert.Interpreter(
        model_content=model_bytes,
        experimental_preserve_all_tensors=bool(extra),
        experimental_op_resolver_type=litert.OpResolverType.BUILTIN_REF,
    )
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]["index"]
    indices = [d["index"] for d in interp.get_output_details()] + list(extra)
    n_out = len(indices) - len(extra)
    outs: list[list] = [[] for _ in indices]
    for sample in xq:
        interp.set_tensor(inp, sample[None])
        interp.invoke()
        for j, idx in enumerate(indices):
            value = interp.get_tensor(idx)
            outs[j].append((value[0] if j < n_out else value.reshape(-1)).copy())
    return [np.stack(o) for o in outs]


def measure_arena(model_bytes: bytes, arena_size: int = 1 << 22) -> dict[str, int]:
    """TFLM's own count of the arena bytes after one inference: total, head, tail.

    Measured with the x86-64 build of TFLM's reference kernels. The head (activation
    buffers) carries over to a Cortex-M4 unchanged; the tail (persistent structs with
    pointers) is smaller on a 32-bit core, so it is an upper bound there.
    """
    runtime = tflite._need("tflite_micro").runtime
    _, inp, _ = _io_details(model_bytes)
    interp = runtime.Interpreter.from_bytes(model_bytes, arena_size=arena_size)
    interp.set_input(np.zeros(inp["shape"], inp["dtype"]), 0)
    interp.invoke()
    with tflite.capture_fd2() as box:
        interp.print_allocations()
    found = {
        k: int(v)
        for k, v in re.findall(r"Arena allocation (total|head|tail) (\d+) bytes", box["text"])
    }
    if "total" not in found:
        raise RuntimeError("TFLM did not report its arena use; got:\n" + box["text"][:500])
    return found


def cmsis_nn_scratch_bytes(op: str, input_shape, filter_shape) -> int:
    """Bytes of scratch one op asks for from CMSIS-NN's Cortex-M4 (DSP) kernels.

    Sizes follow CMSIS-NN's ``*_get_buffer_size`` for DSP targets: conv im2col (none for
    1x1 with GCC), depthwise, and average pooling.
    """
    if op == "CONV_2D":
        _, kh, kw, cin = filter_shape
        if (kh, kw) != (1, 1):
            cols = kh * kw * cin
            return 2 * (cols + (-cols) % 4) * 2
    elif op == "DEPTHWISE_CONV_2D":
        _, kh, kw, _ = filter_shape
        return input_shape[-1] * kh * kw * 2
    elif op == "AVERAGE_POOL_2D":
        return input_shape[-1] * 4
    return 0


def cmsis_nn_scratch(model_bytes: bytes, ops: list[Op]) -> int:
    """The largest scratch buffer CMSIS-NN's Cortex-M4 (DSP) kernels ask TFLM for.

    TFLM's reference kernels measured on the host need none; on a board built with
    CMSIS-NN, conv (im2col), depthwise and average-pool kernels each request one for the
    duration of their op.
    """
    interp = _litert(model_bytes)
    shape = {t["index"]: tuple(t["shape"]) for t in interp.get_tensor_details()}
    return max(
        [0]
        + [
            cmsis_nn_scratch_bytes(
                op.name, shape[op.inputs[0]], shape[op.inputs[1]] if len(op.inputs) > 1 else None
            )
            for op in ops
        ]
    )


def arena_budget(measured: int, scratch: int, margin: float = ARENA_MARGIN) -> int:
    """Arena bytes to give the board: measured + CMSIS-NN scratch + ``margin``, to 16 B."""
    size = math.ceil((measured + scratch) * (1 + margin))
    return size + (-size) % 16


# ------------------------------------------------------------------------ agreement
@dataclass
class Agreement:
    """TFLM (the reference) against LiteRT's reference kernels on the same int8 inputs."""

    samples: int
    tflm_deterministic: bool
    exact_match: float  # fraction of output values that are equal
    max_abs_diff_lsb: int
    top1_agreement: float
    tolerance_lsb: int
    differing_values: int = 0
    total_values: int = 0
    # SOFTMAX outputs: the largest difference of their input logits, and the most the
    # FC rounding explains there (one step per FULLY_CONNECTED op)
    logits_max_diff_lsb: int | None = None
    logits_tolerance_lsb: int | None = None

    @property
    def ok(self) -> bool:
        logits_ok = (
            self.logits_max_diff_lsb is None
            or self.logits_max_diff_lsb <= self.logits_tolerance_lsb
        )
        return (
            self.tflm_deterministic
            and self.max_abs_diff_lsb <= self.tolerance_lsb
            and logits_ok
            and self.top1_agreement >= MIN_TOP1_AGREEMENT
        )


def _lsb_scales(model_bytes: bytes) -> list[float | None]:
    """Per subgraph output: the size of one int8 step (None if it cannot be told)."""
    interp, _, outs = _io_details(model_bytes)
    producers = {}
    for d in interp._get_ops_details():
        for o in d["outputs"]:
            producers[o] = d
    details = {t["index"]: t for t in interp.get_tensor_details()}
    scales = []
    for d in outs:
        if d["dtype"] == np.int8:
            scales.append(1.0)
            continue
        p = producers.get(d["index"])
        if p is not None and p["op_name"] == "DEQUANTIZE":
            scales.append(float(details[p["inputs"][0]]["quantization"][0]) or None)
        else:
            scales.append(None)
    return scales


def expected_tolerance(model_bytes: bytes, ops: list[Op]) -> tuple[int, str]:
    """The largest TFLM/LiteRT difference (in output steps) the kernels can explain, worst
    case, known before running anything. ``compare_runtimes`` checks a tighter bound
    for SOFTMAX outputs from the logit difference it measures.

    Why (docs/tflm-export.md): of the ops we export, only FULLY_CONNECTED differs. TFLM
    requantizes it with TFLite's integer double rounding, LiteRT's reference kernel in
    double-precision float; the results differ by exactly 1 step on a fraction
    2^-(shift+1) of the outputs. Every other kernel is bit-exact given equal inputs,
    SOFTMAX included, but SOFTMAX amplifies a 1-step logit difference by its slope: a
    probability moves by at most 128 * s output steps (s = the logits' scale), +1 for
    the final rounding. So: no FC -> 0; n FC layers -> n steps at the logits; SOFTMAX
    on top -> ceil(128 * s * n) + 1.
    """
    n_fc = sum(op.name == "FULLY_CONNECTED" for op in ops)
    if not n_fc:
        return 0, "no FULLY_CONNECTED op: the kernels are bit-exact"
    worst, why = n_fc, f"{n_fc} FULLY_CONNECTED op(s), at most 1 step each"
    for _, s in _softmax_inputs(model_bytes, ops).values():
        bound = math.ceil(128 * s * n_fc) + 1
        if bound > worst:
            worst = bound
            why = (
                f"{n_fc} FULLY_CONNECTED op(s), 1 step each at the logits, amplified "
                f"by SOFTMAX (logit scale {s:.4g}): ceil(128*s*{n_fc}) + 1"
            )
    return worst, why


def _tolerance_reason(g: Agreement) -> str:
    if g.logits_max_diff_lsb is not None:
        return (
            f"SOFTMAX output: its logits differ by {g.logits_max_diff_lsb} step(s) "
            f"(FC rounding allows {g.logits_tolerance_lsb}); softmax moves a "
            "probability by at most ceil(128 * logit_scale * that) + 1 steps"
        )
    if g.tolerance_lsb == 0:
        return "no FULLY_CONNECTED op: the kernels are bit-exact"
    return f"{g.tolerance_lsb} FULLY_CONNECTED op(s), at most 1 step each"


def _top1(raw: np.ndarray, detail) -> np.ndarray:
    value = raw.astype(np.float64)
    if detail["dtype"] == np.int8:
        scale, zero_point = detail["quantization"]
        value = (value - zero_point) * scale
    flat = value.reshape(len(value), -1)
    return (flat[:, 0] > 0.5).astype(int) if flat.shape[1] == 1 else flat.argmax(-1)


def _softmax_inputs(model_bytes: bytes, ops: list[Op]) -> dict[int, tuple[int, float]]:
    """Subgraph output position -> (its SOFTMAX's input tensor, that tensor's scale)."""
    interp, _, outs = _io_details(model_bytes)
    scale = {t["index"]: float(t["quantization"][0]) for t in interp.get_tensor_details()}
    producer = {o: op for op in ops for o in op.outputs}
    found = {}
    for j, d in enumerate(outs):
        op = producer.get(d["index"])
        if op is not None and op.name == "DEQUANTIZE":
            op = producer.get(op.inputs[0])
        if op is not None and op.name == "SOFTMAX":
            found[j] = (op.inputs[0], scale[op.inputs[0]])
    return found


def compare_runtimes(
    model_bytes: bytes,
    x: np.ndarray,
    arena_size: int = 1 << 22,
    tolerance_lsb: int | None = None,
    progress: bool = False,
    determinism_samples: int = 50,
    ops: list[Op] | None = None,
) -> tuple[Agreement, list[np.ndarray]]:
    """Run float inputs ``x`` in TFLM and in LiteRT (reference kernels); compare.

    Returns the agreement and TFLM's raw outputs (subgraph order). TFLM is run a second
    time, in a fresh interpreter, on the first ``determinism_samples`` inputs.

    ``tolerance_lsb=None`` takes what the kernels explain (docs/tflm-export.md): each
    FULLY_CONNECTED op may add one step, so an output may differ by up to the number of
    FC ops (0 without FC). For a SOFTMAX output the logits feeding it are compared
    too: they may differ by that much, and a logit difference of ``d`` steps moves a
    probability by at most ``128 * s * d`` output steps (``s``: logit scale; softmax's
    slope is at most 1/2 per unit of logit spread), + 1 for rounding.
    """
    ops = model_ops(model_bytes) if ops is None else ops
    n_fc = sum(op.name == "FULLY_CONNECTED" for op in ops)
    softmax = _softmax_inputs(model_bytes, ops)
    extra = tuple(idx for idx, _ in softmax.values())
    _, inp, outs = _io_details(model_bytes)
    xq = _to_input(x, inp)
    tflm_all = tflite.run_tflm_raw(model_bytes, xq, arena_size, progress, extra=extra)
    tflm_out = tflm_all[: len(outs)]
    again = tflite.run_tflm_raw(model_bytes, xq[:determinism_samples], arena_size)
    deterministic = all(
        np.array_equal(a[:determinism_samples], b) for a, b in zip(tflm_out, again, strict=True)
    )
    ref_all = _run_litert_reference(model_bytes, xq, extra=extra)
    ref_out = ref_all[: len(outs)]
    diffs, equal, total, tolerances = [], 0, 0, []
    logits_diff = None
    for j, (a, b, scale) in enumerate(
        zip(tflm_out, ref_out, _lsb_scales(model_bytes), strict=True)
    ):
        d = np.abs(a.astype(np.float64) - b.astype(np.float64))
        if scale:
            d = np.rint(d / scale)
        diffs.append(int(d.max()) if d.size else 0)
        equal += int((a == b).sum())
        total += a.size
        if j in softmax:
            k = len(outs) + list(softmax).index(j)
            dz = int(np.abs(tflm_all[k].astype(int) - ref_all[k].astype(int)).max())
            logits_diff = max(logits_diff or 0, dz)
            tolerances.append(math.ceil(128 * softmax[j][1] * dz) + 1 if dz else 0)
        else:
            tolerances.append(n_fc)
    if tolerance_lsb is None:
        tolerance_lsb = max(tolerances)
    top1 = float(np.mean(_top1(tflm_out[0], outs[0]) == _top1(ref_out[0], outs[0])))
    agreement = Agreement(
        len(xq),
        deterministic,
        equal / total if total else 1.0,
        max(diffs),
        top1,
        tolerance_lsb,
        total - equal,
        total,
        logits_diff,
        n_fc if softmax else None,
    )
    return agreement, tflm_out


# ------------------------------------------------------------------------ pruned zeros
@dataclass
class ZeroCheck:
    """Zeros of one Keras kernel and of its int8 weights in the ``.tflite``."""

    layer: str
    kernel: str
    keras_zeros: int
    int8_zeros: int
    kept: bool  # every Keras zero is an int8 zero, at the same position


def _rows(tensor: np.ndarray, op: str) -> np.ndarray:
    # TFLite stores kernels output-channel first (OHWI), except depthwise (1, H, W, C).
    if op == "DEPTHWISE_CONV_2D":
        return tensor.reshape(-1, tensor.shape[-1]).T
    return tensor.reshape(tensor.shape[0], -1)


def zero_checks(
    plain: keras.Model, model_bytes: bytes, ops: list[Op] | None = None
) -> list[ZeroCheck]:
    """For every kernel of ``plain`` holding zeros: are they still zero in int8?

    ``ops``: ``model_ops(model_bytes, plain)``, if already at hand.
    """
    interp = _litert(model_bytes)
    interp.allocate_tensors()
    weights: dict[str, list[np.ndarray]] = {}
    for op in model_ops(model_bytes, plain) if ops is None else ops:
        if op.name not in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV"):
            continue
        w = op.inputs[1]  # the weights, for all four ops
        rows = _rows(interp.get_tensor(w), op.name)
        for name in op.layers:
            weights.setdefault(name, []).append(rows)
    checks = []

    def walk(m):
        for layer in m.layers:
            if isinstance(layer, keras.Model):
                walk(layer)
                continue
            for spec in kernel_specs(layer):
                k = np.asarray(getattr(layer, spec.attr).numpy())
                zeros = int(k.size - np.count_nonzero(k))
                if not zeros:
                    continue
                perm = np.transpose(k, spec.layout.perm)
                rows = perm.reshape(int(np.prod(perm.shape[: spec.layout.n_out_axes])), -1)
                match = [w for w in weights.get(layer.name, []) if w.shape == rows.shape]
                if match:
                    w = match[0]
                    kept = bool(np.all(w[rows == 0] == 0))
                    checks.append(
                        ZeroCheck(
                            layer.name, spec.attr, zeros, int(w.size - np.count_nonzero(w)), kept
                        )
                    )
                else:
                    checks.append(ZeroCheck(layer.name, spec.attr, zeros, -1, False))

    walk(plain)
    return checks


# ------------------------------------------------------------------------ C files
def _c_float(v: float) -> str:
    s = f"{float(np.float32(v)):.9g}"
    return s + ("f" if any(c in s for c in ".en") else ".0f")


def _header(model_name: str) -> str:
    from keras_prune import __version__

    return (
        f"/* Generated by keras-prune {__version__} from Keras model '{model_name}'. "
        "Do not edit: re-export instead. */\n"
    )


def model_data_files(model_bytes: bytes, model_name: str) -> dict[str, str]:
    """``model_data.h`` and ``model_data.cc``: the model as a 16-byte aligned C array."""
    n = len(model_bytes)
    h = (
        _header(model_name) + "#ifndef KP_MODEL_DATA_H_\n#define KP_MODEL_DATA_H_\n\n"
        '#ifdef __cplusplus\nextern "C" {\n#endif\n\n'
        "/* Bytes in g_model (an enum constant, so it costs no flash). */\n"
        f"enum {{ g_model_len = {n} }};\n\n"
        "/* The int8 model (model.tflite), aligned to 16 bytes as TFLM requires. */\n"
        "extern const unsigned char g_model[g_model_len];\n\n"
        '#ifdef __cplusplus\n}  /* extern "C" */\n#endif\n\n#endif  /* KP_MODEL_DATA_H_ */\n'
    )
    hexed = [f"0x{b:02x}" for b in model_bytes]
    lines = [",".join(hexed[i : i + 16]) for i in range(0, n, 16)]
    cc = (
        _header(model_name) + '#include "model_data.h"\n\n'
        "#if defined(__cplusplus) && __cplusplus >= 201103L\n"
        "#define KP_ALIGN16 alignas(16)\n"
        "#elif defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L\n"
        "#include <stdalign.h>\n#define KP_ALIGN16 alignas(16)\n"
        "#elif defined(__GNUC__) || defined(__clang__)\n"
        "#define KP_ALIGN16 __attribute__((aligned(16)))\n"
        '#else\n#error "model_data.cc needs C11, C++11, GCC or Clang to align g_model"\n'
        "#endif\n\n"
        "KP_ALIGN16 const unsigned char g_model[g_model_len] = {\n" + ",\n".join(lines) + "\n};\n"
    )
    return {"model_data.h": h, "model_data.cc": cc}


def op_resolver_file(ops: list[str], model_name: str) -> str:
    """``op_resolver.h``: a MicroMutableOpResolver sized and filled for exactly ``ops``."""
    adds = "".join(
        f"  if (resolver.{TFLM_OPS[o]}() != kTfLiteOk) return kTfLiteError;\n" for o in ops
    )
    return (
        _header(model_name) + "#ifndef KP_OP_RESOLVER_H_\n#define KP_OP_RESOLVER_H_\n\n"
        '#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"\n\n'
        "namespace kp_model {\n\n"
        f"// The {len(ops)} ops of model.tflite: {', '.join(ops)}.\n"
        f"constexpr unsigned int kNumOps = {len(ops)};\n"
        "using OpResolver = tflite::MicroMutableOpResolver<kNumOps>;\n\n"
        "// Registers every op the model needs, and nothing else.\n"
        "inline TfLiteStatus RegisterOps(OpResolver& resolver) {\n"
        + adds
        + "  return kTfLiteOk;\n}\n\n}  // namespace kp_model\n\n"
        "#endif  // KP_OP_RESOLVER_H_\n"
    )


def model_settings_file(settings: dict, model_name: str) -> str:
    """``model_settings.h``: arena size and the input/output tensors' shapes and scales."""
    a = settings["arena"]
    lines = [
        _header(model_name),
        "#ifndef KP_MODEL_SETTINGS_H_\n#define KP_MODEL_SETTINGS_H_\n",
        f"/* Tensor arena for tflite::MicroInterpreter. TFLM measured {a['measured']} "
        f"bytes on the host\n   (x86-64, reference kernels; the pointer-holding part "
        f"is smaller on a 32-bit MCU).\n   Added: {a['cmsis_nn_scratch']} bytes for the "
        "largest scratch buffer CMSIS-NN's Cortex-M4\n   kernels request, then a "
        f"{a['margin']:.0%} margin, rounded up to 16 bytes. */",
        f"#define KP_ARENA_SIZE {a['size']}\n",
    ]

    def tensor(prefix, t):
        dims = t["shape"]
        out = [
            f"#define {prefix}_DIMS {len(dims)}",
            f"#define {prefix}_SHAPE {{{', '.join(map(str, dims))}}}",
            f"#define {prefix}_SIZE {int(np.prod(dims))}",
            f"#define {prefix}_TYPE_INT8 {1 if t['dtype'] == 'int8' else 0}",
        ]
        if t["scale"]:
            out += [
                f"#define {prefix}_SCALE {_c_float(t['scale'])}",
                f"#define {prefix}_ZERO_POINT {t['zero_point']}",
            ]
        return "\n".join(out) + "\n"

    lines.append(
        "/* Input: q = round(x / KP_INPUT_SCALE) + KP_INPUT_ZERO_POINT, clamped to [-128, 127]. */"
    )
    lines.append(tensor("KP_INPUT", settings["input"]))
    outs = settings["outputs"]
    lines.append(f"#define KP_NUM_OUTPUTS {len(outs)}\n")
    for i, t in enumerate(outs):
        lines.append(
            f"/* Output {i} is interpreter.output({t['tflm_index']}); "
            f"x = (q - ZERO_POINT) * SCALE. */"
        )
        lines.append(tensor(f"KP_OUTPUT{i}", t))
        if i == 0:
            lines.append(
                "/* Aliases for output 0. */\n"
                + "\n".join(
                    f"#define KP_OUTPUT_{k} KP_OUTPUT0_{k}"
                    for k in ("DIMS", "SHAPE", "SIZE", "TYPE_INT8")
                    + (("SCALE", "ZERO_POINT") if t["scale"] else ())
                )
                + "\n"
            )
    lines.append("#endif  /* KP_MODEL_SETTINGS_H_ */\n")
    return "\n".join(lines)


def readme_file(manifest: dict) -> str:
    a = manifest["arena"]
    v = manifest.get("verification", {})
    acc = manifest.get("accuracy") or {}
    rows = [
        f"| `{o['op']}` | {o['count']} | {', '.join(o['layers']) or '-'} |" for o in manifest["ops"]
    ]
    text = (
        f"""# {manifest["model"]}: TFLite Micro export

Generated by keras-prune {manifest["keras_prune"]}. Files:

| file | what |
|---|---|
| `model.tflite` | the int8 model ({manifest["sizes"]["tflite_bytes"]:,} bytes) |
| `model_data.h`, `.cc` | the same bytes as `g_model` (16-byte aligned), `g_model_len` |
| `op_resolver.h` | `kp_model::OpResolver` and `kp_model::RegisterOps()`: exactly the ops below |
| `model_settings.h` | `KP_ARENA_SIZE` ({a["size"]:,} B), shapes, scales, zero points |
| `manifest.json` | everything above, machine-readable |

## Use on a board

Add `model_data.cc` to your firmware build next to TFLite Micro, then:

```cpp
#include "model_data.h"
#include "model_settings.h"
#include "op_resolver.h"
#include "tensorflow/lite/micro/micro_interpreter.h"

alignas(16) static uint8_t tensor_arena[KP_ARENA_SIZE];

int run(const float* features, float* scores) {{
  const tflite::Model* model = tflite::GetModel(g_model);
  static kp_model::OpResolver resolver;
  if (kp_model::RegisterOps(resolver) != kTfLiteOk) return -1;
  tflite::MicroInterpreter interpreter(model, resolver, tensor_arena, KP_ARENA_SIZE);
  if (interpreter.AllocateTensors() != kTfLiteOk) return -1;

  int8_t* in = interpreter.input(0)->data.int8;
  for (int i = 0; i < KP_INPUT_SIZE; ++i) {{
    int q = (int)lroundf(features[i] / KP_INPUT_SCALE) + KP_INPUT_ZERO_POINT;
    in[i] = (int8_t)(q < -128 ? -128 : q > 127 ? 127 : q);
  }}
  if (interpreter.Invoke() != kTfLiteOk) return -1;
  const int8_t* out = interpreter.output(0)->data.int8;
  for (int i = 0; i < KP_OUTPUT_SIZE; ++i)
    scores[i] = (out[i] - KP_OUTPUT_ZERO_POINT) * KP_OUTPUT_SCALE;
  return 0;
}}
```

(With `int8_io=False` the input and output tensors are float: write `data.f` directly.)
Call `interpreter.arena_used_bytes()` after `AllocateTensors()` once on the board to
shrink `KP_ARENA_SIZE` to what your build needs.

## Ops

| op | count | Keras layers |
|---|---|---|
"""
        + "\n".join(rows)
        + f"""

## Checked before writing these files

- Arena: TFLM measured {a["measured"]:,} bytes on the host; `KP_ARENA_SIZE` adds
  {a["cmsis_nn_scratch"]:,} bytes of CMSIS-NN scratch and a {a["margin"]:.0%} margin.
"""
    )
    if v:
        text += (
            f"- TFLM vs LiteRT (reference kernels) on {v['samples']} inputs: "
            f"{v['exact_match']:.2%} of output values equal, max difference "
            f"{v['max_abs_diff_lsb']} LSB, top-1 agreement {v['top1_agreement']:.2%}; "
            f"TFLM deterministic: {'yes' if v['tflm_deterministic'] else 'NO'}.\n"
        )
    if acc:
        text += (
            f"- Accuracy on {acc['samples']} labelled inputs: float "
            f"{acc['float']:.2%}, int8 in TFLM {acc['int8_tflm']:.2%}.\n"
        )
    zeros = manifest.get("pruned_zeros") or []
    if zeros:
        kept = all(z["kept"] for z in zeros)
        text += (
            f"- Pruned zeros kept in the int8 weights: {'yes' if kept else 'NO'} "
            f"({len(zeros)} kernels).\n"
        )
    return text


# ------------------------------------------------------------------------ export
@dataclass
class TflmExport:
    """What ``kp.export.tflm`` wrote and measured."""

    out_dir: Path
    manifest: dict
    agreement: Agreement | None
    ops: list[Op] = field(repr=False, default_factory=list)

    @property
    def model_bytes(self) -> int:
        return self.manifest["sizes"]["tflite_bytes"]

    @property
    def arena_bytes(self) -> int:
        return self.manifest["arena"]["size"]

    @property
    def accuracy(self) -> dict | None:
        return self.manifest.get("accuracy")

    def table(self) -> str:
        m = self.manifest
        s, a = m["sizes"], m["arena"]
        lines = [
            f"TFLM export of '{m['model']}' -> {self.out_dir}/",
            f"  ops           {', '.join(o['op'] for o in m['ops'])}",
            f"  model.tflite  {s['tflite_bytes']:,} bytes ({s['tflite_zlib_bytes']:,} "
            "zlib-compressed)",
            f"  arena         {a['size']:,} bytes (TFLM measured {a['measured']:,}; + "
            f"{a['cmsis_nn_scratch']:,} CMSIS-NN scratch, + {a['margin']:.0%})",
        ]
        if self.agreement is not None:
            g = self.agreement
            lines.append(
                f"  TFLM/LiteRT   {g.exact_match:.2%} values equal, max |diff| "
                f"{g.max_abs_diff_lsb} LSB (tolerance {g.tolerance_lsb}), top-1 "
                f"{g.top1_agreement:.2%} on {g.samples} inputs; TFLM deterministic: "
                f"{'yes' if g.tflm_deterministic else 'NO'}"
            )
        if self.accuracy:
            acc = self.accuracy
            lines.append(
                f"  accuracy      float {acc['float']:.2%}, int8 (TFLM) "
                f"{acc['int8_tflm']:.2%} on {acc['samples']} inputs"
            )
        zeros = m.get("pruned_zeros") or []
        if zeros:
            lost = [z["layer"] for z in zeros if not z["kept"]]
            lines.append(
                "  pruned zeros  "
                + ("kept in every int8 kernel" if not lost else f"LOST in {', '.join(lost)}")
            )
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def _has_pruning_layers(model: keras.Model) -> bool:
    from keras_prune.layers import ActivationMask, PruneWrapper
    from keras_prune.pruning import _all_layers

    return any(isinstance(la, (PruneWrapper, ActivationMask)) for la in _all_layers(model))


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
    expected = tuple(model.inputs[0].shape[1:])
    if arr.ndim != len(expected) + 1 or any(
        e is not None and e != s for e, s in zip(expected, arr.shape[1:], strict=True)
    ):
        raise ValueError(
            f"{what} has shape {arr.shape}, but model '{model.name}' expects "
            f"(samples, {', '.join(str(e) for e in expected)})."
        )
    if not len(arr):
        raise ValueError(f"{what} is empty.")
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
            f"(up to {tflite.MAX_CALIBRATION_SAMPLES} are used).",
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


def prepare(model: keras.Model, representative_data) -> keras.Model:
    """The plain model that gets converted: wrappers stripped, masks as thresholds."""
    from keras_prune.pruning import _check_model, strip

    _check_model(model, "kp.export.tflm")
    if not model.inputs:
        raise ValueError(
            f"kp.export.tflm: model '{model.name}' has no inputs; build it with "
            "a keras.Input first."
        )
    if _has_pruning_layers(model):
        return strip(model, representative_data=representative_data, activation_masks="threshold")
    return model


def _tensor_info(detail, tflm_index: int | None = None) -> dict:
    scale, zero_point = detail["quantization"]
    info = {
        "shape": [int(s) for s in detail["shape"]],
        "dtype": np.dtype(detail["dtype"]).name,
        "scale": float(scale),
        "zero_point": int(zero_point),
    }
    if tflm_index is not None:
        info["tflm_index"] = tflm_index
    return info


def _weight_granularity(model_bytes: bytes, ops: list[Op]) -> dict[str, str]:
    """Per weighted op (keyed by its Keras layer): int8 per-channel or per-tensor."""
    interp = _litert(model_bytes)
    details = {t["index"]: t for t in interp.get_tensor_details()}
    out = {}
    for op in ops:
        if op.name in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV"):
            n = len(details[op.inputs[1]]["quantization_parameters"]["scales"])
            key = "/".join(op.layers) or f"op{op.index}"
            out[key] = f"int8 {'per-channel' if n > 1 else 'per-tensor'} ({n} scales)"
    return out


def _plain(value):
    """JSON for NumPy scalars."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def _write(tmp: Path, files: dict[str, str | bytes]) -> None:
    for name, content in files.items():
        path = tmp / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)


def tflm(
    model: keras.Model,
    out_dir: str | os.PathLike,
    representative_data,
    labels=None,
    int8_io: bool = True,
    force: bool = False,
    validation_data=None,
    samples: int = 500,
    tolerance_lsb: int | None = None,
    progress: bool = True,
    print_fn=print,
) -> TflmExport:
    """Export ``model`` for TensorFlow Lite Micro and verify it in the TFLM interpreter.

    Args:
        model: a built Keras model with one input; pruning wrappers and activation masks
            are allowed (they are stripped, masks become calibrated thresholds).
        out_dir: the directory to create. Written atomically; an existing one is refused
            unless ``force``.
        representative_data: float inputs that calibrate the int8 ranges (the first 500
            are used; fewer than 100 gives a warning).
        labels: class labels of ``representative_data``, to report float vs int8
            accuracy.
        int8_io: int8 input and output tensors (default). ``False`` keeps them float
            (the model then quantizes and dequantizes on the device).
        validation_data: ``(x, y)`` or ``x`` to verify on instead of
            ``representative_data``/``labels``.
        samples: how many verification inputs run in TFLM and LiteRT.
        tolerance_lsb: the largest TFLM/LiteRT difference accepted, in output steps.
            Default: what the kernels explain (``compare_runtimes``: 0 without
            FULLY_CONNECTED ops; see ``docs/tflm-export.md``). Beyond it, or below 99%
            top-1 agreement, a warning is given and the manifest records ``"ok": false``.
        print_fn: where the report goes (``None`` for silence).

    Returns a ``TflmExport`` (its ``table()`` is what is printed).

    Raises:
        FileExistsError: ``out_dir`` exists and ``force`` is False.
        UnsupportedOpsError: the model needs ops TFLM does not have (each is named with
            its Keras layer and a fix); nothing is written.
        ValueError / TypeError: unbuilt model or bad data, naming what was expected.
    """
    target = kp_io.atomic_dir(out_dir, overwrite=force)
    target.check()  # fail before minutes of work, not after
    if not isinstance(samples, int) or samples < 1:
        raise ValueError(f"samples must be a positive integer, got {samples!r}.")
    from keras_prune.pruning import _check_model

    _check_model(model, "kp.export.tflm")  # before reading the data, to name the real fault
    if len(model.inputs) != 1:
        raise ValueError(
            f"kp.export.tflm: model '{model.name}' has {len(model.inputs)} "
            "inputs; TFLM exports take models with one input (concatenate the "
            "features into one tensor)."
        )
    rep, x_val, y_val = export_data(model, representative_data, labels, validation_data, samples)

    plain = prepare(model, rep)
    try:
        model_bytes = tflite.convert_int8(plain, rep, int8_io=int8_io)
    except Exception as e:  # the data was checked above: this is the model's fault
        first = str(e).strip().splitlines()
        raise ValueError(
            f"int8 conversion of model '{model.name}' failed: "
            f"{first[0] if first else type(e).__name__}. Every layer must "
            "lower to int8 TFLite built-ins."
        ) from e
    ops = model_ops(model_bytes, plain)
    check_ops(ops)
    try:
        arena = measure_arena(model_bytes)
    except RuntimeError as e:
        raise ValueError(
            f"TFLM could not run model '{model.name}' ({e}); an op may lack an int8 kernel in TFLM."
        ) from e
    arena_size = max(1 << 16, 2 * arena["total"])
    agreement, tflm_out = compare_runtimes(
        model_bytes, x_val, arena_size, tolerance_lsb, progress, ops=ops
    )
    why = "given by the caller" if tolerance_lsb is not None else _tolerance_reason(agreement)
    _, inp, outs = _io_details(model_bytes)
    order, _, _ = tflite.output_order(model_bytes)

    accuracy = None
    if y_val is not None:
        from keras_prune._data import predict
        from keras_prune.integral import accuracy as top1

        float_pred = predict(plain, x_val)[0]
        pos = order[0]
        accuracy = {
            "samples": len(x_val),
            "float": top1(y_val, float_pred),
            "int8_tflm": float(np.mean(_top1(tflm_out[pos], outs[pos]) == y_val)),
        }

    scratch = cmsis_nn_scratch(model_bytes, ops)
    used = list(dict.fromkeys(op.name for op in ops))  # first-use order
    op_rows = [
        {
            "op": o,
            "tflm_method": TFLM_OPS[o],
            "count": sum(op.name == o for op in ops),
            "layers": sorted({n for op in ops if op.name == o for n in op.layers}),
        }
        for o in used
    ]
    zeros = zero_checks(plain, model_bytes, ops)
    from keras_prune import __version__

    manifest = {
        "keras_prune": __version__,
        "model": model.name,
        "ops": op_rows,
        "sizes": {
            "tflite_bytes": len(model_bytes),
            "tflite_zlib_bytes": len(zlib.compress(model_bytes, 9)),
            "tflite_sha256": hashlib.sha256(model_bytes).hexdigest(),
        },
        "quantization": {
            "int8_io": int8_io,
            "weights": _weight_granularity(model_bytes, ops),
            "calibration_samples": min(len(rep), tflite.MAX_CALIBRATION_SAMPLES),
            "input": _tensor_info(inp),
            "outputs": [_tensor_info(outs[p], p) for p in order],
        },
        "arena": {
            "measured": arena["total"],
            "measured_head": arena.get("head"),
            "measured_tail": arena.get("tail"),
            "cmsis_nn_scratch": scratch,
            "margin": ARENA_MARGIN,
            "size": arena_budget(arena["total"], scratch),
        },
        "verification": {
            **asdict(agreement),
            "ok": agreement.ok,
            "tolerance_reason": why,
            "reference": "TFLM interpreter (tflite-micro)",
            "compared_with": "LiteRT, BUILTIN_REF kernels",
        },
        "accuracy": accuracy,
        "pruned_zeros": [asdict(z) for z in zeros],
    }
    files: dict[str, str | bytes] = {"model.tflite": model_bytes}
    files.update(model_data_files(model_bytes, model.name))
    files["op_resolver.h"] = op_resolver_file(used, model.name)
    files["model_settings.h"] = model_settings_file(
        {
            "arena": manifest["arena"],
            "input": manifest["quantization"]["input"],
            "outputs": manifest["quantization"]["outputs"],
        },
        model.name,
    )
    files["README.md"] = readme_file(manifest)
    manifest["files"] = {
        name: {
            "bytes": len(c if isinstance(c, bytes) else c.encode()),
            "sha256": hashlib.sha256(c if isinstance(c, bytes) else c.encode()).hexdigest(),
        }
        for name, c in files.items()
    }
    files["manifest.json"] = json.dumps(manifest, indent=2, default=_plain) + "\n"
    with target as tmp:
        _write(tmp, files)
    result = TflmExport(Path(out_dir), manifest, agreement, ops)
    if not agreement.ok:
        warnings.warn(
            f"TFLM verification of '{model.name}' is outside the documented tolerance: {agreement}",
            stacklevel=2,
        )
    lost = [z.layer for z in zeros if not z.kept]
    if lost:
        warnings.warn(
            f"Pruned zeros did not survive int8 conversion in {', '.join(lost)}.", stacklevel=2
        )
    if print_fn is not None:
        print_fn(result.table())
    return result
