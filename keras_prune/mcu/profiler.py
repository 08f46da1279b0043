"""Count the instructions and estimate the cycles of one C function on a Cortex-M4, by
emulating it with unicorn.

Example:

```python
import numpy as np
from keras_prune.mcu import profiler as m4_profile

elf = m4_profile.build_library_elf(["dot.c"], "build/dot.elf")
emu = m4_profile.M4Emulator(elf)
x = emu.put(np.arange(64, dtype=np.int8))
result, prof = emu.call("dot_s8", x, x, 64)
print(prof.instructions, prof.cycles, prof.functions["dot_s8"].cycles)
```

How it counts. unicorn's Cortex-M4 model runs the function from its symbol with the
arguments in r0-r3 and on the stack (AAPCS) and LR set to a magic return address; it stops
when the function returns there. A *block* hook, installed before any code is translated,
records every executed translation block (address, size). Each block's instructions come
from ``arm-none-eabi-objdump -d`` of the ELF, parsed once, so an instruction that an IT
block skips still counts (on the M4 it still takes its cycle; a per-instruction hook would
never see it). Counts are exact and deterministic: one run is enough, and two runs give the
same numbers.

The cycle estimate (``CycleModel``) weights each instruction with the Cortex-M4 Technical
Reference Manual's timing table. Assumptions, stated once here and wherever numbers are
printed:

* zero flash/RAM wait states, no bus contention, no unaligned-access penalty (on silicon an
  unaligned LDR takes an extra bus transfer), no interrupts;
* most data-processing instructions, every multiply and multiply-accumulate (MUL, MLA,
  SMULL, SMLAL, SMLAD, SMLABB, SMMUL...) and SXTB16/PKHBT/SSAT: 1 cycle;
* a single load or store (LDR/STR and their byte, halfword, signed, exclusive forms): 2
  cycles, 1 when it directly follows another single load or store in the same block
  (address/data phase pipelining); LDRD/STRD 3 (1+N); LDM/STM/PUSH/POP 1+N for N registers;
* a branch, or any instruction that writes the PC, that is taken: 1 + P, with the pipeline
  refill P = 2 (the TRM gives 1-3); a conditional branch that falls through: 1. "Taken" is
  read from the next executed block: it is taken when that block does not start right after
  the branch. TBB/TBH are loads: 2 + P;
* SDIV/UDIV: 7 cycles (the TRM gives 2-12 depending on the operands; 7 is the middle);
* IT: 1 cycle (never folded); an instruction that its IT block skips costs what it would
  cost executed (the TRM gives 1 for a failed condition; loads inside IT blocks are rare);
* a load/store right after another across a block boundary still pipelines when the
  first block falls straight into the second (QEMU also cuts blocks at 1 KiB pages).

Ratios between kernels measured this way are trustworthy; absolute times are estimates.

Not QEMU (``keras_prune.mcu.firmware`` runs whole firmware there): this loads a bare
*library* ELF that ``build_library_elf`` links without startup code, vector table or C
library beyond newlib's ``memcpy``/``memset``, and calls single functions in it.
Memory: the ELF's loadable segments where it links them (0x8000 by default), a 1 MiB stack
below ``STACK_TOP``, and ``alloc``'s heap from ``HEAP_BASE``, mapped on demand. No
memory-access hooks are used (unicorn 2.1.4's break unaligned post-indexed loads, which
the kernels rely on).

Checked against CMSIS-NN's own kernels built the same way (``KP_CMSIS_NN_DIR``), this
model reproduces the cycle figures of the earlier firmware-level measurements to within
0.1-3% (``benchmarks/m4_kernels.py`` prints both; the whole-network baseline is the table
"CMSIS-NN baseline" in ``docs/c-export.md``).
"""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from keras_prune.mcu.toolchain import (
    C_FLAGS,
    CPU_FLAGS,
    INSTALL_HINT,
    ToolchainError,
    binutil,
    find_cross_toolchain,
    require_cross_gcc,
    run,
)

__all__ = [
    "CycleModel",
    "FunctionCost",
    "Profile",
    "M4Emulator",
    "M4ProfileError",
    "INSTALL_HINT",
    "UNICORN_HINT",
    "available",
    "build_library_elf",
    "disassemble",
]

UNICORN_HINT = "pip install unicorn pyelftools (keras-prune's dev extra)"

# Where the emulator puts what the ELF does not define. The default arm-none-eabi linker
# script links a library at 0x8000; these stay clear of it.
STACK_TOP = 0x2010_0000
STACK_SIZE = 0x0010_0000
HEAP_BASE = 0x6000_0000
HEAP_CHUNK = 0x0010_0000
RETURN_PAGE = 0x0F00_0000  # LR points here; the run stops when the PC reaches it
_PAGE = 0x1000

_CONDS = "eq|ne|cs|hs|cc|lo|mi|pl|vs|vc|hi|ls|ge|lt|gt|le|al"
_LS_SINGLE = re.compile(rf"^(?:ldr|str)(?:b|h|sb|sh|t|bt|ht|sbt|sht|ex|exb|exh)?(?:{_CONDS})?$")
_LS_DOUBLE = re.compile(rf"^(?:ldr|str)(?:d|exd)(?:{_CONDS})?$")
_LS_MULTI = re.compile(rf"^(?:ldm|stm)(?:ia|ib|da|db|fd|ea|ed|fa)?(?:{_CONDS})?$")
_PUSH_POP = re.compile(rf"^(?:push|pop)(?:{_CONDS})?$")
_TABLE_BRANCH = re.compile(r"^tb[bh]$")
_DIV = re.compile(rf"^[su]div(?:{_CONDS})?$")
_IT = re.compile(r"^it[te]{0,3}$")
# "    8006:\tf100 3eff \tadd.w\tlr, r0, #-1": address, raw halfwords or .word, mnemonic, operands
_LINE = re.compile(
    r"^\s*([0-9a-f]+):\t([0-9a-f]{4}(?: [0-9a-f]{4})?|[0-9a-f]{8})\s*\t"
    r"(\S+)\s*(.*)$"
)
_FUNC_HEAD = re.compile(r"^([0-9a-f]+) <(.+)>:$")


class M4ProfileError(ToolchainError):
    """Building the library ELF, loading it, or running a function in it failed."""


def available() -> bool:
    """True when unicorn, pyelftools, arm-none-eabi-gcc (with newlib) and objdump are
    all present, i.e. when ``build_library_elf`` and ``M4Emulator`` can work."""
    try:
        import elftools  # noqa: F401
        import unicorn  # noqa: F401
    except ImportError:
        return False
    gcc = find_cross_toolchain()
    return gcc is not None and binutil(gcc, "objdump", None) is not None


# ------------------------------------------------------------------------ build
def build_library_elf(
    sources: Iterable[str | os.PathLike],
    out: str | os.PathLike,
    *,
    include_dirs: Iterable[str | os.PathLike] = (),
    defines: Sequence[str] = (),
    opt: str = "-O2",
    keep: Sequence[str] | None = None,
    extra_flags: Sequence[str] = (),
) -> Path:
    """Compile ``sources`` for the Cortex-M4 and link them into a bare library ELF for
    ``M4Emulator``: no startup code or vector table (``-nostartfiles``), one section per
    function with ``--gc-sections``, newlib's ``memcpy``/``memset`` linked in.

    Compile flags are the firmware's (``m4.CPU_FLAGS``, ``m4.C_FLAGS``: C99, warnings as
    errors) plus ``opt`` and ``extra_flags``; ``defines`` are ``NAME`` or ``NAME=VALUE``.
    ``keep`` lists the functions to keep (garbage-collection roots); None keeps every
    global function the sources define. Objects go beside ``out``."""
    gcc = require_cross_gcc(M4ProfileError)
    out = Path(out)
    obj_dir = out.parent / f"{out.stem}.obj"
    obj_dir.mkdir(parents=True, exist_ok=True)
    flags = [
        *CPU_FLAGS,
        *C_FLAGS,
        opt,
        *extra_flags,
        *(f"-D{d}" for d in defines),
        *(f"-I{d}" for d in include_dirs),
    ]
    objects = []
    for i, src in enumerate(sources):
        obj = obj_dir / f"{i:03d}_{Path(src).stem}.o"
        run([gcc, *flags, "-c", str(src), "-o", str(obj)], f"compiling {src}", M4ProfileError)
        objects.append(obj)
    if keep is None:
        nm = binutil(gcc, "nm", None)
        if nm is None:
            raise M4ProfileError(f"arm-none-eabi-nm not found: {INSTALL_HINT}")
        listing = run([nm, "-g", "--defined-only", *map(str, objects)], "nm", M4ProfileError)
        keep = sorted(
            {
                parts[2]
                for parts in map(str.split, listing.splitlines())
                if len(parts) == 3 and parts[1] == "T"
            }
        )
    if not keep:
        raise M4ProfileError("no function to keep: the sources define none")
    roots = [f"-Wl,-u,{sym}" for sym in keep]
    run(
        [
            gcc,
            *CPU_FLAGS,
            "-nostartfiles",
            "-Wl,--gc-sections",
            f"-Wl,-e,{keep[0]}",
            *roots,
            *map(str, objects),
            "-o",
            str(out),
        ],
        "linking",
        M4ProfileError,
    )
    return out


# ------------------------------------------------------------------ cycle model
@dataclass(frozen=True)
class CycleModel:
    """Cortex-M4 TRM cycle counts (see the module docstring for what they leave out)."""

    branch_refill: int = 2  # P: extra cycles of a taken branch
    load_store: int = 2  # a single LDR/STR
    pipelined_load_store: int = 1  # one right after another single LDR/STR
    divide: int = 7  # SDIV/UDIV (2-12 on silicon)
    it: int = 1  # IT (0 when the core folds it; never assumed here)

    def cost(self, mnemonic: str, operands: str) -> tuple[int, bool]:
        """(cycles before any taken-branch refill, is a single load/store) of one
        instruction as objdump prints it."""
        m = mnemonic.split(".", 1)[0]
        if _LS_SINGLE.match(m):
            return self.load_store, True
        if _LS_DOUBLE.match(m):
            return 3, False
        if _LS_MULTI.match(m):
            return 1 + _register_count(operands), False
        if _PUSH_POP.match(m):
            return 1 + _register_count(operands), False
        if _TABLE_BRANCH.match(m):
            return 2, False
        if _DIV.match(m):
            return self.divide, False
        if _IT.match(m):
            return self.it, False
        return 1, False


_REG_NUMBERS = {"sb": 9, "sl": 10, "fp": 11, "ip": 12, "sp": 13, "lr": 14, "pc": 15}


def _reg_number(name: str) -> int:
    name = name.strip()
    return _REG_NUMBERS[name] if name in _REG_NUMBERS else int(name[1:])


def _register_count(operands: str) -> int:
    """Registers in an LDM/STM/PUSH/POP list, ``{r4-r7, lr}`` = 5."""
    inside = operands[operands.index("{") + 1 : operands.index("}")]
    n = 0
    for part in inside.split(","):
        if "-" in part:
            lo, hi = (_reg_number(r) for r in part.split("-"))
            n += hi - lo + 1
        elif part.strip():
            n += 1
    return n


@dataclass(frozen=True)
class Instruction:
    address: int
    size: int
    mnemonic: str
    operands: str
    function: str


def disassemble(elf: str | os.PathLike) -> dict[int, Instruction]:
    """Every instruction of the ELF's executable sections, by address, from
    ``arm-none-eabi-objdump -d`` (literal pools, printed as ``.word``, are left out)."""
    gcc = require_cross_gcc(M4ProfileError)
    objdump = binutil(gcc, "objdump", None)
    if objdump is None:
        raise M4ProfileError(f"arm-none-eabi-objdump not found: {INSTALL_HINT}")
    text = run([objdump, "-d", str(elf)], "objdump", M4ProfileError)
    insns: dict[int, Instruction] = {}
    function = "?"
    for line in text.splitlines():
        head = _FUNC_HEAD.match(line)
        if head:
            function = head.group(2)
            continue
        m = _LINE.match(line)
        if m is None:
            continue
        addr, raw, mnemonic, operands = m.groups()
        if mnemonic.startswith("."):
            continue
        size = 4 if len(raw.replace(" ", "")) == 8 else 2
        operands = operands.split("@", 1)[0].split(";", 1)[0].strip()
        insns[int(addr, 16)] = Instruction(int(addr, 16), size, mnemonic, operands, function)
    if not insns:
        raise M4ProfileError(f"objdump found no instructions in {elf}")
    return insns


# --------------------------------------------------------------------- profiles
@dataclass(frozen=True)
class FunctionCost:
    """What one function's own instructions cost (callees are counted separately)."""

    instructions: int
    cycles: int


@dataclass(frozen=True)
class Profile:
    """Executed instructions and estimated cycles of one call (``CycleModel``'s
    assumptions), in total and per function, by the function that holds each instruction."""

    instructions: int
    cycles: int
    functions: dict[str, FunctionCost] = field(default_factory=dict)
    blocks: int = 0
    taken_branches: int = 0

    def per(self, n: float) -> float:
        """Estimated cycles per unit of work (per MAC, per element)."""
        return self.cycles / n if n else float("nan")


@dataclass
class _Block:
    instructions: int
    cycles: int
    function: str
    first_ls: bool  # starts with a single load/store
    last_ls: bool  # ends with one (a block cut at a 1 KiB page, not at a branch)


# --------------------------------------------------------------------- emulator
class M4Emulator:
    """One Cortex-M4 running a library ELF under unicorn: call its functions by name, with
    memory outside the ELF from ``alloc``/``put``, and get a ``Profile`` of each call.

    Memory and translated code persist across calls; registers other than the argument
    registers, SP and LR carry over. Not thread-safe."""

    def __init__(
        self,
        elf_path: str | os.PathLike,
        model: CycleModel | None = None,
        stack_size: int = STACK_SIZE,
    ) -> None:
        try:
            import unicorn
            import unicorn.arm_const as arm
            from elftools.elf.elffile import ELFFile
        except ImportError as e:
            raise M4ProfileError(f"unicorn or pyelftools missing: {UNICORN_HINT}") from e
        self._uc_mod, self._arm = unicorn, arm
        self.elf_path = Path(elf_path)
        self.model = model or CycleModel()
        self._insns = disassemble(self.elf_path)
        self._symbols: dict[str, int] = {}
        uc = unicorn.Uc(unicorn.UC_ARCH_ARM, unicorn.UC_MODE_THUMB | unicorn.UC_MODE_MCLASS)
        uc.ctl_set_cpu_model(arm.UC_CPU_ARM_CORTEX_M4)
        self.uc = uc
        mapped: set[int] = set()
        with open(self.elf_path, "rb") as f:
            elf = ELFFile(f)
            if elf["e_machine"] != "EM_ARM":
                raise M4ProfileError(f"{elf_path} is no ARM ELF")
            for seg in elf.iter_segments():
                if seg["p_type"] != "PT_LOAD" or seg["p_memsz"] == 0:
                    continue
                lo = seg["p_vaddr"] & ~(_PAGE - 1)
                hi = (seg["p_vaddr"] + seg["p_memsz"] + _PAGE - 1) & ~(_PAGE - 1)
                for page in range(lo, hi, _PAGE):
                    if page not in mapped:
                        uc.mem_map(page, _PAGE)
                        mapped.add(page)
                uc.mem_write(seg["p_vaddr"], seg.data())
            symtab = elf.get_section_by_name(".symtab")
            if symtab is None:
                raise M4ProfileError(f"{elf_path} has no symbol table")
            for sym in symtab.iter_symbols():
                kind = sym["st_info"]["type"]
                if kind not in ("STT_FUNC", "STT_OBJECT") or not sym.name:
                    continue
                addr = sym["st_value"] & ~1 if kind == "STT_FUNC" else sym["st_value"]
                self._symbols[sym.name] = addr
        self._stack_top = STACK_TOP
        uc.mem_map(STACK_TOP - stack_size, stack_size)
        uc.mem_map(RETURN_PAGE, _PAGE)
        uc.mem_write(RETURN_PAGE, b"\xfe\xe7" * (_PAGE // 2))  # b . (never reached)
        self._heap_next = HEAP_BASE
        self._heap_end = HEAP_BASE
        self._blocks: dict[tuple[int, int], _Block] = {}
        self._counts: dict[tuple[int, int], int] = {}
        self._taken: dict[tuple[int, int], int] = {}
        self._fall: dict[tuple[tuple[int, int], tuple[int, int]], int] = {}
        self._state: list = [None, -1]  # last block key, its end address
        # Installed before the first emulation, so that no block is translated unhooked.
        uc.hook_add(unicorn.UC_HOOK_BLOCK, self._on_block)

    # ---------------------------------------------------------------- symbols, memory
    def symbol(self, name: str) -> int:
        """Address of a function (thumb bit cleared) or a data object."""
        try:
            return self._symbols[name]
        except KeyError:
            raise M4ProfileError(f"no symbol {name!r} in {self.elf_path}") from None

    def _address(self, where: int | str) -> int:
        return self.symbol(where) if isinstance(where, str) else int(where)

    def alloc(self, size: int, align: int = 8) -> int:
        """Address of ``size`` fresh bytes outside the ELF (zeroed when first mapped);
        never freed until ``reset_heap``."""
        addr = (self._heap_next + align - 1) & ~(align - 1)
        end = addr + max(int(size), 1)
        while end > self._heap_end:
            self.uc.mem_map(self._heap_end, HEAP_CHUNK)
            self._heap_end += HEAP_CHUNK
        self._heap_next = end
        return addr

    @property
    def heap_end(self) -> int:
        """One past the last byte of heap mapped so far."""
        return self._heap_end

    @property
    def heap_free(self) -> int:
        """Bytes mapped but not yet given out by ``alloc`` (usable without a new map)."""
        return self._heap_end - self._heap_next

    def reset_heap(self) -> None:
        """Reuse the memory ``alloc`` gave out (its contents stay until overwritten)."""
        self._heap_next = HEAP_BASE

    def write(self, where: int | str, data: bytes | bytearray | np.ndarray) -> None:
        """Write bytes (or an array's raw little-endian bytes) at an address or symbol."""
        if isinstance(data, np.ndarray):
            data = np.ascontiguousarray(data).tobytes()
        self.uc.mem_write(self._address(where), bytes(data))

    def read(self, where: int | str, size: int) -> bytes:
        """``size`` bytes at an address or symbol."""
        return bytes(self.uc.mem_read(self._address(where), size))

    def read_array(self, where: int | str, dtype, count: int) -> np.ndarray:
        """``count`` elements of ``dtype`` at an address or symbol."""
        dt = np.dtype(dtype)
        return np.frombuffer(self.read(where, dt.itemsize * count), dtype=dt).copy()

    def put(self, data: bytes | bytearray | np.ndarray, align: int = 8) -> int:
        """``alloc`` + ``write``: the address of a fresh copy of ``data``."""
        raw = np.ascontiguousarray(data).tobytes() if isinstance(data, np.ndarray) else data
        addr = self.alloc(len(raw), align)
        self.write(addr, raw)
        return addr

    def put_words(self, *values: int) -> int:
        """The address of fresh memory holding int32/uint32 words (a struct of 32-bit
        fields, say)."""
        return self.put(b"".join(struct.pack("<I", v & 0xFFFF_FFFF) for v in values), 4)

    # ---------------------------------------------------------------- running
    def _on_block(self, uc, address: int, size: int, _user) -> None:
        state = self._state
        key = (address, size)
        if state[0] is not None:
            if address != state[1]:
                taken = self._taken
                taken[state[0]] = taken.get(state[0], 0) + 1
            else:
                # Straight on into the next block: a load/store pair can still pipeline
                # across it (QEMU cuts blocks at 1 KiB pages, not only at branches).
                edge = (state[0], key)
                fall = self._fall
                fall[edge] = fall.get(edge, 0) + 1
        counts = self._counts
        counts[key] = counts.get(key, 0) + 1
        state[0] = key
        state[1] = address + size

    def _block(self, key: tuple[int, int]) -> _Block:
        block = self._blocks.get(key)
        if block is not None:
            return block
        address, size = key
        n = cycles = 0
        prev_ls = first_ls = False
        pc, end = address, address + size
        function = "?"
        while pc < end:
            insn = self._insns.get(pc)
            if insn is None:
                raise M4ProfileError(
                    f"executed 0x{pc:08x}, which objdump did not "
                    f"disassemble (block 0x{address:08x}+{size})"
                )
            cost, is_ls = self.model.cost(insn.mnemonic, insn.operands)
            if n == 0:
                first_ls = is_ls
            if is_ls and prev_ls:
                cost = self.model.pipelined_load_store
            prev_ls = is_ls
            function = insn.function
            n += 1
            cycles += cost
            pc += insn.size
        block = _Block(n, cycles, function, first_ls, prev_ls)
        self._blocks[key] = block
        return block

    def call(self, symbol: str, *args: int, timeout_s: float = 600.0) -> tuple[int, Profile]:
        """Call a function with 32-bit word arguments (AAPCS: the first four in r0-r3, the
        rest on the stack; pass a by-value struct as its words, and pointers from
        ``alloc``/``put``). Returns r0 as a signed int32 and the call's ``Profile``."""
        uc, arm = self.uc, self._arm
        entry = self.symbol(symbol)
        if entry not in self._insns:
            raise M4ProfileError(f"{symbol!r} is no function in {self.elf_path}")
        words = [int(a) & 0xFFFF_FFFF for a in args]
        stacked = words[4:]
        sp = (self._stack_top - 4 * len(stacked)) & ~7
        if stacked:
            uc.mem_write(sp, struct.pack(f"<{len(stacked)}I", *stacked))
        regs = (arm.UC_ARM_REG_R0, arm.UC_ARM_REG_R1, arm.UC_ARM_REG_R2, arm.UC_ARM_REG_R3)
        for reg, value in zip(regs[: len(words[:4])], words[:4], strict=True):
            uc.reg_write(reg, value)
        uc.reg_write(arm.UC_ARM_REG_SP, sp)
        uc.reg_write(arm.UC_ARM_REG_LR, RETURN_PAGE | 1)
        self._counts = {}
        self._taken = {}
        self._fall = {}
        self._state = [None, -1]
        try:
            uc.emu_start(entry | 1, RETURN_PAGE, timeout=int(timeout_s * 1e6))
        except self._uc_mod.UcError as e:
            pc = uc.reg_read(arm.UC_ARM_REG_PC)
            where = self._insns.get(pc & ~1)
            raise M4ProfileError(
                f"{symbol}: {e} at pc=0x{pc:08x} ({where.function if where else '?'})"
            ) from e
        pc = uc.reg_read(arm.UC_ARM_REG_PC) & ~1
        if pc != RETURN_PAGE:
            raise M4ProfileError(f"{symbol} did not return within {timeout_s} s (pc=0x{pc:08x})")
        # The return itself: its block is the last one, and its branch was taken.
        last = self._state[0]
        if last is not None:
            self._taken[last] = self._taken.get(last, 0) + 1
        r0 = uc.reg_read(arm.UC_ARM_REG_R0)
        return r0 - (1 << 32) if r0 & 0x8000_0000 else r0, self._profile()

    def _profile(self) -> Profile:
        refill = self.model.branch_refill
        total_n = total_c = blocks = taken_total = 0
        per_fn: dict[str, list[int]] = {}
        for key, count in self._counts.items():
            block = self._block(key)
            taken = self._taken.get(key, 0)
            n, c = block.instructions * count, block.cycles * count + refill * taken
            total_n += n
            total_c += c
            blocks += count
            taken_total += taken
            acc = per_fn.setdefault(block.function, [0, 0])
            acc[0] += n
            acc[1] += c
        saved = self.model.load_store - self.model.pipelined_load_store
        for (prev, key), count in self._fall.items():
            block = self._block(key)
            if block.first_ls and self._block(prev).last_ls:
                total_c -= saved * count
                per_fn[block.function][1] -= saved * count
        functions = {
            name: FunctionCost(n, c)
            for name, (n, c) in sorted(per_fn.items(), key=lambda kv: -kv[1][1])
        }
        return Profile(total_n, total_c, functions, blocks, taken_total)

    def hot_blocks(self, top: int = 20) -> list[dict]:
        """The last call's most expensive translation blocks, for tuning: start address,
        bytes, executions, instructions and cycles per execution, total cycles (refills of
        its taken branches included) and the function. Disassemble the range with
        ``arm-none-eabi-objdump -d --start-address=...`` to see the code."""
        refill = self.model.branch_refill
        rows = []
        for key, count in self._counts.items():
            block = self._block(key)
            total = block.cycles * count + refill * self._taken.get(key, 0)
            rows.append(
                {
                    "address": key[0],
                    "size": key[1],
                    "count": count,
                    "instructions": block.instructions,
                    "cycles": block.cycles,
                    "total_cycles": total,
                    "function": block.function,
                }
            )
        rows.sort(key=lambda r: -r["total_cycles"])
        return rows[:top]
