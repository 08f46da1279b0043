"""Channel dependency graph and physical shrinking: shrink equals mask on every topology."""

import keras
import numpy as np
import pytest

import keras_prune as kp
from keras_prune import surgery

L = keras.layers


def _bn(x, name):
    return L.BatchNormalization(name=name)(x)


def resnet():
    x = i = keras.Input((12, 12, 3), name="img")
    x = L.ReLU()(_bn(L.Conv2D(8, 3, padding="same", name="stem")(x), "bn0"))
    y = L.ReLU()(_bn(L.Conv2D(8, 3, padding="same", name="c1")(x), "bn1"))
    y = _bn(L.Conv2D(8, 3, padding="same", name="c2")(y), "bn2")
    x = L.ReLU()(L.Add()([x, y]))
    y = L.ReLU()(L.Conv2D(16, 3, strides=2, padding="same", name="c3")(x))
    y = L.Conv2D(16, 3, padding="same", name="c4")(y)
    p = L.Conv2D(16, 1, strides=2, name="proj")(x)
    x = L.ReLU()(L.Add()([p, y]))
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(i, L.Dense(10, activation="softmax", name="out")(x), name="resnet")


def mobilenet():
    """V1 blocks (depthwise + pointwise, depth_multiplier 2) and a V2 inverted residual."""
    x = i = keras.Input((12, 12, 3))
    x = L.ReLU(6.0)(_bn(L.Conv2D(8, 3, strides=2, padding="same", name="stem")(x), "bn0"))
    x = L.DepthwiseConv2D(3, padding="same", depth_multiplier=2, name="dw1")(x)
    x = L.ReLU(6.0)(_bn(x, "bn_dw1"))
    x = L.ReLU(6.0)(_bn(L.Conv2D(12, 1, name="pw1")(x), "bn_pw1"))
    y = L.ReLU(6.0)(_bn(L.Conv2D(24, 1, name="expand")(x), "bn_e"))
    y = L.ReLU(6.0)(_bn(L.DepthwiseConv2D(3, padding="same", name="dw2")(y), "bn_dw2"))
    y = _bn(L.Conv2D(12, 1, name="project")(y), "bn_p")
    x = L.Add()([x, y])
    x = L.SeparableConv2D(10, 3, depth_multiplier=2, name="sep")(x)
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(i, L.Dense(5, name="logits")(x), name="mobilenet")


def dscnn():
    x = i = keras.Input((20, 10, 1))
    x = L.ReLU()(_bn(L.Conv2D(16, (5, 3), strides=2, padding="same", name="conv0")(x), "bn0"))
    for k in range(2):
        x = L.ReLU()(_bn(L.DepthwiseConv2D(3, padding="same", name=f"dw{k}")(x), f"bnd{k}"))
        x = L.ReLU()(_bn(L.Conv2D(16, 1, name=f"pw{k}")(x), f"bnp{k}"))
    x = L.Dropout(0.2)(L.AveragePooling2D(2)(x))
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(i, L.Dense(4, activation="softmax")(x), name="dscnn")


def inception():
    x = i = keras.Input((10, 10, 4))
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="stem")(x)
    a = L.Conv2D(6, 1, activation="relu", name="b1")(x)
    b = L.Conv2D(4, 1, activation="relu", name="b2a")(x)
    b = L.Conv2D(5, 3, padding="same", activation="relu", name="b2b")(b)
    c = L.MaxPooling2D(3, strides=1, padding="same")(x)
    c = L.Conv2D(3, 1, activation="relu", name="b3")(c)
    x = L.Concatenate(name="cat")([a, b, c])
    x = L.Conv2D(8, 1, activation="relu", name="after")(x)
    x = L.ZeroPadding2D(1)(L.Cropping2D(1)(x))
    return keras.Model(i, L.Dense(3)(L.Flatten()(x)), name="inception")


def conv_flatten_dense():
    return keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            L.Conv2D(6, 3, activation="relu", name="conv1"),
            L.MaxPooling2D(),
            L.Conv2D(5, 3, padding="same", activation="tanh", name="conv2"),
            L.Flatten(),
            L.Dense(20, activation="sigmoid", name="fc1"),
            L.Dropout(0.1),
            L.Dense(4, name="fc2"),
        ],
        name="lenet",
    )


def conv1d():
    x = i = keras.Input((32, 3))
    x = L.Conv1D(8, 5, activation="relu", name="c1")(x)
    x = L.PReLU(name="prelu")(_bn(L.Conv1D(6, 3, padding="same", name="c2")(x), "bn"))
    x = L.MaxPooling1D(2)(x)
    x = L.Reshape((-1,))(x)
    return keras.Model(i, L.Dense(2, name="fc")(x), name="conv1d")


def nested_shared():
    """A nested block called twice (shared weights) and a transposed conv."""
    bi = keras.Input((6, 6, 8))
    block = keras.Model(
        bi, L.ReLU()(L.Conv2D(8, 3, padding="same", name="inner")(bi)), name="block"
    )
    x = i = keras.Input((6, 6, 2))
    x = L.Conv2D(8, 1, name="stem")(x)
    x = block(block(x))
    x = L.Conv2DTranspose(4, 2, strides=2, name="up")(x)
    x = L.GlobalMaxPooling2D()(L.Multiply()([x, x]))
    return keras.Model(i, L.Dense(2, name="fc")(x), name="nested")


TOPOLOGIES = [resnet, mobilenet, dscnn, inception, conv_flatten_dense, conv1d, nested_shared]


def _randomize_bn(model, seed):
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            _randomize_bn(layer, seed + 1)
        elif isinstance(layer, L.BatchNormalization):
            g, b, m, v = layer.get_weights()
            layer.set_weights(
                [
                    rng.normal(1, 0.3, g.shape),
                    rng.normal(0, 0.3, b.shape),
                    rng.normal(0, 0.3, m.shape),
                    rng.uniform(0.5, 2, v.shape),
                ]
            )


def _random_keep(graph, rng):
    keep = {}
    for g in graph.prunable_groups:
        n = g.channels
        keep[g.name] = np.sort(rng.choice(n, size=int(rng.integers(1, n)), replace=False))
    return keep


@pytest.mark.parametrize("build", TOPOLOGIES, ids=lambda f: f.__name__)
def test_shrink_equals_mask(build):
    keras.utils.set_random_seed(0)
    model = build()
    _randomize_bn(model, 0)
    graph = kp.graph.build(model)
    assert graph.prunable_groups, graph.table()
    rng = np.random.default_rng(1)
    keep = _random_keep(graph, rng)
    before = [w.copy() for w in model.get_weights()]
    small = kp.shrink(model, keep, graph=graph)
    reference, _ = surgery.masked(model, keep, graph=graph)
    x = rng.normal(size=(6, *model.input_shape[1:])).astype("float32")
    out_small, out_ref = np.asarray(small(x)), np.asarray(reference(x))
    np.testing.assert_allclose(out_small, out_ref, rtol=1e-4, atol=1e-5)
    assert not np.allclose(out_ref, np.asarray(model(x)), atol=1e-5)  # the mask mattered
    assert small.count_params() < model.count_params()
    for a, b in zip(before, model.get_weights(), strict=True):  # input untouched
        np.testing.assert_array_equal(a, b)
    # the shrunk model's MACs are what the graph predicted for the cut
    predicted = graph.macs(graph.element_keep(surgery.channel_masks(graph, keep)))
    assert kp.count_flops(small, print_fn=None).total == sum(predicted.values())
    assert type(small) is type(model)


def test_groups_follow_the_coupling():
    g = kp.graph.build(resnet())
    assert g.group("c2").producers == ["stem", "c2"]  # identity shortcut
    assert g.group("c4").producers == ["c4", "proj"] or g.group("c4").producers == [
        "proj",
        "c4",
    ]  # projection shortcut
    assert g.group("c1").producers == ["c1"]
    assert not g.group("out").prunable
    m = mobilenet()
    g = kp.graph.build(m)
    assert {"dw1", "bn_dw1"} <= set(g.group("stem").members)  # depthwise tied to its input
    assert g.group("pw1").producers == ["pw1", "project"]  # inverted residual
    assert g.group("expand").channels == 24


def test_flatten_dense_slices_strided_units():
    """Independent reference: zero the filter (and bias) of conv2 by hand."""
    keras.utils.set_random_seed(0)
    model = conv_flatten_dense()
    drop = [1, 3]
    small = kp.shrink(model, {"conv2": [c for c in range(5) if c not in drop]})
    ref = keras.models.clone_model(model)
    ref.set_weights(model.get_weights())
    conv = ref.get_layer("conv2")
    k, b = conv.get_weights()
    k[..., drop] = 0
    b[drop] = 0  # tanh(0) = 0: the removed channels output exactly zero
    conv.set_weights([k, b])
    x = np.random.default_rng(0).normal(size=(4, 8, 8, 1)).astype("float32")
    np.testing.assert_allclose(small(x), ref(x), rtol=1e-4, atol=1e-5)
    assert small.get_layer("fc1").kernel.shape == (3 * 3 * 3, 20)


def test_concat_offsets():
    model = inception()
    g = kp.graph.build(model)
    small = kp.shrink(model, {"b2b": [0, 4], "b3": [1]}, graph=g)
    assert small.get_layer("after").kernel.shape == (1, 1, 6 + 2 + 1, 8)
    after = model.get_layer("after").kernel.numpy()
    np.testing.assert_array_equal(
        small.get_layer("after").kernel.numpy(), after[:, :, [0, 1, 2, 3, 4, 5, 6, 10, 12], :]
    )


def test_unknown_layer_blocks_instead_of_guessing():
    x = i = keras.Input((8, 8, 2))
    x = L.Conv2D(4, 3, name="a")(x)
    x = L.LayerNormalization(name="ln")(x)
    x = L.Conv2D(4, 3, name="b")(x)
    g = kp.graph.build(keras.Model(i, L.Flatten()(x)))
    a = g.group("a")
    assert not a.prunable and "'ln' (LayerNormalization)" in a.reason
    with pytest.raises(ValueError, match="cannot be removed.*LayerNormalization"):
        kp.shrink(g.model, {"a": [0]}, graph=g)


def test_bad_keep_is_explained():
    model = resnet()
    with pytest.raises(ValueError, match="No channel group is produced by layer 'nope'"):
        kp.shrink(model, {"nope": [0]})
    with pytest.raises(ValueError, match="keeps no channel"):
        kp.shrink(model, {"c1": []})
    with pytest.raises(ValueError, match="outside the 8 channels"):
        kp.shrink(model, {"c1": [9]})
    with pytest.raises(ValueError, match="one channel group"):
        kp.shrink(model, {"stem": [0], "c2": [1]})


def test_count_flops_matches_hand_counts():
    report = kp.count_flops(conv_flatten_dense(), print_fn=None)
    by = {r.name: r.macs for r in report.rows}
    assert by["conv1"] == 6 * 6 * 9 * 1 * 6  # 6x6 outputs, 3x3x1 taps, 6 filters
    assert by["conv2"] == 3 * 3 * 9 * 6 * 5  # after 2x2 pooling: 3x3, 'same'
    assert by["fc1"] == 3 * 3 * 5 * 20 and by["fc2"] == 20 * 4
    assert report.total == sum(by.values())
    m = mobilenet()
    by = {r.name: r.macs for r in kp.count_flops(m, print_fn=None).rows}
    assert by["dw1"] == 6 * 6 * 9 * 16  # 8 channels x depth_multiplier 2
    assert by["sep"] == 4 * 4 * (9 * 12 * 2 + 24 * 10)  # depthwise + pointwise
    dense = kp.count_macs(m, print_fn=None)
    assert kp.count_flops(m, print_fn=None).total == dense.dense
