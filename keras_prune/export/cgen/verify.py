"""The C exporter's one verification step: build the generated code for the host and run
it against TFLM's outputs, then (when the Arm toolchain and QEMU are here) build it for a
Cortex-M4, run it on QEMU and compare with the host. This is the only place the C
exporter reaches ``keras_prune.mcu``; the generator never does."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from keras_prune.export.cgen.generate import write_sources
from keras_prune.mcu import firmware, toolchain
from keras_prune.mcu.host import build_host, run_host

__all__ = ["Verified", "agreement", "cortex_m4_available", "require_cortex_m4", "verify"]


@dataclass
class Verified:
    """What the builds showed: the manifest's verification entries, the host build's
    outputs (None without a host compiler) and the Cortex-M4 firmware's sizes."""

    checks: dict
    host_out: np.ndarray | None
    cortex_m4_sizes: dict | None


def agreement(a: np.ndarray, b: np.ndarray) -> dict:
    """How two runs' int8 outputs agree: mismatches, largest difference, bit-exact or not."""
    diff = np.abs(a.astype(np.int32) - b.astype(np.int32))
    return {
        "samples": int(len(a)),
        "values": int(a.size),
        "mismatches": int(np.count_nonzero(diff)),
        "max_abs_diff": int(diff.max(initial=0)),
        "bit_exact": bool(not diff.any()),
    }


def cortex_m4_available() -> bool:
    """True when the Arm cross compiler (with newlib) and QEMU are installed."""
    return toolchain.find_cross_toolchain() is not None and toolchain.find_qemu() is not None


def require_cortex_m4() -> None:
    """Raise, with the install command, unless the Cortex-M4 check can run."""
    if not cortex_m4_available():
        raise RuntimeError(
            "verify_m4=True needs arm-none-eabi-gcc and qemu-system-arm: "
            "sudo apt-get install --no-install-recommends "
            "gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm"
        )


def verify(
    files: dict[str, str | bytes],
    xq: np.ndarray,
    reference: np.ndarray,
    output_size: int,
    verify_m4: bool | None,
    topk: bool,
) -> Verified:
    """Build and run the generated ``files`` on the quantized inputs ``xq``; compare the
    host build with TFLM's ``reference`` outputs (not bit for bit when ``topk`` masks run
    in C), and the Cortex-M4 build with the host (``verify_m4``: None = when possible)."""
    checks: dict = {}
    host_out = sizes = None
    with tempfile.TemporaryDirectory(prefix="kp_cbuild_") as build:
        build = Path(build)
        write_sources(files, build / "src")
        if toolchain.find_cc() is None:
            checks["host_skipped"] = "no host C compiler (gcc) found"
        else:
            exe = build_host(build / "src", build / "kp_host")
            host_out = run_host(exe, xq, output_size)
            if topk:
                checks["host_skipped"] = (
                    "masks='topk': the C code keeps the top-k winners at run time, TFLM runs "
                    "the threshold form; compare their accuracies"
                )
                checks["host_vs_tflm_threshold"] = agreement(host_out, reference)
            else:
                checks["host"] = agreement(host_out, reference)
        have_m4 = cortex_m4_available()
        if verify_m4:
            require_cortex_m4()
        if (verify_m4 or verify_m4 is None) and have_m4 and host_out is not None:
            elf = firmware.build_firmware(build / "src", xq, build / "m4")
            m4_out = firmware.run_qemu(elf, len(xq), output_size)
            checks["cortex_m4"] = agreement(m4_out, host_out)
            sizes = firmware.size_report(elf)
        elif not have_m4:
            checks["cortex_m4_skipped"] = "arm-none-eabi-gcc or qemu-system-arm not installed"
    return Verified(checks, host_out, sizes)
