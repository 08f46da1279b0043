"""The host build of a generated C model: a runner that reads int8 inputs on stdin and
writes int8 outputs on stdout, compiled with the host's gcc (optionally with ASan/UBSan,
or against CMSIS-NN's portable C)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np

from keras_prune.mcu.toolchain import compile_host

__all__ = [
    "HOST_MAIN",
    "model_sources",
    "model_include_dirs",
    "build_host",
    "run_host",
    "cmsis_nn_sources",
]

HOST_MAIN = Path(__file__).parent / "csrc" / "host" / "kp_host_main.c"


def model_sources(directory: Path) -> list[Path]:
    """Every C file of a generated model directory (kernels included)."""
    return sorted([*directory.glob("*.c"), *(directory / "kernels").rglob("*.c")])


def model_include_dirs(directory: Path) -> list[Path]:
    """The include path of a generated model directory: its own headers and the kernels'."""
    return [directory, directory / "kernels"]


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
    includes = model_include_dirs(directory)
    if cmsis_nn is None:
        return compile_host(sources, includes, Path(out), sanitize=sanitize)
    root = Path(cmsis_nn)
    return compile_host(
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


def cmsis_nn_sources(root: Path) -> list[Path]:
    """CMSIS-NN's integer kernels in a checkout (its float sources need extra config)."""
    if not (root / "Include" / "arm_nnfunctions.h").is_file():
        raise FileNotFoundError(
            f"'{root}' is not a CMSIS-NN checkout (no Include/arm_nnfunctions.h)."
        )
    return [
        p
        for p in sorted((root / "Source").rglob("*.c"))
        if "_f32" not in p.name
        and "_f16" not in p.name
        and "_flt.h" not in p.read_text(errors="replace")
    ]
