"""Mask computation: exact counts, whole groups, deterministic ties, no regrowth."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

import keras_prune as kp
from keras_prune import granularity as gr

LAYOUTS = {
    "dense": ((13, 7), gr.DENSE),
    "conv2d": ((3, 3, 5, 4), gr.CONV2D),
    "conv1d": ((3, 6, 2), gr.CONV1D),
    "depthwise": ((3, 3, 4, 2), gr.DEPTHWISE2D),
    "transpose": ((2, 3, 4, 5), gr.CONV2D_TRANSPOSE),
}


def mask_of(g, w, s, old=None, layout=gr.DENSE):
    old = np.ones_like(w) if old is None else old
    return np.asarray(g.compute_mask(w, old, np.float32(s), layout))


def expected_count(s, units):
    return int(np.round(np.float64(np.float32(s)) * units))


@settings(max_examples=40, deadline=None)
@given(
    rows=st.integers(1, 9),
    cols=st.integers(1, 23),
    width=st.integers(1, 8),
    s=st.floats(0, 0.99),
    seed=st.integers(0, 2**16),
)
def test_simd_groups_exact_count_and_whole_groups(rows, cols, width, s, seed):
    w = np.random.default_rng(seed).normal(size=(cols, rows)).astype(np.float32)  # Dense (in, out)
    g = gr.SIMDGroups(width)
    m = mask_of(g, w, s)
    groups = -(-cols // width)
    padded = np.pad(m.T, ((0, 0), (0, groups * width - cols)), constant_values=-1)
    per_group = padded.reshape(rows, groups, width)
    kept = []
    for grp in per_group.reshape(-1, width):
        real = grp[grp >= 0]
        assert real.min() == real.max(), "a group is kept or removed whole"
        kept.append(real[0] == 1)
    kept = np.array(kept)
    assert (
        (~kept).sum() == expected_count(s, rows * groups) == g.units(w.shape, gr.DENSE) - kept.sum()
    )
    # The removed groups are the lowest-norm ones (ties aside).
    norms = np.sqrt(
        np.square(np.pad(w.T, ((0, 0), (0, groups * width - cols))))
        .reshape(rows, groups, width)
        .sum(-1)
    ).reshape(-1)
    if kept.any() and (~kept).any():
        assert norms[~kept].max() <= norms[kept].min()


def test_simd_groups_follow_the_accumulation_order_of_a_conv():
    """Groups run along (kh, kw, cin) of each output filter, cin fastest (OHWI / im2col)."""
    w = np.ones((3, 3, 2, 2), np.float32)
    # Output filter 0: make the first 4 weights in OHWI order tiny -> that group goes first.
    ohwi = np.transpose(w, (3, 0, 1, 2)).copy()
    ohwi[0].reshape(-1)[:4] = 1e-3
    w = np.transpose(ohwi, (1, 2, 3, 0))
    m = mask_of(gr.SIMDGroups(4), w, 1 / 10, layout=gr.CONV2D)  # 2 rows x 5 groups -> prune 1
    pruned = np.transpose(m, (3, 0, 1, 2)).reshape(2, -1) == 0
    assert pruned.sum() == 4
    assert pruned[0, :4].all()


def test_last_partial_group_is_a_unit_scored_by_its_real_weights():
    # One row of 6 weights, width 4: groups [0:4] and the partial [4:6].
    w = np.array([[3, 3, 3, 3, 0.5, 0.5]], np.float32).T
    m = mask_of(gr.SIMDGroups(4), w, 0.5)  # 2 units -> prune 1: the partial group (norm 0.71)
    np.testing.assert_array_equal(m.T[0], [1, 1, 1, 1, 0, 0])
    w = np.array([[0.1, 0.1, 0.1, 0.1, 5, 5]], np.float32).T
    m = mask_of(gr.SIMDGroups(4), w, 0.5)
    np.testing.assert_array_equal(m.T[0], [0, 0, 0, 0, 1, 1])
    assert gr.SIMDGroups(4).units((6, 1), gr.DENSE) == 2


@pytest.mark.parametrize("g", [gr.Unstructured(), gr.SIMDGroups(4), gr.Channels(), gr.NofM(2, 4)])
def test_ties_are_broken_by_reading_order(g):
    w = np.ones((8, 4), np.float32)  # Dense 8 -> 4, all equal
    m1 = mask_of(g, w, 0.5)
    m2 = mask_of(g, w, 0.5)
    np.testing.assert_array_equal(m1, m2)
    rows = m1.T.reshape(-1)  # reading order: row by row
    first_kept = int(np.argmax(rows == 1))
    assert (rows[:first_kept] == 0).all() and rows[:first_kept].size > 0


@pytest.mark.parametrize("g", [gr.Unstructured(), gr.SIMDGroups(4), gr.Channels(), gr.NofM(1, 4)])
@pytest.mark.parametrize("kind", sorted(LAYOUTS))
def test_masks_never_regrow_and_counts_are_exact(g, kind):
    shape, layout = LAYOUTS[kind]
    rng = np.random.default_rng(1)
    w = rng.normal(size=shape).astype(np.float32)
    m = np.ones_like(w)
    previous = 0
    for s in (0.2, 0.5, 0.3, 0.7):
        # weights change between updates, as during training
        w = (w + rng.normal(scale=0.5, size=shape)).astype(np.float32)
        new = mask_of(g, w * m, s, old=m, layout=layout)
        assert np.all(new <= m), "a pruned weight came back"
        pruned = int((new == 0).sum())
        assert pruned >= previous
        if not isinstance(g, gr.NofM):
            units = g.units(shape, layout)
            per_unit = w.size // units if isinstance(g, gr.Channels) else None
            want = max(expected_count(s, units), 0)
            if isinstance(g, gr.Unstructured):
                assert pruned == max(want, previous)
            elif per_unit:
                assert pruned == max(want, previous // per_unit) * per_unit
        m, previous = new, pruned


@settings(max_examples=30, deadline=None)
@given(cols=st.integers(1, 21), s=st.floats(0, 0.99), seed=st.integers(0, 2**16))
def test_n_of_m_per_block_quota(cols, s, seed):
    w = np.random.default_rng(seed).normal(size=(cols, 3)).astype(np.float32)
    g = gr.NofM(2, 4)
    m = mask_of(g, w, s)
    quota = min(expected_count(s, 4), 2)
    rows = m.T
    for r in range(rows.shape[0]):
        for b in range(0, cols, 4):
            block = rows[r, b : b + 4]
            pad = 4 - block.size
            assert (block == 0).sum() == max(0, quota - pad)
    ok, label = g.check_pattern(w * m, gr.DENSE)
    assert ok and label == "2:4" or quota < 2


def test_channels_prunes_whole_rows():
    w = np.random.default_rng(0).normal(size=(3, 3, 4, 10)).astype(np.float32)
    w[..., 3] *= 0.01
    m = mask_of(gr.Channels(), w, 0.1, layout=gr.CONV2D)
    assert (m[..., 3] == 0).all() and (np.delete(m, 3, axis=-1) == 1).all()


def test_pattern_checks():
    w = np.ones((8, 2), np.float32)
    w[0:4, 0] = 0
    assert gr.SIMDGroups(4).check_pattern(w, gr.DENSE) == (True, "groups of 4 aligned")
    w[5, 1] = 0
    ok, label = gr.SIMDGroups(4).check_pattern(w, gr.DENSE)
    assert not ok and "1 mixed" in label


def test_granularity_lookup_and_errors():
    assert gr.get("unstructured") == gr.Unstructured()
    assert gr.get("2:4") == gr.NofM(2, 4)
    assert gr.get(gr.SIMDGroups(8)) == gr.SIMDGroups(8)
    config = keras.saving.serialize_keras_object(gr.NofM(1, 8))
    assert gr.get(config) == gr.NofM(1, 8) and repr(gr.get(config)) == "NofM(n=1, m=8)"
    with pytest.raises(ValueError, match="Unknown granularity 'blocky'"):
        gr.get("blocky")
    with pytest.raises(ValueError, match="width"):
        kp.granularity.SIMDGroups(0)
    with pytest.raises(ValueError, match="0 < n < m"):
        kp.granularity.NofM(4, 4)
    with pytest.raises(TypeError, match="granularity"):
        gr.get(3.5)


@settings(max_examples=80, deadline=None)
@given(
    scores=st.lists(
        st.one_of(st.sampled_from([-1.0, 0.0, 1e-30, 1.0, 2.0, 3e38]), st.floats(0, 1e6, width=32)),
        min_size=1,
        max_size=200,
    ),
    k_frac=st.floats(0, 1),
)
def test_selection_equals_a_stable_sort(scores, k_frac):
    """The radix select removes exactly what a stable argsort would (ties: lower index)."""
    from keras_prune.masks import keep_after_pruning_lowest

    s = np.array(scores, np.float32)
    k = int(round(k_frac * len(s)))
    expected = np.ones(len(s), bool)
    expected[np.argsort(s, kind="stable")[:k]] = False
    np.testing.assert_array_equal(keep_after_pruning_lowest(s, k).numpy(), expected)


def test_simd_groups_of_a_depthwise_kernel_are_channels_at_one_tap():
    """A depthwise kernel has no sum over channels; its SIMD word is 4 consecutive
    channels at one tap (what kp_sparse_depthwise_conv_s8 skips)."""
    g = gr.SIMDGroups(4)
    k = np.random.default_rng(0).normal(size=(3, 3, 16, 1)).astype("float32")
    m = g.compute_mask(tf.constant(k), tf.ones_like(k), 0.5, gr.DEPTHWISE2D).numpy()
    quads = m.reshape(9, 4, 4)  # (tap, channel quad, channel)
    assert np.all(quads.min(-1) == quads.max(-1))  # whole quads kept or removed
    assert g.units(k.shape, gr.DEPTHWISE2D) == 36 and int((quads[..., 0] == 0).sum()) == 18
    assert g.check_pattern(k * m, gr.DEPTHWISE2D)[0]
    # one removed weight short of a whole quad is a mixed group
    broken = (k * m).copy()
    tap, quad = np.argwhere(quads[..., 0] == 1)[0]
    broken.reshape(9, 16)[tap, 4 * quad] = 0
    assert not g.check_pattern(broken, gr.DEPTHWISE2D)[0]
