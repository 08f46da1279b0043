"""Knowledge distillation: the soft-target loss and the Distiller model."""

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import keras_prune as kp
from keras_prune.distill import Distiller, soft_target_loss


def _np_log_softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def _np_reference(z_teacher, z_student, t):
    """Hinton et al.'s soft loss from logits, in float64 numpy: T^2 * mean KL."""
    log_pt = _np_log_softmax(np.asarray(z_teacher, np.float64) / t)
    log_ps = _np_log_softmax(np.asarray(z_student, np.float64) / t)
    kl = (np.exp(log_pt) * (log_pt - log_ps)).sum(axis=-1)
    return t * t * kl.mean()


def _softmax(z):
    return np.exp(_np_log_softmax(z)).astype("float32")


def _logits(n=16, classes=10, seed=0, scale=3.0):
    return (np.random.default_rng(seed).normal(size=(n, classes)) * scale).astype("float32")


def _mlp(hidden, classes=5, inputs=20, activation="softmax", name=None):
    return keras.Sequential(
        [
            keras.Input((inputs,)),
            keras.layers.Dense(hidden, activation="relu"),
            keras.layers.Dense(classes, activation=activation),
        ],
        name=name,
    )


def _value(x):
    return float(keras.ops.convert_to_numpy(x))


# ---------------------------------------------------------------- soft_target_loss


def test_loss_is_zero_for_equal_outputs_and_positive_otherwise():
    z = _logits()
    for t in (1.0, 4.0):
        same = soft_target_loss(z, z, t, teacher_from_logits=True, student_from_logits=True)
        assert _value(same) == 0.0
        other = soft_target_loss(
            z, _logits(seed=1), t, teacher_from_logits=True, student_from_logits=True
        )
        assert _value(other) > 0.01
    p = _softmax(z)
    assert abs(_value(soft_target_loss(p, p))) < 1e-6
    # logits shifted by a per-sample constant are the same distribution
    shifted = z + np.arange(len(z), dtype="float32")[:, None]
    same = soft_target_loss(z, shifted, teacher_from_logits=True, student_from_logits=True)
    assert abs(_value(same)) < 1e-5


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0, 4.0, 10.0])
def test_loss_matches_numpy_reference(temperature):
    zt, zs = _logits(seed=2), _logits(seed=3)
    got = _value(
        soft_target_loss(zt, zs, temperature, teacher_from_logits=True, student_from_logits=True)
    )
    np.testing.assert_allclose(got, _np_reference(zt, zs, temperature), rtol=1e-5)


def test_temperature_squared_scaling():
    # for T >> the logit spread, KL(T) ~ |z_t - z_s|_var / (2 T^2), so T^2 * KL levels off
    zt, zs = _logits(scale=1.0, seed=4), _logits(scale=1.0, seed=5)
    at = [
        _value(soft_target_loss(zt, zs, t, teacher_from_logits=True, student_from_logits=True))
        for t in (50.0, 100.0)
    ]
    np.testing.assert_allclose(at[0], at[1], rtol=1e-2)
    d = (zt - zs) - (zt - zs).mean(axis=-1, keepdims=True)
    np.testing.assert_allclose(at[1], (d**2).mean(axis=-1).mean() / 2, rtol=2e-2)


def test_probabilities_and_logits_give_the_same_loss():
    zt, zs = _logits(seed=6, scale=2.0), _logits(seed=7, scale=2.0)
    pt, ps = _softmax(zt), _softmax(zs)
    want = _np_reference(zt, zs, 3.0)
    for t_in, t_logits in ((zt, True), (pt, False)):
        for s_in, s_logits in ((zs, True), (ps, False)):
            got = soft_target_loss(
                t_in, s_in, 3.0, teacher_from_logits=t_logits, student_from_logits=s_logits
            )
            np.testing.assert_allclose(_value(got), want, rtol=1e-4)


def test_loss_is_computed_in_float32_for_half_inputs():
    zt, zs = _logits(seed=8), _logits(seed=9)
    got = soft_target_loss(zt.astype("float16"), zs.astype("float16"), 2.0, True, True)
    assert keras.backend.standardize_dtype(got.dtype) == "float32"
    want = _np_reference(zt.astype("float16"), zs.astype("float16"), 2.0)
    np.testing.assert_allclose(_value(got), want, rtol=1e-4)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"temperature": 0.0}, ValueError, "temperature"),
        ({"temperature": -1.0}, ValueError, "temperature"),
        ({"temperature": float("inf")}, ValueError, "temperature"),
        ({"temperature": "4"}, TypeError, "temperature"),
    ],
)
def test_loss_rejects_bad_temperature(kwargs, error, match):
    z = _logits()
    with pytest.raises(error, match=match):
        soft_target_loss(z, z, **kwargs)


def test_loss_rejects_different_shapes():
    with pytest.raises(ValueError, match="same shape"):
        soft_target_loss(_logits(classes=10), _logits(classes=5))


# ---------------------------------------------------------------- Distiller


def test_auto_detects_softmax_outputs():
    inp = keras.Input((4,))
    h = keras.layers.Dense(3)(inp)
    logits = keras.Model(inp, h)
    with_activation = keras.Model(inp, keras.layers.Activation("softmax")(h))
    with_layer = keras.Model(inp, keras.layers.Softmax()(h))
    with_op = keras.Model(inp, keras.ops.softmax(h))
    dense = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    log_probs = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, "log_softmax")])
    pruned = kp.prune(dense, schedule=kp.schedules.ConstantSparsity(0.5, 0))
    nested = keras.Sequential([keras.Input((4,)), dense])
    teacher = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    for model, probs in [
        (logits, False),
        (with_activation, True),
        (with_layer, True),
        (with_op, True),
        (dense, True),
        (log_probs, False),  # log-probabilities are logits up to a constant
        (pruned, True),
        (nested, True),
    ]:
        d = Distiller(model, teacher)
        assert d.student_from_logits is (not probs), model.name
        assert d.teacher_from_logits is True
    d = Distiller(logits, teacher, student_from_logits=False, teacher_from_logits=False)
    assert (d.student_from_logits, d.teacher_from_logits) == (False, False)


def _agreement(a, b, x):
    pa = a.predict(x, verbose=0, batch_size=512).argmax(-1)
    pb = b.predict(x, verbose=0, batch_size=512).argmax(-1)
    return float((pa == pb).mean())


def test_distilling_without_labels_moves_the_student_towards_the_teacher():
    keras.utils.set_random_seed(1)
    teacher = _mlp(64, activation=None, name="teacher")  # logits
    student = _mlp(16, name="student")  # probabilities
    x = np.random.default_rng(1).normal(size=(2048, 20)).astype("float32")
    teacher_weights = [w.copy() for w in teacher.get_weights()]
    before = _agreement(student, teacher, x)

    d = Distiller(student, teacher, temperature=2.0, alpha=0.9)
    assert (d.teacher_from_logits, d.student_from_logits) == (True, False)
    d.compile(
        keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    start = d.evaluate(x, verbose=0, return_dict=True)
    history = d.fit(x, epochs=6, batch_size=128, verbose=0).history
    end = d.evaluate(x, verbose=0, return_dict=True)

    # unlabeled: the loss is the soft loss alone, whatever alpha; no accuracy to report
    assert set(history) == {"loss", "soft_loss"}
    np.testing.assert_allclose(history["loss"], history["soft_loss"], rtol=1e-6)
    assert end["loss"] < 0.5 * start["loss"]
    after = _agreement(student, teacher, x)
    assert after > before + 0.4 and after > 0.6, (before, after)
    # the student was trained in place; the teacher not at all, its flag untouched
    assert d.student is student
    assert d.teacher is teacher and teacher.trainable
    for w0, w1 in zip(teacher_weights, teacher.get_weights(), strict=True):
        np.testing.assert_array_equal(w0, w1)
    assert {id(v) for v in d.trainable_weights} == {id(v) for v in student.trainable_weights}
    np.testing.assert_allclose(d.predict(x[:8], verbose=0), student.predict(x[:8], verbose=0))

    # labels after unlabeled training: the compiled loss and metrics are built then
    y = teacher.predict(x, verbose=0).argmax(-1)
    labeled = d.fit(x, y, epochs=1, batch_size=128, verbose=0).history
    assert set(labeled) == {"loss", "soft_loss", "accuracy"}
    logs = d.evaluate(x, y, verbose=0, return_dict=True)
    assert logs["accuracy"] == pytest.approx(_agreement(student, teacher, x), abs=1e-6)


@pytest.mark.slow
def test_distilling_with_labels_on_mnist_reports_metrics():
    x, y, xt, yt = kp.datasets.mnist_5k()
    x, xt = x.reshape(len(x), -1), xt.reshape(len(xt), -1)
    keras.utils.set_random_seed(2)
    teacher = _mlp(128, classes=10, inputs=784, name="teacher")
    teacher.compile(
        keras.optimizers.Adam(2e-3), "sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    teacher.fit(x, y, epochs=3, batch_size=128, verbose=0)
    teacher_weights = [w.copy() for w in teacher.get_weights()]
    student = _mlp(16, classes=10, inputs=784, name="student")

    d = Distiller(student, teacher, temperature=4.0, alpha=0.3)
    d.compile(
        keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    history = d.fit(x, y, epochs=3, batch_size=128, validation_data=(xt, yt), verbose=0).history
    assert {"loss", "soft_loss", "accuracy", "val_loss", "val_soft_loss", "val_accuracy"} <= set(
        history
    )
    assert history["loss"][-1] < history["loss"][0]
    assert history["val_accuracy"][-1] > 0.8
    # the metric is the student's accuracy on y
    student.compile(metrics=["accuracy"], loss="sparse_categorical_crossentropy")
    acc = student.evaluate(xt, yt, verbose=0, return_dict=True)["accuracy"]
    np.testing.assert_allclose(acc, history["val_accuracy"][-1], atol=1e-6)
    for w0, w1 in zip(teacher_weights, teacher.get_weights(), strict=True):
        np.testing.assert_array_equal(w0, w1)
    # labeled and unlabeled fits mix on one distiller
    assert set(d.fit(x[:256], epochs=1, verbose=0).history) == {"loss", "soft_loss"}
    assert "accuracy" in d.fit(x[:256], y[:256], epochs=1, verbose=0).history


def test_compute_loss_weights_hard_and_soft_losses():
    teacher, student = _mlp(32, name="t"), _mlp(8, name="s")
    x = np.random.default_rng(3).normal(size=(64, 20)).astype("float32")
    y = np.random.default_rng(4).integers(0, 5, 64)
    pt, ps = teacher.predict(x, verbose=0), student.predict(x, verbose=0)
    soft = _np_reference(np.log(pt), np.log(ps), 3.0)
    hard = -np.log(ps[np.arange(64), y]).mean()

    d = Distiller(student, teacher, temperature=3.0, alpha=0.25)
    d.compile("sgd", loss="sparse_categorical_crossentropy")
    y_pred = d(x)
    np.testing.assert_allclose(_value(d.compute_loss(x, None, y_pred)), soft, rtol=1e-4)
    np.testing.assert_allclose(
        _value(d.compute_loss(x, y, y_pred)), 0.25 * hard + 0.75 * soft, rtol=1e-4
    )
    # sample weights weight the soft loss as Keras weights a loss ("sum_over_batch_size")
    w = np.r_[np.ones(32), np.zeros(32)].astype("float32")
    got = _value(d.compute_loss(x, None, y_pred, sample_weight=w))
    first_half = _np_reference(np.log(pt[:32]), np.log(ps[:32]), 3.0)
    np.testing.assert_allclose(got, first_half / 2, rtol=1e-4)

    # alpha=0 distils only and needs no compiled loss; alpha>0 with labels needs one
    d0 = Distiller(student, teacher, temperature=3.0, alpha=0.0)
    d0.compile("sgd")
    np.testing.assert_allclose(_value(d0.compute_loss(x, y, y_pred)), soft, rtol=1e-4)
    d1 = Distiller(student, teacher, alpha=0.5)
    d1.compile("sgd")
    with pytest.raises(ValueError, match="loss"):
        d1.fit(x, y, epochs=1, verbose=0)


def test_regularization_losses_of_the_student_are_added():
    student = keras.Sequential(
        [keras.Input((20,)), keras.layers.Dense(5, kernel_regularizer=keras.regularizers.L2(1.0))]
    )
    teacher = _mlp(8, activation=None)
    x = np.random.default_rng(5).normal(size=(16, 20)).astype("float32")
    d = Distiller(student, teacher)
    d.compile("sgd")
    reg = float((student.layers[0].kernel.numpy() ** 2).sum())
    soft = _value(soft_target_loss(teacher(x), student(x), 4.0, True, True))
    np.testing.assert_allclose(_value(d.compute_loss(x, None, d(x))), soft + reg, rtol=1e-5)


def test_pruned_student_keeps_pruning_while_distilled():
    keras.utils.set_random_seed(6)
    teacher = _mlp(32, name="teacher")
    pruned = kp.prune(teacher, schedule=kp.schedules.ConstantSparsity(0.75, 0, frequency=1))
    x = np.random.default_rng(6).normal(size=(256, 20)).astype("float32")
    teacher_weights = [w.copy() for w in teacher.get_weights()]
    d = Distiller(pruned, teacher, temperature=2.0, alpha=0.0)
    d.compile(keras.optimizers.Adam(1e-2))
    d.fit(x, epochs=2, batch_size=64, verbose=0, callbacks=[kp.callbacks.PruningScheduler()])
    kernel = pruned.layers[0].layer.kernel.numpy()
    np.testing.assert_allclose((kernel == 0).mean(), 0.75, atol=0.01)
    assert float(d.evaluate(x, verbose=0, return_dict=True)["soft_loss"]) > 0
    # the pruned copy does not share variables with the model it came from
    for w0, w1 in zip(teacher_weights, teacher.get_weights(), strict=True):
        np.testing.assert_array_equal(w0, w1)


def _models():
    return _mlp(16, name="s"), _mlp(32, name="t")


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"temperature": 0}, ValueError, "temperature"),
        ({"temperature": -2.0}, ValueError, "temperature"),
        ({"temperature": None}, TypeError, "temperature"),
        ({"alpha": -0.1}, ValueError, "alpha"),
        ({"alpha": 1.5}, ValueError, "alpha"),
        ({"alpha": float("nan")}, ValueError, "alpha"),
        ({"alpha": "0.5"}, TypeError, "alpha"),
        ({"teacher_from_logits": "yes"}, ValueError, "teacher_from_logits"),
        ({"student_from_logits": 1}, TypeError, "student_from_logits"),
    ],
)
def test_distiller_rejects_bad_settings(kwargs, error, match):
    student, teacher = _models()
    with pytest.raises(error, match=match):
        Distiller(student, teacher, **kwargs)


def test_distiller_rejects_bad_models():
    student, teacher = _models()
    with pytest.raises(ValueError, match="same output shape.*\\(None, 5\\).*\\(None, 3\\)"):
        Distiller(student, _mlp(8, classes=3))
    with pytest.raises(TypeError, match="`teacher` must be a keras.Model"):
        Distiller(student, keras.layers.Dense(5))
    with pytest.raises(TypeError, match="`teacher` must be a keras.Model"):
        Distiller(student, lambda x: x)
    unbuilt = keras.Sequential([keras.layers.Dense(5)])
    with pytest.raises(ValueError, match="`teacher`.*not built"):
        Distiller(student, unbuilt)
    with pytest.raises(ValueError, match="`student`.*not built"):
        Distiller(unbuilt, teacher)
    with pytest.raises(ValueError, match="same model"):
        Distiller(student, student)
    inp = keras.Input((20,))
    two = keras.Model(inp, [keras.layers.Dense(5)(inp), keras.layers.Dense(5)(inp)])
    with pytest.raises(ValueError, match="single output"):
        Distiller(student, two)
    one_unit = _mlp(4, classes=1, activation="sigmoid")
    with pytest.raises(ValueError, match="2 classes"):
        Distiller(one_unit, _mlp(8, classes=1, activation="sigmoid"))


def test_get_config_round_trip():
    student, teacher = _models()
    d = Distiller(student, teacher, temperature=2.5, alpha=0.2, name="kd")
    config = d.get_config()
    assert config == {
        "name": "kd",
        "temperature": 2.5,
        "alpha": 0.2,
        "teacher_from_logits": False,
        "student_from_logits": False,
    }
    again = Distiller.from_config(config, student=student, teacher=teacher)
    assert again.get_config() == config
    assert again.student is student and again.teacher is teacher
    with pytest.raises(ValueError, match="student=.*teacher="):
        Distiller.from_config(config)


_MIRRORED_SCRIPT = textwrap.dedent(r"""
    import sys
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    tf.config.experimental.enable_op_determinism()
    import keras
    from keras_prune.distill import Distiller

    rng = np.random.default_rng(0)
    x = rng.normal(size=(128, 20)).astype("float32")
    y = rng.integers(0, 5, 128)

    def run():
        keras.utils.set_random_seed(0)
        def mlp(hidden, activation):
            return keras.Sequential([keras.Input((20,)), keras.layers.Dense(hidden, "relu"),
                                     keras.layers.Dense(5, activation=activation)])
        teacher, student = mlp(32, None), mlp(8, "softmax")
        d = Distiller(student, teacher, temperature=2.0, alpha=0.5)
        d.compile(keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
        labeled = d.fit(x, y, epochs=2, batch_size=32, shuffle=False, verbose=0).history
        unlabeled = d.fit(x, epochs=2, batch_size=32, shuffle=False, verbose=0).history
        return labeled["loss"] + unlabeled["loss"], student.get_weights()

    losses, weights = run()
    with tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]).scope():
        losses2, weights2 = run()
    np.testing.assert_allclose(losses, losses2, rtol=1e-5)
    for a, b in zip(weights, weights2, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    print("same")
""")


@pytest.mark.slow
def test_mirrored_strategy_trains_the_same_as_one_device():
    # the soft loss is scaled per replica as Keras scales the compiled loss: otherwise the
    # summed gradients of two replicas would double it
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(
        [sys.executable, "-c", _MIRRORED_SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("same")
