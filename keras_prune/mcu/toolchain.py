"""The C toolchains: the host's gcc and the Arm cross compiler, found once, run one way.

The generator's output and the kernels are C99 that must build warning-free; tests build
them once with ``WARN_FLAGS`` and once with ``SANITIZE_FLAGS`` (ASan + UBSan, aborting on
the first report), so every fuzz case is also an undefined-behaviour check. The Cortex-M4
builds (firmware for QEMU, library ELFs for the unicorn profiler) use
``arm-none-eabi-gcc`` with newlib, and ``CPU_FLAGS`` + ``C_FLAGS``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from functools import cache
from pathlib import Path

__all__ = [
    "WARN_FLAGS",
    "SANITIZE_FLAGS",
    "CPU_FLAGS",
    "C_FLAGS",
    "INSTALL_HINT",
    "find_cc",
    "compile_host",
    "CompileError",
    "ToolchainError",
    "find_cross_toolchain",
    "find_qemu",
    "require_cross_gcc",
    "binutil",
    "run",
]

WARN_FLAGS = ("-std=c99", "-Wall", "-Wextra", "-Werror", "-O2")
SANITIZE_FLAGS = ("-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-g", "-O1")


CPU_FLAGS = ("-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=soft")
C_FLAGS = ("-std=c99", "-Wall", "-Wextra", "-Werror", "-ffunction-sections", "-fdata-sections")
INSTALL_HINT = (
    "sudo apt-get install --no-install-recommends gcc-arm-none-eabi "
    "libnewlib-arm-none-eabi qemu-system-arm (or `make toolchain` as root)"
)


class CompileError(RuntimeError):
    """The C compiler rejected the sources; the message holds its command and output."""


class ToolchainError(RuntimeError):
    """A cross tool is missing or failed; the message holds its command and output."""


def find_cc() -> str | None:
    """The host C compiler (``$CC``, else ``gcc``), or None when there is none."""
    cc = os.environ.get("CC") or "gcc"
    return shutil.which(cc)


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


# ------------------------------------------------------------------------ Arm cross tools
@cache
def _newlib_ok(gcc: str) -> bool:
    try:
        done = subprocess.run(
            [gcc, *CPU_FLAGS, "-print-file-name=libc.a"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError):
        return False
    # Without newlib gcc echoes the bare name back instead of a path.
    path = done.stdout.strip()
    return done.returncode == 0 and os.path.isabs(path) and os.path.isfile(path)


def find_cross_toolchain() -> str | None:
    """Path of ``arm-none-eabi-gcc`` (``$KP_ARM_GCC`` overrides), or None when it or
    newlib's ``libc.a`` for ``thumb/v7e-m/nofp`` is missing (the firmware links both)."""
    gcc = shutil.which(os.environ.get("KP_ARM_GCC") or "arm-none-eabi-gcc")
    if gcc is None or not _newlib_ok(gcc):
        return None
    return gcc


def find_qemu() -> str | None:
    """Path of ``qemu-system-arm`` (``$KP_QEMU_ARM`` overrides), or None."""
    return shutil.which(os.environ.get("KP_QEMU_ARM") or "qemu-system-arm")


def require_cross_gcc(error: type[Exception] = ToolchainError) -> str:
    """``find_cross_toolchain()``, or ``error`` with the install command."""
    gcc = find_cross_toolchain()
    if gcc is None:
        raise error(f"arm-none-eabi-gcc with newlib not found: {INSTALL_HINT}")
    return gcc


def binutil(gcc: str, tool: str, error: type[Exception] | None = ToolchainError) -> str | None:
    """``arm-none-eabi-<tool>`` beside the compiler, else from PATH. When it is missing:
    ``error`` with the install command, or None when ``error`` is None."""
    prefix = gcc[:-3] if gcc.endswith("gcc") else "arm-none-eabi-"
    for name in (prefix + tool, f"arm-none-eabi-{tool}"):
        found = shutil.which(name)
        if found:
            return found
    if error is None:
        return None
    raise error(f"arm-none-eabi-{tool} not found: {INSTALL_HINT}")


def run(cmd: list[str], what: str, error: type[Exception] = ToolchainError) -> str:
    """Run a tool; its stdout, or ``error`` naming ``what`` with the command and output."""
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise error(
            f"{what} failed (exit {done.returncode}):\n  {' '.join(cmd)}\n"
            f"{done.stdout}{done.stderr}".rstrip()
        )
    return done.stdout
