"""Per-layer Cortex-M4 cost of a generated model: instructions counted under unicorn,
cycles estimated with the Cortex-M4 timing table (``keras_prune.mcu.profiler``).

Example:

```python
report = kp.export.cmsis(model, "out/c", x_train[:500])
rows = kp.mcu.profile_model("out/c", x_q)     # x_q: one int8 input
print(kp.mcu.cycles.table(rows))
```

The generated library is linked into a bare ELF (no firmware), its input is written into
the emulator's memory, and ``kp_model_run_layer(i)`` is called once per layer, so each
layer's instructions and cycles are its own (kernel, requantization and the generated
glue). The output is read back and returned, so callers can check it against the host.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from keras_prune.mcu import profiler
from keras_prune.mcu.host import cmsis_nn_sources, model_include_dirs, model_sources

__all__ = ["LayerCost", "ModelCost", "profile_model", "table", "ASSUMPTIONS", "REFERENCE_MHZ"]

REFERENCE_MHZ = 120  # MLPerf Tiny's reference board, the STM32L4R5 (Cortex-M4F)
ASSUMPTIONS = (
    "Cortex-M4 estimate: instructions counted exactly under unicorn, cycles from "
    "the Cortex-M4 TRM table (loads 2, pipelined 1; taken branch 1+2; "
    "SMLAD/MUL 1; LDM/POP 1+N; SDIV 7), zero flash wait states, no bus "
    f"contention, no interrupts; ms at {REFERENCE_MHZ} MHz. Ratios are "
    "trustworthy, absolute times are estimates, not board measurements."
)


@dataclass
class LayerCost:
    index: int
    op: str
    layers: tuple[str, ...]
    kernel: str
    macs: int
    instructions: int
    cycles: int

    @property
    def cycles_per_mac(self) -> float:
        return self.cycles / self.macs if self.macs else float("nan")


@dataclass
class ModelCost:
    layers: list[LayerCost]
    output: np.ndarray  # the int8 output the emulated Cortex-M4 computed
    options: dict  # how it was built (opt level, defines)

    @property
    def macs(self) -> int:
        return sum(la.macs for la in self.layers)

    @property
    def instructions(self) -> int:
        return sum(la.instructions for la in self.layers)

    @property
    def cycles(self) -> int:
        return sum(la.cycles for la in self.layers)

    def ms(self, mhz: float = REFERENCE_MHZ) -> float:
        return self.cycles / (mhz * 1e3)


def profile_model(
    model_dir: str | os.PathLike,
    x_q: np.ndarray,
    opt: str = "-O2",
    defines: Sequence[str] = (),
    cmsis_nn: str | os.PathLike | None = None,
) -> ModelCost:
    """Run one int8 input through the generated model in ``model_dir`` on the emulated
    Cortex-M4, layer by layer. ``defines`` e.g. ``("KP_NO_DSP",)`` for the portable
    kernels. ``cmsis_nn``: a CMSIS-NN checkout, to build with ``-DKP_USE_CMSIS_NN``
    against ARM's kernels instead of ours (its sources compile without ``-Werror``)."""
    model_dir = Path(model_dir)
    manifest = json.loads((model_dir / "manifest.json").read_text())
    x_q = np.ascontiguousarray(x_q, np.int8).reshape(-1)
    out_size = int(np.prod(manifest["io"]["output"]["shape"]))
    sources, includes, flags = model_sources(model_dir), model_include_dirs(model_dir), ()
    if cmsis_nn is not None:
        root = Path(cmsis_nn)
        sources += cmsis_nn_sources(root)
        includes.append(root / "Include")
        defines, flags = (*defines, "KP_USE_CMSIS_NN"), ("-Wno-error",)
    with tempfile.TemporaryDirectory(prefix="kp_m4cyc_") as tmp:
        elf = profiler.build_library_elf(
            sources,
            Path(tmp) / "model.elf",
            include_dirs=includes,
            defines=defines,
            opt=opt,
            extra_flags=flags,
            keep=["kp_model_set_input", "kp_model_run_layer", "kp_model_get_output"],
        )
        emu = profiler.M4Emulator(elf)
        emu.call("kp_model_set_input", emu.put(x_q))
        rows = []
        # kp_model_run_layer counts C layers; an operator lowered with the next one (a
        # mask's GREATER_EQUAL) has none, so the position, not the operator index.
        for position, la in enumerate(manifest["layers"]):
            status, prof = emu.call("kp_model_run_layer", position)
            if status != 0:
                raise RuntimeError(
                    f"layer {la['index']} ({la['op']}) returned status "
                    f"{status} on the emulated Cortex-M4."
                )
            rows.append(
                LayerCost(
                    la["index"],
                    la["op"],
                    tuple(la["keras_layers"]),
                    la["kernel"],
                    la["macs"],
                    prof.instructions,
                    prof.cycles,
                )
            )
        out_addr = emu.alloc(out_size)
        emu.call("kp_model_get_output", out_addr)
        output = emu.read_array(out_addr, np.int8, out_size)
    return ModelCost(rows, output, {"opt": opt, "defines": list(defines)})


def table(cost: ModelCost, title: str = "", mhz: float = REFERENCE_MHZ) -> str:
    """Per layer: MACs, instructions, estimated cycles, cycles/MAC; then the totals and
    the estimated milliseconds, with the assumptions."""
    head = f"  {'layer':<26}{'op':<19}{'MACs':>10}{'instr':>11}{'est. cycles':>13}{'cyc/MAC':>9}"
    lines = ([title] if title else []) + [head, "  " + "-" * (len(head) - 2)]
    for la in cost.layers:
        name = ", ".join(la.layers) or "-"
        per = f"{la.cycles_per_mac:.2f}" if la.macs else "-"
        lines.append(
            f"  {name[:25]:<26}{la.op:<19}{la.macs:>10,}{la.instructions:>11,}"
            f"{la.cycles:>13,}{per:>9}"
        )
    per = cost.cycles / cost.macs if cost.macs else float("nan")
    lines.append(
        f"  {'total':<45}{cost.macs:>10,}{cost.instructions:>11,}{cost.cycles:>13,}{per:>9.2f}"
    )
    lines.append(f"  = {cost.ms(mhz):.2f} ms at {mhz:g} MHz (estimated)")
    lines.append("  " + ASSUMPTIONS)
    return "\n".join(lines)
