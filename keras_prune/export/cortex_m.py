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

import hashlib
import json
import os
import subprocess
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from keras_prune import io as kp_io
from keras_prune.export import cbuild, tflite
from keras_prune.export.c_lowering import (
    MASK_MODES,
    SUPPORTED_OPS,
    CExportError,
    CLayer,
    lower,
)
from keras_prune.export.c_model import MemoryPlan, emit, plan_memory
from keras_prune.export.sparse_cost import SPARSE_MODES
from keras_prune.export.tflite_graph import Graph, read_tflite

__all__ = [
    "cmsis",
    "CExport",
    "CExportError",
    "generate",
    "GeneratedModel",
    "build_host",
    "run_host",
    "SUPPORTED_OPS",
]

TARGETS = ("cortex-m4",)
CSRC = Path(__file__).parent / "csrc"
HOST_MAIN = CSRC / "host" / "kp_host_main.c"


@dataclass
class GeneratedModel:
    """The C library for one ``.tflite``, in memory (``files``) before it is written."""

    graph: Graph
    layers: list[CLayer]
    plan: MemoryPlan
    files: dict[str, str | bytes]

    @property
    def input(self):
        return self.graph.tensors[self.graph.inputs[0]]

    @property
    def output(self):
        return self.graph.tensors[self.graph.outputs[0]]


def _kernel_files() -> dict[str, bytes]:
    return {
        f"kernels/{p.name}": p.read_bytes()
        for p in sorted((CSRC / "kernels").iterdir())
        if p.suffix in (".c", ".h")
    }


def generate(
    model_bytes: bytes,
    names: dict[int, tuple[str, ...]] | None = None,
    model_name: str = "model",
    sparse: str = "auto",
    masks: str = "threshold",
    mask_rates: dict[str, float] | None = None,
) -> GeneratedModel:
    """Lower an int8 ``.tflite`` to C sources (nothing is written or compiled).
    ``sparse``, ``masks``, ``mask_rates``: see ``c_lowering.lower``."""
    from keras_prune import __version__

    graph = read_tflite(model_bytes)
    layers = lower(graph, names, sparse, masks, mask_rates)
    plan = plan_memory(graph, layers)
    files: dict[str, str | bytes] = dict(
        emit(graph, layers, plan, {"model": model_name, "version": __version__})
    )
    files.update(_kernel_files())
    files["model.tflite"] = model_bytes
    return GeneratedModel(graph, layers, plan, files)


def write_sources(files: dict[str, str | bytes], directory: Path) -> None:
    for name, content in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)


def model_sources(directory: Path) -> list[Path]:
    """Every C file of a generated model directory (kernels included)."""
    return sorted([*directory.glob("*.c"), *(directory / "kernels").glob("*.c")])


def build_host(
    directory: str | os.PathLike,
    out: str | os.PathLike,
    sanitize: bool = False,
    cmsis_nn: str | os.PathLike | None = None,
) -> Path:
    """Compile a generated model with the host's gcc (``-Werror``) into a runner that
    reads int8 inputs on stdin and writes int8 outputs on stdout.

    ``cmsis_nn``: a CMSIS-NN checkout; the model is then built with ``-DKP_USE_CMSIS_NN``
    together with CMSIS-NN's portable C sources (without ``-Werror``: its code is not ours).
    """
    directory = Path(directory)
    sources = [*model_sources(directory), HOST_MAIN]
    includes = [directory, directory / "kernels"]
    if cmsis_nn is None:
        return cbuild.compile_host(sources, includes, Path(out), sanitize=sanitize)
    root = Path(cmsis_nn)
    from keras_prune.export.m4_cycles import cmsis_nn_sources

    return cbuild.compile_host(
        [*sources, *cmsis_nn_sources(root)],
        [*includes, root / "Include"],
        Path(out),
        sanitize=sanitize,
        defines=("KP_USE_CMSIS_NN",),
        werror=False,
    )


def run_host(
    exe: str | os.PathLike, xq: np.ndarray, output_size: int, timeout: float = 600
) -> np.ndarray:
    """Run the host runner on int8 inputs (one per row); the int8 outputs, one per row."""
    xq = np.ascontiguousarray(xq, np.int8).reshape(len(xq), -1)
    done = subprocess.run(
        [str(exe), str(len(xq))], input=xq.tobytes(), capture_output=True, timeout=timeout
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"the host build of the generated model failed (exit "
            f"{done.returncode}): {done.stderr.decode(errors='replace')[-2000:]}"
        )
    out = np.frombuffer(done.stdout, np.int8)
    if out.size != len(xq) * output_size:
        raise RuntimeError(
            f"the host runner wrote {out.size} bytes for {len(xq)} inputs of "
            f"{output_size} outputs each."
        )
    return out.reshape(len(xq), output_size)


# ------------------------------------------------------------------------ report
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


def _agreement(a: np.ndarray, b: np.ndarray) -> dict:
    diff = np.abs(a.astype(np.int32) - b.astype(np.int32))
    return {
        "samples": int(len(a)),
        "values": int(a.size),
        "mismatches": int(np.count_nonzero(diff)),
        "max_abs_diff": int(diff.max(initial=0)),
        "bit_exact": bool(not diff.any()),
    }


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
    from keras_prune.export.tflite_micro import model_ops

    return {op.index: op.layers for op in model_ops(model_bytes, plain)}


def _mask_rates(plain: keras.Model) -> dict[str, float]:
    """Winner rate per ActivationThreshold layer (the masks' rates, recorded by kp.strip)."""
    from keras_prune.layers import ActivationThreshold
    from keras_prune.pruning import _all_layers

    return {
        la.name: la.winner_rate
        for la in _all_layers(plain)
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
    from keras_prune.export import tflite_micro as tm

    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}.")
    if not isinstance(samples, int) or isinstance(samples, bool) or samples < 1:
        raise ValueError(f"samples must be a positive integer, got {samples!r}.")
    if sparse not in SPARSE_MODES:
        raise ValueError(f"sparse must be one of {SPARSE_MODES}, got {sparse!r}.")
    if masks not in MASK_MODES:
        raise ValueError(f"masks must be one of {MASK_MODES}, got {masks!r}.")
    dest = kp_io.atomic_dir(out_dir, overwrite=force)
    dest.check()
    from keras_prune.pruning import _check_model

    _check_model(model, "kp.export.cmsis")
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ValueError(
            f"kp.export.cmsis: model '{model.name}' has {len(model.inputs)} "
            f"inputs and {len(model.outputs)} outputs; the C export takes one "
            "of each."
        )
    rep, x_val, y_val = tm.export_data(model, representative_data, labels, validation_data, samples)

    plain = tm.prepare(model, rep)
    try:
        model_bytes = tflite.convert_int8(plain, rep, int8_io=True)
    except Exception as e:
        first = str(e).strip().splitlines()
        raise ValueError(
            f"int8 conversion of model '{model.name}' failed: "
            f"{first[0] if first else type(e).__name__}."
        ) from e
    gen = generate(
        model_bytes, _names(model_bytes, plain), model.name, sparse, masks, _mask_rates(plain)
    )
    tflm_arena = tm.measure_arena(model_bytes)["total"]

    inp, outp = gen.input, gen.output
    xq = tflite.quantize_input(
        np.asarray(x_val, np.float32).reshape(len(x_val), *inp.shape[1:]),
        float(inp.scale[0]),
        int(inp.zero_point[0]),
    )
    reference = tflite.run_tflm_raw(
        model_bytes, xq, arena_size=max(1 << 16, 2 * tflm_arena), progress=progress
    )[0].reshape(len(xq), -1)
    verification: dict = {"reference": "TFLM interpreter (tflite-micro)"}
    topk = masks == "topk" and any(la.mask for la in gen.layers)
    sizes = {
        "tflite_bytes": len(model_bytes),
        "const_bytes": sum(a.nbytes for la in gen.layers for a in la.arrays if not a.cmsis_only),
    }
    accuracy = None
    with tempfile.TemporaryDirectory(prefix="kp_cbuild_") as build:
        build = Path(build)
        write_sources(gen.files, build / "src")
        host_out = None
        if cbuild.find_cc() is None:
            verification["host_skipped"] = "no host C compiler (gcc) found"
        else:
            exe = build_host(build / "src", build / "kp_host")
            host_out = run_host(exe, xq, outp.size)
            if topk:
                verification["host_skipped"] = (
                    "masks='topk': the C code keeps the top-k winners at run time, TFLM runs "
                    "the threshold form; compare their accuracies"
                )
                verification["host_vs_tflm_threshold"] = _agreement(host_out, reference)
            else:
                verification["host"] = _agreement(host_out, reference)
        from keras_prune.export import m4

        have_m4 = m4.find_cross_toolchain() is not None and m4.find_qemu() is not None
        if verify_m4 and not have_m4:
            raise RuntimeError(
                "verify_m4=True needs arm-none-eabi-gcc and qemu-system-arm: "
                "sudo apt-get install --no-install-recommends "
                "gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm"
            )
        if (verify_m4 or verify_m4 is None) and have_m4 and host_out is not None:
            elf = m4.build_firmware(build / "src", xq, build / "m4")
            m4_out = m4.run_qemu(elf, len(xq), outp.size)
            verification["cortex_m4"] = _agreement(m4_out, host_out)
            sizes["cortex_m4"] = m4.size_report(elf)
        elif not have_m4:
            verification["cortex_m4_skipped"] = "arm-none-eabi-gcc or qemu-system-arm not installed"
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
    manifest["files"] = {
        name: hashlib.sha256(c if isinstance(c, bytes) else c.encode()).hexdigest()
        for name, c in sorted(files.items())
    }
    files["manifest.json"] = json.dumps(manifest, indent=2) + "\n"
    with dest as tmp:
        write_sources(files, Path(tmp))
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
