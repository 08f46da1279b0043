"""Host C compilation for the C export: the flags the kernels must pass and a compile call.

The generator's output and the kernels are C99 that must build warning-free; tests build
them once with ``WARN_FLAGS`` and once with ``SANITIZE_FLAGS`` (ASan + UBSan, aborting on
the first report), so every fuzz case is also an undefined-behaviour check.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path

__all__ = [
    "WARN_FLAGS",
    "SANITIZE_FLAGS",
    "KERNEL_DIR",
    "find_cc",
    "compile_host",
    "kernel_sources",
    "CompileError",
]

KERNEL_DIR = Path(__file__).parent / "csrc" / "kernels"
WARN_FLAGS = ("-std=c99", "-Wall", "-Wextra", "-Werror", "-O2")
SANITIZE_FLAGS = ("-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-g", "-O1")


class CompileError(RuntimeError):
    """The C compiler rejected the sources; the message holds its command and output."""


def find_cc() -> str | None:
    """The host C compiler (``$CC``, else ``gcc``), or None when there is none."""
    cc = os.environ.get("CC") or "gcc"
    return shutil.which(cc)


def kernel_sources() -> list[Path]:
    """The kernels' ``.c`` files (portable and DSP; ``KP_ARM_DSP`` picks per target)."""
    return sorted(KERNEL_DIR.glob("*.c"))


def compile_host(
    sources: Iterable[str | os.PathLike],
    include_dirs: Iterable[str | os.PathLike],
    out_path: str | os.PathLike,
    sanitize: bool = False,
    defines: Sequence[str] = (),
    werror: bool = True,
) -> Path:
    """Compile and link ``sources`` into the executable ``out_path`` with ``WARN_FLAGS``
    (the sanitizer flags replace ``-O2`` when ``sanitize``). ``defines`` are ``NAME`` or
    ``NAME=VALUE``; ``werror=False`` drops ``-Werror``, for code that is not ours.
    Raises ``CompileError`` with the compiler's output on failure."""
    cc = find_cc()
    if cc is None:
        raise CompileError("no host C compiler found (gcc): sudo apt-get install gcc")
    flags = [
        f
        for f in WARN_FLAGS
        if not (sanitize and f == "-O2") and not (not werror and f == "-Werror")
    ]
    if sanitize:
        flags += SANITIZE_FLAGS
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [
        cc,
        *flags,
        *(f"-D{d}" for d in defines),
        *(f"-I{d}" for d in include_dirs),
        *(str(s) for s in sources),
        "-o",
        str(out),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise CompileError(
            f"C compilation failed (exit {done.returncode}):\n  {' '.join(cmd)}\n"
            f"{done.stdout}{done.stderr}"
        )
    return out
