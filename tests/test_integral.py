"""Integral Pruning: mask insertion, sensitivity scan, winner rates, thresholds, int8 check."""

import keras
import numpy as np
import pytest
from conftest import compile_mse, mlp, small_cnn

import keras_prune as kp
from keras_prune import integral
from keras_prune.datasets import mnist_5k
from keras_prune.models import lenet_300_100


def lenet5_like():
    inp = keras.Input((12, 12, 1), name="img")
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv1")(inp)
    x = keras.layers.MaxPooling2D(name="pool1")(x)
    x = keras.layers.Conv2D(6, 3, name="conv2")(x)
    x = keras.layers.ReLU(name="relu2")(x)
    x = keras.layers.Flatten(name="flat")(x)
    x = keras.layers.Dense(10, activation="relu6", name="fc1")(x)
    x = keras.layers.Dense(8, activation="tanh", name="fc2")(x)
    return keras.Model(inp, keras.layers.Dense(3, activation="softmax", name="out")(x))


def weights_of(model):
    return [w.copy() for w in model.get_weights()]


# ---------------------------------------------------------------------- insertion
def test_default_sites_follow_relus_past_pooling_and_flatten():
    model = lenet5_like()
    assert integral.mask_sites(model) == ["pool1", "flat", "fc1"]
    masked = kp.add_activation_masks(model, winner_rate=0.3)
    names = [la.name for la in masked.layers]
    assert names.index("pool1_mask") == names.index("pool1") + 1
    assert names.index("flat_mask") == names.index("flat") + 1
    assert "fc2_mask" not in names  # tanh: negative outputs
    assert all(la.winner_rate == 0.3 for la in integral.activation_masks(masked))
    assert len(model.layers) + 3 == len(masked.layers)


def test_insertion_keeps_weights_and_outputs_at_rate_one():
    model = lenet5_like()
    x = np.random.default_rng(0).random((5, 12, 12, 1)).astype(np.float32)
    before = weights_of(model)
    masked = kp.add_activation_masks(model, winner_rate=1.0)
    np.testing.assert_allclose(
        masked.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6, atol=1e-6
    )
    for a, b in zip(before, weights_of(model), strict=True):
        np.testing.assert_array_equal(a, b)


def test_per_layer_rates_and_sequential_models():
    masked = kp.add_activation_masks(mlp(), winner_rate={"fc1": 0.25})
    assert isinstance(masked, keras.Sequential)
    assert [la.name for la in masked.layers] == ["fc1", "fc1_mask", "fc2"]
    x = np.random.default_rng(1).random((6, 16)).astype(np.float32)
    hidden = keras.Model(masked.inputs, masked.get_layer("fc1_mask").output)
    assert (np.count_nonzero(hidden.predict(x, verbose=0), axis=1) <= 8).all()


def test_masks_combine_with_weight_pruning_and_train():
    x = np.random.default_rng(2).random((64, 16)).astype(np.float32)
    y = np.random.default_rng(3).random((64, 4)).astype(np.float32)
    pruned = kp.prune(mlp(), kp.schedules.ConstantSparsity(0.5, 0, frequency=1))
    compile_mse(pruned).fit(x, y, epochs=1, verbose=0, callbacks=[kp.callbacks.PruningScheduler()])
    masked = kp.add_activation_masks(pruned, winner_rate=0.25)
    assert [type(la).__name__ for la in masked.layers] == [
        "PruneWrapper",
        "ActivationMask",
        "PruneWrapper",
    ]
    np.testing.assert_array_equal(masked.layers[0].masks[0], pruned.layers[0].masks[0])
    compile_mse(masked).fit(x, y, epochs=2, verbose=0, callbacks=[kp.callbacks.PruningScheduler()])
    plain = kp.strip(masked, representative_data=x)
    assert type(plain.layers[1]).__name__ == "ActivationThreshold"
    assert np.mean(plain.layers[0].kernel.numpy() == 0) == pytest.approx(0.5)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"winner_rate": 0.0}, r"\(0, 1\]"),
        ({"winner_rate": 1.2}, r"\(0, 1\]"),
        ({"winner_rate": {"fc1": -0.5}}, r"winner_rate\['fc1'\]"),
        ({"winner_rate": 0.3, "after": ["nope"]}, "no layer named 'nope'.*Its layers"),
        ({"winner_rate": {"nope": 0.3}}, "no layer named 'nope'"),
        ({"winner_rate": 0.3, "after": ["fc2"]}, "tanh.*negative values"),
        ({"winner_rate": 0.3, "after": ["conv2"]}, r"after=\['relu2'\]"),
        ({"winner_rate": {"fc1": 0.3}, "after": ["fc1"]}, "not both"),
    ],
)
def test_bad_input_is_refused_and_model_untouched(kwargs, match):
    model = lenet5_like()
    before = weights_of(model)
    n = len(model.layers)
    with pytest.raises((ValueError, TypeError), match=match):
        kp.add_activation_masks(model, **kwargs)
    assert len(model.layers) == n
    for a, b in zip(before, weights_of(model), strict=True):
        np.testing.assert_array_equal(a, b)


def test_masking_a_model_output_or_a_model_without_relus_is_refused():
    inp = keras.Input((4,))
    out = keras.layers.Dense(3, activation="relu", name="head")(inp)
    with pytest.raises(ValueError, match="output of model"):
        kp.add_activation_masks(keras.Model(inp, out), after=["head"])
    with pytest.raises(ValueError, match="no ReLU-family"):
        kp.add_activation_masks(small_cnn().__class__(inp, keras.layers.Dense(2)(inp)))


# ---------------------------------------------------------------------- scan and rates
@pytest.fixture(scope="module")
def trained_mlp():
    keras.utils.set_random_seed(0)
    x, y, xt, yt = mnist_5k()
    model = lenet_300_100()
    model.compile(
        keras.optimizers.Adam(1e-3),
        keras.losses.SparseCategoricalCrossentropy(),
        metrics=["accuracy"],
    )
    model.fit(x[:2000], y[:2000], epochs=3, batch_size=64, verbose=0)
    return model, (x[:2000], y[:2000], x[3500:], y[3500:], xt[:500], yt[:500])


# trained_mlp trains on MNIST-5k: its users are slow
@pytest.mark.slow
def test_scan_table_plot_and_choice_within_budget(trained_mlp, tmp_path):
    model, (x, y, xv, yv, _, _) = trained_mlp
    scan = integral.sensitivity_scan(
        model, xv, yv, rates=(0.05, 0.2, 0.5), plot=tmp_path / "s.png", progress=False
    )
    assert list(scan.accuracy) == ["fc1", "fc2"]
    assert scan.baseline == pytest.approx(integral.accuracy(yv, model.predict(xv, verbose=0)))
    assert all(len(a) == 3 for a in scan.accuracy.values())
    assert scan.accuracy["fc1"][0] < scan.accuracy["fc1"][2]  # 5% hurts more than 50%
    assert "fc1" in scan.table() and "50%" in scan.table()
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"
    rates = integral.choose_winner_rates(model, xv, yv, max_loss=0.01, scan=scan, progress=False)
    assert rates.accuracy >= rates.baseline - 0.01
    assert set(rates) <= {"fc1", "fc2"} and all(r in (0.05, 0.2, 0.5) for r in rates.values())
    masked = kp.add_activation_masks(model, winner_rate=rates)
    measured = integral.accuracy(yv, masked.predict(xv, verbose=0))
    assert measured == pytest.approx(rates.accuracy)
    assert "winner rates" in rates.report()


@pytest.mark.slow
def test_choice_backs_off_until_the_combination_fits(trained_mlp):
    model, (_, _, xv, yv, _, _) = trained_mlp
    scan = integral.SensitivityScan(
        model.name, 0.9, (0.05, 0.5), accuracy={"fc1": [0.9, 0.9], "fc2": [0.9, 0.9]}
    )
    # a fake scan claims 5% is free everywhere; the real combination disagrees
    scan.baseline = integral.accuracy(yv, model.predict(xv, verbose=0))
    scan.accuracy = {"fc1": [scan.baseline] * 2, "fc2": [scan.baseline] * 2}
    rates = integral.choose_winner_rates(model, xv, yv, max_loss=0.005, scan=scan, progress=False)
    assert rates.steps, "the 5%/5% combination must have been backed off"
    assert rates.accuracy >= rates.baseline - 0.005 or not rates


@pytest.mark.slow
def test_scan_rejects_bad_data(trained_mlp):
    model, (_, _, xv, yv, _, _) = trained_mlp
    with pytest.raises(ValueError, match=r"x_val has shape \(10, 784\).*expects"):
        integral.sensitivity_scan(model, xv[:10].reshape(10, -1), yv[:10], progress=False)
    with pytest.raises(ValueError, match="10 samples but y has 9"):
        integral.sensitivity_scan(model, xv[:10], yv[:9], progress=False)
    with pytest.raises(ValueError, match="rates"):
        integral.sensitivity_scan(model, xv, yv, rates=(0.0,), progress=False)


# ---------------------------------------------------------------------- thresholds
@pytest.mark.slow
def test_threshold_calibration_matches_the_winner_rate(trained_mlp):
    model, (x, _, xv, _, _, _) = trained_mlp
    masked = kp.add_activation_masks(model, winner_rate={"fc1": 0.2, "fc2": 0.3})
    plain = kp.strip(masked, representative_data=x)
    for name, rate, n in (("fc1_mask", 0.2, 300), ("fc2_mask", 0.3, 100)):
        layer = plain.get_layer(name)
        assert type(layer).__name__ == "ActivationThreshold" and layer.threshold > 0
        probe = keras.Model(plain.inputs, layer.output)
        kept = np.count_nonzero(probe.predict(x, verbose=0))
        # on the calibration data: the top-k total, up to one int8 level's worth
        assert kept / len(x) == pytest.approx(np.ceil(rate * n), rel=0.03)
        held_out = np.mean(probe.predict(xv, verbose=0) != 0)
        assert held_out == pytest.approx(rate, abs=0.03)


def test_threshold_keeps_or_drops_a_tied_block_whole_and_sits_between_int8_levels():
    from keras_prune.activation_thresholds import int8_threshold, threshold_for

    v = np.array([5, 4, 3, 3, 3, 3, 1, 0, 0, 0], np.float32)
    assert threshold_for(v, 2) == 3.5  # exact
    assert threshold_for(v, 3) == 3.5  # 2 kept is nearer 3 than 6 is
    assert threshold_for(v, 5) == 2.0  # 6 kept is nearer 5 than 2 is
    assert threshold_for(v, 9) is None  # only zeros would go: keep everything
    # 255 levels over [0, 2.55]: 0.0100 and 0.0104 are one int8 level (1); a cut can keep
    # or drop both, never one of them
    vals = np.array([2.55] + [0.0104] * 40 + [0.0100] * 40 + [0.0] * 19, np.float32)
    t = int8_threshold(vals, 41)
    assert np.count_nonzero(vals >= t) in (1, 81)
    assert t == pytest.approx(0.015) or t == pytest.approx(0.005)


@pytest.mark.slow
def test_strip_needs_data_for_masks_or_keeps_them(trained_mlp):
    model, (x, *_) = trained_mlp
    masked = kp.add_activation_masks(model, winner_rate=0.3)
    with pytest.raises(ValueError, match="representative_data"):
        kp.strip(masked)
    kept = kp.strip(masked, activation_masks="keep")
    assert [type(la).__name__ for la in kept.layers].count("ActivationMask") == 2
    with pytest.raises(ValueError, match="'threshold' or 'keep'"):
        kp.strip(masked, activation_masks="topk")


@pytest.mark.slow
def test_int8_threshold_form_in_tflm_matches_the_trained_density(trained_mlp):
    pytest.importorskip("tflite_micro")
    model, (x, _, _, _, xt, yt) = trained_mlp
    masked = kp.add_activation_masks(model, winner_rate={"fc1": 0.2, "fc2": 0.3})
    check = integral.check_thresholds_int8(masked, x[:300], xt[:200], yt[:200], progress=False)
    assert check.ok, check.table()
    densities = {r["name"]: r for r in check.layers}
    assert densities["fc1_mask"]["density_topk"] == pytest.approx(0.2, abs=1e-9)
    assert densities["fc1_mask"]["density_int8"] == pytest.approx(0.2, abs=0.05)
    assert densities["fc2_mask"]["density_int8"] == pytest.approx(0.3, abs=0.05)
    # all three accuracies are reported; int8 stays close to the float threshold form
    assert None not in (check.accuracy_topk, check.accuracy_threshold, check.accuracy_int8)
    assert abs(check.accuracy_int8 - check.accuracy_threshold) <= 0.05
    assert "TFLM" in check.table()
