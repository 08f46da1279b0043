"""kp.targets CPU: what is measured (kept shapes, fused chains, folded BatchNorms), the
cache, the estimate against a whole-model measurement, and the argument errors. No test
asserts a speed: only structure, and a loose agreement between estimate and measure."""

import dataclasses
import math
import warnings

import keras
import numpy as np
import pytest

import keras_prune as kp
from keras_prune.targets.base import layer_views
from keras_prune.targets.cpu import CPU

L = keras.layers


def fast(**kw):
    return CPU(**{"batch": 4, "repeats": 3, "warmup": 1, **kw})


def _net():
    inp = keras.Input((12, 12, 3), name="img")
    x = L.Conv2D(8, 3, padding="same", use_bias=False, name="c1")(inp)
    x = L.BatchNormalization(name="bn1")(x)
    x = L.ReLU(name="r1")(x)
    y = L.Conv2D(8, 3, padding="same", name="c2")(x)
    x = L.ReLU(name="r2")(L.Add(name="add")([x, y]))
    x = L.Dropout(0.1, name="drop")(x)
    x = L.Flatten(name="flat")(L.MaxPooling2D(2, name="pool")(x))
    out = L.Dense(4, activation="softmax", name="fc")(x)
    return keras.Model(inp, out, name="net")


def _by_path(views):
    return {v.path: v for v in views}


def test_config_and_names():
    cpu = CPU(batch=8, repeats=5, warmup=2)
    assert cpu.name == "cpu" and cpu.metrics == ("latency_ms",)
    assert cpu.sparse_pays is False
    assert cpu.get_config() == {
        "batch": 8,
        "repeats": 5,
        "warmup": 2,
        "threads": None,
        "fold_bn": True,
    }
    assert CPU.from_config(cpu.get_config()).get_config() == cpu.get_config()
    assert repr(cpu).startswith("CPU(batch=8")


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"batch": 0}, "batch"),
        ({"batch": 2.5}, "batch"),
        ({"batch": True}, "batch"),
        ({"repeats": 0}, "repeats"),
        ({"warmup": -1}, "warmup"),
        ({"threads": 0}, "threads"),
        ({"fold_bn": "yes"}, "fold_bn"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=rf"CPU: {name} must be"):
        CPU(**kwargs)


def test_measure_rejects_non_models():
    with pytest.raises(ValueError, match="built Keras model"):
        fast().measure("model")


def test_half_width_layer_is_measured_at_its_kept_shape():
    model = _net()
    graph = kp.graph.build(model)
    group = next(g for g in graph.groups if "c1" in g.producers)
    mask = np.arange(group.channels) < group.channels // 2
    views = _by_path(layer_views(model, graph, graph.element_keep({group.name: mask})))
    cpu = fast()
    c1 = views["c1"]
    assert c1.out_shape == (12, 12, 4)
    cost = cpu.layer_costs(c1)["latency_ms"]
    assert math.isfinite(cost) and cost >= 0  # a difference of timings: ~0 under load
    (row,) = cpu.table()
    assert row["config"]["filters"] == 4 and row["out_shape"] == (12, 12, 4)
    # the BatchNorm is folded (so the conv gets a bias) and the ReLU is fused with it
    assert row["config"]["use_bias"] is True
    assert row["layers"] == ["Conv2D", "ReLU"]


def test_chains_folded_batchnorm_and_no_ops_cost_nothing_themselves():
    model = _net()
    cpu = fast()
    costs = {v.path: cpu.layer_costs(v)["latency_ms"] for v in layer_views(model)}
    for absorbed in ("bn1", "r1", "add", "r2", "drop", "flat"):
        assert costs[absorbed] == 0.0, absorbed
    for measured in ("c1", "c2", "pool", "fc"):  # timed: finite (tiny ones may read ~0)
        assert math.isfinite(costs[measured]) and costs[measured] >= 0, measured
    rows = {tuple(r["layers"]): r for r in cpu.table()}
    assert ("Conv2D", "Add", "ReLU") in rows  # c2 + the merge + its activation, one chain


def test_batchnorm_is_timed_when_not_folded():
    cpu = fast(fold_bn=False)
    views = _by_path(layer_views(_net()))
    assert cpu.layer_costs(views["bn1"])["latency_ms"] == 0.0  # timed with c1
    cpu.layer_costs(views["c1"])
    (row,) = cpu.table()
    assert row["layers"] == ["Conv2D", "BatchNormalization", "ReLU"]
    assert row["config"]["use_bias"] is False


def test_merge_of_model_inputs_is_timed_alone():
    a, b = keras.Input((6, 6, 4)), keras.Input((6, 6, 4))
    model = keras.Model([a, b], L.Add(name="sum")([a, b]))
    cpu = fast()
    (view,) = layer_views(model)
    assert cpu.layer_costs(view)["latency_ms"] >= 0.0
    (row,) = cpu.table()
    assert row["layers"] == ["Add"] and row["in_shapes"] == ((6, 6, 4), (6, 6, 4))
    assert cpu.measure(model) > 0


def test_cache_avoids_measuring_again_and_zeros_change_nothing():
    model = _net()
    cpu = fast()
    views = layer_views(model)
    first = cpu.estimate(views)["latency_ms"]
    n = cpu.measured
    assert n == 4  # c1 chain, c2 chain, pool, fc
    assert cpu.estimate(views)["latency_ms"] == first
    assert cpu.measured == n
    # pruned weights (zeros) do not change the cost: a dense CPU kernel multiplies them
    sparse = [
        v if v.rows is None else dataclasses.replace(v, rows=np.zeros_like(v.rows)) for v in views
    ]
    assert cpu.estimate(sparse)["latency_ms"] == first
    assert cpu.measured == n
    # a new width is a new measurement, once
    graph = kp.graph.build(model)
    group = next(g for g in graph.groups if "c1" in g.producers)
    keep = {group.name: np.arange(group.channels) < 6}
    cut = layer_views(model, graph, graph.element_keep(keep))
    cpu.estimate(cut)
    again = cpu.measured
    assert again > n
    cpu.estimate(cut)
    assert cpu.measured == again
    cpu.clear()
    assert cpu.table() == []


def test_estimate_uses_given_details():
    cpu = fast()
    views = layer_views(_net())
    details = [{"costs": {"latency_ms": 1.0}} for _ in views]
    est = cpu.estimate(views, details)["latency_ms"]
    assert est == pytest.approx(len(views) + cpu.call_overhead_ms())
    assert cpu.measured == 0


def test_layer_that_cannot_be_rebuilt_is_scaled_from_its_own_timing():
    class Scale(L.Layer):  # get_config lacks the constructor's argument
        def __init__(self, factor, **kw):
            super().__init__(**kw)
            self.factor = factor

        def call(self, x):
            return x * self.factor

        def get_config(self):
            return {"name": self.name}

    inp = keras.Input((8, 8, 2))
    model = keras.Model(inp, Scale(2.0, name="scale")(L.AveragePooling2D(2)(inp)))
    (_, view) = layer_views(model)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cost = fast().layer_costs(view)["latency_ms"]
    assert math.isfinite(cost) and cost >= 0.0
    assert any("could not time 'scale'" in str(w.message) for w in caught)


def test_estimate_tracks_the_measured_resnet8():
    model = kp.models.resnet8(input_shape=(32, 32, 1))
    cpu = CPU(batch=8, repeats=5, warmup=2)
    est = cpu.estimate(layer_views(model))["latency_ms"]
    measured = cpu.measure(model)
    assert math.isfinite(est) and est > 0 and measured > 0
    assert 0.3 < est / measured < 3.0, (est, measured)


def test_concatenation_is_timed_at_its_inputs_kept_shapes():
    inp = keras.Input((8, 8, 3))
    a = L.Conv2D(6, 1, name="a")(inp)
    b = L.Conv2D(4, 3, padding="same", name="b")(inp)
    x = L.Conv2D(5, 1, name="after")(L.Concatenate(name="cat")([a, b]))
    model = keras.Model(inp, L.GlobalAveragePooling2D()(x))
    graph = kp.graph.build(model)
    keep = {g.name: np.arange(g.channels) < g.channels // 2 for g in graph.groups if g.prunable}
    views = _by_path(layer_views(model, graph, graph.element_keep(keep)))
    real = _by_path(layer_views(kp.surgery.shrink(model, keep)))
    assert views["cat"].in_shapes == real["cat"].in_shapes == ((8, 8, 3), (8, 8, 2))
    cpu = fast()
    assert cpu.layer_costs(views["cat"])["latency_ms"] >= 0.0
    (row,) = cpu.table()
    assert row["layers"] == ["Concatenate"] and row["in_shapes"] == ((8, 8, 3), (8, 8, 2))
