"""Build a generated C model into Cortex-M4 firmware and run it on QEMU's ``mps2-an386``.

Example:

```python
from keras_prune.export import m4

elf = m4.build_firmware("out/c", xq, "build/m4")      # xq: int8, one input per row
outputs = m4.run_qemu(elf, len(xq), output_size)       # int8, one output per row
print(m4.size_report(elf)["model_flash"])              # weights + code of the model alone
```

The firmware (``csrc/firmware``) is a vector table, a reset handler and a ``main`` that runs
``kp_model_invoke`` on every input of a generated ``kp_test_data.c`` and prints each output
through ARM semihosting; its exit status becomes QEMU's exit code. Everything is compiled
with ``-mcpu=cortex-m4 -mthumb -mfloat-abi=soft -std=c99 -Wall -Wextra -Werror``, one
section per function and object, linked with ``--gc-sections`` against newlib's
``memcpy``/``memset`` (not ``-ffreestanding``, which turns the kernels' ``memcpy`` word
reads into calls). Objects go to ``obj/<group>/`` so that ``size_report`` can tell the
model's bytes from the test harness's by reading the linker map.

QEMU models no timing: use it for bit-exactness and sizes, never for speed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

__all__ = [
    "M4Error",
    "QemuRun",
    "INSTALL_HINT",
    "FIRMWARE_DIR",
    "CPU_FLAGS",
    "C_FLAGS",
    "find_cross_toolchain",
    "find_qemu",
    "write_test_data",
    "build_firmware",
    "run_qemu",
    "run_qemu_full",
    "qemu_command",
    "size_report",
]

FIRMWARE_DIR = Path(__file__).parent / "csrc" / "firmware"
LINKER_SCRIPT = FIRMWARE_DIR / "kp_fw_mps2_an386.ld"
CPU_FLAGS = ("-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=soft")
C_FLAGS = ("-std=c99", "-Wall", "-Wextra", "-Werror", "-ffunction-sections", "-fdata-sections")
QEMU_MACHINE = "mps2-an386"
INSTALL_HINT = (
    "sudo apt-get install --no-install-recommends gcc-arm-none-eabi "
    "libnewlib-arm-none-eabi qemu-system-arm (or `make toolchain` as root)"
)

# Exit statuses of kp_fw.h; anything else comes from QEMU itself.
_EXIT_MEANING = {3: "kp_model_invoke returned an error", 4: "the CPU faulted"}

# Object groups (obj/<group>/...) and what size_report calls them.
_MODEL, _TEST_DATA, _FIRMWARE, _EXTRA = "model", "test_data", "firmware", "extra"


class M4Error(RuntimeError):
    """Building the Cortex-M4 firmware or running it on QEMU failed; the message holds the
    compiler's or the emulator's output."""


# ------------------------------------------------------------------------ tools
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


def _require_gcc() -> str:
    gcc = find_cross_toolchain()
    if gcc is None:
        raise M4Error(f"arm-none-eabi-gcc with newlib not found: {INSTALL_HINT}")
    return gcc


def _binutil(gcc: str, tool: str) -> str:
    """``arm-none-eabi-<tool>`` beside the compiler, else from PATH."""
    prefix = gcc[:-3] if gcc.endswith("gcc") else "arm-none-eabi-"
    for name in (prefix + tool, f"arm-none-eabi-{tool}"):
        found = shutil.which(name)
        if found:
            return found
    raise M4Error(f"arm-none-eabi-{tool} not found: {INSTALL_HINT}")


# ------------------------------------------------------------------------ build
def write_test_data(inputs: np.ndarray, path: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``kp_test_data.c`` and ``kp_test_data.h`` into the directory ``path``:
    ``const int8_t kp_test_inputs[KP_TEST_COUNT][KP_TEST_INPUT_SIZE]``, one row per input
    (each input flattened in C order, as the host runner reads it). Returns (.c, .h)."""
    x = np.asarray(inputs)
    if x.dtype != np.int8:
        raise TypeError(f"test inputs must be int8, got {x.dtype}")
    if x.ndim == 0 or len(x) == 0:
        raise ValueError("at least one test input is needed (C has no empty arrays)")
    x = x.reshape(len(x), -1)
    if x.shape[1] == 0:
        raise ValueError("test inputs have no elements")
    n, size = x.shape
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    header = directory / "kp_test_data.h"
    source = directory / "kp_test_data.c"
    header.write_text(
        "/* Generated by keras_prune.export.m4: the firmware's test inputs. */\n"
        "#ifndef KP_TEST_DATA_H\n#define KP_TEST_DATA_H\n\n#include <stdint.h>\n\n"
        f"#define KP_TEST_COUNT {n}\n#define KP_TEST_INPUT_SIZE {size}\n\n"
        "extern const int8_t kp_test_inputs[KP_TEST_COUNT][KP_TEST_INPUT_SIZE];\n\n"
        "#endif /* KP_TEST_DATA_H */\n"
    )
    rows = []
    for row in x:
        values = [str(v) for v in row.tolist()]
        lines = [",".join(values[i : i + 24]) for i in range(0, len(values), 24)]
        rows.append("    {" + ",\n     ".join(lines) + "}")
    source.write_text(
        "/* Generated by keras_prune.export.m4: the firmware's test inputs. */\n"
        '#include "kp_test_data.h"\n\n'
        "const int8_t kp_test_inputs[KP_TEST_COUNT][KP_TEST_INPUT_SIZE] = {\n"
        + ",\n".join(rows)
        + "\n};\n"
    )
    return source, header


def _model_sources(model_dir: Path) -> list[Path]:
    return sorted([*model_dir.glob("*.c"), *(model_dir / "kernels").glob("*.c")])


def _object_path(obj_dir: Path, group: str, source: Path, base: Path | None) -> Path:
    rel = source.relative_to(base) if base is not None else Path(source.name)
    return obj_dir / group / rel.with_suffix(".o")


def _run(cmd: list[str], what: str) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise M4Error(
            f"{what} failed (exit {done.returncode}):\n  {' '.join(cmd)}\n"
            f"{done.stdout}{done.stderr}".rstrip()
        )


def build_firmware(
    model_dir: str | os.PathLike,
    inputs: np.ndarray,
    out_dir: str | os.PathLike,
    opt: str = "-O2",
    defines: Sequence[str] = (),
    *,
    extra_sources: Iterable[str | os.PathLike] = (),
    include_dirs: Iterable[str | os.PathLike] = (),
    jobs: int | None = None,
) -> Path:
    """Compile the generated model in ``model_dir`` (every ``*.c`` and ``kernels/*.c``),
    the test inputs ``inputs`` (int8, one input per row) and the firmware into
    ``out_dir/kp_m4.elf`` (with ``kp_m4.map`` beside it, which ``size_report`` reads).

    ``opt`` is the optimisation flag; ``defines`` are ``NAME`` or ``NAME=VALUE`` for every
    file (``KP_NO_DSP`` forces the portable kernels). ``extra_sources``/``include_dirs``
    add code the model needs from elsewhere, e.g. CMSIS-NN with ``KP_USE_CMSIS_NN``.
    Files compile in parallel (``jobs``, default all cores). Raises ``M4Error`` naming the
    file and holding the compiler's output when a file does not compile or link.
    """
    gcc = _require_gcc()
    model_dir, out = Path(model_dir), Path(out_dir)
    if not (model_dir / "kp_model.h").is_file():
        raise M4Error(f"{model_dir} has no kp_model.h: not a generated model directory")
    if not re.fullmatch(r"-O[0-3sgz]?|-Ofast", opt):
        raise ValueError(f"opt must be a -O flag such as -O2 or -Os, got {opt!r}")
    if out.resolve() == model_dir.resolve():
        raise ValueError(
            "out_dir must not be the model directory: kp_test_data.c written "
            "there would be compiled as part of the model"
        )
    out.mkdir(parents=True, exist_ok=True)
    obj_dir = out / "obj"
    if obj_dir.exists():
        shutil.rmtree(obj_dir)
    test_c, _ = write_test_data(inputs, out)
    x_bytes = int(np.asarray(inputs).size)

    units: list[tuple[Path, Path]] = []
    for src in _model_sources(model_dir):
        units.append((src, _object_path(obj_dir, _MODEL, src, model_dir)))
    units.append((test_c, _object_path(obj_dir, _TEST_DATA, test_c, None)))
    for src in sorted(FIRMWARE_DIR.glob("*.c")):
        units.append((src, _object_path(obj_dir, _FIRMWARE, src, None)))
    for i, src in enumerate(Path(s) for s in extra_sources):
        units.append((src, obj_dir / _EXTRA / f"{i}_{src.stem}.o"))

    includes = [model_dir, model_dir / "kernels", out, FIRMWARE_DIR, *map(Path, include_dirs)]
    flags = [
        *CPU_FLAGS,
        opt,
        *C_FLAGS,
        *(d if d.startswith("-D") else f"-D{d}" for d in defines),
        *(f"-I{d}" for d in includes),
    ]

    def compile_one(unit: tuple[Path, Path]) -> None:
        src, obj = unit
        obj.parent.mkdir(parents=True, exist_ok=True)
        shown = src.relative_to(model_dir) if src.is_relative_to(model_dir) else src
        _run([gcc, *flags, "-c", str(src), "-o", str(obj)], f"compiling {shown} for Cortex-M4")

    with ThreadPoolExecutor(max_workers=jobs or os.cpu_count() or 1) as pool:
        errors = []
        for fut in [pool.submit(compile_one, u) for u in units]:
            try:
                fut.result()
            except M4Error as e:
                errors.append(str(e))
    if errors:
        raise M4Error("\n\n".join(errors))

    elf, map_file = out / "kp_m4.elf", out / "kp_m4.map"
    for stale in (elf, map_file):
        stale.unlink(missing_ok=True)
    try:
        _run(
            [
                gcc,
                *CPU_FLAGS,
                opt,
                "-nostartfiles",
                f"-T{LINKER_SCRIPT}",
                "-Wl,--gc-sections",
                f"-Wl,-Map={map_file}",
                *(str(obj) for _, obj in units),
                "-o",
                str(elf),
            ],
            "linking the Cortex-M4 firmware",
        )
    except M4Error as e:
        if "overflowed" in str(e) or "less than 16 KiB" in str(e):
            raise M4Error(
                f"{e}\nThe board has 4 MiB for code + constants (the test inputs "
                f"too: {x_bytes:,} bytes) and 4 MiB of RAM; pass fewer "
                f"inputs if those fill it."
            ) from None
        raise
    return elf


# ------------------------------------------------------------------------ run
@dataclass
class QemuRun:
    """One firmware run: the outputs, the deepest stack use the firmware measured (bytes,
    harness included), QEMU's wall time and its console log."""

    outputs: np.ndarray
    stack_bytes: int
    seconds: float
    log: str


_OUT_LINE = re.compile(r"^KP_OUT (\d+) ([0-9a-f]*)$")
_DONE_LINE = re.compile(r"^KP_DONE count=(\d+) stack=(\d+)$")


def _tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def qemu_command(elf: str | os.PathLike, qemu: str | None = None) -> list[str]:
    """The QEMU command line for a firmware ELF: headless, semihosting on stdout."""
    return [
        qemu or find_qemu() or "qemu-system-arm",
        "-M",
        QEMU_MACHINE,
        "-cpu",
        "cortex-m4",
        "-display",
        "none",
        "-monitor",
        "none",
        "-serial",
        "null",
        "-nodefaults",
        "-chardev",
        "stdio,id=kp_sh",
        "-semihosting-config",
        "enable=on,target=native,chardev=kp_sh",
        "-kernel",
        str(elf),
    ]


def run_qemu_full(
    elf: str | os.PathLike, n_outputs: int, output_size: int, timeout: float = 300.0
) -> QemuRun:
    """Run firmware from ``build_firmware`` on QEMU's ``mps2-an386`` and parse everything
    it printed. Raises ``M4Error`` with the end of the log when QEMU exits non-zero (an
    invoke error, a CPU fault, QEMU's own error), runs past ``timeout`` seconds, or prints
    other than ``n_outputs`` outputs of ``output_size`` bytes."""
    qemu = find_qemu()
    if qemu is None:
        raise M4Error(f"qemu-system-arm not found: {INSTALL_HINT}")
    if not Path(elf).is_file():
        raise M4Error(f"no firmware at {elf}")
    cmd = qemu_command(elf, qemu)
    start = time.perf_counter()
    try:
        done = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        log = ((e.stdout or b"") + (e.stderr or b"")).decode(errors="replace")
        raise M4Error(
            f"QEMU ran the firmware for more than {timeout:g} s and was stopped "
            f"(a hang, or raise timeout). Last output:\n{_tail(log)}"
        ) from None
    seconds = time.perf_counter() - start
    log = done.stdout.decode(errors="replace")
    # mps2 boards always create their Ethernet NIC, and QEMU warns that it has no network.
    stderr = "\n".join(
        line
        for line in done.stderr.decode(errors="replace").splitlines()
        if "has no peer" not in line
    )
    if done.returncode != 0:
        meaning = _EXIT_MEANING.get(done.returncode, "QEMU or the firmware failed")
        raise M4Error(
            f"the Cortex-M4 firmware exited {done.returncode} ({meaning}).\n"
            f"  {' '.join(cmd)}\nLast output:\n{_tail(log + stderr)}"
        )

    outputs = np.zeros((n_outputs, output_size), np.int8)
    seen = np.zeros(n_outputs, bool)
    stack = None
    for line in log.splitlines():
        m = _OUT_LINE.match(line)
        if m:
            i, data = int(m.group(1)), bytes.fromhex(m.group(2))
            if i >= n_outputs or len(data) != output_size:
                raise M4Error(
                    f"the firmware printed output {i} with {len(data)} bytes; "
                    f"expected {n_outputs} outputs of {output_size} bytes (is the "
                    f"ELF built for this model?). Line: {line[:200]}"
                )
            outputs[i] = np.frombuffer(data, np.int8)
            seen[i] = True
            continue
        m = _DONE_LINE.match(line)
        if m:
            stack = int(m.group(2))
    if stack is None or not seen.all():
        raise M4Error(
            f"the firmware printed {int(seen.sum())} of {n_outputs} outputs"
            f"{'' if stack is not None else ' and no KP_DONE line'}. Last "
            f"output:\n{_tail(log + stderr)}"
        )
    return QemuRun(outputs=outputs, stack_bytes=stack, seconds=seconds, log=log)


def run_qemu(
    elf: str | os.PathLike, n_outputs: int, output_size: int, timeout: float = 300.0
) -> np.ndarray:
    """The int8 outputs (``n_outputs`` x ``output_size``) of firmware from
    ``build_firmware`` run on QEMU; see ``run_qemu_full`` for the checks and errors."""
    return run_qemu_full(elf, n_outputs, output_size, timeout).outputs


# ------------------------------------------------------------------------ sizes
_KINDS = ("code", "const", "data", "bss")


def _section_flags(readelf: str, elf: Path) -> dict[str, tuple[str, str]]:
    """{section: (type, flags)} from ``readelf -S``."""
    done = subprocess.run([readelf, "-S", "-W", str(elf)], capture_output=True, text=True)
    if done.returncode != 0:
        raise M4Error(f"readelf failed on {elf}: {done.stderr.strip()}")
    out = {}
    for m in re.finditer(
        r"\]\s+(\S+)\s+(\S+)\s+[0-9a-f]+\s+[0-9a-f]+\s+[0-9a-f]+\s+[0-9a-f]+"
        r"\s+([A-Za-z]*)\s",
        done.stdout,
    ):
        out[m.group(1)] = (m.group(2), m.group(3))
    return out


def _kind(input_section: str, sh: tuple[str, str]) -> str:
    sh_type, flags = sh
    if sh_type == "NOBITS":
        return "bss"
    if "W" in flags:
        return "data"
    return "code" if input_section.startswith(".text") else "const"


def _group(obj: str) -> tuple[str, str]:
    """(category, short name) of an object file named in the map."""
    if ".a(" in obj:
        lib, member = obj.rsplit("/", 1)[-1].split("(", 1)
        return "libraries", f"{lib}({member}"
    if obj.strip() == "linker stubs":
        return "other", obj.strip()
    parts = Path(obj).parts
    if "obj" in parts:
        rest = parts[len(parts) - 1 - parts[::-1].index("obj") + 1 :]
        if rest and rest[0] in (_MODEL, _TEST_DATA, _FIRMWARE, _EXTRA):
            return rest[0], "/".join(rest[1:])
    return "other", Path(obj).name


def _parse_map(map_text: str, flags: dict[str, tuple[str, str]]) -> list[dict]:
    """Every input section the linker kept in an allocated output section, with its object
    file, and the alignment fill between them."""
    text = map_text.split("Linker script and memory map", 1)[-1]
    lines = text.splitlines()
    sections: list[dict] = []
    current = None
    hexpair = r"0x([0-9a-fA-F]+)\s+0x([0-9a-fA-F]+)"
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        m = re.match(r"^(\.\S+|/DISCARD/)(?:\s+" + hexpair + r")?", line)
        if m and not line.startswith(" "):
            current = m.group(1) if m.group(1) in flags and "A" in flags[m.group(1)][1] else None
            continue
        if current is None:
            continue
        m = re.match(r"^ \*fill\*\s+" + hexpair, line)
        if m:
            sections.append(
                {
                    "output": current,
                    "section": "*fill*",
                    "object": "",
                    "category": "padding",
                    "kind": _kind("", flags[current]),
                    "bytes": int(m.group(2), 16),
                }
            )
            continue
        m = re.match(r"^ (\S+)\s+" + hexpair + r"\s+(\S.*)$", line)
        if m is None:
            m1 = re.match(r"^ ([.A-Za-z_]\S*)$", line)
            if m1 and i < len(lines):
                m2 = re.match(r"^\s+" + hexpair + r"\s+(\S.*)$", lines[i])
                if m2:
                    i += 1
                    name, size, obj = m1.group(1), m2.group(2), m2.group(3)
                else:
                    continue
            else:
                continue
        else:
            name, size, obj = m.group(1), m.group(3), m.group(4)
        size = int(size, 16)
        if size == 0:
            continue
        category, short = _group(obj)
        sections.append(
            {
                "output": current,
                "section": name,
                "object": short,
                "category": category,
                "kind": _kind(name, flags[current]),
                "bytes": size,
            }
        )
    return sections


def _totals(counts: dict[str, int]) -> dict[str, int]:
    t = {k: counts.get(k, 0) for k in _KINDS}
    t["flash"] = t["code"] + t["const"] + t["data"]
    t["ram"] = t["data"] + t["bss"]
    return t


def size_report(elf: str | os.PathLike, top: int = 20) -> dict:
    """Sizes of firmware from ``build_firmware``, in bytes.

    ``text``, ``data``, ``bss`` are ``arm-none-eabi-size``'s; ``flash`` = text + data (the
    image a device stores) and ``ram`` = data + bss (static RAM; the stack is not in it,
    ``QemuRun.stack_bytes`` measures that).

    From the linker map beside the ELF (without it, only the totals), every kept input
    section is charged to a group: ``model`` (the generated ``*.c`` and kernels),
    ``extra`` (``extra_sources``), ``test_data`` (the test inputs), ``firmware`` (startup,
    main, semihosting), ``libraries`` (newlib's ``memcpy``/``memset``, libgcc),
    ``padding`` (alignment fill) and ``other``. ``groups`` holds ``code``, ``const``,
    ``data``, ``bss``, ``flash`` and ``ram`` per group, and the groups add up to
    ``flash``/``ram`` exactly; ``objects`` has the same per object file (``kp_weights.o``,
    ``kernels/kp_convolve_s8.o``, ...), biggest first.

    ``model_flash`` (weights + code) and ``model_ram`` (arena and other static buffers) are
    the model's own, ``model`` and ``extra`` together; ``overhead_flash``/``overhead_ram``
    are everything else, test inputs and the library functions the model calls included.
    ``largest`` lists the ``top`` biggest sections (one function or array each, as every
    file is compiled one section per symbol) and ``libraries`` the library members linked.
    """
    elf = Path(elf)
    gcc = _require_gcc()
    done = subprocess.run(
        [_binutil(gcc, "size"), "-B", "-d", str(elf)], capture_output=True, text=True
    )
    if done.returncode != 0:
        raise M4Error(f"arm-none-eabi-size failed on {elf}: {done.stderr.strip()}")
    text, data, bss = (int(v) for v in done.stdout.splitlines()[1].split()[:3])
    report: dict = {"text": text, "data": data, "bss": bss, "flash": text + data, "ram": data + bss}
    map_file = elf.with_suffix(".map")
    if not map_file.is_file():
        return report
    sections = _parse_map(
        map_file.read_text(errors="replace"), _section_flags(_binutil(gcc, "readelf"), elf)
    )
    per_group: dict[str, dict[str, int]] = {}
    per_object: dict[tuple[str, str], dict[str, int]] = {}
    for s in sections:
        for acc in (
            per_group.setdefault(s["category"], {}),
            per_object.setdefault((s["category"], s["object"]), {}),
        ):
            acc[s["kind"]] = acc.get(s["kind"], 0) + s["bytes"]
    groups = {name: _totals(counts) for name, counts in sorted(per_group.items())}
    model = _totals(
        {k: sum(per_group.get(g, {}).get(k, 0) for g in (_MODEL, _EXTRA)) for k in _KINDS}
    )
    report.update(
        {
            "model_flash": model["flash"],
            "model_ram": model["ram"],
            "overhead_flash": report["flash"] - model["flash"],
            "overhead_ram": report["ram"] - model["ram"],
            "groups": groups,
            "objects": sorted(
                (
                    {"object": obj, "category": cat, **_totals(counts)}
                    for (cat, obj), counts in per_object.items()
                    if cat != "padding"
                ),
                key=lambda o: (-o["flash"], -o["ram"], o["object"]),
            ),
            "largest": [
                {k: s[k] for k in ("section", "object", "category", "kind", "bytes")}
                for s in sorted(
                    (s for s in sections if s["category"] != "padding"), key=lambda s: -s["bytes"]
                )[:top]
            ],
            "libraries": sorted({s["object"] for s in sections if s["category"] == "libraries"}),
        }
    )
    return report
