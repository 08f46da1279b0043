"""ActivationMask / ActivationThreshold: exact winners, ties, gradients, serialisation."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import keras_prune as kp
from keras_prune.layers.activation_mask import winner_count


def reference_mask(x: np.ndarray, rate: float) -> np.ndarray:
    """Top-k per sample by a stable sort: larger first, equal values in memory order."""
    flat = x.reshape(len(x), -1)
    k = winner_count(rate, flat.shape[1])
    keep = np.zeros_like(flat, dtype=bool)
    for i, row in enumerate(flat):
        keep[i, np.argsort(-row, kind="stable")[:k]] = True
    return keep.reshape(x.shape)


@settings(max_examples=40, deadline=None)
@given(
    x=hnp.arrays(
        np.float32,
        st.tuples(st.integers(1, 3), st.integers(1, 5), st.integers(1, 4), st.integers(1, 3)),
        elements=st.sampled_from([0.0, 0.5, 1.0, 1.5, 2.0, 3.0]),
    ),
    rate=st.floats(0.01, 1.0),
)
def test_mask_equals_stable_topk_reference_with_ties(x, rate):
    out = np.asarray(kp.layers.ActivationMask(rate)(x))
    keep = reference_mask(x, rate)
    np.testing.assert_array_equal(out, np.where(keep, x, 0))


@pytest.mark.parametrize(
    "rate,n,k",
    [(0.3, 100, 30), (0.3, 10, 3), (0.25, 7, 2), (0.001, 50, 1), (1.0, 13, 13), (0.7, 10, 7)],
)
def test_exact_winner_counts(rate, n, k):
    assert winner_count(rate, n) == k == max(1, math.ceil(round(rate * n, 9)))
    x = np.random.default_rng(0).random((4, n)).astype(np.float32) + 0.1
    out = np.asarray(kp.layers.ActivationMask(rate)(x))
    assert (np.count_nonzero(out, axis=1) == k).all()
    # the winners are the k largest values of each sample
    np.testing.assert_array_equal(np.sort(out, axis=1)[:, -k:], np.sort(x, axis=1)[:, -k:])


def test_ties_go_to_the_first_in_memory_order_and_repeat_exactly():
    x = np.ones((2, 2, 2, 3), np.float32)  # n = 12, all tied
    mask = kp.layers.ActivationMask(0.25)  # k = 3
    out = np.asarray(mask(x)).reshape(2, -1)
    np.testing.assert_array_equal(out[0], [1, 1, 1] + [0] * 9)
    np.testing.assert_array_equal(np.asarray(mask(x)).reshape(2, -1), out)
    # a tie at the k-th value: 5 > 3, then the first two 3s
    row = np.array([[3, 5, 3, 1, 3, 3]], np.float32)
    np.testing.assert_array_equal(kp.layers.ActivationMask(0.5)(row), [[3, 5, 3, 0, 0, 0]])


def test_gradient_flows_only_through_winners():
    x = tf.constant(np.random.default_rng(1).random((3, 5, 5, 2)).astype(np.float32))
    mask = kp.layers.ActivationMask(0.2)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = mask(x)
        loss = tf.reduce_sum(y * 3.0)
    grad = tape.gradient(loss, x).numpy()
    winners = reference_mask(x.numpy(), 0.2)
    np.testing.assert_array_equal(grad, np.where(winners, 3.0, 0.0))


def test_same_mask_in_training_and_inference_and_inside_tf_function():
    x = np.random.default_rng(2).random((4, 30)).astype(np.float32)
    mask = kp.layers.ActivationMask(0.1)
    eager = np.asarray(mask(x, training=False))
    np.testing.assert_array_equal(np.asarray(mask(x, training=True)), eager)
    np.testing.assert_array_equal(tf.function(lambda t: mask(t))(x).numpy(), eager)


@pytest.mark.parametrize("rate", [0.0, -0.1, 1.5, float("nan"), "0.3", True])
def test_winner_rate_outside_0_1_is_refused(rate):
    with pytest.raises((ValueError, TypeError), match="winner_rate"):
        kp.layers.ActivationMask(rate)


def _masked_mlp():
    inp = keras.Input((12,), name="x")
    h = keras.layers.Dense(16, activation="relu", name="fc1")(inp)
    h = kp.layers.ActivationMask(0.25, name="fc1_mask")(h)
    h = keras.layers.Dense(8, activation="relu", name="fc2")(h)
    h = kp.layers.ActivationThreshold(0.05, winner_rate=0.5, name="fc2_mask")(h)
    return keras.Model(inp, keras.layers.Dense(3, name="out")(h))


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_serialisation_round_trip(tmp_path, suffix):
    model = _masked_mlp()
    x = np.random.default_rng(3).random((10, 12)).astype(np.float32)
    path = kp.io.save(model, tmp_path / f"m{suffix}")
    loaded = kp.io.load(path)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert loaded.get_layer("fc1_mask").winner_rate == 0.25
    assert loaded.get_layer("fc2_mask").get_config()["threshold"] == 0.05
    assert loaded.get_layer("fc2_mask").winner_rate == 0.5
    clone = kp.layers.ActivationMask.from_config(model.get_layer("fc1_mask").get_config())
    assert clone.winner_rate == 0.25 and clone.name == "fc1_mask"


def test_threshold_layer_keeps_values_at_or_above_it():
    x = np.array([[0.0, 0.1, 0.2, 0.3]], np.float32)
    out = kp.layers.ActivationThreshold(0.2)(x)
    np.testing.assert_array_equal(out, np.array([[0, 0, 0.2, 0.3]], np.float32))
