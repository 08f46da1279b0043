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
import os
import warnings
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import keras
import numpy as np

from keras_prune.export import pipeline
from keras_prune.export.int8.convert import MAX_CALIBRATION_SAMPLES
from keras_prune.export.int8.op_map import Op, model_ops
from keras_prune.export.int8.runtime import litert_interpreter, output_order
from keras_prune.export.int8.tflm_ops import TFLM_OPS
from keras_prune.export.tflite_micro.templates import (
    model_data_files,
    model_settings_file,
    op_resolver_file,
    readme_file,
)
from keras_prune.export.tflite_micro.verify import (
    ARENA_MARGIN,
    Agreement,
    arena_budget,
    check_ops,
    cmsis_nn_scratch,
    compare_runtimes,
    io_details,
    measure_arena,
    tolerance_reason,
    top1_classes,
    zero_checks,
)

__all__ = ["tflm", "TflmExport"]


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
    interp = litert_interpreter(model_bytes)
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
    api = "kp.export.tflm"
    dest = pipeline.destination(out_dir, force)  # fail before minutes of work, not after
    pipeline.check_samples(samples)
    pipeline.check_int8_model(model, api, outputs=None)
    rep, x_val, y_val = pipeline.export_data(
        model, representative_data, labels, validation_data, samples
    )
    plain = pipeline.prepare(model, rep, api)
    model_bytes = pipeline.convert(plain, rep, model.name, int8_io=int8_io)
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
    why = "given by the caller" if tolerance_lsb is not None else tolerance_reason(agreement)
    _, inp, outs = io_details(model_bytes)
    order, _, _ = output_order(model_bytes)

    accuracy = None
    if y_val is not None:
        from keras_prune._data import predict
        from keras_prune.integral import accuracy as top1

        float_pred = predict(plain, x_val)[0]
        pos = order[0]
        accuracy = {
            "samples": len(x_val),
            "float": top1(y_val, float_pred),
            "int8_tflm": float(np.mean(top1_classes(tflm_out[pos], outs[pos]) == y_val)),
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
            "calibration_samples": min(len(rep), MAX_CALIBRATION_SAMPLES),
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
    manifest["files"] = pipeline.file_digests(files, sizes=True)
    files["manifest.json"] = json.dumps(manifest, indent=2, default=_plain) + "\n"
    pipeline.write(dest, files)
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
