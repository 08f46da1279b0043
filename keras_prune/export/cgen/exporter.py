"""CMSIS-NN-ready C for Cortex-M4: a self-contained C99 library, bit-exact with TFLite Micro.

Example:

```python
report = kp.export.cmsis(model, "out/c", representative_data=x_train[:500],
                         validation_data=(x_val, y_val))
print(report)      # layers, arena vs TFLM, flash, host and Cortex-M4 agreement with TFLM
```

The directory it writes (atomically: a temporary directory renamed at the end):

=================  =====================================================================
``kp_model.h``     ``kp_model_invoke(in, out)``, input/output sizes, scales, zero points
``kp_model.c``     the layer sequence over one static arena (no malloc)
``kp_weights.c/h`` const int8 weights, int32 effective biases, multipliers and shifts
``kernels/``       our int8 kernels: portable C99 + Cortex-M4 DSP paths
``model.tflite``   the int8 model the code was generated from (check it against TFLM)
``manifest.json``  layers, memory plan, sizes, verification results
``README.md``      how to build it, with or without CMSIS-NN
=================  =====================================================================

The model goes through the same int8 conversion as ``kp.export.tflm``; the ``.tflite``
flatbuffer is then decoded (``tflite_graph``), lowered to kernel calls (``c_lowering``),
given a static memory plan and emitted (``c_model``). Compiled with ``-DKP_USE_CMSIS_NN``,
the dense layers call ARM's CMSIS-NN instead of our kernels.

Verification: the generated code is compiled for the host with ``-Werror`` and its outputs
are compared with the TFLM interpreter's, bit for bit; when ``arm-none-eabi-gcc`` and
``qemu-system-arm`` are installed, the same code is built for a Cortex-M4 and run on QEMU's
``mps2-an386`` board, and its outputs must equal the host's.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from keras_prune.export import pipeline
from keras_prune.export.cgen.cost_model import SPARSE_MODES
from keras_prune.export.cgen.generate import GeneratedModel, generate
from keras_prune.export.cgen.lowering import MASK_MODES, SUPPORTED_OPS, CExportError, CLayer
from keras_prune.export.cgen.verify import require_cortex_m4, verify
from keras_prune.export.int8.op_map import model_ops
from keras_prune.export.int8.runtime import measure_arena, quantize_input, run_tflm_raw
from keras_prune.layers import ActivationThreshold
from keras_prune.model_utils import all_layers

__all__ = [
    "cmsis",
    "CExport",
    "CExportError",
    "generate",
    "GeneratedModel",
    "SUPPORTED_OPS",
]

TARGETS = ("cortex-m4",)


@dataclass
class CExport:
    """What ``kp.export.cmsis`` wrote and measured."""

    out_dir: Path
    manifest: dict
    layers: list[CLayer] = field(repr=False, default_factory=list)

    @property
    def arena_bytes(self) -> int:
        return self.manifest["memory"]["arena_bytes"]

    @property
    def bit_exact(self) -> bool | None:
        v = self.manifest["verification"]
        checks = [c["bit_exact"] for c in (v.get("host"), v.get("cortex_m4")) if c]
        return all(checks) if checks else None

    def table(self) -> str:
        m = self.manifest
        mem, v = m["memory"], m["verification"]
        lines = [
            f"C export of '{m['model']}' for {m['target']} -> {self.out_dir}/",
            f"  {'layer':<28} {'op':<18} {'kernel':<24} {'MACs':>11}",
        ]
        for la in m["layers"]:
            name = ", ".join(la["keras_layers"]) or "-"
            lines.append(
                f"  {name[:28]:<28} {la['op']:<18} {la['kernel'][:24]:<24} {la['macs']:>11,}"
            )
        masks = [la for la in m["layers"] if la.get("mask")]
        if masks:
            form = m.get("masks", "threshold")
            lines.append(
                f"  activation masks: {len(masks)}, "
                + (
                    "top-k winners at run time (the Keras ActivationMask)"
                    if form == "topk"
                    else "threshold form (as the .tflite)"
                )
            )
            for la in masks:
                k = la["mask"]
                name = ", ".join(la["keras_layers"]) or la["op"]
                what = (
                    f"keeps {k['winners']} of {k['size']}"
                    if form == "topk"
                    else f"keeps int8 values >= {k['min_kept']}"
                )
                rate = k.get("winner_rate")
                lines.append(
                    f"    {name[:24]:<24} {what}"
                    + (f" (winner rate {rate:.2f})" if rate is not None else "")
                )
        choices = [la for la in m["layers"] if la.get("sparse")]
        if choices:
            lines.append("  dense or sparse, per layer (estimated Cortex-M4 cycles):")
            for la in choices:
                name = ", ".join(la["keras_layers"]) or la["op"]
                lines.append(
                    f"    {name[:24]:<24} {la['sparse']['kernel']:<6} {la['sparse']['reason']}"
                )
        lines.append(
            f"  arena         {mem['arena_bytes']:,} bytes (TFLM measured "
            f"{mem['tflm_arena_bytes']:,})"
        )
        lines.append(
            f"  weights       {m['sizes']['const_bytes']:,} bytes of constants "
            f"(model.tflite {m['sizes']['tflite_bytes']:,} bytes)"
        )
        size = m["sizes"].get("cortex_m4")
        if size:
            lines.append(
                f"  Cortex-M4     flash {size['model_flash']:,} bytes for the model "
                f"(weights + code; {size['flash']:,} with the test firmware), RAM "
                f"{size['model_ram']:,} bytes"
            )
        for key, label in (("host", "host vs TFLM"), ("cortex_m4", "Cortex-M4 vs host")):
            c = v.get(key)
            if c:
                lines.append(
                    f"  {label:<13} {'bit-exact' if c['bit_exact'] else 'DIFFERENT'}"
                    f" on {c['samples']} inputs ({c['mismatches']} values differ)"
                )
            else:
                lines.append(f"  {label:<13} not run ({v.get(key + '_skipped', 'disabled')})")
        acc = m.get("accuracy")
        if acc:
            lines.append(
                f"  accuracy      float {acc['float']:.2%}, int8 C {acc['int8_c']:.2%}"
                + (
                    f" (top-k masks; threshold form in TFLM {acc['int8_tflm']:.2%})"
                    if m.get("masks") == "topk" and masks
                    else ""
                )
                + f" on {acc['samples']} inputs"
            )
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def _readme(manifest: dict) -> str:
    mem, io_ = manifest["memory"], manifest["io"]
    return f"""# {manifest["model"]}: int8 C for {manifest["target"]} (generated by keras-prune)

Self-contained C99: no malloc, one static arena of {mem["arena_bytes"]:,} bytes.

```c
#include "kp_model.h"
int8_t in[KP_MODEL_INPUT_SIZE], out[KP_MODEL_OUTPUT_SIZE];
/* quantize: in[i] = clamp(round(x[i] / KP_MODEL_INPUT_SCALE) + KP_MODEL_INPUT_ZERO_POINT) */
int status = kp_model_invoke(in, out);   /* 0 on success */
```

Input: int8 {io_["input"]["shape"]}, scale {io_["input"]["scale"]:.9g}, zero point
{io_["input"]["zero_point"]}. Output: int8 {io_["output"]["shape"]}, scale
{io_["output"]["scale"]:.9g}, zero point {io_["output"]["zero_point"]}.

## Build

Compile every `.c` here and in `kernels/`, with `-I. -Ikernels`:

    arm-none-eabi-gcc -mcpu=cortex-m4 -mthumb -O2 -std=c99 -I. -Ikernels -c *.c kernels/*.c

On an Armv7E-M core (Cortex-M4/M7) the kernels use the DSP instructions (SXTB16, SMLAD);
elsewhere they compile to portable C99 (add `-DKP_NO_DSP` to force that on a Cortex-M4).

With ARM's CMSIS-NN in your firmware, add `-DKP_USE_CMSIS_NN` and CMSIS-NN's include
directory: the convolutions, depthwise convolutions, fully connected layers, pooling, adds
and softmax then call `arm_*_s8` functions. Outputs are identical either way.

`model.tflite` is the int8 model this code was generated from: run it in the TFLite
Micro interpreter to check the outputs bit for bit. `manifest.json` lists the layers,
the memory plan and the verification results.
"""


def _names(model_bytes: bytes, plain: keras.Model) -> dict[int, tuple[str, ...]]:
    return {op.index: op.layers for op in model_ops(model_bytes, plain)}


def _mask_rates(plain: keras.Model) -> dict[str, float]:
    """Winner rate per ActivationThreshold layer (the masks' rates, recorded by kp.strip)."""
    return {
        la.name: la.winner_rate
        for la in all_layers(plain)
        if isinstance(la, ActivationThreshold) and la.winner_rate is not None
    }


def cmsis(
    model: keras.Model,
    out_dir: str | os.PathLike,
    representative_data,
    target: str = "cortex-m4",
    force: bool = False,
    labels=None,
    validation_data=None,
    samples: int = 100,
    verify_m4: bool | None = None,
    sparse: str = "auto",
    masks: str = "threshold",
    progress: bool = True,
    print_fn=print,
) -> CExport:
    """Export ``model`` as C for a Cortex-M4 and check it bit for bit against TFLite Micro.

    Args:
        model: a built Keras model with one input and one output; pruning wrappers and
            activation masks are allowed (stripped; masks become calibrated thresholds).
        out_dir: the directory to create, atomically; an existing one is refused unless
            ``force``.
        representative_data: float inputs calibrating the int8 ranges (as ``kp.export.tflm``).
        target: ``"cortex-m4"`` (the only target so far).
        labels: classes of ``representative_data``, to report float vs int8 accuracy.
        validation_data: ``(x, y)`` or ``x`` to verify on instead of
            ``representative_data``/``labels``.
        samples: how many inputs are run in TFLM and the generated code (default 100).
        verify_m4: build for a Cortex-M4 and run on QEMU. ``None`` (default): when
            ``arm-none-eabi-gcc`` and ``qemu-system-arm`` are installed. ``True``: required.
        sparse: ``"auto"`` (default) runs each FULLY_CONNECTED and CONV_2D layer on its
            SIMD-group sparse weights (``SIMDGroups(4)`` pruning) where the calibrated
            cost model (``sparse_cost``) estimates that faster than the dense kernel,
            ``"always"`` wherever the layer has weights, ``"never"`` nowhere. Each
            layer's choice and its reason are in the report and the manifest. The same
            switch governs the zero-skipping kernel of a FULLY_CONNECTED or 1x1 CONV_2D
            fed by an activation mask: it visits only the non-zero inputs.
        masks: how activation masks run. ``"threshold"`` (default): as the ``.tflite``
            runs them (GREATER_EQUAL + SELECT_V2 against the calibrated threshold), bit for
            bit with TFLM. ``"topk"``: the top ``ceil(rate * n)`` winners of each map at run
            time, as the Keras ActivationMask keeps them; TFLM has no such op, so the C
            outputs are not compared with TFLM (the Cortex-M4 build is still compared
            with the host build), and the report gives both forms' int8 accuracy.
        print_fn: where the report goes (``None`` for silence).

    Raises:
        FileExistsError: ``out_dir`` exists and ``force`` is False (checked first).
        CExportError: an op, quantization or shape the kernels cannot run exactly, naming
            the operator and its Keras layer; nothing is written.
        ValueError: an unknown target, a bad ``samples``, data that does not fit the model.
    """
    api = "kp.export.cmsis"
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}.")
    pipeline.check_samples(samples)
    if sparse not in SPARSE_MODES:
        raise ValueError(f"sparse must be one of {SPARSE_MODES}, got {sparse!r}.")
    if masks not in MASK_MODES:
        raise ValueError(f"masks must be one of {MASK_MODES}, got {masks!r}.")
    dest = pipeline.destination(out_dir, force)
    if verify_m4:
        require_cortex_m4()  # before the work, not after
    pipeline.check_int8_model(model, api, outputs=1)
    rep, x_val, y_val = pipeline.export_data(
        model, representative_data, labels, validation_data, samples
    )
    plain = pipeline.prepare(model, rep, api)
    model_bytes = pipeline.convert(plain, rep, model.name)
    gen = generate(
        model_bytes, _names(model_bytes, plain), model.name, sparse, masks, _mask_rates(plain)
    )
    tflm_arena = measure_arena(model_bytes)["total"]

    inp, outp = gen.input, gen.output
    xq = quantize_input(
        np.asarray(x_val, np.float32).reshape(len(x_val), *inp.shape[1:]),
        float(inp.scale[0]),
        int(inp.zero_point[0]),
    )
    reference = run_tflm_raw(
        model_bytes, xq, arena_size=max(1 << 16, 2 * tflm_arena), progress=progress
    )[0].reshape(len(xq), -1)
    verification: dict = {"reference": "TFLM interpreter (tflite-micro)"}
    topk = masks == "topk" and any(la.mask for la in gen.layers)
    sizes = {
        "tflite_bytes": len(model_bytes),
        "const_bytes": sum(a.nbytes for la in gen.layers for a in la.arrays if not a.cmsis_only),
    }
    accuracy = None
    verified = verify(gen.files, xq, reference, outp.size, verify_m4, topk)
    verification.update(verified.checks)
    host_out = verified.host_out
    if verified.cortex_m4_sizes is not None:
        sizes["cortex_m4"] = verified.cortex_m4_sizes
    if y_val is not None:
        from keras_prune._data import predict

        got = host_out if host_out is not None else reference
        accuracy = {
            "samples": len(x_val),
            "float": float(np.mean(np.argmax(predict(plain, x_val)[0], -1) == y_val)),
            "int8_c": float(np.mean(np.argmax(got, -1) == y_val)),
            "int8_tflm": float(np.mean(np.argmax(reference, -1) == y_val)),
        }

    from keras_prune import __version__

    manifest = {
        "keras_prune": __version__,
        "model": model.name,
        "target": target,
        "masks": masks,
        "layers": [
            {
                "index": la.index,
                "op": la.op,
                "keras_layers": list(la.layers),
                "kernel": la.kernel,
                "macs": la.macs,
                "const_bytes": sum(a.nbytes for a in la.arrays if not a.cmsis_only),
                "scratch_bytes": la.scratch,
                **({"sparse": la.sparse} if la.sparse else {}),
                **({"mask": la.mask} if la.mask else {}),
            }
            for la in gen.layers
        ],
        "io": {
            "input": {
                "shape": list(inp.shape),
                "scale": float(inp.scale[0]),
                "zero_point": int(inp.zero_point[0]),
            },
            "output": {
                "shape": list(outp.shape),
                "scale": float(outp.scale[0]),
                "zero_point": int(outp.zero_point[0]),
            },
        },
        "memory": {
            "arena_bytes": gen.plan.arena_bytes,
            "tflm_arena_bytes": tflm_arena,
            "buffers": [
                {"buffer": b.key, "offset": b.offset, "bytes": b.size, "layers": [b.first, b.last]}
                for b in gen.plan.buffers
            ],
        },
        "sizes": sizes,
        "verification": verification,
        "accuracy": accuracy,
    }
    files = dict(gen.files)
    files["README.md"] = _readme(manifest)
    manifest["files"] = pipeline.file_digests(dict(sorted(files.items())))
    files["manifest.json"] = json.dumps(manifest, indent=2) + "\n"
    pipeline.write(dest, files)
    result = CExport(Path(out_dir), manifest, gen.layers)
    if result.bit_exact is False:
        warnings.warn(
            f"The generated C for '{model.name}' is NOT bit-exact: "
            f"{json.dumps({k: v for k, v in verification.items() if k != 'reference'})}",
            stacklevel=2,
        )
    if print_fn is not None:
        print_fn(result.table())
    return result
