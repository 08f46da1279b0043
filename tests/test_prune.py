"""kp.prune / kp.strip / kp.summary and the PruneWrapper during training."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import compile_mse, data, mlp, small_cnn

import keras_prune as kp
from keras_prune.layers import PruneWrapper
from keras_prune.layers.prunable import kernel_specs
from keras_prune.pruning import wrappers

SCHED = kp.schedules.PolynomialDecay(0.0, 0.8, begin_step=0, end_step=12, frequency=3)


def weights_of(model):
    return [w.copy() for w in model.get_weights()]


def test_prune_returns_new_model_and_leaves_input_untouched():
    model = small_cnn()
    before = weights_of(model)
    pruned = kp.prune(model, SCHED, kp.granularity.SIMDGroups(4))
    assert pruned is not model
    assert [type(la).__name__ for la in model.layers].count("PruneWrapper") == 0
    names = {w.name: type(w.layer).__name__ for w in wrappers(pruned)}
    assert names == {
        "conv": "Conv2D",
        "dw": "DepthwiseConv2D",
        "sep": "SeparableConv2D",
        "convt": "Conv2DTranspose",
        "conv1d": "Conv1D",
        "dense": "Dense",
    }
    x, y = data()
    np.testing.assert_allclose(
        pruned.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6
    )
    compile_mse(pruned).fit(
        x, y, epochs=2, batch_size=16, verbose=0, callbacks=[kp.callbacks.PruningScheduler()]
    )
    for a, b in zip(before, weights_of(model), strict=True):
        np.testing.assert_array_equal(a, b)


def test_separable_conv_prunes_both_kernels():
    pruned = kp.prune(small_cnn(), SCHED, "unstructured", layers=["sep"])
    (sep,) = wrappers(pruned)
    assert [m.path.split("/")[-1] for m in sep.masks] == [
        "depthwise_kernel_mask",
        "pointwise_kernel_mask",
    ]


def test_nested_and_sequential_models():
    inner = mlp("inner")
    inp = keras.Input((16,))
    out = keras.layers.Dense(3, name="head")(inner(inp))
    outer = keras.Model(inp, out)
    pruned = kp.prune(outer, SCHED)
    assert sorted(w.name for w in wrappers(pruned)) == ["fc1", "fc2", "head"]
    assert len(wrappers(kp.prune(mlp(), SCHED))) == 2
    x = np.random.rand(8, 16).astype("float32")
    np.testing.assert_allclose(pruned(x), outer(x), rtol=1e-5, atol=1e-6)


def test_layer_filters():
    m = small_cnn()
    assert [w.name for w in wrappers(kp.prune(m, SCHED, layers=["dense", "conv"]))] == [
        "conv",
        "dense",
    ]
    assert [w.name for w in wrappers(kp.prune(m, SCHED, layers=keras.layers.Conv2D))] == ["conv"]
    assert [
        w.name for w in wrappers(kp.prune(m, SCHED, layers=lambda la: la.name.startswith("conv")))
    ] == ["conv", "convt", "conv1d"]


@pytest.mark.parametrize(
    "call,err,match",
    [
        (lambda m: kp.prune("model.h5", SCHED), TypeError, "Keras 3 model.*str"),
        (
            lambda m: kp.prune(keras.Sequential([keras.Input((4,)), keras.layers.ReLU()]), SCHED),
            ValueError,
            "no prunable layers.*ReLU",
        ),
        (lambda m: kp.prune(m, SCHED, layers=keras.layers.LSTM), ValueError, "matches none.*conv"),
        (lambda m: kp.prune(m, SCHED, layers=["dense", "nope"]), ValueError, "nope"),
        (lambda m: kp.prune(kp.prune(m, SCHED), SCHED), ValueError, "already pruned.*conv"),
        (lambda m: kp.prune(m, SCHED, granularity="blocky"), ValueError, "Unknown granularity"),
        (lambda m: kp.prune(m, schedule=None), TypeError, "schedule"),
        (
            lambda m: kp.prune(keras.Sequential([keras.layers.Dense(3)]), SCHED),
            ValueError,
            "not built",
        ),
    ],
)
def test_bad_input(call, err, match):
    m = small_cnn()
    before = weights_of(m)
    with pytest.raises(err, match=match):
        call(m)
    for a, b in zip(before, weights_of(m), strict=True):
        np.testing.assert_array_equal(a, b)


class _Watch(keras.callbacks.Callback):
    """After every batch: effective pruned weights are 0, masks shrink, counts are exact."""

    def __init__(self, granularity):
        super().__init__()
        self.g = granularity
        self.prev = None
        self.checked = 0

    def on_train_batch_end(self, batch, logs=None):
        masks = []
        for w in wrappers(self.model):
            for (_, eff), mask, layout in zip(
                w.effective_weights(), w.masks, w.layouts, strict=False
            ):
                eff, mask = np.asarray(eff), mask.numpy()
                assert np.all(eff[mask == 0] == 0)
                step = int(w.pruning_step.numpy()) - 1
                _, s = SCHED(min(step // 3 * 3, 12))
                if isinstance(self.g, kp.granularity.Channels):
                    rows = layout.to_rows_np(mask)
                    dead = int((rows.max(axis=1) == 0).sum())
                    assert dead == int(np.round(np.float64(s.numpy()) * rows.shape[0]))
                masks.append(mask)
        if self.prev is not None:
            for a, b in zip(self.prev, masks, strict=True):
                assert np.all(b <= a), "masks never regrow"
        self.prev = masks
        self.checked += 1


@pytest.mark.parametrize(
    "granularity",
    [
        kp.granularity.Channels(),
        kp.granularity.SIMDGroups(4),
        kp.granularity.NofM(2, 4),
        "unstructured",
    ],
)
def test_training_keeps_pruned_weights_zero(granularity):
    g = kp.granularity.get(granularity)
    pruned = compile_mse(kp.prune(small_cnn(), SCHED, g))
    x, y = data()
    watch = _Watch(g)
    pruned.fit(
        x, y, epochs=4, batch_size=16, verbose=0, callbacks=[kp.callbacks.PruningScheduler(), watch]
    )
    assert watch.checked == 16
    for w in wrappers(pruned):
        assert int(w.pruning_step.numpy()) == 16
        for var, mask in zip(w.kernels, w.masks, strict=True):
            # After fit the stored kernels hold exact zeros too (momentum can't revive them).
            assert np.all(var.numpy()[mask.numpy() == 0] == 0)
        if isinstance(g, kp.granularity.Channels) and w.bias_mask is not None:
            dead = w.bias_mask.numpy() == 0
            assert dead.any() and np.all(w.layer.bias.numpy()[dead] == 0)
    # Check the final masks: every layer reached round(0.8 * units) units pruned.
    for w in wrappers(pruned):
        for mask, layout in zip(w.masks, w.layouts, strict=True):
            units = g.units(mask.shape, layout)
            if isinstance(g, kp.granularity.SIMDGroups):
                rows = g.group_layout(layout).to_rows_np(mask.numpy())
                pad = (-rows.shape[1]) % 4
                grp = np.pad(rows, ((0, 0), (0, pad)))
                kept = np.any(grp.reshape(rows.shape[0], -1, 4) > 0, axis=-1).sum()
                assert units - kept == int(np.round(np.float64(np.float32(0.8)) * units))


def test_gradients_of_pruned_weights_are_zero():
    pruned = compile_mse(kp.prune(mlp(), kp.schedules.ConstantSparsity(0.5, 0, frequency=1)))
    x, y = np.random.rand(8, 16).astype("float32"), np.random.rand(8, 4).astype("float32")
    pruned.fit(x, y, epochs=1, verbose=0, callbacks=[kp.callbacks.PruningScheduler()])
    fc1 = wrappers(pruned)[0]
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(pruned(x) - y))
    grad = tape.gradient(loss, fc1.layer.kernel.value)
    mask = fc1.masks[0].numpy()
    assert np.all(grad.numpy()[mask == 0] == 0) and np.any(grad.numpy()[mask == 1] != 0)


def test_training_without_the_scheduler_is_a_clear_error():
    pruned = compile_mse(kp.prune(mlp(), SCHED))
    with pytest.raises(RuntimeError, match="PruningScheduler"):
        pruned.fit(np.zeros((4, 16)), np.zeros((4, 4)), verbose=0)


def _train_masks(spe, epochs=3):
    keras.utils.set_random_seed(0)
    pruned = compile_mse(
        kp.prune(small_cnn(), SCHED, kp.granularity.SIMDGroups(4)), steps_per_execution=spe
    )
    x, y = data()
    pruned.fit(
        x,
        y,
        epochs=epochs,
        batch_size=8,
        verbose=0,
        shuffle=False,
        callbacks=[kp.callbacks.PruningScheduler()],
    )
    return pruned, [m.numpy() for w in wrappers(pruned) for m in w.masks]


@pytest.mark.slow  # about 10 s of training
def test_steps_per_execution_sees_every_step():
    ref_model, ref = _train_masks(1)
    for spe in (3, 8):
        model, got = _train_masks(spe)
        assert [int(w.pruning_step.numpy()) for w in wrappers(model)] == [24] * 6
        for a, b in zip(ref, got, strict=True):
            np.testing.assert_array_equal(a, b)


def test_strip_bakes_zeros_into_plain_layers():
    original = small_cnn()
    pruned = compile_mse(kp.prune(original, SCHED, kp.granularity.SIMDGroups(4)))
    x, y = data()
    pruned.fit(
        x, y, epochs=4, batch_size=16, verbose=0, callbacks=[kp.callbacks.PruningScheduler()]
    )
    plain = kp.strip(pruned)
    assert not wrappers(plain)
    assert [la.name for la in plain.layers] == [la.name for la in original.layers]
    assert [type(la) for la in plain.layers] == [type(la) for la in original.layers]
    np.testing.assert_allclose(
        plain.predict(x, verbose=0), pruned.predict(x, verbose=0), rtol=1e-5, atol=1e-6
    )
    for w in wrappers(pruned):
        stripped = plain.get_layer(w.name)
        # SIMDGroups keeps every prunable kernel: the masks follow kernel_specs' order
        attrs = [s.attr for s in kernel_specs(w.layer)]
        for spec_mask, attr in zip(w.masks, attrs, strict=True):
            np.testing.assert_array_equal(
                getattr(stripped, attr).numpy() == 0, spec_mask.numpy() == 0
            )
    rows = kp.summary(plain, print_fn=lambda s: None)
    assert all(r.pattern == "groups of 4 aligned: yes" for r in rows)
    assert wrappers(pruned)  # strip did not touch its input


def test_strip_of_an_unpruned_model_is_an_equal_copy():
    m = small_cnn()
    s = kp.strip(m)
    assert s is not m
    for a, b in zip(m.get_weights(), s.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert s.get_config() == m.get_config()


def test_summary_reports_counts_patterns_and_sizes():
    pruned = compile_mse(
        kp.prune(
            mlp(), kp.schedules.ConstantSparsity(0.75, 0, frequency=1), kp.granularity.SIMDGroups(4)
        )
    )
    pruned.fit(
        np.random.rand(8, 16),
        np.random.rand(8, 4),
        verbose=0,
        callbacks=[kp.callbacks.PruningScheduler()],
    )
    printed = []
    rows = kp.summary(pruned, print_fn=printed.append)
    assert [(r.name, r.params, r.nonzeros) for r in rows] == [("fc1", 512, 128), ("fc2", 128, 32)]
    assert rows[0].sparsity == 0.75 and rows[0].pattern == "groups of 4 aligned: yes"
    # 32 kept groups of 4 int8 + 1-byte index each + 33 16-bit row pointers
    assert rows[0].dense_bytes == 512 and rows[0].sparse_bytes == 32 * 5 + 2 * 33
    assert "groups of 4 aligned: yes" in printed[0] and "fc1" in printed[0]
    un = kp.summary(kp.strip(compile_mse(kp.prune(mlp(), SCHED))), print_fn=printed.append)
    assert un[0].pattern == "dense"


def test_summary_flags_unstructured_zeros_as_no_speedup():
    m = mlp()
    w = m.get_layer("fc1").get_weights()
    w[0][np.random.default_rng(0).random(w[0].shape) < 0.5] = 0
    m.get_layer("fc1").set_weights(w)
    printed = []
    rows = kp.summary(m, print_fn=printed.append)
    assert rows[0].pattern == "unstructured: yes"
    assert "no speedup on a CPU/GPU server" in printed[0] and "Channels()" in printed[0]
    assert "kp.legr.LeGR" in printed[0]
    w[0][:] = 0.5
    w[0][:, ::2] = 0  # whole units: the note must not appear
    m.get_layer("fc1").set_weights(w)
    printed = []
    kp.summary(m, print_fn=printed.append)
    assert "no speedup" not in printed[0]


def test_wrapper_rejects_unprunable_layers():
    with pytest.raises(ValueError, match="cannot prune LSTM"):
        PruneWrapper(keras.layers.LSTM(3), schedule=SCHED)


@pytest.mark.parametrize(
    "granularity",
    ["unstructured", kp.granularity.SIMDGroups(4), kp.granularity.NofM(2, 4), "channels"],
)
def test_xla_custom_loop_and_mixed_precision(granularity):
    """An XLA-compiled custom training loop (jit_compile is the default on GPUs) and
    mixed_float16 both prune exactly."""
    x, y = np.random.rand(64, 16).astype("float32"), np.random.rand(64, 4).astype("float32")
    sched = kp.schedules.ConstantSparsity(0.5, 0, frequency=1)

    pruned = compile_mse(kp.prune(mlp(), sched, granularity))
    scheduler = kp.callbacks.PruningScheduler()
    scheduler.set_model(pruned)
    scheduler.on_train_begin()
    scheduler.on_train_batch_begin(0)

    @tf.function(jit_compile=True)
    def train_step(xb, yb):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(pruned(xb, training=True) - yb))
        grads = tape.gradient(loss, pruned.trainable_variables)
        pruned.optimizer.apply(grads, pruned.trainable_variables)
        return loss

    for i in range(0, 64, 16):
        train_step(x[i : i + 16], y[i : i + 16])
    assert [int(w.pruning_step.numpy()) for w in wrappers(pruned)] == [4, 4]
    assert kp.callbacks.measure_sparsity(pruned)["sparsity/fc1"] == pytest.approx(0.5)

    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        pruned = compile_mse(kp.prune(mlp(), sched, granularity))
        pruned.fit(x, y, verbose=0, callbacks=[kp.callbacks.PruningScheduler()])
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert wrappers(pruned)[0].layer.compute_dtype == "float16"
    assert kp.callbacks.measure_sparsity(pruned)["sparsity/fc1"] == pytest.approx(0.5)


def test_subclassed_models_are_refused_with_a_way_out():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.fc = keras.layers.Dense(3)

        def call(self, x):
            return self.fc(x)

    net = Net()
    net(np.zeros((1, 4)))
    with pytest.raises(TypeError, match="subclassed Net.*PruneWrapper directly"):
        kp.prune(net, SCHED)


def test_a_shared_layer_counts_each_step_once():
    inp_a, inp_b = keras.Input((16,)), keras.Input((16,))
    shared = keras.layers.Dense(8, name="shared")
    out = keras.layers.Concatenate()([shared(inp_a), shared(inp_b)])
    model = keras.Model([inp_a, inp_b], keras.layers.Dense(2, name="head")(out))
    pruned = compile_mse(kp.prune(model, kp.schedules.ConstantSparsity(0.5, 0, frequency=2)))
    x = np.random.rand(32, 16).astype("float32")
    pruned.fit(
        [x, x[::-1]],
        np.random.rand(32, 2),
        batch_size=8,
        epochs=2,
        verbose=0,
        callbacks=[kp.callbacks.PruningScheduler()],
    )
    assert [int(w.pruning_step.numpy()) for w in wrappers(pruned)] == [8, 8]
    assert kp.callbacks.measure_sparsity(pruned)["sparsity/shared"] == pytest.approx(0.5)
