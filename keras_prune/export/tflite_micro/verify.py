"""Checks of an int8 ``.tflite`` for TFLite Micro: its ops, its arena, TFLM against
LiteRT on the same inputs, and whether pruned zeros survived quantization."""

from __future__ import annotations

import math
from dataclasses import dataclass

import keras
import numpy as np

from keras_prune.export.int8.cmsis_nn_buffers import cmsis_nn_scratch_bytes
from keras_prune.export.int8.op_map import Op, model_ops
from keras_prune.export.int8.runtime import (
    litert_interpreter,
    measure_arena,
    quantize_input,
    require_runtime,
    run_tflm_raw,
)
from keras_prune.export.int8.tflm_ops import TFLM_OPS, remedy
from keras_prune.layers.prunable import kernel_specs

__all__ = [
    "UnsupportedOpsError",
    "ARENA_MARGIN",
    "MIN_TOP1_AGREEMENT",
    "Agreement",
    "check_ops",
    "measure_arena",
    "cmsis_nn_scratch",
    "arena_budget",
    "expected_tolerance",
    "tolerance_reason",
    "compare_runtimes",
    "ZeroCheck",
    "zero_checks",
    "io_details",
    "top1_classes",
    "run_litert_reference",
]

ARENA_MARGIN = 0.10  # on top of the measured arena plus CMSIS-NN scratch; see arena_budget
MIN_TOP1_AGREEMENT = 0.99


class UnsupportedOpsError(ValueError):
    """The model needs ops that TFLite Micro does not have."""


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
def io_details(model_bytes: bytes):
    interp = litert_interpreter(model_bytes)
    return interp, interp.get_input_details()[0], interp.get_output_details()


def _to_input(x: np.ndarray, detail) -> np.ndarray:
    if detail["dtype"] == np.int8:
        scale, zero_point = detail["quantization"]
        return quantize_input(np.asarray(x, np.float32), scale, zero_point)
    return np.asarray(x, detail["dtype"])


def run_litert_reference(
    model_bytes: bytes, xq: np.ndarray, extra: tuple[int, ...] = ()
) -> list[np.ndarray]:
    """Like ``tflite.run_tflm_raw``, in LiteRT with its reference kernels."""
    litert = require_runtime("ai_edge_litert.interpreter")
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


def cmsis_nn_scratch(model_bytes: bytes, ops: list[Op]) -> int:
    """The largest scratch buffer CMSIS-NN's Cortex-M4 (DSP) kernels ask TFLM for.

    TFLM's reference kernels measured on the host need none; on a board built with
    CMSIS-NN, conv (im2col), depthwise and average-pool kernels each request one for the
    duration of their op.
    """
    interp = litert_interpreter(model_bytes)
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
    interp, _, outs = io_details(model_bytes)
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


def tolerance_reason(g: Agreement) -> str:
    if g.logits_max_diff_lsb is not None:
        return (
            f"SOFTMAX output: its logits differ by {g.logits_max_diff_lsb} step(s) "
            f"(FC rounding allows {g.logits_tolerance_lsb}); softmax moves a "
            "probability by at most ceil(128 * logit_scale * that) + 1 steps"
        )
    if g.tolerance_lsb == 0:
        return "no FULLY_CONNECTED op: the kernels are bit-exact"
    return f"{g.tolerance_lsb} FULLY_CONNECTED op(s), at most 1 step each"


def top1_classes(raw: np.ndarray, detail) -> np.ndarray:
    value = raw.astype(np.float64)
    if detail["dtype"] == np.int8:
        scale, zero_point = detail["quantization"]
        value = (value - zero_point) * scale
    flat = value.reshape(len(value), -1)
    return (flat[:, 0] > 0.5).astype(int) if flat.shape[1] == 1 else flat.argmax(-1)


def _softmax_inputs(model_bytes: bytes, ops: list[Op]) -> dict[int, tuple[int, float]]:
    """Subgraph output position -> (its SOFTMAX's input tensor, that tensor's scale)."""
    interp, _, outs = io_details(model_bytes)
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
    _, inp, outs = io_details(model_bytes)
    xq = _to_input(x, inp)
    tflm_all = run_tflm_raw(model_bytes, xq, arena_size, progress, extra=extra)
    tflm_out = tflm_all[: len(outs)]
    again = run_tflm_raw(model_bytes, xq[:determinism_samples], arena_size)
    deterministic = all(
        np.array_equal(a[:determinism_samples], b) for a, b in zip(tflm_out, again, strict=True)
    )
    ref_all = run_litert_reference(model_bytes, xq, extra=extra)
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
    top1 = float(np.mean(top1_classes(tflm_out[0], outs[0]) == top1_classes(ref_out[0], outs[0])))
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
    interp = litert_interpreter(model_bytes)
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
