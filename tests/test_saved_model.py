"""SavedModel export: pruned channels physically removed, outputs equal after reload."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_prune as kp
from keras_prune import cli
from keras_prune.surgery import ConstantOffset, compact

L = keras.layers


def bn_resnet():
    """Convs followed by BatchNorm (a pruned filter's output becomes a non-zero constant),
    a residual Add, a 1x1 and a 'valid' conv (bias folds), a fused-ReLU 3x3 'same' conv
    (a ConstantOffset), and Flatten -> Dense."""
    x = i = keras.Input((10, 10, 3), name="img")
    x = L.ReLU()(
        L.BatchNormalization(name="bn0")(
            L.Conv2D(8, 3, padding="same", use_bias=False, name="stem")(x)
        )
    )
    y = L.Conv2D(8, 3, padding="same", activation="relu", name="c1")(x)
    y = L.BatchNormalization(name="bn2")(L.Conv2D(8, 3, padding="same", name="c2")(y))
    x = L.ReLU()(L.Add()([x, y]))
    x = L.BatchNormalization(name="bn3")(L.Conv2D(6, 1, name="c3")(x))
    x = L.Conv2D(4, 3, activation="relu", name="c4")(x)
    out = L.Dense(5, name="fc")(L.Flatten()(x))
    model = keras.Model(i, out, name="bn_resnet")
    rng = np.random.default_rng(1)
    for layer in model.layers:  # trained-looking statistics: BN(0) is far from 0
        if isinstance(layer, L.BatchNormalization):
            n = layer.beta.shape[0]
            layer.beta.assign(rng.normal(size=n) + 0.5)
            layer.moving_mean.assign(rng.normal(size=n))
            layer.moving_variance.assign(rng.random(n) + 0.5)
    return model


def _zero(model, name, channels):
    layer = model.get_layer(name)
    k = layer.kernel.numpy()
    k[..., channels] = 0
    layer.kernel.assign(k)
    if layer.use_bias:
        b = layer.bias.numpy()
        b[channels] = 0
        layer.bias.assign(b)


def test_compact_removes_zero_filters_and_folds_their_constants():
    model = bn_resnet()
    for name, ch in (("stem", [1, 5]), ("c2", [1, 5]), ("c1", [0, 3]), ("c3", [2]), ("c4", [0])):
        _zero(model, name, ch)
    before = [w.copy() for w in model.get_weights()]
    x = np.random.default_rng(0).normal(size=(6, 10, 10, 3)).astype("float32")
    small, report = compact(model)
    np.testing.assert_allclose(small(x), model(x), atol=1e-5)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True))
    assert report.removed == {"stem": (2, 8), "c1": (2, 8), "c3": (1, 6), "c4": (1, 4)}
    assert small.get_layer("c2").filters == 6
    assert small.get_layer("fc").kernel.shape == (8 * 8 * 3, 5)
    # the stem group's constant reaches c1 through 'same' padding: not one bias per channel
    assert report.offsets == ["c1"]
    assert isinstance(small.get_layer("c1_offset"), ConstantOffset)
    assert small.get_layer("c1").get_config()["activation"] == "linear"
    assert set(report.folded) == {"c3", "c4"}  # a 1x1 and a 'valid' 3x3 conv
    # c4's pruned filter lost its bias and has no BatchNorm: it outputs 0, fc needs nothing
    assert report.macs[1] < 0.75 * report.macs[0]
    # a model without zero filters comes back equal
    plain = bn_resnet()
    same, r = compact(plain)
    assert r.removed == {} and r.macs[0] == r.macs[1]
    np.testing.assert_allclose(same(x), plain(x), atol=1e-6)


def test_compact_keeps_channels_of_shared_consumers_and_sequential_stays():
    shared = L.Conv2D(4, 3, padding="same", name="shared")
    i = keras.Input((6, 6, 2))
    a = L.BatchNormalization(name="bn")(L.Conv2D(4, 1, name="a")(i))
    out = L.Add()([shared(a), shared(L.ReLU()(a))])
    model = keras.Model(i, L.GlobalAveragePooling2D()(out))
    model.get_layer("bn").beta.assign(np.ones(4))
    _zero(model, "a", [0])
    _, report = compact(model)
    assert report.removed == {} and "called 2 times" in report.kept["a"]

    seq = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            L.Conv2D(6, 3, name="a"),
            L.BatchNormalization(name="bn"),
            L.Conv2D(4, 3, padding="same", name="b"),
            L.Flatten(),
            L.Dense(3, name="d"),
        ]
    )
    seq.get_layer("bn").beta.assign(np.linspace(-1, 1, 6))
    _zero(seq, "a", [0, 2])
    small, report = compact(seq)
    assert isinstance(small, keras.Sequential) and report.offsets == ["b"]
    x = np.random.default_rng(0).normal(size=(3, 8, 8, 1)).astype("float32")
    np.testing.assert_allclose(small(x), seq(x), atol=1e-5)


def _channel_pruned():
    """The user's flow: Channels() pruning in model.fit, then export with the wrappers on."""
    model = bn_resnet()
    pruned = kp.prune(
        model,
        kp.schedules.ConstantSparsity(0.5, begin_step=0, frequency=1),
        granularity=kp.granularity.Channels(),
        layers=["c1", "c3", "c4"],
    )
    pruned.compile("adam", "mse")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 10, 10, 3)).astype("float32")
    pruned.fit(
        x,
        rng.normal(size=(32, 5)),
        epochs=1,
        batch_size=16,
        verbose=0,
        callbacks=[kp.callbacks.PruningScheduler()],
    )
    return pruned, x


def test_saved_model_export_layout_reload_and_dynamic_batch(tmp_path):
    pruned, x = _channel_pruned()
    expected = kp.strip(pruned)(x)
    printed = []
    report = kp.export.saved_model(
        pruned,
        tmp_path / "serving",
        version=2,
        representative_data=x,
        print_fn=printed.append,
        show=False,
    )
    version = tmp_path / "serving" / "2"
    assert report.path == version and (version / "saved_model.pb").is_file()
    assert (version / "variables").is_dir()
    assert sorted(p.name for p in (tmp_path / "serving").iterdir()) == ["2"]  # no temp left
    meta = json.loads((version / "signature.json").read_text())
    assert meta["signature_name"] == "serving_default"
    assert meta["inputs"] == {"img": {"shape": [None, 10, 10, 3], "dtype": "float32"}}
    assert meta["outputs"] == {"output_0": {"shape": [None, 5], "dtype": "float32"}}
    assert meta["keras_prune"]["channels_removed"] == {"c1": [4, 8], "c3": [3, 6], "c4": [2, 4]}
    assert report.compact.macs[1] < 0.7 * report.compact.macs[0]
    assert max(report.reload_error.values()) < 1e-4
    # BatchNorms are folded: no Rsqrt/Mul/Sub passes left in the served graph
    assert meta["keras_prune"]["batchnorm_folded"] == ["bn0", "bn2", "bn3"]
    assert "BatchNorm folded into the layer before it: 3" in printed[0]
    graph = tf.saved_model.load(str(version)).signatures["serving_default"].graph
    ops = {n.op for f in graph.as_graph_def().library.function for n in f.node_def}
    assert not ops & {"Rsqrt", "Mul", "Sub", "FusedBatchNormV3"}
    assert "input img: float32 [None, 10, 10, 3]" in printed[0]
    assert "removed 9 pruned channels" in printed[0] and "tf.saved_model.load" in printed[0]
    # dynamic batch, both loaders, against the Keras model before any surgery
    fn = tf.saved_model.load(str(version)).signatures["serving_default"]
    for n in (1, 7):
        np.testing.assert_allclose(fn(img=tf.constant(x[:n]))["output_0"], expected[:n], atol=1e-4)
    layer = keras.layers.TFSMLayer(str(version), call_endpoint="serving_default")
    np.testing.assert_allclose(layer(x)["output_0"], expected, atol=1e-4)

    # bad input: clear errors, nothing touched
    stamp = (version / "saved_model.pb").stat().st_mtime_ns
    with pytest.raises(FileExistsError, match="force"):
        kp.export.saved_model(pruned, tmp_path / "serving", version=2, print_fn=None)
    assert (version / "saved_model.pb").stat().st_mtime_ns == stamp
    for bad in (0, -1, "3", 1.5, True):
        with pytest.raises(ValueError, match="positive integer"):
            kp.export.saved_model(pruned, tmp_path / "serving", version=bad, print_fn=None)
    with pytest.raises(ValueError, match="not built"):
        kp.export.saved_model(keras.Sequential([L.Dense(2)]), tmp_path / "s2", print_fn=None)
    assert sorted(p.name for p in (tmp_path / "serving").iterdir()) == ["2"]
    assert not (tmp_path / "s2").exists()


def test_failed_export_leaves_no_version_directory(tmp_path, monkeypatch):
    from keras_prune.export import serving as sm

    def broken(*args):
        raise RuntimeError("disk full")

    monkeypatch.setattr(sm, "_verify", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        kp.export.saved_model(bn_resnet(), tmp_path / "serving", print_fn=None, show=False)
    assert list((tmp_path / "serving").iterdir()) == []


def test_top_k_masks_stay_and_unstructured_zeros_are_flagged(tmp_path):
    model = keras.Sequential(
        [
            keras.Input((12,), name="x"),
            L.Dense(16, activation="relu", name="fc1"),
            L.Dense(3, name="fc2"),
        ],
        name="mlp",
    )
    k = model.get_layer("fc1").kernel.numpy()
    k[np.random.default_rng(0).random(k.shape) < 0.6] = 0
    model.get_layer("fc1").kernel.assign(k)
    masked = kp.add_activation_masks(model, winner_rate=0.25)
    x = np.random.default_rng(1).normal(size=(9, 12)).astype("float32")
    report = kp.export.saved_model(
        masked, tmp_path / "m", print_fn=None, representative_data=x, show=False
    )
    assert any("no speedup on a CPU or GPU server" in n for n in report.notes)
    graph = tf.saved_model.load(str(report.path)).signatures["serving_default"].graph
    ops = {n.op for f in graph.as_graph_def().library.function for n in f.node_def}
    assert "TopKV2" in ops
    fn = tf.saved_model.load(str(report.path)).signatures["serving_default"]
    (name,) = report.inputs  # a Sequential's input key is its InputLayer's name
    np.testing.assert_allclose(fn(**{name: tf.constant(x)})["output_0"], masked(x), atol=1e-5)


@pytest.mark.slow  # runs saved_model_cli in a subprocess: about 10 s
def test_cli_export_savedmodel(tmp_path, capsys):
    pruned, x = _channel_pruned()
    path = tmp_path / "pruned.keras"
    kp.strip(pruned).save(path)
    np.savez(tmp_path / "d.npz", x_train=x)
    out = tmp_path / "serving"
    args = ["export", "savedmodel", str(path), "--out", str(out), "--data", str(tmp_path / "d.npz")]
    assert cli.main([*args, "--version", "1", "--batch", "4", "--keep-batchnorm"]) == 0
    printed = capsys.readouterr().out
    meta = json.loads((out / "1" / "signature.json").read_text())
    assert meta["keras_prune"]["batchnorm_folded"] == []
    assert "removed 9 pruned channels" in printed
    assert "(saved_model_cli show --all)" in printed and "inputs['img'] tensor_info" in printed
    assert meta["inputs"]["img"]["shape"] == [4, 10, 10, 3] and meta["batch"] == 4
    assert cli.main([*args, "--version", "1"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert cli.main([*args, "--version", "0"]) == 2
    assert "positive integer" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["1"]


def test_fold_batchnorm_merges_bn_into_the_layer_before():
    model = bn_resnet()
    before = [w.copy() for w in model.get_weights()]
    folded, names = kp.surgery.fold_batchnorm(model)
    # bn0 and bn2 follow a linear conv; bn3 too (c3 is 1x1, linear)
    assert names == ["bn0", "bn2", "bn3"]
    assert not any(isinstance(la, L.BatchNormalization) for la in folded.layers)
    assert folded.get_layer("stem").use_bias and folded.get_layer("c2").use_bias
    x = np.random.default_rng(0).normal(size=(5, 10, 10, 3)).astype("float32")
    np.testing.assert_allclose(folded(x), model(x), atol=1e-5)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True))
    assert len(model.layers) == len(folded.layers) + 3

    # in a Sequential (which stays one): the BN after a linear depthwise conv folds, the
    # BN after a ReLU-fused conv stays; a BN whose producer feeds another layer stays
    rng = np.random.default_rng(2)
    seq = keras.Sequential(
        [
            keras.Input((6, 6, 2), name="x"),
            L.DepthwiseConv2D(3, depth_multiplier=2, name="dw"),
            L.BatchNormalization(name="bn_dw"),
            L.Conv2D(4, 1, activation="relu", name="pw"),
            L.BatchNormalization(name="bn_relu"),
            L.Flatten(name="flat"),
            L.Dense(3, name="fc"),
        ],
        name="seq",
    )
    for layer in seq.layers:
        if isinstance(layer, L.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.gamma.assign(rng.random(n) + 0.5)
            layer.moving_variance.assign(rng.random(n) + 0.5)
            layer.moving_mean.assign(rng.normal(size=n))
    fseq, names = kp.surgery.fold_batchnorm(seq)
    assert isinstance(fseq, keras.Sequential) and names == ["bn_dw"]
    assert [la.name for la in fseq.layers] == ["dw", "pw", "bn_relu", "flat", "fc"]
    x = rng.normal(size=(4, 6, 6, 2)).astype("float32")
    np.testing.assert_allclose(fseq(x), seq(x), atol=1e-5)

    i = keras.Input((4,))
    h = L.Dense(4, name="d")(i)
    two = keras.Model(i, [L.BatchNormalization(name="bn")(h), L.ReLU()(h)])
    same, names = kp.surgery.fold_batchnorm(two)
    assert same is two and names == []
