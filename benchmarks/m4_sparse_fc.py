"""Cortex-M4 cost of a SIMD-group sparse FULLY_CONNECTED against the dense DSP kernel and
a plain scalar CSR kernel, with flash bytes.

One 784 -> 300 int8 layer (batch 1, per-channel quantization), its weights pruned with
4-weight groups at each group sparsity, runs under ``keras_prune.mcu.profiler``
(unicorn; estimated cycles, zero wait states, taken-branch refill 2: compare ratios, not
absolute times) in:

* dense: ``kp_fully_connected_s8`` (DSP build), the whole matrix, zeros included;
* sparse: ``kp_sparse_fully_connected_s8`` (DSP build), each index encoding;
* CSR: a plain scalar CSR kernel (``keras_prune/recipes/csrc/kp_csr_s8.c``: int8 values,
  uint16 column indices, uint32 row pointers, one MAC per non-zero weight, the same requantization).

Every output must equal ``keras_prune.export.int8.reference.fully_connected`` bit for
bit.

    python benchmarks/m4_sparse_fc.py [--sparsity 0.5 0.75 0.9]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from keras_prune.export.cgen import kernel_library
from keras_prune.export.cgen.sparse_format import INDEX_KINDS, encode_groups  # noqa: E402
from keras_prune.export.int8 import reference as int8_ops  # noqa: E402
from keras_prune.mcu import profiler as m4_profile  # noqa: E402
from keras_prune.recipes.m4_variants import CSR_SOURCE  # noqa: E402  (the plain CSR kernels)


def pruned(rng, rows, k, sparsity):
    w = rng.integers(-127, 128, (rows, k)).astype(np.int8)
    w[w == 0] = 1  # kept groups fully non-zero: CSR's best case for its nnz
    keep = rng.random((rows, -(-k // 4))) >= sparsity
    return np.where(np.repeat(keep, 4, axis=1)[:, :k], w, 0).astype(np.int8)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sparsity", type=float, nargs="+", default=[0.5, 0.75, 0.9])
    ap.add_argument("--k", type=int, default=784)
    ap.add_argument("--rows", type=int, default=300)
    args = ap.parse_args()
    k, rows = args.k, args.rows

    d = Path(tempfile.mkdtemp(prefix="m4_sparse_"))
    sources = [
        kernel_library.KERNEL_DIR / n
        for n in (
            "kp_fully_connected_s8.c",
            "kp_nn_vec_mat_s8.c",
            "kp_sparse_fully_connected_s8.c",
            "kp_nn_sparse_vec_s8.c",
        )
    ] + [CSR_SOURCE]
    emu = m4_profile.M4Emulator(
        m4_profile.build_library_elf(
            sources, d / "bench.elf", include_dirs=[kernel_library.KERNEL_DIR]
        )
    )

    rng = np.random.default_rng(0)
    x = rng.integers(-128, 128, (1, k)).astype(np.int8)
    bias = rng.integers(-5000, 5000, rows)
    s_w = (10 ** rng.uniform(-3, -2, rows)).astype(np.float32)
    m, s = int8_ops.fc_quant(np.float32(0.02), s_w, np.float32(0.1))
    m, s = np.asarray(m, np.int32), np.asarray(s, np.int32)
    params = int8_ops.fc_params(-3, -128, (-128, 127))
    print(f"FULLY_CONNECTED {k} -> {rows}, int8, batch 1, Cortex-M4 -O2 (unicorn, est. cycles)")
    print(
        f"{'group sparsity':>14} {'kernel':<16} {'cycles':>9} {'vs dense':>8} "
        f"{'flash B':>8} {'cyc/kept MAC':>12}"
    )
    for sp in args.sparsity:
        w = pruned(rng, rows, k, sp)
        eff = int8_ops.effective_bias(bias, w, params["input_offset"])
        expected = int8_ops.fully_connected(x, w, bias, params, m, s)[0]
        nnz = int(np.count_nonzero(w))
        emu.reset_heap()
        xa, effa = emu.put(x), emu.put(eff)
        pa = emu.put_words(params["input_offset"], params["output_offset"], -128, 127)
        qa = emu.put_words(emu.put(m), emu.put(s), 1)
        out = emu.alloc(rows)
        results = []

        _, prof = emu.call("kp_fully_connected_s8", pa, qa, 1, k, rows, xa, emu.put(w), effa, out)
        assert (emu.read_array(out, np.int8, rows) == expected).all()
        dense = prof.cycles
        results.append(("dense DSP", dense, rows * k))

        best = encode_groups(w).index_kind
        for kind in INDEX_KINDS:
            sg = encode_groups(w, index=kind)
            wa = emu.put_words(
                rows,
                k,
                INDEX_KINDS[kind],
                sg.n_groups,
                emu.put(sg.counts.astype("<u2")),
                emu.put(sg.words.astype("<u4")),
                emu.put(sg.index),
            )
            _, prof = emu.call(
                "kp_sparse_fully_connected_s8", pa, qa, 1, k, rows, xa, wa, effa, out
            )
            assert (emu.read_array(out, np.int8, rows) == expected).all(), kind
            label = f"sparse {kind}" + ("*" if kind == best else "")
            results.append((label, prof.cycles, sg.nbytes))

        nz = np.nonzero(w)
        row_ptr = np.concatenate([[0], np.cumsum(np.count_nonzero(w, axis=1))]).astype("<u4")
        _, prof = emu.call(
            "csr_fc_s8",
            xa,
            emu.put(w[nz]),
            emu.put(nz[1].astype("<u2")),
            emu.put(row_ptr),
            rows,
            effa,
            qa,
            params["output_offset"],
            -128,
            127,
            out,
        )
        assert (emu.read_array(out, np.int8, rows) == expected).all(), "csr"
        results.append(("CSR scalar", prof.cycles, nnz + 2 * nnz + 4 * (rows + 1)))

        for label, cyc, flash in results:
            print(
                f"{sp:>14.2f} {label:<16} {cyc:>9} {dense / cyc:>7.2f}x {flash:>8} "
                f"{cyc / nnz:>12.2f}"
            )
    print(
        "* the encoding encode_groups picks (smallest index stream). "
        "Flash: weights + indices + row counts/pointers; bias and quantization excluded."
    )


if __name__ == "__main__":
    main()
