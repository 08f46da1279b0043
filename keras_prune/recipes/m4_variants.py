"""The Cortex-M4 variants of one trained model, side by side: what
``benchmarks/m4_sparse.py`` prints for LeNet-300-100 and LeNet-5 and ``keras-prune demo``
for LeNet-300-100.

Each variant is exported with ``kp.export.cmsis`` (int8, checked bit for bit against
TFLM on the host and, with QEMU, on an emulated Cortex-M4) and its estimated cycles
counted under unicorn on one test digit:

* dense, ours: our dense kernels (``sparse="never"``);
* dense, ours, ``sparse="auto"``: the same weights where the cost model may still pick a
  sparse kernel (never with nothing pruned: the index would add flash);
* dense, CMSIS-NN: the same C built against ARM's kernels (``-DKP_USE_CMSIS_NN``) when
  ``KP_CMSIS_NN_DIR`` names a CMSIS-NN checkout; otherwise the figure measured in
  the figure in ``docs/c-export.md`` ("CMSIS-NN baseline": same estimator, same shapes);
* unstructured + CSR: the dense model pruned again, unstructured, to the same sparsity;
  its FULLY_CONNECTED and CONV_2D layers run a plain scalar CSR kernel (``csrc/kp_csr_s8.c``)
  (int8 values, uint16 columns, uint32 row pointers; the conv gathers each window
  first), measured on the layer's own non-zero pattern and checked bit for bit against
  ``int8_ops``; the other layers' cycles and the model's flash come from the dense-kernel
  export of the same weights, with each weight matrix's bytes replaced by its CSR arrays;
* SIMDGroups(4): our sparse kernels where the cost model picks them (``sparse="auto"``);
* SIMDGroups(4) + masks: Integral Pruning on top (the thresholds model of
  ``recipes.mnist.run_integral``), its masks run as the ``.tflite`` does (bit-exact with TFLM) and
  the layers they feed on the zero-skipping kernel where the cost model picks it;
* the same with top-k masks in C (``masks="topk"``): the winners chosen at run time as
  the Keras layer does; not comparable bit for bit with TFLM, so its accuracy is the
  check.

Accuracy is the int8 C model's on the first ``samples`` test digits, the ones checked
against TFLM (what the board would compute). Flash
is the model's own bytes in the Cortex-M4 firmware (weights and code, linker map); RAM is
the static arena. Cycles are unicorn's estimate (zero wait states) on one digit: compare
the ratios, not the absolute times; the masked rows depend on how many activations the
digit leaves.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

import keras_prune as kp
from keras_prune import granularity
from keras_prune.export.cgen import kernel_library
from keras_prune.export.int8 import reference as int8_ops
from keras_prune.export.int8.runtime import quantize_input
from keras_prune.mcu import cycles as m4_cycles
from keras_prune.mcu import profiler as m4_profile
from keras_prune.recipes.mnist import prune_and_finetune

__all__ = ["CsrBench", "variants", "table", "plot", "CMSIS_NN_CYCLES", "CSR_SOURCE"]

# CMSIS-NN's whole-network cycles under the same estimator, measured once with a CMSIS-NN
# checkout (KP_CMSIS_NN_DIR): the table "CMSIS-NN baseline" in docs/c-export.md.
CMSIS_NN_CYCLES = {"lenet_300_100": 655_278, "lenet5": 3_041_313}

CSR_SOURCE = Path(__file__).parent / "csrc" / "kp_csr_s8.c"


class CsrBench:
    """The CSR kernels above, built for the Cortex-M4 and run under unicorn."""

    def __init__(self):
        d = Path(tempfile.mkdtemp(prefix="m4_csr_"))
        self.emu = m4_profile.M4Emulator(
            m4_profile.build_library_elf(
                [CSR_SOURCE], d / "csr.elf", include_dirs=kernel_library.include_dirs()
            )
        )
        self.rng = np.random.default_rng(0)

    def _csr(self, w: np.ndarray):
        e = self.emu
        nz = np.nonzero(w)
        row_ptr = np.concatenate([[0], np.cumsum(np.count_nonzero(w, axis=1))]).astype("<u4")
        nbytes = nz[0].size * 3 + row_ptr.nbytes
        return (e.put(w[nz]), e.put(nz[1].astype("<u2")), e.put(row_ptr)), nbytes

    def _common(self, rows: int, w: np.ndarray):
        bias = self.rng.integers(-3000, 3000, rows)
        m, s = int8_ops.conv_quant(0.02, 10 ** self.rng.uniform(-3, -2, rows), 0.1)
        return bias, np.asarray(m, np.int32), np.asarray(s, np.int32)

    def layer(self, layer, input_shape: tuple) -> tuple[int, int]:
        """(cycles, CSR bytes) of one Dense or Conv2D layer on its own non-zero pattern,
        random int8 values."""
        e = self.emu
        kernel = layer.kernel.numpy()
        rows_f = np.moveaxis(kernel, -1, 0).reshape(kernel.shape[-1], -1)
        w = np.where(
            rows_f != 0,
            self.rng.integers(1, 128, rows_f.shape) * self.rng.choice([-1, 1], rows_f.shape),
            0,
        ).astype(np.int8)
        n, k = w.shape
        bias, m, s = self._common(n, w)
        in_off = 5
        e.reset_heap()
        arrays, nbytes = self._csr(w)
        qa = e.put_words(e.put(m), e.put(s), 1)
        if kernel.ndim == 2:
            x = self.rng.integers(-128, 128, (1, k)).astype(np.int8)
            prm = int8_ops.fc_params(-in_off, -128, (-128, 127))
            expected = int8_ops.fully_connected(x, w, bias, prm, m, s)[0]
            eff = int8_ops.effective_bias(bias, w, prm["input_offset"])
            out = e.alloc(n)
            _, prof = e.call(
                "csr_fc_s8", e.put(x), *arrays, n, e.put(eff), qa, -128, -128, 127, out
            )
        else:
            if tuple(layer.strides) != (1, 1) or tuple(layer.dilation_rate) != (1, 1):
                raise ValueError(
                    f"{layer.name}: the CSR conv here takes stride and dilation 1 only."
                )
            kh, kw, c, _ = kernel.shape
            _, h, wd, _ = input_shape
            oh, ph = int8_ops.padding(h, kh, 1, 1, layer.padding.upper())
            ow, pw = int8_ops.padding(wd, kw, 1, 1, layer.padding.upper())
            x = self.rng.integers(-128, 128, (1, h, wd, c)).astype(np.int8)
            prm = int8_ops.conv_params(-in_off, -128, (1, 1), (ph, pw), (1, 1), (-128, 127))
            expected = int8_ops.conv2d(
                x, w.reshape(n, kh, kw, c), bias, prm, m, s, (oh, ow)
            ).reshape(-1)
            eff = int8_ops.effective_bias(bias, w, prm["input_offset"])
            out = e.alloc(expected.size)
            dims = e.put_words(h, wd, c, kh, kw, ph, pw, oh, ow)
            _, prof = e.call(
                "csr_conv_s8",
                e.put(x),
                dims,
                prm["input_offset"],
                *arrays,
                n,
                e.put(eff),
                qa,
                -128,
                -128,
                127,
                e.alloc(k),
                out,
            )
        got = e.read_array(out, np.int8, expected.size)
        assert (got == expected.reshape(-1)).all(), layer.name
        return prof.cycles, nbytes


def export(
    model, path: Path, x, xt, yt, sparse: str, samples: int, masks: str = "threshold"
) -> dict:
    """Export, check, and count one variant's cycles; the row of the table."""
    rep = kp.export.cmsis(
        model,
        path,
        x[:500],
        validation_data=(xt, yt),
        samples=samples,
        sparse=sparse,
        masks=masks,
        force=True,
        print_fn=None,
        progress=False,
    )
    m = rep.manifest
    inp = m["io"]["input"]
    xq = quantize_input(xt[:1], inp["scale"], inp["zero_point"])
    cost = m4_cycles.profile_model(path, xq)
    row = {
        "accuracy": m["accuracy"]["int8_c"],
        "flash": m["sizes"].get("cortex_m4", {}).get("model_flash"),
        "ram": m["memory"]["arena_bytes"],
        "cycles": cost.cycles,
        "cost": cost,
        "manifest": m,
        "path": path,
    }
    if os.environ.get("KP_CMSIS_NN_DIR"):
        row["cmsis_nn_cycles"] = m4_cycles.profile_model(
            path, xq, cmsis_nn=os.environ["KP_CMSIS_NN_DIR"]
        ).cycles
    return row


def csr_row(dense_kernels: dict, plain, csr: CsrBench) -> dict:
    """The unstructured model with its weight layers on the CSR kernels."""
    row = dict(dense_kernels)
    cycles, flash = row["cycles"], row["flash"]
    by_name = {
        la.layers[-1]: la for la in row["cost"].layers if la.op in ("FULLY_CONNECTED", "CONV_2D")
    }
    for layer in plain.layers:
        if layer.name not in by_name:
            continue
        cyc, nbytes = csr.layer(layer, tuple(layer.input.shape))
        cycles += cyc - by_name[layer.name].cycles
        if flash is not None:
            flash += nbytes - int(np.prod(layer.kernel.shape))
    row.update(cycles=cycles, flash=flash)
    return row


def variants(
    r, integral, data, out: Path, csr: CsrBench, sparsity: float = 0.9, samples: int = 100
) -> list[tuple]:
    """The table's rows for one trained model: ``r`` a ``recipes.mnist.RecipeResult`` (dense and
    SIMDGroups(4)-pruned models), ``integral`` its ``IntegralResult`` (None: no mask rows),
    ``data`` ``(x, y, xt, yt)``. Prunes the dense model once more, unstructured, to
    ``sparsity`` (the SIMDGroups model's target); exports every variant to C under
    ``out``."""
    x, y, xt, yt = data
    name = r.model
    unstructured, _, _ = prune_and_finetune(
        r.dense_model, name, x, y, granularity.Unstructured(), sparsity
    )
    plain_u = kp.strip(unstructured)
    dense = export(r.dense_model, out / f"{name}_dense", x, xt, yt, "never", samples)
    dense_auto = export(r.dense_model, out / f"{name}_dense_auto", x, xt, yt, "auto", samples)
    groups = export(kp.strip(r.pruned_model), out / f"{name}_groups", x, xt, yt, "auto", samples)
    unstr = export(plain_u, out / f"{name}_unstructured", x, xt, yt, "never", samples)
    cmsis_row = {"accuracy": dense["accuracy"], "flash": None, "ram": None}
    if "cmsis_nn_cycles" in dense:
        cmsis_row["cycles"], how = dense["cmsis_nn_cycles"], "built here"
    else:
        cmsis_row["cycles"], how = CMSIS_NN_CYCLES[name], "docs table"
    pct = f"{sparsity:.0%}"
    rows = [
        ("dense, ours", dense),
        ("dense, ours, sparse='auto'", dense_auto),
        (f"dense, CMSIS-NN ({how})", cmsis_row),
        (f"unstructured {pct} + CSR", csr_row(unstr, plain_u, csr)),
        (f"SIMDGroups(4) {pct}", groups),
    ]
    if integral is not None and integral.plain_model is not None:
        masked = export(integral.plain_model, out / f"{name}_masks", x, xt, yt, "auto", samples)
        masked["integral"] = integral
        topk = export(
            integral.plain_model,
            out / f"{name}_masks_topk",
            x,
            xt,
            yt,
            "auto",
            samples,
            masks="topk",
        )
        rows += [("SIMDGroups(4) + masks", masked), ("  same, top-k masks in C", topk)]
    return rows


def table(name: str, rows: list[tuple]) -> str:
    base = rows[0][1]["cycles"]
    digits = rows[0][1]["manifest"]["accuracy"]["samples"]
    lines = [
        f"\n{name} on MNIST-5k, Cortex-M4 (estimated cycles at zero wait states; "
        f"int8 C accuracy on the first {digits:,} test digits)",
        f"  {'variant':<32}{'accuracy':>9}{'flash B':>10}{'RAM B':>8}{'cycles':>12}"
        f"{'ms@120MHz':>11}{'speed-up':>10}",
    ]
    for label, row in rows:
        acc, cyc = row.get("accuracy"), row.get("cycles")
        flash, ram = row.get("flash"), row.get("ram")
        lines.append(
            f"  {label:<32}{(f'{acc:.2%}' if acc is not None else '-'):>9}"
            f"{(f'{flash:,}' if flash else '-'):>10}{(f'{ram:,}' if ram else '-'):>8}"
            f"{(f'{cyc:,}' if cyc else '-'):>12}"
            f"{(f'{cyc / m4_cycles.REFERENCE_MHZ / 1e3:.2f}' if cyc else '-'):>11}"
            f"{(f'{base / cyc:.2f}x' if cyc else '-'):>10}"
        )
        if "integral" in row:
            i = row["integral"]
            lines.append(
                f"  {'':<4}MACs left of dense: weights only {1 - i.cut('weights_x_relu'):.1%}"
                f" (zero ReLU outputs skipped), with masks "
                f"{1 - i.cut('weights_x_thresholds'):.1%}; zero-skipping layers: "
                + (
                    ", ".join(
                        la["keras_layers"][-1]
                        for la in row["manifest"]["layers"]
                        if la["kernel"] == "kp_zero_skip_fully_connected_s8"
                    )
                    or "none"
                )
            )
    return "\n".join(lines)


def plot(name: str, rows: list[tuple], path: Path, overwrite: bool = False) -> Path:
    """The table as a picture (PNG): per variant, estimated ms at 120 MHz and model flash
    side by side, each bar labelled with its value (the time bars with the int8
    accuracy); CMSIS-NN's row has no flash measured here."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [(label.strip(), row) for label, row in rows if row.get("cycles")]
    labels = [label for label, _ in shown]
    ms = [row["cycles"] / m4_cycles.REFERENCE_MHZ / 1e3 for _, row in shown]
    kib = [(row.get("flash") or 0) / 1024 for _, row in shown]
    y = np.arange(len(shown))[::-1]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 0.45 * len(shown) + 1.6), sharey=True)
    a.barh(y, ms, color="tab:blue")
    for yi, v, (_, row) in zip(y, ms, shown, strict=True):
        a.text(v, yi, f" {v:.2f} ms, {row['accuracy']:.1%}", va="center", fontsize=8)
    a.set_xlabel("estimated ms per inference at 120 MHz (int8 accuracy)")
    a.set_xlim(0, max(ms) * 1.45)
    b.barh(y, kib, color="tab:orange")
    for yi, v in zip(y, kib, strict=True):
        b.text(v, yi, f" {v:,.0f} KiB" if v else " not measured", va="center", fontsize=8)
    b.set_xlabel("model flash (KiB)")
    b.set_xlim(0, max(kib) * 1.3)
    a.set_yticks(y, labels, fontsize=8)
    fig.suptitle(f"{name} as C on a Cortex-M4, per variant")
    return kp.io.save_figure(fig, path, overwrite=overwrite)
