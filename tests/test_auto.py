"""kp.auto.prune_to_budget and kp.targets: the Cortex-M4 estimate against the C export, the
allocation honouring every budget, recovery never worse than the cut, resume, the CLI and
the errors, on a small conv net."""

import json

import keras
import numpy as np
import pytest

import keras_prune as kp
from keras_prune import cli
from keras_prune.auto import plan as planning
from keras_prune.auto import recover as recovery
from keras_prune.targets import CortexM4, MACs, layer_views


def _net(name="net"):
    L = keras.layers
    inp = keras.Input((12, 12, 1))
    h = L.Conv2D(8, 3, padding="same", name="c1")(inp)
    h = L.BatchNormalization(name="bn1")(h)
    h = L.ReLU(name="r1")(h)
    h = L.Conv2D(16, 3, padding="same", name="c2")(h)
    h = L.ReLU(name="r2")(h)
    s = L.Conv2D(16, 1, name="skip")(inp)
    h = L.Add(name="add")([h, s])
    h = L.MaxPooling2D(2, name="pool")(h)
    h = L.Conv2D(24, 3, strides=2, padding="same", activation="relu", name="c3")(h)
    h = L.GlobalAveragePooling2D(name="gap")(h)
    out = L.Dense(4, activation="softmax", name="fc")(h)
    return keras.Model(inp, out, name=name)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    n = 360
    y = rng.integers(0, 4, n)
    x = rng.normal(0, 0.3, (n, 12, 12, 1)).astype("float32")
    for i, c in enumerate(y):  # each class lights one quadrant
        r, q = divmod(int(c), 2)
        x[i, 6 * r : 6 * r + 6, 6 * q : 6 * q + 6, 0] += 1.0
    return (x[:240], y[:240]), (x[240:], y[240:])


@pytest.fixture(scope="module")
def trained(data):
    keras.utils.set_random_seed(0)
    m = _net()
    m.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    m.fit(*data[0], epochs=4, batch_size=32, verbose=0)
    return m


def _run(model, data, **kw):
    settings = dict(
        latency_ms="50%", epochs=2, trial_epochs=0, progress=False, print_fn=None, int8=False
    )
    return kp.auto.prune_to_budget(model, data[0], data[1], **{**settings, **kw})


def test_cortex_m4_estimate_matches_the_c_export(trained, data, tmp_path):
    space = planning.Space(trained, kp.graph.build(trained), CortexM4())
    state = list(space.zero_state())
    for i, k in enumerate(space.knobs):  # cut channels and groups everywhere
        state[i] = min(3, len(k.levels) - 1) if k.kind == "channels" else 4
    keep, sp = space.keep(tuple(state)), space.sparsities(tuple(state))
    assert keep and sp
    views, details = space.details_of(keep, sp)
    small = recovery.with_group_zeros(kp.shrink(trained, keep), sp)
    report = kp.export.cmsis(
        small,
        tmp_path / "c",
        data[0][0][:100],
        verify_m4=False,
        samples=4,
        print_fn=None,
        progress=False,
    )
    manifest = report.manifest
    kernels = [la for la in manifest["layers"] if la.get("sparse")]
    mine = {v.path: d for v, d in zip(views, details, strict=True) if v.rows is not None}
    assert len(kernels) == len(mine)
    for la in kernels:
        name = next(n for n in la["keras_layers"] if n in mine)
        choice, d = la["sparse"], mine[name]
        assert choice["kernel"] == d["kernel"], name
        est = choice["est_sparse_cycles"] if d["kernel"] == "sparse" else choice["est_dense_cycles"]
        assert abs(d["kernel_cycles"] - est) <= 0.01 * est, name
    estimate = CortexM4().estimate(layer_views(small))
    const = sum(la["const_bytes"] for la in manifest["layers"])
    assert estimate["flash_kb"] * 1024 == pytest.approx(const, rel=0.02)
    assert estimate["ram_kb"] * 1024 >= report.arena_bytes * 0.9
    assert estimate["ram_kb"] * 1024 <= report.arena_bytes * 1.25


def test_allocation_meets_each_budget_and_tighter_costs_more_loss(trained, data):
    space = planning.Space(trained, kp.graph.build(trained), CortexM4())
    loss = {"calls": 0}

    def fake_loss(model):  # deterministic stand-in: loss grows with what is removed
        loss["calls"] += 1
        w = sum(float(np.sum(np.abs(v))) for v in model.get_weights())
        return 1e3 / (w + 1.0)

    space.scan(fake_loss)
    assert loss["calls"] == 1 + space.scan_size()
    dense = space.estimate(space.zero_state())
    plans = []
    for frac in (0.7, 0.5, 0.3):
        budget = {"latency_ms": frac * dense["latency_ms"], "ram_kb": dense["ram_kb"]}
        p = planning.allocate(space, budget)
        assert all(p.estimate[m] <= b for m, b in budget.items())
        plans.append(p)
    assert plans[0].loss <= plans[1].loss <= plans[2].loss
    again = planning.allocate(space, {"latency_ms": 0.5 * dense["latency_ms"]})
    assert again.state == planning.allocate(space, {"latency_ms": 0.5 * dense["latency_ms"]}).state
    u = planning.uniform(space, {"latency_ms": 0.5 * dense["latency_ms"]})
    assert u.met and u.estimate["latency_ms"] <= 0.5 * dense["latency_ms"]
    assert len(set(u.sparsity.values())) <= 1  # the same everywhere
    fractions = {round(m.mean(), 1) for m in u.keep.values()}
    assert len(fractions) <= 1
    flash = planning.allocate(space, {"flash_kb": 0.6 * dense["flash_kb"]})
    assert flash.estimate["flash_kb"] <= 0.6 * dense["flash_kb"]


def test_sparsity_that_does_not_pay_is_never_bought(trained):
    space = planning.Space(trained, kp.graph.build(trained), CortexM4())
    for k in space.knobs:  # sparsity is free, channels are costly: take what pays
        k.loss = (
            [0.0] * len(k.levels) if k.kind == "sparsity" else [0.0] + [9.0] * (len(k.levels) - 1)
        )
    dense = space.estimate(space.zero_state())
    p = planning.allocate(space, {"latency_ms": 0.9 * dense["latency_ms"]})
    views, details = space.details_of(p.keep, p.sparsity)
    kernel = {
        v.path: d["kernel"] for v, d in zip(views, details, strict=True) if v.rows is not None
    }
    assert p.sparsity and all(kernel[name] == "sparse" for name in p.sparsity)


def test_macs_target_counts_what_a_kernel_skips(trained):
    views = layer_views(trained)
    dense = MACs().estimate(views)["macs"]
    assert dense == sum(v.macs for v in views) > 0
    space = planning.Space(trained, kp.graph.build(trained), MACs())
    sparse = space.estimate_of({}, {"c2": 0.5})
    assert sparse["macs"] < dense
    assert (
        planning.Space(trained, kp.graph.build(trained), MACs(skip_zeros=False)).estimate_of(
            {}, {"c2": 0.5}
        )["macs"]
        == dense
    )


def test_cpu_target_cuts_channels_in_its_simd_width_and_never_sparsifies(trained, data):
    cpu = kp.targets.CPU(batch=32, repeats=3, warmup=1)
    r = _run(trained, data, target=cpu, latency_ms="97%", epochs=0)
    assert r.estimate["latency_ms"] <= r.budget["latency_ms"]
    assert all(p.group_sparsity == 0 for p in r.plan)
    cut = [p for p in r.plan if p.channels < p.channels_original]
    assert cut and all(p.channels % 8 == 0 or p.channels < 8 for p in cut)
    with pytest.raises(kp.auto.BudgetError, match="estimates only"):
        _run(trained, data, target=cpu, flash_kb="50%", latency_ms=None)


def test_prune_to_budget_meets_the_budget_and_never_hands_back_worse(trained, data):
    before = [w.copy() for w in trained.get_weights()]
    r = _run(trained, data, latency_ms="40%", trial_epochs=1)
    for a, b in zip(before, trained.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)  # the input model is untouched
    assert r.estimate["latency_ms"] <= r.budget["latency_ms"]
    again = CortexM4().estimate(layer_views(r.model))
    assert again["latency_ms"] == pytest.approx(r.estimate["latency_ms"])
    assert r.budget["latency_ms"] == pytest.approx(0.4 * r.original["latency_ms"])
    assert set(r.accuracy) == {"original", "cut", "recovered", "final"}
    assert r.accuracy["recovered"] >= r.accuracy["cut"]
    assert len(r.history) == 2 and r.plan
    assert any(p.channels < p.channels_original or p.group_sparsity for p in r.plan)
    assert "latency_ms" in r.report(print_fn=None)
    doc = r.to_json()
    assert json.loads(json.dumps(doc))["budget"]["latency_ms"] == r.budget["latency_ms"]
    # plans tried with a short fine-tune; the best on validation was recovered
    assert "uniform" in r.trials and "greedy" in r.trials and len(r.trials) >= 2
    assert all(0 <= a <= 1 for a in r.trials.values())
    assert doc["trials"] == r.trials


def test_recovery_keeps_the_cut_when_fine_tuning_only_hurts(trained, data, monkeypatch):
    real = recovery.accuracy
    calls = {"n": 0}

    def cut_is_best(model, x, y, reference=None):
        calls["n"] += 1
        return real(model, x, y, reference) if calls["n"] <= 2 else 0.0

    monkeypatch.setattr(recovery, "accuracy", cut_is_best)
    monkeypatch.setattr(kp.auto.budget, "accuracy", cut_is_best)
    r = _run(trained, data)
    assert r.accuracy["recovered"] == r.accuracy["cut"] > 0


def test_int8_accuracy_and_distillation_without_labels(trained, data):
    (x, _), (xv, _) = data
    seen = []

    def augment(batch):  # any fn(x) -> x; traced into the input pipeline
        seen.append(tuple(batch.shape[1:]))
        return batch + 0.01

    r = kp.auto.prune_to_budget(
        trained,
        x,
        xv,
        latency_ms="60%",
        epochs=1,
        augment=augment,
        progress=False,
        print_fn=None,
    )
    assert seen and seen[0] == (12, 12, 1)
    assert 0 <= r.accuracy["int8"] <= 1 and r.accuracy["original"] == 1.0  # agreement
    with pytest.raises(ValueError, match="distill=False"):
        kp.auto.prune_to_budget(trained, x, xv, latency_ms="60%", distill=False)


def test_resume_after_a_kill_gives_the_same_model(trained, data, tmp_path, monkeypatch):
    straight = _run(trained, data, epochs=2, seed=3)
    real_save = recovery._save

    def dies_after_one(path, epoch, *args):
        real_save(path, epoch, *args)
        if epoch == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(recovery, "_save", dies_after_one)
    with pytest.raises(KeyboardInterrupt):
        _run(trained, data, epochs=2, seed=3, checkpoint=tmp_path / "ck")
    monkeypatch.setattr(recovery, "_save", real_save)
    assert (tmp_path / "ck" / "scan.json").exists()
    with pytest.raises(ValueError, match="other settings"):
        _run(trained, data, epochs=3, seed=3, checkpoint=tmp_path / "ck")
    resumed = _run(trained, data, epochs=2, seed=3, checkpoint=tmp_path / "ck")
    assert resumed.history == straight.history
    for a, b in zip(straight.model.get_weights(), resumed.model.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)
    assert not (tmp_path / "ck").exists()  # removed once done


def test_errors_come_before_any_work(trained, data):
    with pytest.raises(kp.auto.BudgetError, match="smallest reachable"):
        _run(trained, data, latency_ms=1e-4)
    with pytest.raises(kp.auto.BudgetError, match="at least one budget"):
        _run(trained, data, latency_ms=None)
    with pytest.raises(kp.auto.BudgetError, match="estimates only"):
        _run(trained, data, macs="50%")
    with pytest.raises(kp.auto.BudgetError, match="percentage"):
        _run(trained, data, latency_ms="50")
    with pytest.raises(TypeError, match="kp.targets"):
        _run(trained, data, target="cortex-m4")
    (x, y), val = data
    with pytest.raises(ValueError, match=r"expects \(batch, 12, 12, 1\)"):
        _run(trained, ((x[:, :10], y), val))
    tiny = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    with pytest.raises(ValueError, match="nothing prunable"):
        kp.auto.prune_to_budget(tiny, np.zeros((8, 4)), np.zeros((8, 4)), latency_ms="50%")
    with pytest.raises(ValueError, match="clock_mhz"):
        CortexM4(clock_mhz=0)


def test_cli_prune(trained, data, tmp_path, capsys):
    (x, y), (xv, yv) = data
    model = tmp_path / "net.keras"
    kp.io.save(trained, model)
    npz = tmp_path / "d.npz"
    np.savez(npz, x_train=x, y_train=y, x_val=xv, y_val=yv)
    out = tmp_path / "out"
    args = [
        "prune",
        str(model),
        "--data",
        str(npz),
        "--out",
        str(out),
        "--latency-ms",
        "50%",
        "--epochs",
        "1",
        "--export",
        "tflm",
    ]
    assert cli.main(args) == 0
    assert "pruned 'net'" in capsys.readouterr().out
    for name in ("model.keras", "plan.json", "plan.png", "tflm/model.tflite"):
        assert (out / name).stat().st_size > 0
    plan = json.loads((out / "plan.json").read_text())
    assert plan["estimate"]["latency_ms"] <= plan["budget"]["latency_ms"]
    assert not list(tmp_path.glob(".out.prune-checkpoint*"))
    bad = tmp_path / "bad"
    for extra, message in (
        (["--latency-ms", "0.00001"], "smallest reachable"),
        (["--target", "gpu"], "--target"),
        (["--flash-kb", "10", "--target", "macs"], "estimates only"),
        (["--latency-ms", "fast"], "--latency-ms"),
    ):
        argv = ["prune", str(model), "--data", str(npz), "--out", str(bad), "--epochs", "1", *extra]
        assert cli.main(argv) == 2
        assert message in capsys.readouterr().err
        assert not bad.exists()


def test_batchnorm_statistics_are_measured_again_after_a_cut(trained, data):
    (x, _), _ = data
    before = trained.get_layer("bn1").moving_mean.numpy().copy()
    model = recovery.with_group_zeros(trained, {"c1": 0.75})
    bn = model.get_layer("bn1")
    stale = bn.moving_mean.numpy().copy()
    recovery.recalibrate_batchnorm(model, x[:128])
    inputs = keras.Model(model.inputs[0], model.get_layer("c1").output)(x[:128]).numpy()
    np.testing.assert_allclose(bn.moving_mean.numpy(), inputs.mean(axis=(0, 1, 2)), atol=1e-4)
    assert not np.allclose(stale, bn.moving_mean.numpy())
    assert bn.momentum == trained.get_layer("bn1").momentum  # restored after the pass
    np.testing.assert_array_equal(before, trained.get_layer("bn1").moving_mean.numpy())
