"""Fit the dense/sparse cost model of ``keras_prune.export.cgen.cost_model`` to unicorn.

Builds the kernels for Cortex-M4 (DSP, ``-O2``), runs the dense and the SIMD-group sparse
FULLY_CONNECTED and CONV_2D kernels on a grid of shapes and group sparsities under
``keras_prune.mcu.profiler`` (every output checked bit for bit against
``keras_prune.export.int8.reference``), fits each linear model by least squares, and
prints the fitted constants (paste them into ``keras_prune/export/cgen/cost_model.py``)
and, for every measured case, the current model's estimate beside the measurement.

    python benchmarks/m4_cost_model.py
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from keras_prune.export.cgen import cost_model as sparse_cost  # noqa: E402
from keras_prune.export.cgen import kernel_library
from keras_prune.export.cgen.sparse_format import (  # noqa: E402
    INDEX_KINDS,
    depthwise_rows,
    encode_groups,
    encode_input_groups,
)
from keras_prune.export.int8 import reference as int8_ops  # noqa: E402
from keras_prune.mcu import profiler as m4_profile  # noqa: E402

KERNELS = (
    "kp_fully_connected_s8.c",
    "kp_convolve_s8.c",
    "kp_nn_vec_mat_s8.c",
    "kp_nn_mat_mult_s8_s16_2col.c",
    "kp_sparse_fully_connected_s8.c",
    "kp_sparse_convolve_s8.c",
    "kp_sparse_convolve_rows_s8.c",
    "kp_depthwise_conv_s8.c",
    "kp_sparse_depthwise_conv_s8.c",
    "kp_nn_sparse_vec_s8.c",
    "kp_zero_skip_fully_connected_s8.c",
    "kp_nn_zero_skip_vec_s8.c",
)
FC_SHAPES = [(784, 300), (400, 120), (300, 100), (120, 84), (100, 10), (256, 64)]
# (h, w, cin, out channels, k, padding, stride)
CONV_SHAPES = [
    (28, 28, 1, 6, 5, "SAME", 1),  # LeNet-5
    (14, 14, 6, 16, 5, "VALID", 1),
    (16, 16, 16, 16, 3, "SAME", 1),  # ResNet-8 (its 32x32 layers at a quarter of the area)
    (16, 16, 16, 32, 3, "SAME", 2),
    (8, 8, 64, 64, 3, "SAME", 1),
    (16, 16, 16, 32, 1, "VALID", 2),
    (32, 32, 3, 16, 3, "SAME", 1),
    (48, 48, 3, 8, 3, "SAME", 2),  # MobileNetV1-0.25 (stem at a quarter of the area)
    (12, 12, 32, 64, 1, "VALID", 1),
    (6, 6, 128, 128, 1, "VALID", 1),
    (3, 3, 256, 256, 1, "VALID", 1),
    (25, 5, 64, 64, 1, "VALID", 1),  # DS-CNN
    (25, 10, 1, 64, 4, "SAME", 2),  # DS-CNN's stem, 4x4 here
]
CONV_SPARSITIES = (0.0, 0.5, 0.7, 0.9, 0.95)
# (h, w, channels, k, padding, stride): MobileNetV1-0.25's and DS-CNN's depthwise layers
DW_SHAPES = [
    (24, 24, 8, 3, "SAME", 1),
    (24, 24, 16, 3, "SAME", 2),
    (12, 12, 32, 3, "SAME", 1),
    (6, 6, 128, 3, "SAME", 1),
    (25, 5, 64, 3, "SAME", 1),
    (9, 9, 12, 5, "VALID", 1),
    (10, 10, 16, 5, "SAME", 1),
    (16, 16, 8, 3, "VALID", 2),
]
SPARSITIES = (0.0, 0.5, 0.8, 0.9, 0.97)
DENSITIES = (0.05, 0.1, 0.2, 0.3, 0.5, 1.0)  # non-zero inputs of a zero-skipping FC


def pruned(rng, rows: int, k: int, sparsity: float) -> np.ndarray:
    w = rng.integers(-127, 128, (rows, k)).astype(np.int8)
    keep = rng.random((rows, -(-k // 4))) >= sparsity
    return np.where(np.repeat(keep, 4, axis=1)[:, :k], w, 0).astype(np.int8)


class Bench:
    def __init__(self, emu: m4_profile.M4Emulator, rng: np.random.Generator):
        self.emu, self.rng = emu, rng

    def _quant(self, n: int):
        m, s = int8_ops.conv_quant(0.02, 10 ** self.rng.uniform(-3, -2, n), 2.0)
        return np.asarray(m, np.int32), np.asarray(s, np.int32)

    def _sparse(self, sg) -> int:
        e = self.emu
        return e.put_words(
            sg.rows,
            sg.k,
            INDEX_KINDS[sg.index_kind],
            sg.n_groups,
            e.put(sg.counts.astype("<u2")),
            e.put(sg.words.astype("<u4")),
            e.put(sg.index),
        )

    def fc(self, w: np.ndarray, kind: str | None) -> int:
        e, (rows, k) = self.emu, w.shape
        x = self.rng.integers(-128, 128, (1, k)).astype(np.int8)
        bias = self.rng.integers(-3000, 3000, rows)
        m, s = self._quant(rows)
        prm = int8_ops.fc_params(-5, -128, (-128, 127))
        expected = int8_ops.fully_connected(x, w, bias, prm, m, s)[0]
        eff = int8_ops.effective_bias(bias, w, prm["input_offset"])
        e.reset_heap()
        pa = e.put_words(prm["input_offset"], prm["output_offset"], -128, 127)
        qa = e.put_words(e.put(m), e.put(s), 1)
        xa, ea, out = e.put(x), e.put(eff), e.alloc(rows)
        if kind is None:
            _, prof = e.call("kp_fully_connected_s8", pa, qa, 1, k, rows, xa, e.put(w), ea, out)
        else:
            _, prof = e.call(
                "kp_sparse_fully_connected_s8",
                pa,
                qa,
                1,
                k,
                rows,
                xa,
                self._sparse(encode_groups(w, index=kind)),
                ea,
                out,
            )
        assert (e.read_array(out, np.int8, rows) == expected).all(), (w.shape, kind)
        return prof.cycles

    def zero_skip(self, w: np.ndarray, density: float) -> tuple[int, list[float]]:
        """Cycles of the zero-skipping FC on an input of the given density, and the
        counts its model multiplies: rows, groups visited, entries visited."""
        e, (rows, k) = self.emu, w.shape
        prm = int8_ops.fc_params(-128, -128, (-128, 127))
        x = self.rng.integers(-127, 128, (1, k)).astype(np.int8)
        x[self.rng.random((1, k)) >= density] = -128
        bias = self.rng.integers(-3000, 3000, rows)
        m, s = self._quant(rows)
        expected = int8_ops.fully_connected(x, w, bias, prm, m, s)[0]
        enc = encode_input_groups(w)
        e.reset_heap()
        row8 = row16 = 0
        if enc.row_index is not None:
            ra = e.put(enc.row_index)
            row8, row16 = (ra, 0) if enc.row_index.dtype == np.uint8 else (0, ra)
        wa = e.put_words(
            rows, k, e.put(enc.starts.astype("<i4")), e.put(enc.words.astype("<u4")), row8, row16
        )
        pa = e.put_words(prm["input_offset"], prm["output_offset"], -128, 127)
        qa = e.put_words(e.put(m), e.put(s), 1)
        out = e.alloc(rows)
        _, prof = e.call(
            "kp_zero_skip_fully_connected_s8",
            pa,
            qa,
            1,
            k,
            rows,
            e.put(x),
            wa,
            e.put(bias.astype("<i4")),
            out,
            e.alloc(4 * rows),
        )
        assert (e.read_array(out, np.int8, rows) == expected).all(), (w.shape, density)
        active = np.any(np.pad(x[0] != -128, (0, -k % 4)).reshape(-1, 4), axis=1)
        entries = np.diff(enc.starts)[active].sum()
        return prof.cycles, [rows, int(active.sum()), int(entries)]

    @staticmethod
    def conv_shape(shape) -> sparse_cost.ConvShape:
        h, wd, cin, _, kk, padding, st = shape
        oh, ph = int8_ops.padding(h, kk, st, 1, padding)
        ow, pw = int8_ops.padding(wd, kk, st, 1, padding)
        return sparse_cost.ConvShape(oh, ow, kk, kk, cin, (st, st), (1, 1), (ph, pw))

    def conv(self, shape, w: np.ndarray, kind: str | None, variant: str = "quads") -> int:
        e = self.emu
        h, wd, cin, oc, kk, _, st = shape
        cs = self.conv_shape(shape)
        (oh, ow), (ph, pw) = (cs.out_h, cs.out_w), cs.padding
        x = self.rng.integers(-128, 128, (1, h, wd, cin)).astype(np.int8)
        bias = self.rng.integers(-3000, 3000, oc)
        m, s = self._quant(oc)
        prm = int8_ops.conv_params(-7, -128, (st, st), (ph, pw), (1, 1), (-128, 127))
        w4 = w.reshape(oc, kk, kk, cin)
        expected = int8_ops.conv2d(x, w4, bias, prm, m, s, (oh, ow))
        eff = int8_ops.effective_bias(bias, w, prm["input_offset"])
        e.reset_heap()
        pa = e.put_words(prm["input_offset"], prm["output_offset"], st, st, ph, pw, 1, 1, -128, 127)
        qa = e.put_words(e.put(m), e.put(s), 1)
        dims_in, dims_f = e.put_words(1, h, wd, cin), e.put_words(oc, kk, kk, cin)
        dims_out = e.put_words(1, oh, ow, oc)
        xa, ea, out = e.put(x), e.put(eff), e.alloc(expected.size)
        if kind is None:
            _, prof = e.call(
                "kp_convolve_s8",
                pa,
                qa,
                dims_in,
                xa,
                dims_f,
                e.put(w),
                ea,
                dims_out,
                out,
                e.alloc(4 * kk * kk * cin),
            )
        else:
            rows = variant == "rows"
            scratch = (
                sparse_cost.conv_rows_scratch_bytes if rows else sparse_cost.conv_scratch_bytes
            )(cs)
            _, prof = e.call(
                "kp_sparse_convolve_rows_s8" if rows else "kp_sparse_convolve_s8",
                pa,
                qa,
                dims_in,
                xa,
                dims_f,
                self._sparse(encode_groups(w, index=kind)),
                ea,
                dims_out,
                out,
                e.alloc(max(4, scratch)),
            )
        got = e.read_array(out, np.int8, expected.size).reshape(expected.shape)
        assert (got == expected).all(), (shape, kind)
        return prof.cycles


def dw_cycles(b: Bench, shape, sparsity: float, kind: str | None):
    """(dense cycles, sparse cycles, the encoding) of one depthwise layer, groups of 4
    channels at one tap pruned at random; both outputs checked against the reference."""
    e, rng = b.emu, b.rng
    h, wd, c, kk, padding, st = shape
    cs = Bench.conv_shape((h, wd, c, c, kk, padding, st))
    (oh, ow), (ph, pw), taps = (cs.out_h, cs.out_w), cs.padding, kk * kk
    keep = np.repeat(rng.random((taps, c // 4)) >= sparsity, 4, axis=1)
    wt = np.where(keep, rng.integers(-127, 128, (taps, c)), 0).astype(np.int8)
    x = rng.integers(-128, 128, (1, h, wd, c)).astype(np.int8)
    bias = rng.integers(-3000, 3000, c)
    m, s = b._quant(c)
    prm = int8_ops.dw_conv_params(-7, -128, 1, (st, st), (ph, pw), (1, 1), (-128, 127))
    expected = int8_ops.depthwise_conv2d(x, wt.reshape(1, kk, kk, c), bias, prm, m, s, (oh, ow))
    eff = int8_ops.effective_bias(bias, wt.T, prm["input_offset"])
    sg = encode_groups(depthwise_rows(wt), index=kind)
    cycles = []
    for sparse in (False, True):
        e.reset_heap()
        pa = e.put_words(prm["input_offset"], -128, 1, st, st, ph, pw, 1, 1, -128, 127)
        qa = e.put_words(e.put(m), e.put(s), 1)
        dims = (e.put_words(1, h, wd, c), e.put(x), e.put_words(1, kk, kk, c))
        out = e.alloc(expected.size)
        if sparse:
            args = (b._sparse(sg), e.put(eff), e.put_words(1, oh, ow, c), out)
            args += (e.alloc(sparse_cost.dw_scratch_bytes(kk, kk)),)
            _, prof = e.call("kp_sparse_depthwise_conv_s8", pa, qa, *dims, *args)
        else:
            args = (e.put(wt), e.put(eff), e.put_words(1, oh, ow, c), out)
            _, prof = e.call("kp_depthwise_conv_s8", pa, qa, *dims, *args)
        got = e.read_array(out, np.int8, expected.size).reshape(expected.shape)
        assert (got == expected).all(), (shape, sparse)
        cycles.append(prof.cycles)
    return cycles[0], cycles[1], cs, sg


def fit(features: list[list[float]], cycles: list[int]) -> np.ndarray:
    coef, *_ = np.linalg.lstsq(np.asarray(features, float), np.asarray(cycles, float), rcond=None)
    return coef


def report(title: str, names: list[str], coef: np.ndarray, rows: list[tuple]) -> None:
    print(f"\n{title}: " + ", ".join(f"{n}={c:.3g}" for n, c in zip(names, coef, strict=True)))
    print(f"  {'case':<44} {'measured':>10} {'model':>10} {'error':>7}")
    worst = 0.0
    for label, measured, model in rows:
        err = model / measured - 1
        worst = max(worst, abs(err))
        print(f"  {label:<44} {measured:>10,} {model:>10,.0f} {err:>+7.1%}")
    print(f"  worst error of the model in sparse_cost.py: {worst:.1%}")


def main() -> None:
    d = Path(tempfile.mkdtemp(prefix="m4_cost_"))
    emu = m4_profile.M4Emulator(
        m4_profile.build_library_elf(
            [kernel_library.KERNEL_DIR / n for n in KERNELS],
            d / "bench.elf",
            include_dirs=[kernel_library.KERNEL_DIR],
        )
    )
    b = Bench(emu, np.random.default_rng(0))
    rng = np.random.default_rng(1)

    feats, cyc, rows = [], [], []
    for k, n in FC_SHAPES:
        c = b.fc(pruned(rng, n, k, 0.0), None)
        feats.append([1, n, n * k])
        cyc.append(c)
        rows.append((f"fc dense {k}->{n}", c, sparse_cost.fc_dense_cycles(1, k, n)))
    report("FC dense [call, row, mac]", ["call", "row", "mac"], fit(feats, cyc), rows)

    feats, cyc, rows = [], [], []
    for k, n in FC_SHAPES:
        for sp in SPARSITIES:
            w = pruned(rng, n, k, sp)
            for kind in INDEX_KINDS:
                sg = encode_groups(w, index=kind)
                c = b.fc(w, kind)
                feats.append(
                    [n]
                    + [sg.n_groups if kk == kind else 0 for kk in INDEX_KINDS]
                    + [sparse_cost.runs_pairs(sg)]
                )
                cyc.append(c)
                rows.append(
                    (f"fc sparse {k}->{n} @{sp:.2f} {kind}", c, sparse_cost.fc_sparse_cycles(1, sg))
                )
    report(
        "FC sparse [row, group runs/delta8/abs16, run pair] (call 0)",
        ["row", *INDEX_KINDS, "run_pair"],
        fit(feats, cyc),
        rows,
    )

    feats, cyc, rows = [], [], []
    for k, n in FC_SHAPES:
        for sp in (0.0, 0.5, 0.9):
            w = pruned(rng, n, k, sp)
            enc = encode_input_groups(w)
            for density in DENSITIES:
                c, f = b.zero_skip(w, density)
                feats.append(f)
                cyc.append(c)
                rows.append(
                    (
                        f"fc zero-skip {k}->{n} @{sp:.1f} input {density:.0%}",
                        c,
                        sparse_cost.zero_skip_cycles(1, enc, density),
                    )
                )
    report(
        "FC zero-skip [row, active, entry] (call 0, group 0; the model assumes independent zeros)",
        ["row", "active", "entry"],
        fit(feats, cyc),
        rows,
    )

    feats, cyc, rows = [], [], []
    sfeats, scyc, srows = [], [], []
    for shape in CONV_SHAPES:
        h, wd, cin, oc, kk, padding, st = shape
        cs = Bench.conv_shape(shape)
        px, kl = cs.pixels, kk * kk * cin
        c = b.conv(shape, pruned(rng, oc, kl, 0.0), None)
        feats.append([px, px * kk * kk, px * kl, px * kl * oc, px * oc])
        cyc.append(c)
        label = f"{h}x{wd}x{cin}->{oc} {kk}x{kk}/{st} {padding}"
        rows.append((f"conv dense {label}", c, sparse_cost.conv_dense_cycles(cs, oc)))
        for sp in CONV_SPARSITIES:
            w = pruned(rng, oc, kl, sp)
            for kind in INDEX_KINDS:
                sg = encode_groups(w, index=kind)
                c = b.conv(shape, w, kind)
                sfeats.append(sparse_cost.conv_sparse_features(cs, sg))
                scyc.append(c)
                srows.append(
                    (
                        f"conv sparse {label} @{sp:.2f} {kind}",
                        c,
                        sparse_cost.conv_sparse_cycles(cs, sg),
                    )
                )
    report(
        "CONV dense [pixel, tap, value, mac, row] (call 0)",
        ["pixel", "tap", "value", "mac", "row"],
        fit(feats, cyc),
        rows,
    )
    rfeats, rcyc, rrows = [], [], []
    for shape in CONV_SHAPES:
        if shape[2] >= 8:  # the variant is a candidate for few input channels
            continue
        h, wd, cin, oc, kk, padding, st = shape
        cs = Bench.conv_shape(shape)
        label = f"{h}x{wd}x{cin}->{oc} {kk}x{kk}/{st} {padding}"
        for sp in CONV_SPARSITIES:
            w = pruned(rng, oc, kk * kk * cin, sp)
            sg = encode_groups(w, index="abs16")
            c = b.conv(shape, w, "abs16", "rows")
            _, in_rows, _ = sparse_cost.conv_rows_block(cs)
            blocks = -(-cs.out_h // sparse_cost.conv_rows_block(cs)[0])
            pieces = sparse_cost.conv_rows_pieces(cs, w)
            rfeats.append(
                [blocks * in_rows, blocks * sparse_cost.conv_rows_bytes(cs),
                 blocks * sg.n_groups, cs.pixels * oc, cs.pixels * pieces]
            )  # fmt: skip
            rcyc.append(c)
            rrows.append(
                (f"conv rows {label} @{sp:.2f}", c, sparse_cost.conv_rows_cycles(cs, sg, pieces))
            )
    report(
        "CONV rows " + str(list(sparse_cost.CONV_ROWS)),
        list(sparse_cost.CONV_ROWS),
        fit(rfeats, rcyc),
        rrows,
    )
    report(
        "CONV sparse " + str(list(sparse_cost.CONV_SPARSE_FEATURES)),
        list(sparse_cost.CONV_SPARSE_FEATURES),
        fit(sfeats, scyc),
        srows,
    )

    feats, cyc, rows, sfeats, scyc, srows = [], [], [], [], [], []
    for shape in DW_SHAPES:
        label = f"{shape[0]}x{shape[1]}x{shape[2]} {shape[3]}x{shape[3]}/{shape[5]} {shape[4]}"
        for sp in CONV_SPARSITIES:
            for kind in INDEX_KINDS:
                dense, sparse, cs, sg = dw_cycles(b, shape, sp, kind)
                if sp == 0.0 and kind == "runs":
                    feats.append(sparse_cost.dw_dense_features(cs))
                    cyc.append(dense)
                    rows.append((f"dw dense {label}", dense, sparse_cost.dw_dense_cycles(cs)))
                sfeats.append(sparse_cost.dw_sparse_features(cs, sg))
                scyc.append(sparse)
                srows.append(
                    (f"dw sparse {label} @{sp:.2f} {kind}", sparse,
                     sparse_cost.dw_sparse_cycles(cs, sg))
                )  # fmt: skip
    report(
        "DW dense " + str(list(sparse_cost.DW_DENSE)),
        list(sparse_cost.DW_DENSE),
        fit(feats, cyc),
        rows,
    )
    report(
        "DW sparse " + str(list(sparse_cost.DW_SPARSE)),
        list(sparse_cost.DW_SPARSE),
        fit(sfeats, scyc),
        srows,
    )


if __name__ == "__main__":
    main()
