"""Cortex-M4 cost of keras-prune's int8 kernels against ARM's CMSIS-NN, layer by layer.

The kernels (``keras_prune/export/cgen/csrc``, ``kernel_library.kernel_sources()``) are
built twice for ``-mcpu=cortex-m4 -mthumb -O2 -mfloat-abi=soft``: the DSP build
(SXTB16/SMLAD, what a Cortex-M4 gets by default) and the portable build (``-DKP_NO_DSP``,
the same C99 any core gets). Every layer shape of the four reference networks (the table
"CMSIS-NN per-layer baseline" in docs/c-export.md) then runs under
``keras_prune.mcu.profiler`` (unicorn) with random int8 data and realistic quantization
(per-channel scales, ReLU zero points), and:

* the DSP output must equal the portable build's and the NumPy model's
  (``keras_prune.export.int8.reference``, TFLM's reference arithmetic) bit for bit;
* the table gives MACs, our executed instructions, estimated cycles and cycles/MAC for
  both builds, CMSIS-NN's estimated cycles from that docs table (the anchor, measured the
  same way), and the ratio ours/CMSIS-NN. The bar: dense CONV and FC within 1.3x.

When ``KP_CMSIS_NN_DIR`` names a CMSIS-NN checkout (a directory with ``Include/`` and
``Source/``; never needed), its integer kernels (``keras_prune.mcu.host.cmsis_nn_sources``)
are built with the same flags and run on the same data: the table then also shows
CMSIS-NN measured here, next to the documented anchor.

Emulation is deterministic, so one run per shape is the measurement (a median over
repeats would equal it). Cycle estimates assume zero wait states, no bus contention and a
taken-branch refill of 2 (``keras_prune.mcu.profiler``'s docstring lists every
assumption): compare ratios, not absolute times.

    python benchmarks/m4_kernels.py [--only SUBSTRING] [--no-cmsis] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from keras_prune.export.cgen import kernel_library
from keras_prune.export.int8 import reference as int8_ops  # noqa: E402
from keras_prune.mcu import profiler as m4_profile  # noqa: E402
from keras_prune.mcu.host import cmsis_nn_sources  # noqa: E402
from keras_prune.mcu.profiler import M4Emulator  # noqa: E402

BAR = 1.3  # dense CONV and FC: our estimated cycles within 1.3x of CMSIS-NN's


@dataclass(frozen=True)
class Case:
    """One layer shape of a reference network. ``anchor`` is CMSIS-NN's estimated cycles
    for it, from docs/c-export.md, "CMSIS-NN per-layer baseline" (CMSIS-NN 99f736a, -O2,
    unicorn, P=2)."""

    layer: str
    shape: str
    kind: str  # fc, conv, dw, add, softmax
    dims: dict
    cmsis_fn: str
    anchor: int
    dense: bool = True  # held to the 1.3x bar

    @property
    def macs(self) -> int:
        d = self.dims
        if self.kind == "fc":
            return d["k"] * d["n"]
        if self.kind == "conv":
            return d["oh"] * d["ow"] * d["oc"] * d["kh"] * d["kw"] * d["c"]
        if self.kind == "dw":
            return d["oh"] * d["ow"] * d["c"] * d["kh"] * d["kw"]
        return 0

    @property
    def elements(self) -> int:
        return self.dims.get("size", 0)


def _conv(h, w, c, oc, k, stride=1, pad="VALID") -> dict:
    oh, ph = int8_ops.padding(h, k, stride, 1, pad)
    ow, pw = int8_ops.padding(w, k, stride, 1, pad)
    return {
        "h": h,
        "w": w,
        "c": c,
        "oc": oc,
        "kh": k,
        "kw": k,
        "stride": stride,
        "ph": ph,
        "pw": pw,
        "oh": oh,
        "ow": ow,
    }


# The anchors (last number of each row) are the table "CMSIS-NN per-layer baseline" in
# docs/c-export.md, est. cycles column; change both together.
CASES = [
    Case(
        "LeNet-300-100 fc",
        "784->300",
        "fc",
        {"k": 784, "n": 300},
        "arm_fully_connected_s8",
        575_216,
    ),
    Case(
        "LeNet-300-100 fc", "300->100", "fc", {"k": 300, "n": 100}, "arm_fully_connected_s8", 76_912
    ),
    Case("LeNet-300-100 fc", "100->10", "fc", {"k": 100, "n": 10}, "arm_fully_connected_s8", 3_150),
    Case(
        "LeNet-5 conv",
        "28x28x1->28x28x6 5x5 p2",
        "conv",
        _conv(28, 28, 1, 6, 5, pad="SAME"),
        "arm_convolve_s8",
        1_950_489,
    ),
    Case(
        "LeNet-5 conv",
        "14x14x6->10x10x16 5x5",
        "conv",
        _conv(14, 14, 6, 16, 5),
        "arm_convolve_s8",
        830_247,
    ),
    Case("LeNet-5 fc", "400->120", "fc", {"k": 400, "n": 120}, "arm_fully_connected_s8", 120_764),
    Case(
        "LeNet-5-Caffe conv",
        "12x12x20->8x8x50 5x5",
        "conv",
        _conv(12, 12, 20, 50, 5),
        "arm_convolve_s8",
        3_509_979,
    ),
    Case(
        "LeNet-5-Caffe fc",
        "800->500",
        "fc",
        {"k": 800, "n": 500},
        "arm_fully_connected_s8",
        977_840,
    ),
    Case(
        "ResNet-8 conv",
        "32x32x3->32x32x16 3x3",
        "conv",
        _conv(32, 32, 3, 16, 3, pad="SAME"),
        "arm_convolve_s8",
        2_820_641,
    ),
    Case(
        "ResNet-8 conv",
        "32x32x16->32x32x16 3x3",
        "conv",
        _conv(32, 32, 16, 16, 3, pad="SAME"),
        "arm_convolve_s8",
        6_822_194,
    ),
    Case(
        "ResNet-8 conv",
        "16x16x32->16x16x32 3x3",
        "conv",
        _conv(16, 16, 32, 32, 3, pad="SAME"),
        "arm_convolve_s8",
        5_516_206,
    ),
    Case(
        "ResNet-8 conv",
        "8x8x64->8x8x64 3x3",
        "conv",
        _conv(8, 8, 64, 64, 3, pad="SAME"),
        "arm_convolve_s8",
        4_991_942,
    ),
    Case(
        "ResNet-8 shortcut",
        "32x32x16->16x16x32 1x1 s2",
        "conv",
        _conv(32, 32, 16, 32, 1, stride=2),
        "arm_convolve_1x1_s8",
        681_070,
    ),
    Case(
        "ResNet-8 add",
        "32x32x16",
        "add",
        {"size": 32 * 32 * 16},
        "arm_elementwise_add_s8",
        1_600_848,
        dense=False,
    ),
    Case(
        "DS-CNN depthwise",
        "25x5x64 3x3",
        "dw",
        {**_conv(25, 5, 64, 64, 3, pad="SAME"), "mult": 1},
        "arm_depthwise_conv_3x3_s8",
        667_192,
        dense=False,
    ),
    Case(
        "DS-CNN pointwise",
        "25x5x64->64 1x1",
        "conv",
        _conv(25, 5, 64, 64, 1),
        "arm_convolve_1x1_s8_fast",
        1_242_495,
    ),
    Case(
        "softmax",
        "10 classes",
        "softmax",
        {"size": 10, "rows": 1},
        "arm_softmax_s8",
        6_229,
        dense=False,
    ),
]


# ------------------------------------------------------------------- data
@dataclass
class LayerData:
    """Inputs, parameters and the NumPy model's output of one case."""

    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    params: dict = field(default_factory=dict)
    expected: np.ndarray | None = None


def _weights(rng: np.random.Generator, shape) -> np.ndarray:
    return np.clip(np.rint(rng.normal(0, 40, shape)), -127, 127).astype(np.int8)


def _out_scale(in_scale: float, w_scale: float, k: int) -> float:
    # Outputs spread over about +-40 codes: acc std ~ sqrt(k) * 74 * 40 (uniform int8 x
    # times weights of std 40), so a few saturate, most do not.
    return in_scale * w_scale * math.sqrt(k) * 74 * 40 / 40


def make_data(case: Case, rng: np.random.Generator) -> LayerData:
    d = case.dims
    data = LayerData()
    if case.kind in ("fc", "conv", "dw"):
        in_scale, zp_in = 0.02, int(rng.integers(-128, 0))
        relu = case.kind != "fc" or d["n"] > 10
        zp_out = -128 if relu else int(rng.integers(-20, 20))
        act = (-128 if not relu else zp_out, 127)
    if case.kind == "fc":
        k, n = d["k"], d["n"]
        x = rng.integers(-128, 128, (1, k), dtype=np.int8)
        w = _weights(rng, (n, k))
        bias = rng.normal(0, 2000, n).astype(np.int32)
        w_scale = 0.004
        mult, shift = int8_ops.fc_quant(in_scale, w_scale, _out_scale(in_scale, w_scale, k))
        params = int8_ops.fc_params(zp_in, zp_out, act)
        data.expected = int8_ops.fully_connected(x, w, bias, params, mult, shift)
        eff = int8_ops.effective_bias(bias, w, params["input_offset"])
    elif case.kind == "conv":
        x = rng.integers(-128, 128, (1, d["h"], d["w"], d["c"]), dtype=np.int8)
        w = _weights(rng, (d["oc"], d["kh"], d["kw"], d["c"]))
        bias = rng.normal(0, 2000, d["oc"]).astype(np.int32)
        w_scales = 0.004 * (1 + 0.3 * rng.random(d["oc"]))
        k = d["kh"] * d["kw"] * d["c"]
        mult, shift = int8_ops.conv_quant(in_scale, w_scales, _out_scale(in_scale, 0.005, k))
        params = int8_ops.conv_params(
            zp_in, zp_out, (d["stride"],) * 2, (d["ph"], d["pw"]), (1, 1), act
        )
        data.expected = int8_ops.conv2d(x, w, bias, params, mult, shift, (d["oh"], d["ow"]))
        eff = int8_ops.effective_bias(bias, w, params["input_offset"])
    elif case.kind == "dw":
        x = rng.integers(-128, 128, (1, d["h"], d["w"], d["c"]), dtype=np.int8)
        oc = d["c"] * d["mult"]
        w = _weights(rng, (1, d["kh"], d["kw"], oc))
        bias = rng.normal(0, 2000, oc).astype(np.int32)
        w_scales = 0.004 * (1 + 0.3 * rng.random(oc))
        k = d["kh"] * d["kw"]
        mult, shift = int8_ops.conv_quant(in_scale, w_scales, _out_scale(in_scale, 0.005, k))
        params = int8_ops.dw_conv_params(
            zp_in, zp_out, d["mult"], (d["stride"],) * 2, (d["ph"], d["pw"]), (1, 1), act
        )
        data.expected = int8_ops.depthwise_conv2d(
            x, w, bias, params, mult, shift, (d["oh"], d["ow"])
        )
        eff = int8_ops.effective_bias(bias, w[0].reshape(-1, oc).T, params["input_offset"])
    elif case.kind == "add":
        n = d["size"]
        x = rng.integers(-128, 128, n, dtype=np.int8)
        x2 = rng.integers(-128, 128, n, dtype=np.int8)
        params = int8_ops.add_params(0.05, -10, 0.03, 5, 0.06, -128, -128, 127)
        data.expected = int8_ops.add(x, x2, params)
        data.arrays.update(x=x, x2=x2)
        data.params = params
        return data
    else:  # softmax
        x = rng.integers(-128, 128, (d["rows"], d["size"]), dtype=np.int8)
        params = int8_ops.softmax_params(1.0, 0.1)
        data.expected = int8_ops.softmax(x, params)
        data.arrays.update(x=x)
        data.params = params
        return data
    data.arrays.update(
        x=x,
        w=w,
        bias=bias,
        eff=eff,
        mult=np.asarray(mult, np.int32),
        shift=np.asarray(shift, np.int32),
    )
    data.params = params
    return data


def _flat(value) -> list[int]:
    """A kp_*_params dict's int32 fields in declaration order (nested structs inline)."""
    if isinstance(value, dict):
        return [v for item in value.values() for v in _flat(item)]
    return [int(value)]


# ------------------------------------------------------------- our kernels
def run_ours(emu: M4Emulator, case: Case, data: LayerData) -> tuple[np.ndarray, m4_profile.Profile]:
    """Our kernel on one case; returns its output and the call's profile."""
    emu.reset_heap()
    d, a = case.dims, data.arrays
    if case.kind == "add":
        n = d["size"]
        out = emu.alloc(n)
        status, prof = emu.call(
            "kp_elementwise_add_s8",
            emu.put_words(*_flat(data.params)),
            emu.put(a["x"]),
            emu.put(a["x2"]),
            out,
            n,
        )
        result = emu.read_array(out, np.int8, n)
    elif case.kind == "softmax":
        n = a["x"].size
        out = emu.alloc(n)
        status, prof = emu.call(
            "kp_softmax_s8",
            emu.put_words(*_flat(data.params)),
            emu.put(a["x"]),
            d["rows"],
            d["size"],
            out,
        )
        result = emu.read_array(out, np.int8, n).reshape(a["x"].shape)
    else:
        per_channel = int(a["mult"].size > 1)
        quant = emu.put_words(emu.put(a["mult"]), emu.put(a["shift"]), per_channel)
        params = emu.put_words(*_flat(data.params))
        x, w, eff = emu.put(a["x"]), emu.put(a["w"]), emu.put(a["eff"])
        n_out = data.expected.size
        out = emu.alloc(n_out)
        if case.kind == "fc":
            status, prof = emu.call(
                "kp_fully_connected_s8", params, quant, 1, d["k"], d["n"], x, w, eff, out
            )
        elif case.kind == "conv":
            scratch = emu.alloc(4 * d["kh"] * d["kw"] * d["c"])
            status, prof = emu.call(
                "kp_convolve_s8",
                params,
                quant,
                emu.put_words(1, d["h"], d["w"], d["c"]),
                x,
                emu.put_words(d["oc"], d["kh"], d["kw"], d["c"]),
                w,
                eff,
                emu.put_words(1, d["oh"], d["ow"], d["oc"]),
                out,
                scratch,
            )
        else:
            oc = d["c"] * d["mult"]
            status, prof = emu.call(
                "kp_depthwise_conv_s8",
                params,
                quant,
                emu.put_words(1, d["h"], d["w"], d["c"]),
                x,
                emu.put_words(1, d["kh"], d["kw"], oc),
                w,
                eff,
                emu.put_words(1, d["oh"], d["ow"], oc),
                out,
            )
        result = emu.read_array(out, np.int8, n_out).reshape(data.expected.shape)
    if status != 0:
        raise RuntimeError(f"{case.layer} {case.shape}: kernel returned {status}")
    return result, prof


# ------------------------------------------------------------------ CMSIS-NN
CMSIS_KEEP = [
    "arm_fully_connected_s8",
    "arm_convolve_s8",
    "arm_convolve_s8_get_buffer_size",
    "arm_convolve_1x1_s8",
    "arm_convolve_1x1_s8_fast",
    "arm_convolve_1x1_s8_fast_get_buffer_size",
    "arm_depthwise_conv_3x3_s8",
    "arm_elementwise_add_s8",
    "arm_softmax_s8",
]


def build_cmsis(root: Path, build: Path) -> Path | None:
    """CMSIS-NN's kernels as a library ELF, from the checkout ``root`` (None when its
    sources do not build here)."""
    try:
        # CMSIS-NN is not written for our -std=c99 -Werror: its own dialect, warnings off.
        return m4_profile.build_library_elf(
            cmsis_nn_sources(root),
            build / "cmsis_nn.elf",
            include_dirs=[root / "Include"],
            keep=CMSIS_KEEP,
            extra_flags=["-std=gnu11", "-w", "-Wno-error"],
        )
    except m4_profile.M4ProfileError as e:
        print(f"note: CMSIS-NN did not build, measuring without it:\n{e}", file=sys.stderr)
        return None


def run_cmsis(
    emu: M4Emulator, case: Case, data: LayerData
) -> tuple[np.ndarray, m4_profile.Profile]:
    """CMSIS-NN's function for the case (its real bias; its tiles are (w, h))."""
    emu.reset_heap()
    d, a, p = case.dims, data.arrays, data.params
    if case.kind == "add":
        n = d["size"]
        out = emu.alloc(n)
        _, prof = emu.call(
            "arm_elementwise_add_s8",
            emu.put(a["x"]),
            emu.put(a["x2"]),
            p["input1_offset"],
            p["input1_multiplier"],
            p["input1_shift"],
            p["input2_offset"],
            p["input2_multiplier"],
            p["input2_shift"],
            p["left_shift"],
            out,
            p["output_offset"],
            p["output_multiplier"],
            p["output_shift"],
            p["activation"]["min"],
            p["activation"]["max"],
            n,
        )
        return emu.read_array(out, np.int8, n), prof
    if case.kind == "softmax":
        n = a["x"].size
        out = emu.alloc(n)
        _, prof = emu.call(
            "arm_softmax_s8",
            emu.put(a["x"]),
            d["rows"],
            d["size"],
            p["input_multiplier"],
            p["input_left_shift"],
            p["diff_min"],
            out,
        )
        return emu.read_array(out, np.int8, n).reshape(a["x"].shape), prof
    x, w, bias = emu.put(a["x"]), emu.put(a["w"]), emu.put(a["bias"])
    act = (p["activation"]["min"], p["activation"]["max"])
    n_out = data.expected.size
    out = emu.alloc(n_out)
    if case.kind == "fc":
        _, prof = emu.call(
            "arm_fully_connected_s8",
            emu.put_words(0, 0),
            emu.put_words(p["input_offset"], 0, p["output_offset"], *act),
            emu.put_words(int(a["mult"][0]), int(a["shift"][0])),
            emu.put_words(1, 1, 1, d["k"]),
            x,
            emu.put_words(d["k"], 1, 1, d["n"]),
            w,
            emu.put_words(1, 1, 1, d["n"]),
            bias,
            emu.put_words(1, 1, 1, d["n"]),
            out,
        )
        return emu.read_array(out, np.int8, n_out).reshape(data.expected.shape), prof
    quant = emu.put_words(emu.put(a["mult"]), emu.put(a["shift"]))
    in_dims = emu.put_words(1, d["h"], d["w"], d["c"])
    bias_dims = emu.put_words(1, 1, 1, a["mult"].size)
    oc = a["mult"].size
    out_dims = emu.put_words(1, d["oh"], d["ow"], oc)
    s, ph, pw = d["stride"], d["ph"], d["pw"]
    if case.kind == "dw":
        params = emu.put_words(
            p["input_offset"], p["output_offset"], d["mult"], s, s, pw, ph, 1, 1, *act
        )
        f_dims = emu.put_words(1, d["kh"], d["kw"], oc)
        _, prof = emu.call(
            case.cmsis_fn,
            emu.put_words(0, 0),
            params,
            quant,
            in_dims,
            x,
            f_dims,
            w,
            bias_dims,
            bias,
            out_dims,
            out,
        )
    else:
        params = emu.put_words(p["input_offset"], p["output_offset"], s, s, pw, ph, 1, 1, *act)
        f_dims = emu.put_words(oc, d["kh"], d["kw"], d["c"])
        size = 0
        if case.cmsis_fn == "arm_convolve_s8":
            size, _ = emu.call("arm_convolve_s8_get_buffer_size", in_dims, f_dims)
        elif case.cmsis_fn == "arm_convolve_1x1_s8_fast":
            size, _ = emu.call("arm_convolve_1x1_s8_fast_get_buffer_size", in_dims)
        ctx = emu.put_words(emu.alloc(size) if size else 0, size)
        args = [ctx, params, quant, in_dims, x, f_dims, w, bias_dims, bias]
        if case.cmsis_fn == "arm_convolve_s8":
            args.append(0)  # upscale_dims: none
        _, prof = emu.call(case.cmsis_fn, *args, out_dims, out)
    return emu.read_array(out, np.int8, n_out).reshape(data.expected.shape), prof


# ------------------------------------------------------------------- report
def _fmt(v, spec: str = ",") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return format(v, spec)


def measure(
    cases: list[Case],
    build: Path,
    cmsis_root: Path | None,
    seed: int,
    log: Callable[[str], None],
) -> list[dict]:
    sources = kernel_library.kernel_sources()
    include = [kernel_library.KERNEL_DIR]
    t0 = time.time()
    dsp = M4Emulator(
        m4_profile.build_library_elf(sources, build / "kp_dsp.elf", include_dirs=include)
    )
    portable = M4Emulator(
        m4_profile.build_library_elf(
            sources, build / "kp_portable.elf", include_dirs=include, defines=["KP_NO_DSP"]
        )
    )
    cmsis_elf = build_cmsis(cmsis_root, build) if cmsis_root else None
    cmsis = M4Emulator(cmsis_elf) if cmsis_elf else None
    log(
        f"built in {time.time() - t0:.1f} s"
        + ("" if cmsis else " (CMSIS-NN: documented anchors only)")
    )
    rows = []
    for case in cases:
        t1 = time.time()
        data = make_data(case, np.random.default_rng(seed))
        out_dsp, prof_dsp = run_ours(dsp, case, data)
        out_port, prof_port = run_ours(portable, case, data)
        exact = np.array_equal(out_dsp, out_port) and np.array_equal(out_dsp, data.expected)
        row = {
            "layer": case.layer,
            "shape": case.shape,
            "kind": case.kind,
            "macs": case.macs,
            "elements": case.elements,
            "dsp_instructions": prof_dsp.instructions,
            "dsp_cycles": prof_dsp.cycles,
            "portable_cycles": prof_port.cycles,
            "cmsis_anchor": case.anchor,
            "exact": bool(exact),
            "dense": case.dense,
            "dsp_functions": {k: v.cycles for k, v in prof_dsp.functions.items()},
        }
        if cmsis is not None:
            out_cmsis, prof_cmsis = run_cmsis(cmsis, case, data)
            row["cmsis_here"] = prof_cmsis.cycles
            row["cmsis_max_diff"] = int(
                np.abs(out_cmsis.astype(int) - data.expected.astype(int)).max()
            )
        row["ratio"] = prof_dsp.cycles / case.anchor
        row["meets_bar"] = row["ratio"] <= BAR if case.dense else None
        rows.append(row)
        log(f"  {case.layer} {case.shape}: {time.time() - t1:.1f} s")
    return rows


def table(rows: list[dict]) -> str:
    cols = [
        ("layer", "<"),
        ("shape", "<"),
        ("MACs", ">"),
        ("DSP instr", ">"),
        ("DSP cycles", ">"),
        ("cyc/MAC", ">"),
        ("portable cycles", ">"),
        ("port cyc/MAC", ">"),
        ("CMSIS-NN (docs)", ">"),
        ("CMSIS-NN (here)", ">"),
        ("ours/CMSIS", ">"),
        ("<=1.3x", "^"),
        ("bit-exact", "^"),
    ]
    body = []
    for r in rows:
        work = r["macs"] or r["elements"]
        unit = "" if r["macs"] else "/elem"
        body.append(
            [
                r["layer"],
                r["shape"],
                _fmt(r["macs"] or None),
                _fmt(r["dsp_instructions"]),
                _fmt(r["dsp_cycles"]),
                _fmt(r["dsp_cycles"] / work, ".2f") + unit if work else "-",
                _fmt(r["portable_cycles"]),
                _fmt(r["portable_cycles"] / work, ".2f") + unit if work else "-",
                _fmt(r["cmsis_anchor"]),
                _fmt(r.get("cmsis_here")),
                _fmt(r["ratio"], ".2f"),
                "-" if r["meets_bar"] is None else ("yes" if r["meets_bar"] else "NO"),
                "yes" if r["exact"] else "NO",
            ]
        )
    widths = [max(len(c[0]), *(len(b[i]) for b in body)) for i, c in enumerate(cols)]
    lines = [
        " | ".join(f"{c[0]:{c[1]}{w}}" for c, w in zip(cols, widths, strict=True)),
        "-+-".join("-" * w for w in widths),
    ]
    lines += [
        " | ".join(f"{v:{c[1]}{w}}" for v, c, w in zip(b, cols, widths, strict=True)) for b in body
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="run the cases whose layer or shape holds this")
    parser.add_argument(
        "--no-cmsis",
        action="store_true",
        help="do not build CMSIS-NN even if KP_CMSIS_NN_DIR names a checkout",
    )
    parser.add_argument("--build-dir", type=Path, help="keep the ELFs here")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not m4_profile.available():
        sys.exit(
            f"needs arm-none-eabi-gcc + newlib ({m4_profile.INSTALL_HINT}) and "
            f"{m4_profile.UNICORN_HINT}"
        )
    cases = [c for c in CASES if not args.only or args.only in c.layer or args.only in c.shape]
    cmsis_root = None
    if not args.no_cmsis and os.environ.get("KP_CMSIS_NN_DIR"):
        cmsis_root = Path(os.environ["KP_CMSIS_NN_DIR"])
        if not (cmsis_root / "Include" / "arm_nnfunctions.h").is_file():
            sys.exit(f"KP_CMSIS_NN_DIR={cmsis_root} is not a CMSIS-NN checkout")
    with tempfile.TemporaryDirectory() as tmp:
        build = args.build_dir or Path(tmp)
        build.mkdir(parents=True, exist_ok=True)
        rows = measure(
            cases,
            build,
            cmsis_root,
            args.seed,
            lambda s: print(s, file=sys.stderr, flush=True),
        )
    print(
        "Cortex-M4 int8 kernels, estimated cycles (keras_prune.mcu.profiler: unicorn, -O2, "
        "zero wait states, taken branch 1+2; deterministic, one run each)."
    )
    print(
        'CMSIS-NN (docs): docs/c-export.md, "CMSIS-NN per-layer baseline"; ours/CMSIS '
        "uses it. Bar: dense CONV/FC <= 1.3x.\n"
    )
    print(table(rows))
    failed = [r for r in rows if not r["exact"]]
    print(
        f"\nbit-exact (DSP == portable == int8_ops): {len(rows) - len(failed)}/{len(rows)}; "
        f"dense shapes within {BAR}x: "
        f"{sum(r['meets_bar'] is True for r in rows)}/"
        f"{sum(r['meets_bar'] is not None for r in rows)}"
    )
    if any("cmsis_max_diff" in r for r in rows):
        print(
            "CMSIS-NN measured here vs int8_ops, largest output difference: "
            + ", ".join(f"{r['shape']}: {r['cmsis_max_diff']}" for r in rows)
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
