"""Where the C kernel library lives in the package, and how it is laid out in an export.

The kernels (``csrc/``, laid out in ``csrc/README.md``) are copied whole into every C
export under ``kernels/``; the generated model code includes only the public headers at
the top of that folder, and the kernels reach their internal headers as ``internal/...``.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["KERNEL_DIR", "kernel_sources", "kernel_files", "include_dirs"]

KERNEL_DIR = Path(__file__).parent / "csrc"
_SUFFIXES = (".c", ".h")


def kernel_sources() -> list[Path]:
    """The kernels' ``.c`` files (each holds its portable path and, under ``KP_ARM_DSP``,
    its Cortex-M4 one)."""
    return sorted(KERNEL_DIR.rglob("*.c"))


def include_dirs(root: Path = KERNEL_DIR) -> list[Path]:
    """The include path of the kernel library rooted at ``root`` (the package's, or the
    ``kernels/`` folder of an export)."""
    return [Path(root)]


def kernel_files() -> dict[str, bytes]:
    """The library as export files: ``kernels/<path>`` -> bytes, in a stable order."""
    return {
        f"kernels/{p.relative_to(KERNEL_DIR).as_posix()}": p.read_bytes()
        for p in sorted(KERNEL_DIR.rglob("*"))
        if p.suffix in _SUFFIXES
    }
