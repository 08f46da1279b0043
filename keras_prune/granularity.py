"""How a kernel's weights are grouped into pruning units.

Every granularity reads a kernel the way an int8 inference kernel does: as a matrix
with one **row per output channel** and the **accumulation (input) axis** along the
row, in memory order (for a Conv2D filter: kernel height, kernel width, input channel,
input channel fastest -- TFLite's OHWI layout, which is also the im2col order of
CMSIS-NN). ``KernelLayout`` describes that view for each kernel type.

=================  =====================================  ==================================
granularity        unit                                   score
=================  =====================================  ==================================
``Unstructured``   one weight                             ``|w|``
``SIMDGroups(w)``  ``w`` consecutive weights of a row     L2 norm of the group
                   (depthwise: ``w`` consecutive channels
                   at one tap)
``NofM(n, m)``     one weight, chosen inside each block   ``|w|``, ranked within its block
                   of ``m`` consecutive weights of a row
``Channels()``     a whole row (output filter/neuron)     L2 norm of the row
=================  =====================================  ==================================

**The last partial group.** When a row's length ``L`` is not a multiple of the group
width, the row ends in a group of ``L mod w`` weights. It is a unit like any other,
scored by the L2 norm of the weights it has: a kernel that loads whole 32-bit words
sees it as a group zero-padded to ``w``, and the padding adds nothing to the norm.
For ``NofM`` the padding of a short last block counts as already pruned, so a block of
``r < m`` real weights keeps at most ``n`` of them and prunes
``max(0, p - (m - r))`` where ``p`` is the per-block quota.

Exact counts: at sparsity ``s`` a mask update prunes exactly ``round(s * units)`` units
of the layer (``Unstructured``, ``SIMDGroups``, ``Channels``), or exactly
``min(round(s * m), m - n)`` weights (padding included) of every block (``NofM``).
Ties go to the unit that comes first in reading order. Masks never regrow: an update
keeps every unit a previous update removed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from keras_prune._config import ConfigValue
from keras_prune.masks import keep_after_pruning_lowest, keep_in_blocks, prune_count

__all__ = ["KernelLayout", "Granularity", "Unstructured", "SIMDGroups", "NofM", "Channels", "get"]


@dataclass(frozen=True)
class KernelLayout:
    """The row view of a kernel: ``perm`` moves the output axes first, in output order.

    ``n_out_axes`` leading axes of the permuted kernel form the row index; the rest,
    in permuted order, form the accumulation axis.
    """

    perm: tuple[int, ...]
    n_out_axes: int = 1

    def rows_shape(self, shape) -> tuple[int, int]:
        shape = [int(shape[p]) for p in self.perm]
        return math.prod(shape[: self.n_out_axes]), math.prod(shape[self.n_out_axes :])

    def to_rows(self, x):
        rows, cols = self.rows_shape(x.shape)
        return tf.reshape(tf.transpose(x, self.perm), (rows, cols))

    def from_rows(self, rows, shape):
        permuted = [int(shape[p]) for p in self.perm]
        return tf.transpose(tf.reshape(rows, permuted), np.argsort(self.perm))

    def to_rows_np(self, x: np.ndarray) -> np.ndarray:
        return np.transpose(x, self.perm).reshape(self.rows_shape(x.shape))


# Layouts of the Keras kernels we prune (see keras_prune.layers.prunable).
DENSE = KernelLayout((1, 0))  # (in, out)
CONV1D = KernelLayout((2, 0, 1))  # (k, cin, cout)
CONV2D = KernelLayout((3, 0, 1, 2))  # (kh, kw, cin, cout) -> OHWI
DEPTHWISE2D = KernelLayout((2, 3, 0, 1), 2)  # (kh, kw, cin, mult) -> channel c*mult+m, window
# The same kernel read the other way for SIMDGroups: one row per tap, the channels along
# it in TFLite's order (c*mult+m), as a depthwise kernel loads them: 4 channels a word.
DEPTHWISE2D_TAPS = KernelLayout((0, 1, 2, 3), 2)
CONV2D_TRANSPOSE = KernelLayout((2, 0, 1, 3))  # (kh, kw, cout, cin) -> OHWI


class Granularity(ConfigValue):
    """Base class. Subclasses define units and scores over the row view of a kernel."""

    #: whether a pruned unit also removes the bias of its output channel
    masks_bias = False

    def compute_mask(self, kernel, mask, sparsity, layout: KernelLayout):
        """The new mask (same shape as ``kernel``) at ``sparsity``; never regrows ``mask``."""
        shape = kernel.shape
        w = layout.to_rows(tf.cast(kernel, tf.float32))
        m = layout.to_rows(tf.cast(mask, tf.float32))
        keep = self._row_keep(w, m, sparsity)
        keep = tf.logical_and(keep, m > 0)
        return layout.from_rows(tf.cast(keep, mask.dtype), shape)

    def _row_keep(self, w, m, sparsity):
        raise NotImplementedError

    def units(self, shape, layout: KernelLayout) -> int:
        """Number of pruning units in a kernel of this shape."""
        raise NotImplementedError

    def check_pattern(self, kernel: np.ndarray, layout: KernelLayout) -> tuple[bool, str]:
        """Whether every zero of ``kernel`` sits in a fully removed unit, with a short label."""
        raise NotImplementedError

    def sparse_bytes(self, kernel: np.ndarray, layout: KernelLayout) -> int:
        """Estimated int8 storage of the kernel in this granularity's sparse form."""
        raise NotImplementedError


def _index_bytes(n_values: int) -> int:
    return 1 if n_values <= 256 else 2


@keras.saving.register_keras_serializable(package="keras_prune")
class Unstructured(Granularity):
    """Each weight is its own unit, scored by magnitude.

    Gives the most accuracy for a sparsity but little speed on SIMD hardware: every
    kept weight needs its own index. Example: ``kp.prune(model, granularity="unstructured")``.
    """

    def _row_keep(self, w, m, sparsity):
        scores = tf.where(m > 0, tf.abs(w), -1.0)
        flat = tf.reshape(scores, [-1])
        keep = keep_after_pruning_lowest(flat, prune_count(sparsity, int(flat.shape[0])))
        return tf.reshape(keep, tf.shape(w))

    def units(self, shape, layout):
        return math.prod(layout.rows_shape(shape))

    def check_pattern(self, kernel, layout):
        return True, "unstructured"

    def sparse_bytes(self, kernel, layout):
        rows = layout.to_rows_np(kernel)
        nnz = int(np.count_nonzero(rows))
        # CSR: int8 value + column index per non-zero, 16-bit row pointers.
        return nnz * (1 + _index_bytes(rows.shape[1])) + 2 * (rows.shape[0] + 1)


def _pad_cols(x, multiple: int, value: float = 0.0):
    cols = int(x.shape[1])
    pad = (-cols) % multiple
    if pad:
        x = tf.pad(x, [[0, 0], [0, pad]], constant_values=value)
    return x, pad


@keras.saving.register_keras_serializable(package="keras_prune")
class SIMDGroups(Granularity):
    """Scalpel's SIMD-aware pruning: runs of ``width`` weights are kept or removed whole.

    A run is ``width`` consecutive weights along the accumulation axis of one output
    channel: with ``width=4`` and int8 weights, one 32-bit word, which a Cortex-M4
    kernel unpacks with two SXTB16 and feeds to two SMLAD. A sparse kernel then skips
    whole words and stores one index per kept group. A row whose length is not a
    multiple of ``width`` ends in a shorter group (see the module docs).

    A ``DepthwiseConv2D`` kernel has no sum over channels; its kernels load ``width``
    consecutive channels at one tap as a word, so there a group is ``width`` consecutive
    (output) channels at one tap of the window.

    Args:
        width: weights per group (4 for int8 on Cortex-M4, 8 in Scalpel's examples).

    Example:

    ```python
    kp.prune(model, schedule=..., granularity=kp.granularity.SIMDGroups(width=4))
    ```
    """

    def __init__(self, width: int = 4):
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise ValueError(f"SIMDGroups: `width` must be a positive integer, got {width!r}.")
        self.width = width

    @staticmethod
    def group_layout(layout: KernelLayout) -> KernelLayout:
        """A depthwise kernel has no sum over channels: its SIMD word is ``width``
        consecutive channels at one tap, so its groups run along the channels."""
        return DEPTHWISE2D_TAPS if layout == DEPTHWISE2D else layout

    def compute_mask(self, kernel, mask, sparsity, layout):
        return super().compute_mask(kernel, mask, sparsity, self.group_layout(layout))

    def _row_keep(self, w, m, sparsity):
        rows, cols = int(w.shape[0]), int(w.shape[1])
        wp, _ = _pad_cols(w, self.width)
        mp, _ = _pad_cols(m, self.width)
        groups = int(wp.shape[1]) // self.width
        g = tf.reshape(wp, (rows, groups, self.width))
        alive = tf.reduce_max(tf.reshape(mp, (rows, groups, self.width)), axis=-1) > 0
        scores = tf.where(alive, tf.sqrt(tf.reduce_sum(tf.square(g), axis=-1)), -1.0)
        keep = keep_after_pruning_lowest(
            tf.reshape(scores, [-1]), prune_count(sparsity, rows * groups)
        )
        keep = tf.repeat(tf.reshape(keep, (rows, groups)), self.width, axis=1)
        return keep[:, :cols]

    def units(self, shape, layout):
        rows, cols = self.group_layout(layout).rows_shape(shape)
        return rows * -(-cols // self.width)

    def _groups_np(self, kernel, layout):
        rows = self.group_layout(layout).to_rows_np(kernel)
        pad = (-rows.shape[1]) % self.width
        rows = np.pad(rows, ((0, 0), (0, pad)))
        return rows.reshape(rows.shape[0], -1, self.width), pad

    def check_pattern(self, kernel, layout):
        g, pad = self._groups_np(kernel, layout)
        nz = g != 0
        partial = np.any(nz, axis=-1) & ~np.all(nz, axis=-1)
        if pad:  # the padding of the last group is zero by construction
            last = nz[:, -1, : self.width - pad]
            partial[:, -1] = np.any(last, axis=-1) & ~np.all(last, axis=-1)
        bad = int(partial.sum())
        label = f"groups of {self.width} aligned"
        return bad == 0, label if bad == 0 else f"{label}: no ({bad} mixed groups)"

    def sparse_bytes(self, kernel, layout):
        g, _ = self._groups_np(kernel, layout)
        kept = int(np.any(g != 0, axis=-1).sum())
        # int8 values of every kept group + one group index each + 16-bit row pointers.
        return kept * (self.width + _index_bytes(g.shape[1])) + 2 * (g.shape[0] + 1)

    def get_config(self):
        return {"width": self.width}


@keras.saving.register_keras_serializable(package="keras_prune")
class NofM(Granularity):
    """At most ``n`` non-zeros in every block of ``m`` consecutive weights of a row (N:M).

    The schedule's sparsity ``s`` sets the per-block quota ``min(round(s * m), m - n)``:
    a ramp to ``1 - n/m`` walks through the intermediate patterns (4:4, 3:4, 2:4 for
    ``NofM(2, 4)``) and a larger ``s`` is capped at the ``n``-of-``m`` pattern.

    Args:
        n: weights kept per block.
        m: block length.

    Example:

    ```python
    kp.prune(model, schedule=kp.schedules.ConstantSparsity(0.5, 0, frequency=1),
             granularity=kp.granularity.NofM(2, 4))
    ```
    """

    def __init__(self, n: int = 2, m: int = 4):
        for name, v in (("n", n), ("m", m)):
            if isinstance(v, bool) or not isinstance(v, int):
                raise ValueError(f"NofM: `{name}` must be an integer, got {v!r}.")
        if not 0 < n < m:
            raise ValueError(f"NofM: need 0 < n < m, got n={n}, m={m} (e.g. NofM(2, 4)).")
        self.n, self.m = n, m

    def _row_keep(self, w, m, sparsity):
        rows, cols = int(w.shape[0]), int(w.shape[1])
        # Padding ranks below everything (counts as pruned), earlier prunes just above it.
        wp, _ = _pad_cols(tf.where(m > 0, tf.abs(w), -1.0), self.m, value=-2.0)
        blocks = tf.reshape(wp, (rows, -1, self.m))
        quota = tf.minimum(prune_count(sparsity, self.m), self.m - self.n)
        keep = tf.reshape(keep_in_blocks(blocks, quota), (rows, -1))
        return keep[:, :cols]

    def units(self, shape, layout):
        return math.prod(layout.rows_shape(shape))

    def check_pattern(self, kernel, layout):
        rows = layout.to_rows_np(kernel)
        pad = (-rows.shape[1]) % self.m
        blocks = np.pad(rows, ((0, 0), (0, pad))).reshape(rows.shape[0], -1, self.m)
        bad = int((np.count_nonzero(blocks, axis=-1) > self.n).sum())
        label = f"{self.n}:{self.m}"
        return bad == 0, label if bad == 0 else f"{label}: no ({bad} blocks over)"

    def sparse_bytes(self, kernel, layout):
        rows = layout.to_rows_np(kernel)
        blocks = rows.shape[0] * -(-rows.shape[1] // self.m)
        # n int8 values per block + ceil(log2 m) bits of position per kept value.
        bits = max(1, math.ceil(math.log2(self.m)))
        return blocks * self.n + math.ceil(blocks * self.n * bits / 8)

    def get_config(self):
        return {"n": self.n, "m": self.m}


@keras.saving.register_keras_serializable(package="keras_prune")
class Channels(Granularity):
    """Whole output channels (conv filters, dense neurons), scored by their L2 norm.

    A removed channel loses its bias as well, so it outputs exactly zero and can be
    removed physically without changing the model. This is the granularity that
    speeds up servers and GPUs (and that ``kp.shrink`` turns into smaller layers).
    For ``SeparableConv2D`` it prunes the pointwise filters; the depthwise kernel is
    left to the channel dependency graph.

    Example: ``kp.prune(model, schedule=..., granularity=kp.granularity.Channels())``.
    """

    masks_bias = True

    def _row_keep(self, w, m, sparsity):
        rows = int(w.shape[0])
        alive = tf.reduce_max(m, axis=1) > 0
        scores = tf.where(alive, tf.norm(w, axis=1), -1.0)
        keep = keep_after_pruning_lowest(scores, prune_count(sparsity, rows))
        return tf.broadcast_to(keep[:, None], tf.shape(w))

    def units(self, shape, layout):
        return layout.rows_shape(shape)[0]

    def check_pattern(self, kernel, layout):
        rows = layout.to_rows_np(kernel)
        nz = rows != 0
        bad = int((np.any(nz, axis=1) & ~np.all(nz, axis=1)).sum())
        return bad == 0, "whole channels" if bad == 0 else f"whole channels: no ({bad} mixed)"

    def sparse_bytes(self, kernel, layout):
        rows = layout.to_rows_np(kernel)
        # Removed channels are physically gone: a smaller dense matrix.
        return int(np.any(rows != 0, axis=1).sum()) * rows.shape[1]


_BY_NAME = {
    "unstructured": Unstructured,
    "simd": SIMDGroups,
    "simdgroups": SIMDGroups,
    "nofm": NofM,
    "2:4": NofM,
    "channels": Channels,
}


def get(granularity) -> Granularity:
    """A Granularity from an instance, a config dict or a name.

    Names: ``"unstructured"``, ``"simd"``/``"simdgroups"`` (width 4), ``"2:4"``/``"nofm"``
    (2 of 4), ``"channels"``.
    """
    if isinstance(granularity, Granularity):
        return granularity
    if isinstance(granularity, dict):
        obj = keras.saving.deserialize_keras_object(granularity)
        if not isinstance(obj, Granularity):
            raise ValueError(f"`granularity` config {granularity!r} is not a Granularity.")
        return obj
    if isinstance(granularity, str):
        key = granularity.strip().lower()
        if key in _BY_NAME:
            return _BY_NAME[key]()
        raise ValueError(
            f"Unknown granularity {granularity!r}. Use one of {sorted(_BY_NAME)} or an instance "
            "such as kp.granularity.SIMDGroups(width=4) or kp.granularity.NofM(2, 4)."
        )
    raise TypeError(
        "`granularity` must be a name or a kp.granularity.Granularity instance, "
        f"got {type(granularity).__name__}: {granularity!r}."
    )
