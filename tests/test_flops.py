"""kp.count_macs: dense, kept-weight and effective (weight x activation) MACs."""

import keras
import numpy as np
import pytest
from conftest import small_cnn

import keras_prune as kp


def quiet(model, x=None):
    return kp.count_macs(model, x, print_fn=None)


def test_tiny_model_against_a_hand_count():
    inp = keras.Input((4, 4, 1))
    h = keras.layers.Conv2D(2, 3, use_bias=False, name="conv")(inp)  # 2x2 outputs
    h = keras.layers.Flatten()(h)
    out = keras.layers.Dense(3, use_bias=False, name="fc")(h)
    model = keras.Model(inp, out)
    conv = np.zeros((3, 3, 1, 2), np.float32)
    conv[[0, 0, 2, 2], [0, 2, 0, 2], 0, 0] = 1.0  # channel 0: the 4 corner taps
    conv[..., 1] = 2.0  # channel 1: all 9 taps
    fc = np.zeros((8, 3), np.float32)
    fc[0] = 1.0  # row 0: 3 weights
    fc[1, 0] = fc[2, :2] = fc[3, 1] = fc[4, 2] = fc[7, 1:] = 1.0  # 1 + 2 + 1 + 1 + 2
    model.get_layer("conv").set_weights([conv])
    model.get_layer("fc").set_weights([fc])
    x = np.zeros((1, 4, 4, 1), np.float32)
    x[0, 0, 0, 0] = x[0, 3, 3, 0] = 1.0
    report = quiet(model, x)
    rows = {r.name: r for r in report.rows}
    # dense: conv 2*2 positions * 3*3*1*2 = 72, fc 8*3 = 24
    assert (rows["conv"].dense, rows["fc"].dense, report.dense) == (72, 24, 96)
    # kept weights: conv 4 positions * 13 = 52, fc 10
    assert (rows["conv"].weight, rows["fc"].weight) == (52, 10)
    # effective: pixel (0,0) is corner tap (0,0) of output (0,0) and pixel (3,3) corner tap
    # (2,2) of output (1,1): 2 MACs per channel = 4. Non-zero conv outputs are then
    # flat indices 0, 1 (position 0,0) and 6, 7 (position 1,1): fc rows 3 + 1 + 0 + 2 = 6
    assert rows["conv"].effective == 4 and rows["fc"].effective == 6
    assert report.effective == 10
    assert rows["conv"].input_density == pytest.approx(2 / 16)
    assert report.reduction("effective") == pytest.approx(1 - 10 / 96)
    assert "total" in report.table()


def _indicator_count(layer, x):
    """Brute force with the layer itself: 0/1 kernel, 0/1 input, no bias, linear."""
    config = {**layer.get_config(), "use_bias": False, "activation": "linear"}
    clone = type(layer).from_config(config)
    clone.build(x.shape)
    clone.set_weights([(w != 0).astype(np.float32) for w in layer.get_weights()[:1]])
    return float(np.sum(np.asarray(clone((x != 0).astype(np.float32)), np.float64)))


def test_every_layer_kind_against_a_brute_force_count():
    model = small_cnn()
    rng = np.random.default_rng(0)
    for layer in model.layers:
        ws = layer.get_weights()
        if ws:
            layer.set_weights([w * (rng.random(w.shape) < 0.5) for w in ws])
    x = rng.random((3, 8, 8, 3)).astype(np.float32) * (rng.random((3, 8, 8, 3)) < 0.4)
    report = quiet(model, x)
    rows = {r.name: r for r in report.rows}
    assert list(rows) == ["conv", "dw", "sep", "convt", "conv1d", "dense"]
    inputs = keras.Model(model.inputs, [model.get_layer(n).input for n in rows]).predict(
        x, verbose=0
    )
    for (name, row), feat in zip(rows.items(), inputs, strict=True):
        layer = model.get_layer(name)
        if name == "sep":
            dw_cfg = {
                k: layer.get_config()[k]
                for k in ("kernel_size", "strides", "padding", "dilation_rate", "depth_multiplier")
            }
            dw = keras.layers.DepthwiseConv2D(**dw_cfg, use_bias=False)
            dw.build(feat.shape)
            dw.set_weights([layer.depthwise_kernel.numpy()])
            expected = _indicator_count(dw, feat)
            mid = np.asarray(dw(feat))
            pw = (layer.pointwise_kernel.numpy() != 0).sum(-1).reshape(-1)
            expected += float(np.sum((mid != 0).reshape(-1, mid.shape[-1]) @ pw))
        else:
            expected = _indicator_count(layer, feat)
        assert row.effective == pytest.approx(expected / len(x)), name
        assert row.effective <= row.weight <= row.dense, name
        kernels = [w for w in layer.get_weights() if w.ndim > 1]
        assert (
            row.weight / row.dense
            == pytest.approx(
                sum(np.count_nonzero(k) for k in kernels) / sum(k.size for k in kernels)
            )
            or name == "sep"
        )


def test_pruned_wrappers_count_like_their_stripped_model_and_nested_models_count():
    inner = keras.Sequential(
        [keras.Input((16,)), keras.layers.Dense(8, activation="relu", name="a")], name="inner"
    )
    inp = keras.Input((16,))
    out = keras.layers.Dense(4, name="b")(inner(inp))
    model = keras.Model(inp, out)
    pruned = kp.prune(model, kp.schedules.ConstantSparsity(0.5, 0))
    for w in kp.pruning.wrappers(pruned):
        w.update_masks(0.5)
    x = np.random.default_rng(1).random((5, 16)).astype(np.float32)
    a, b = quiet(pruned, x), quiet(kp.strip(pruned), x)
    assert [r.name for r in a.rows] == ["b", "inner/a"]
    assert (a.dense, a.weight, a.effective) == (b.dense, b.weight, b.effective)
    assert a.dense == 16 * 8 + 8 * 4 and a.weight == a.dense // 2


def test_counts_without_data_and_bad_data():
    model = small_cnn()
    report = quiet(model)
    assert report.effective is None and report.dense > 0
    assert "weights x activations" not in report.table()
    with pytest.raises(ValueError, match=r"x has shape \(2, 8, 8\).*expects \(batch, 8, 8, 3\)"):
        quiet(model, np.zeros((2, 8, 8), np.float32))


def test_a_shared_layer_is_one_row_summing_its_calls():
    shared = keras.layers.Dense(4, use_bias=False, name="shared")
    inp = keras.Input((3,))
    zeros = keras.layers.ReLU()(inp * 0.0)
    wrapper = keras.Model(inp, keras.layers.Add()([shared(inp), shared(zeros)]))
    x = np.ones((2, 3), np.float32)
    report = quiet(wrapper, x)
    (row,) = report.rows
    assert row.name.endswith("shared") and row.dense == 2 * 3 * 4
    # first call sees ones, second sees zeros: 12 effective MACs, half the inputs non-zero
    assert row.effective == 12 and row.input_density == pytest.approx(0.5)


def test_a_nested_model_with_two_inputs_gets_a_clear_error():
    a, b = keras.Input((3,)), keras.Input((3,))
    inner = keras.Model([a, b], keras.layers.Dense(2)(keras.layers.Add()([a, b])), name="two")
    inp = keras.Input((3,))
    model = keras.Model(inp, inner([inp, inp]))
    with pytest.raises(ValueError, match="nested model 'two' takes 2 inputs"):
        quiet(model, np.ones((1, 3), np.float32))
