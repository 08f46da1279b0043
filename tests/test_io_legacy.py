"""kp.io.load: Keras 2-era .h5 files, and clear errors for files it cannot load.

The Keras 2 files are made here: a small Keras 3 model is saved as .h5, then its
``model_config`` (and ``keras_version``, ``training_config``) attributes are rewritten with
h5py the way Keras 2 wrote them. The weights stay the Keras 3 ones, so predictions must match.
"""

import json
import zipfile

import h5py
import keras
import numpy as np
import pytest
from keras.src.backend.common import global_state
from keras.src.saving import serialization_lib

import keras_prune as kp

X = np.random.default_rng(0).random((4, 8, 8, 3), dtype=np.float32)
V = np.random.default_rng(0).random((4, 6), dtype=np.float32)

# `lambda t: t * 2` marshalled by Python 3.7, base64-encoded: how Keras 2.4 stored a Lambda.
PY37_LAMBDA = (
    "4wEAAAAAAAAAAQAAAAIAAABDAAAAcwgAAAB8AGQBFABTACkCTukCAAAAqQApAdoBdHICAAAA"
    "cgIAAADaCDxzdHJpbmc+2gg8bGFtYmRhPgMAAADzAAAAAA=="
)

KERAS24_TRAINING = {  # compile(Adam(0.01), "mse", metrics=["mae"]) as tf.keras 2.4 saved it
    "loss": "mse",
    "metrics": ["mae"],
    "weighted_metrics": None,
    "loss_weights": None,
    "sample_weight_mode": None,
    "optimizer_config": {
        "class_name": "Adam",
        "config": {
            "name": "Adam",
            "learning_rate": 0.01,
            "decay": 0.0,
            "beta_1": 0.9,
            "beta_2": 0.999,
            "epsilon": 1e-07,
            "amsgrad": False,
        },
    },
}

KERAS20_TRAINING = {  # `lr` (Keras 2.0-2.2) and a loss object with tf.keras' "auto" reduction
    "loss": {
        "class_name": "MeanSquaredError",
        "config": {"reduction": "auto", "name": "mean_squared_error"},
    },
    "metrics": ["acc"],
    "sample_weight_mode": None,
    "loss_weights": None,
    "optimizer_config": {
        "class_name": "SGD",
        "config": {"lr": 0.05, "momentum": 0.0, "decay": 0.0, "nesterov": False},
    },
}


class Scale(keras.layers.Layer):
    """A custom layer, deliberately not registered."""

    def call(self, x):
        return x * 2.0


def _randomise(model):
    # Positive weights: outputs far from zero, and a valid BatchNormalization variance.
    rng = np.random.default_rng(1)
    model.set_weights([rng.uniform(0.5, 1.5, w.shape).astype(w.dtype) for w in model.get_weights()])
    return model


def _functional():
    inp = keras.Input((8, 8, 3), name="img")
    a = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inp)
    b = keras.layers.DepthwiseConv2D(3, padding="same", name="dw")(a)
    x = keras.layers.Add(name="add")([a, b])
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    return _randomise(keras.Model(inp, keras.layers.Dense(3, name="fc")(x)))


def _sequential(*extra):
    return _randomise(
        keras.Sequential(
            [
                keras.Input((6,)),
                keras.layers.Dense(5, activation="relu", name="fc1"),
                keras.layers.Dense(2, name="fc2"),
                *extra,
            ]
        )
    )


def _edit_h5(path, edit=None, keras_version="2.4.0", training_config=None):
    """Rewrite an .h5 file's model config (``edit(config)`` in place) and Keras version."""
    with h5py.File(path, "r+") as f:
        config = json.loads(f.attrs["model_config"])
        if edit is not None:
            edit(config)
        f.attrs["model_config"] = json.dumps(config).encode("utf8")
        f.attrs["keras_version"] = keras_version.encode("utf8")
        f["model_weights"].attrs["keras_version"] = keras_version.encode("utf8")
        if training_config is not None:
            f.attrs["training_config"] = json.dumps(training_config).encode("utf8")
    return path


def _keras2_objects(obj):
    """Keras 2 wrote nested objects as {"class_name", "config"} and dtypes as strings."""
    if isinstance(obj, dict):
        if obj.get("class_name") == "DTypePolicy":
            return obj["config"]["name"]
        return {
            k: _keras2_objects(v) for k, v in obj.items() if k not in ("module", "registered_name")
        }
    if isinstance(obj, list):
        return [_keras2_objects(v) for v in obj]
    return obj


def _keras2_refs(args):
    """Keras 2 inbound-node entries [layer, node, tensor, kwargs] for a Keras 3 node's args."""
    if isinstance(args, dict) and args.get("class_name") == "__keras_tensor__":
        return [[*args["config"]["keras_history"], {}]]
    if isinstance(args, list):
        return [ref for arg in args for ref in _keras2_refs(arg)]
    return []


def _keras2_layer(layer):
    config = _keras2_objects(layer["config"])
    if "batch_shape" in config:  # InputLayer
        config["batch_input_shape"] = config.pop("batch_shape")
        config.pop("optional", None)
    return {**layer, "config": config}


def _as_keras2_functional(config):
    """A Keras 3 functional config as Keras 2.0-2.4 wrote it (class "Model", list nodes)."""
    config["class_name"] = "Model"
    inner = config["config"]
    layers = []
    for layer in inner["layers"]:
        nodes = [_keras2_refs(node["args"]) for node in layer["inbound_nodes"]]
        layers.append({**_keras2_layer(layer), "inbound_nodes": nodes})
    inner["layers"] = layers
    inner["input_layers"] = [inner["input_layers"]]
    inner["output_layers"] = [inner["output_layers"]]


def _keras2_functional_file(tmp_path, groups=1):
    model = _functional()
    path = kp.io.save(model, tmp_path / "keras2.h5")

    def keras2(config):
        _as_keras2_functional(config)
        dw = next(lay for lay in config["config"]["layers"] if lay["name"] == "dw")
        dw["config"]["groups"] = groups

    return model, _edit_h5(path, keras2, training_config=KERAS24_TRAINING)


def test_keras2_functional_model_with_depthwise_groups_loads_identically(tmp_path):
    model, path = _keras2_functional_file(tmp_path)
    with pytest.raises((TypeError, ValueError), match="groups"):  # the quirk is real
        keras.saving.load_model(path, compile=False)
    loaded = kp.io.load(path)
    np.testing.assert_array_equal(loaded.predict(X, verbose=0), model.predict(X, verbose=0))
    assert isinstance(loaded.optimizer, keras.optimizers.Adam)
    assert float(loaded.optimizer.learning_rate) == pytest.approx(0.01)
    loaded.fit(X, np.zeros((4, 3), np.float32), epochs=1, verbose=0)  # compiled, and trains


def test_keras2_sequential_stored_as_a_bare_list_loads_identically(tmp_path):
    model = _sequential()
    path = kp.io.save(model, tmp_path / "keras20.h5")

    def keras20(config):  # Keras 2.0: no InputLayer, the first layer has batch_input_shape
        layers = [_keras2_layer(lay) for lay in config["config"]["layers"][1:]]
        layers[0]["config"]["batch_input_shape"] = [None, 6]
        config["config"] = layers

    _edit_h5(path, keras20, keras_version="2.0.8", training_config=KERAS20_TRAINING)
    loaded = kp.io.load(path)
    np.testing.assert_array_equal(loaded.predict(V, verbose=0), model.predict(V, verbose=0))
    assert isinstance(loaded.optimizer, keras.optimizers.SGD)
    assert float(loaded.optimizer.learning_rate) == pytest.approx(0.05)
    loaded.fit(V, np.zeros((4, 2), np.float32), epochs=1, verbose=0)


def test_depthwise_groups_other_than_one_is_a_clear_error(tmp_path):
    _, path = _keras2_functional_file(tmp_path, groups=2)
    with pytest.raises(kp.io.LoadError, match=r"layer 'dw' \(DepthwiseConv2D\) has groups=2"):
        kp.io.load(path)


def test_load_leaves_keras_global_state_alone(tmp_path):
    def rejects_groups():
        try:
            keras.layers.DepthwiseConv2D(3, groups=1)
        except (TypeError, ValueError):
            return True
        return False

    def state():
        return (
            rejects_groups(),
            keras.layers.DepthwiseConv2D.__init__,
            keras.layers.DepthwiseConv2D.from_config,
            dict(keras.saving.get_custom_objects()),
            serialization_lib.in_safe_mode(),
            global_state.get_global_attribute("use_legacy_config"),
        )

    before = state()
    _, path = _keras2_functional_file(tmp_path)
    kp.io.load(path)
    assert state() == before


@pytest.mark.parametrize("suffix", [".h5", ".keras"])
@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_damaged_files_give_a_clear_error(tmp_path, suffix, damage):
    path = kp.io.save(_sequential(), tmp_path / f"m{suffix}")
    data = path.read_bytes()
    path.write_bytes(
        data[: len(data) // 2]
        if damage == "truncated"
        else np.random.default_rng(0).bytes(len(data))
    )
    with pytest.raises(kp.io.LoadError, match="is not a valid, complete Keras model file") as err:
        kp.io.load(path)
    assert str(path) in str(err.value)
    assert err.value.__cause__ is not None


def test_keras_archive_with_truncated_weights_gives_a_clear_error(tmp_path):
    path = kp.io.save(_sequential(), tmp_path / "m.keras")
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    weights = members["model.weights.h5"]
    members["model.weights.h5"] = weights[: len(weights) // 2]
    with zipfile.ZipFile(path, "w") as archive:  # a valid zip around a broken member
        for name, data in members.items():
            archive.writestr(name, data)
    with pytest.raises(kp.io.LoadError, match="is not a valid, complete Keras model file") as err:
        kp.io.load(path)
    assert str(path) in str(err.value) and err.value.__cause__ is not None


def test_weights_only_h5_says_to_build_the_model_and_load_weights(tmp_path):
    path = tmp_path / "m.weights.h5"
    _sequential().save_weights(path)
    with pytest.raises(kp.io.LoadError, match=r"no model architecture.*load_weights"):
        kp.io.load(path)


@pytest.mark.parametrize("suffix", [".h5", ".keras"])
def test_unknown_custom_layer_names_the_class_and_custom_objects(tmp_path, suffix):
    model = _sequential(Scale(name="scale"))
    path = kp.io.save(model, tmp_path / f"m{suffix}")
    with pytest.raises(kp.io.LoadError) as err:
        kp.io.load(path)
    message = str(err.value)
    assert str(path) in message and "layer 'scale' has class 'Scale'" in message
    assert "custom_objects={'Scale': Scale}" in message and "'package>ClassName'" in message
    loaded = kp.io.load(path, custom_objects={"Scale": Scale})
    np.testing.assert_array_equal(loaded.predict(V, verbose=0), model.predict(V, verbose=0))


def _functional_with_scale():
    inp = keras.Input((6,), name="vec")
    x = Scale(name="scale")(keras.layers.Dense(3, name="fc")(inp))
    return _randomise(keras.Model(inp, keras.layers.Dense(2, name="out")(x)))


def _rename_class(path, layer_name, class_name):
    def rename(config):
        layer = next(lay for lay in config["config"]["layers"] if lay["name"] == layer_name)
        layer["class_name"] = class_name

    return _edit_h5(path, rename)


def test_keras2_registered_custom_layer_is_keyed_by_its_registered_name(tmp_path):
    model = _functional_with_scale()
    path = _rename_class(kp.io.save(model, tmp_path / "m.h5"), "scale", "my_pkg>Scale")
    with pytest.raises(kp.io.LoadError, match=r"custom_objects=\{'my_pkg>Scale': Scale\}"):
        kp.io.load(path, custom_objects={"Scale": Scale})
    loaded = kp.io.load(path, custom_objects={"my_pkg>Scale": Scale})
    np.testing.assert_array_equal(loaded.predict(V, verbose=0), model.predict(V, verbose=0))


def test_keras2_tensorflow_op_layer_says_to_rebuild_the_model(tmp_path):
    path = _rename_class(
        kp.io.save(_functional_with_scale(), tmp_path / "m.h5"), "scale", "TFOpLambda"
    )
    with pytest.raises(
        kp.io.LoadError, match=r"layer 'scale' is a TensorFlow operation.*load_weights"
    ):
        kp.io.load(path)


@pytest.mark.parametrize("suffix", [".h5", ".keras"])
def test_lambda_is_refused_in_safe_mode_and_loads_when_trusted(tmp_path, suffix):
    model = _sequential(keras.layers.Lambda(lambda t: t * 2.0, name="double"))
    path = kp.io.save(model, tmp_path / f"m{suffix}")
    with pytest.raises(
        kp.io.LoadError, match=r"layer 'double' is a Lambda.*would execute code.*safe_mode=False"
    ):
        kp.io.load(path)
    loaded = kp.io.load(path, safe_mode=False)
    np.testing.assert_array_equal(loaded.predict(V, verbose=0), model.predict(V, verbose=0))


def test_keras2_bytecode_lambda_gives_a_clear_error(tmp_path):
    path = kp.io.save(
        _sequential(keras.layers.Lambda(lambda t: t * 2.0, name="double")), tmp_path / "m.h5"
    )

    def keras2_lambda(config):
        lam = config["config"]["layers"][-1]["config"]
        lam.update(
            function=[PY37_LAMBDA, None, None],
            function_type="lambda",
            module="__main__",
            output_shape=None,
            output_shape_type="raw",
            output_shape_module=None,
            arguments={},
        )

    _edit_h5(path, keras2_lambda)
    with pytest.raises(kp.io.LoadError, match=r"layer 'double'.*safe_mode=True refuses.*Keras 2"):
        kp.io.load(path)
    with pytest.raises(kp.io.LoadError) as err:
        kp.io.load(path, safe_mode=False)
    message = str(err.value)
    assert "layer 'double' is a Keras 2 Lambda layer" in message and "bytecode" in message
    assert "not even with safe_mode=False" in message and "load_weights" in message
    assert err.value.__cause__ is not None
