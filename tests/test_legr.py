"""LeGR: ranking and cuts, evolution, checkpoint/resume, Pareto set, and the CLI job."""

import csv
import dataclasses
import json
import os
import pickle
import sys

import keras
import numpy as np
import pytest

import keras_prune as kp
from keras_prune import cli
from keras_prune.legr import Evolution, LeGR
from keras_prune.legr import job as legr_job

L = keras.layers


def small_cnn():
    x = i = keras.Input((8, 8, 1), name="img")
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="c1")(x)
    y = L.Conv2D(8, 3, padding="same", name="c2")(x)
    x = L.ReLU()(L.Add()([x, y]))
    x = L.Conv2D(12, 3, strides=2, padding="same", activation="relu", name="c3")(x)
    x = L.Flatten()(x)
    x = L.Dense(16, activation="relu", name="fc")(x)
    return keras.Model(i, L.Dense(3, activation="softmax", name="out")(x), name="small")


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(192, 8, 8, 1)).astype("float32")
    y = (x[:, :4].mean(axis=(1, 2, 3)) > 0).astype("int64") + (
        x[:, 4:, :4].mean(axis=(1, 2, 3)) > 0
    ).astype("int64")
    return x[:128], y[:128], x[128:], y[128:]


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(0)
    return small_cnn()


def test_identity_cut_is_global_l2_ranking(model):
    legr = LeGR(model)  # no data: prune right away
    r = legr.ranking
    assert [g.name for g in r.groups] == ["c1", "c3", "fc"]
    masks = legr.masks(0.5)
    assert r.macs(masks) <= 0.5 * r.total
    # the globally weakest channel goes first
    weakest = np.argmin(np.concatenate(r.norms))
    assert not np.concatenate(masks)[weakest]
    # the cut is maximal: no removed channel fits back under the target
    for gi, m in enumerate(masks):
        assert m.sum() >= r.min_keep[gi]
        for i in np.flatnonzero(~m):
            more = [x.copy() for x in masks]
            more[gi][i] = True
            assert r.macs(more) > 0.5 * r.total
    # c1 is coupled to c2 through the residual add: its norm sums both filters
    c1 = model.get_layer("c1").kernel.numpy()
    c2 = model.get_layer("c2").kernel.numpy()
    np.testing.assert_allclose(
        r.norms[0], (c1**2).sum(axis=(0, 1, 2)) + (c2**2).sum(axis=(0, 1, 2)), rtol=1e-6
    )
    small = legr.prune(0.5)
    flops = kp.count_flops(small, print_fn=None).total
    assert flops <= 0.5 * r.total
    assert small.get_layer("c2").filters == masks[0].sum()


def test_targets_are_checked(model):
    legr = LeGR(model, min_fraction=0.5, min_channels=2)
    with pytest.raises(ValueError, match=r"outside \(0, 1\)"):
        legr.prune(1.5)
    with pytest.raises(ValueError, match="minimum reachable is 0.2"):
        legr.prune(0.01)
    with pytest.raises(ValueError, match="needs data"):
        legr.learn(generations=2)


def test_bad_models_and_data(model, data):
    x, y, xv, yv = data
    plain = keras.Sequential([keras.Input((4,)), L.Dense(2, activation="softmax")])
    with pytest.raises(ValueError, match="no prunable channel groups"):
        LeGR(plain)
    with pytest.raises(ValueError, match="expects"):
        LeGR(model, train=(x[:, :4], y), val=(xv, yv))
    with pytest.raises(ValueError, match="outputs 3 classes"):
        LeGR(model, train=(x, y + 5), val=(xv, yv))


def test_evolution_rules():
    evo = Evolution(np.array([1.0, 2.0]), generations=10, population=3, sample=2, seed=0)
    a, k = evo.propose()
    np.testing.assert_array_equal(a, [1, 1])  # the identity comes first
    np.testing.assert_array_equal(k, [0, 0])
    evo.add(a, k, 5.0)
    for fitness in (4.0, 6.0, 7.0):
        evo.add(*evo.propose(), fitness)
    assert [m.born for m in evo.population] == [1, 2, 3]  # the oldest left, not the worst
    assert evo.best.fitness == 4.0
    assert evo.sigma_at(0) == 1.0 and evo.sigma_at(9) == pytest.approx(0.2)
    a, k = evo.propose()  # tournament child: one of two groups (10%, at least 1) mutated
    parent = evo.population[0]
    changed = (np.array(parent.alpha) != a) | (np.array(parent.kappa) != k)
    assert changed.sum() == 1
    # with the norms' means, generation 1 standardizes each group (near-uniform cuts)
    evo = Evolution(
        np.array([2.0, 0.0]), generations=5, population=3, sample=2, norm_mean=np.array([6.0, 1.0])
    )
    evo.add(*evo.propose(), 1.0)
    a, k = evo.propose()
    np.testing.assert_allclose(a, [0.5, 1.0])  # a group of equal norms keeps the identity
    np.testing.assert_allclose(k, [-3.0, 0.0])


def test_resume_continues_a_killed_run(model, data, tmp_path, monkeypatch):
    x, y, xv, yv = data
    settings = dict(generations=7, tau=2, population=3, sample=2, progress=False)

    full = LeGR(model, train=(x, y), val=(xv, yv), learn_at=0.4, seed=3)
    full.learn(**settings)

    ckpt = tmp_path / "state.json"
    killed = LeGR(model, train=(x, y), val=(xv, yv), learn_at=0.4, seed=3)
    real = LeGR.fitness
    calls = []

    def dies_at_fifth(self, *args):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real(self, *args)

    monkeypatch.setattr(LeGR, "fitness", dies_at_fifth)
    with pytest.raises(KeyboardInterrupt):
        killed.learn(checkpoint=ckpt, **settings)
    monkeypatch.setattr(LeGR, "fitness", real)
    assert json.loads(ckpt.read_text())["evolution"]["generation"] == 4

    resumed = LeGR(model, train=(x, y), val=(xv, yv), learn_at=0.4, seed=3)
    resumed.learn(checkpoint=ckpt, **settings)
    assert resumed.evolution.population == full.evolution.population
    assert resumed.evolution.history == full.evolution.history
    np.testing.assert_array_equal(resumed.alpha, full.alpha)

    other = LeGR(model, train=(x, y), val=(xv, yv), learn_at=0.4, seed=3)
    with pytest.raises(ValueError, match="different run.*tau"):
        other.learn(checkpoint=ckpt, **{**settings, "tau": 3})


def test_learn_at_several_targets_scores_the_mean_loss(model, data):
    x, y, xv, yv = data
    legr = LeGR(model, train=(x, y), val=(xv, yv), learn_at=[0.4, 0.7, 0.4], seed=1)
    assert legr.learn_at == (0.7, 0.4)
    legr.learn(generations=2, tau=2, population=2, sample=1, progress=False)
    alpha, kappa = legr.ranking.identity()  # generation 0 is the identity
    each = [legr.evaluate_cut(legr.ranking.cut(alpha, kappa, t), 2) for t in (0.7, 0.4)]
    assert each[0] != each[1]
    assert legr.evolution.history[0] == pytest.approx(np.mean(each))
    with pytest.raises(ValueError, match="non-empty"):
        LeGR(model, learn_at=[])
    with pytest.raises(ValueError, match="outside"):
        LeGR(model, learn_at=(0.5, 1.5))


@pytest.mark.slow  # the whole LeGR job and its CLI: about 6 s
def test_pareto_and_cli_job(model, data, tmp_path, capsys):
    x, y, xv, yv = data
    model_path = tmp_path / "m.h5"
    model.save(model_path)
    npz = tmp_path / "d.npz"
    np.savez(npz, x_train=x, y_train=y, x_val=xv, y_val=yv)
    out = tmp_path / "out"
    args = [
        "legr",
        str(model_path),
        "--data",
        str(npz),
        "--flops",
        "0.4",
        "--out",
        str(out),
        "--generations",
        "3",
        "--tau",
        "1",
        "--population",
        "2",
        "--sample",
        "1",
        "--finetune-epochs",
        "1",
    ]
    assert cli.main(args) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "legr_0p4.h5",
        "legr_0p4.keras",
        "legr_state.json",
        "pareto.png",
        "results.csv",
    ]
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert [(r["method"], r["target"]) for r in rows] == [
        ("original", "1"),
        ("learned", "0.4"),
        ("l2", "0.4"),
        ("uniform", "0.4"),
    ]
    for r in rows[1:]:
        assert float(r["macs_ratio"]) <= float(r["target"])
    assert float(rows[0]["val_acc_after_finetune"]) == float(rows[0]["val_acc_before_finetune"])
    small = kp.io.load(out / "legr_0p4.h5")
    assert kp.count_flops(small, print_fn=None).total == int(rows[1]["macs"])
    state = json.loads((out / "legr_state.json").read_text())
    assert state["evolution"]["generation"] == 3
    # bad input: clear error, no output directory
    bad = tmp_path / "bad"
    assert cli.main([*args[:5], "0.5,1.2", "--out", str(bad)]) == 2
    assert "outside (0, 1)" in capsys.readouterr().err and not bad.exists()
    assert cli.main([*args[:5], "0.001", "--out", str(bad)]) == 2
    assert "minimum reachable" in capsys.readouterr().err and not bad.exists()
    assert cli.main([*args[:6], "--out", str(bad), "--round-to", "0"]) == 2
    assert "round_to must be a positive integer" in capsys.readouterr().err
    assert not bad.exists()
    np.savez(npz, x_train=x, y_train=y + 3, x_val=xv, y_val=yv)
    assert cli.main([*args[:6], "--out", str(bad)]) == 2
    assert "classes" in capsys.readouterr().err and not bad.exists()
    assert cli.main(args) == 2  # exists, no --force
    assert "already exists" in capsys.readouterr().err
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    assert cli.main([*args[:6], "--out", str(blocker / "out")]) == 2
    assert "not writable" in capsys.readouterr().err


def test_inspect_cli(model, tmp_path, capsys):
    path = tmp_path / "m.keras"
    model.save(path)
    assert cli.main(["inspect", str(path)]) == 0
    text = capsys.readouterr().out
    assert "Channel groups of 'small'" in text and "c1, c2" in text
    assert f"{kp.count_flops(model, print_fn=None).total:,} MACs" in text


def test_round_to_keeps_channel_counts_in_multiples(model, data, tmp_path):
    x, y, xv, yv = data
    legr = LeGR(model)
    r = legr.ranking
    sizes = dict(zip([g.name for g in r.groups], r.sizes.tolist(), strict=True))
    assert sizes == {"c1": 8, "c3": 12, "fc": 16}
    for flops in (0.7, 0.5, 0.35):
        for method in ("l2", "uniform"):
            masks = legr.masks(flops, method, round_to=4)
            counts = [int(m.sum()) for m in masks]
            assert all(c % 4 == 0 for c in counts), (flops, method, counts)
            assert r.macs(masks) <= flops * r.total
        # the learned/l2 cut removes whole runs of a group's weakest channels
        masks = legr.masks(flops, "l2", round_to=4)
        for gi, m in enumerate(masks):
            order = np.argsort(r.norms[gi], kind="stable")
            assert not m[order[: (~m).sum()]].any()
    # round_to=1 is the channel-by-channel cut, and the constructor sets the default
    np.testing.assert_array_equal(
        np.concatenate(legr.masks(0.5, "l2", round_to=1)), np.concatenate(legr.masks(0.5, "l2"))
    )
    by4 = LeGR(model, learn_at=0.5, round_to=4)
    np.testing.assert_array_equal(
        np.concatenate(by4.masks(0.5, "l2")), np.concatenate(legr.masks(0.5, "l2", round_to=4))
    )
    small = by4.prune(0.4)
    assert all(small.get_layer(n).filters % 4 == 0 for n in ("c1", "c2", "c3"))
    assert small.get_layer("fc").units % 4 == 0
    # a rounded safeguard raises the floor (here 8 of c3's 12 channels, or all 12), and
    # the error says so
    assert r.min_flops(8) > r.min_flops(4) > r.min_flops(1)
    with pytest.raises(ValueError, match="round_to=8"):
        legr.prune(0.5, round_to=8)
    with pytest.raises(ValueError, match="learn_at=0.3 is unreachable"):
        LeGR(model, round_to=8)
    for bad in (0, -8, 2.5, True, "8"):
        with pytest.raises(ValueError, match="round_to must be a positive integer"):
            LeGR(model, round_to=bad)
    # learning records round_to in its checkpoint config
    learner = LeGR(model, train=(x, y), val=(xv, yv), learn_at=0.5, round_to=4)
    ckpt = tmp_path / "state.json"
    learner.learn(generations=2, tau=1, population=2, sample=2, progress=False, checkpoint=ckpt)
    assert learner.learned and json.loads(ckpt.read_text())["config"]["round_to"] == 4
    assert all(int(m.sum()) % 4 == 0 for m in learner.masks(0.5))


def test_batched_evolution_breeds_from_one_population():
    def run(k, fitness):
        evo = Evolution(np.array([1.0, 2.0]), generations=9, population=3, sample=2, seed=4)
        while not evo.done:
            batch = evo.propose_batch(k)
            assert len(batch) == min(k, 9 - evo.generation)
            for a, kap in batch:
                evo.add(a, kap, fitness(a, kap))
        return evo

    def score(a, k):
        return float(np.sum(np.abs(a - 1.5)) + np.sum(np.abs(k)))

    one = Evolution(np.array([1.0, 2.0]), generations=9, population=3, sample=2, seed=4)
    while not one.done:  # the one-at-a-time loop
        a, k = one.propose()
        one.add(a, k, score(a, k))
    assert run(1, score).population == one.population  # K=1 draws exactly the same
    four = run(4, score)
    assert four.generation == 9 and four.population != one.population
    assert run(4, score).population == four.population  # and K=4 is deterministic
    with pytest.raises(ValueError, match="batch must be >= 1"):
        one.propose_batch(0)


def test_learn_in_batches_and_on_other_processes(model, data):
    x, y, xv, yv = data
    settings = dict(generations=5, tau=2, population=3, sample=2, progress=False)
    legr = LeGR(model, train=(x, y), val=(xv, yv), learn_at=0.4, seed=3)
    # K=1 is the one-at-a-time algorithm: propose, score, add
    evo = Evolution(
        np.array([float(np.std(n)) for n in legr.ranking.norms]),
        5,
        3,
        2,
        seed=3,
        norm_mean=np.array([float(np.mean(n)) for n in legr.ranking.norms]),
    )
    while not evo.done:
        a, k = evo.propose()
        evo.add(a, k, legr.fitness(a, k, 2))
    legr.learn(batch=1, **settings)
    assert legr.evolution.population == evo.population
    assert legr.worker_pids == [os.getpid()]

    # a process rebuilt from the spec scores every candidate exactly as this one
    spec = legr.to_spec()
    other = LeGR.from_spec(pickle.loads(pickle.dumps(spec)))
    for m in legr.evolution.population:
        assert other.fitness(np.array(m.alpha), np.array(m.kappa), 2) == m.fitness

    class Recorder:  # any object with evaluate() and close() is an executor
        name, num_workers, seen = "recorder", 3, []

        def evaluate(self, candidates, tau):
            self.seen.append(len(candidates))
            return [(other.fitness(a, k, tau), 1000 + i) for i, (a, k) in enumerate(candidates)]

        def close(self):
            raise AssertionError("a caller's executor is the caller's to close")

    batched = LeGR(model, train=(x, y), val=(xv, yv), learn_at=0.4, seed=3)
    batched.learn(batch=2, executor=Recorder(), **settings)
    assert Recorder.seen == [2, 2, 1] and batched.worker_pids == [1000, 1001]
    serial = LeGR(model, train=(x, y), val=(xv, yv), learn_at=0.4, seed=3)
    serial.learn(batch=2, **settings)
    assert serial.evolution.population == batched.evolution.population

    with pytest.raises(ValueError, match="batch must be a positive integer"):
        legr.learn(batch=0, **settings)
    with pytest.raises(ValueError, match="needs executor='ray'"):
        legr.learn(num_workers=2, **settings)
    with pytest.raises(ValueError, match="executor must be one of"):
        legr.learn(executor="dask", **settings)
    odd = LeGR(model, train=(x, y), val=(xv, yv), learn_at=0.4, loss=lambda t, p: p[:, 0])
    with pytest.raises(ValueError, match="cannot ship its loss"):
        odd.to_spec()  # checked before any cluster starts


def test_ray_missing_says_how_to_install(model, data, monkeypatch):
    x, y, xv, yv = data
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    legr = LeGR(model, train=(x, y), val=(xv, yv), learn_at=0.4)
    with pytest.raises(ImportError, match=r"keras-prune\[distributed\]"):
        legr.learn(generations=2, tau=1, executor="ray", progress=False)
    assert not legr.learned


@pytest.mark.slow  # starts a local Ray cluster with two TensorFlow workers: about 25 s
def test_ray_workers_resume_a_serial_run_to_the_same_result(model, data, tmp_path, capsys):
    pytest.importorskip("ray")
    x, y, xv, yv = data
    model_path, npz, out = tmp_path / "m.keras", tmp_path / "d.npz", tmp_path / "out"
    model.save(model_path)
    np.savez(npz, x_train=x, y_train=y, x_val=xv, y_val=yv)
    settings = dict(generations=6, tau=2, population=3, sample=2, progress=False, batch=2)
    full = LeGR(model, train=(x, y), val=(xv, yv), learn_at=[0.4], seed=3)  # as the CLI has it
    full.learn(**settings)

    # a serial run killed in its second batch leaves a checkpoint after the first ...
    ckpt = legr_job.checkpoint_path(out)
    killed = LeGR(model, train=(x, y), val=(xv, yv), learn_at=[0.4], seed=3)  # as the CLI has it
    real, calls = LeGR.fitness, []

    def dies_at_third(self, *args):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self, *args)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(LeGR, "fitness", dies_at_third)
        with pytest.raises(KeyboardInterrupt):
            killed.learn(checkpoint=ckpt, **settings)
    assert json.loads(ckpt.read_text())["evolution"]["generation"] == 2

    # ... which two Ray workers, started by the CLI, finish
    args = ["legr", str(model_path), "--data", str(npz), "--flops", "0.4", "--out", str(out)]
    args += ["--generations", "6", "--tau", "2", "--population", "3", "--sample", "2"]
    args += ["--seed", "3", "--finetune-epochs", "0", "--resume"]
    assert cli.main([*args, "--worker-threads", "1"]) == 2  # threads of which workers?
    assert "add --executor ray" in capsys.readouterr().err and not out.exists()
    assert cli.main([*args, "--executor", "ray", "--workers", "2", "--batch", "2"]) == 0
    assert "on 2 worker processes" in capsys.readouterr().out
    saved = json.loads((out / "legr_state.json").read_text())
    assert len(saved["worker_pids"]) == 2 and os.getpid() not in saved["worker_pids"]
    state = saved["evolution"]
    assert state["population"] == [dataclasses.asdict(m) for m in full.evolution.population]
    assert state["history"] == full.evolution.history
    assert state["best"]["alpha"] == full.alpha.tolist()
    assert state["best"]["kappa"] == full.kappa.tolist()

    # a local cluster never grows: more workers than its CPUs is an error, not a hang
    with pytest.raises(ValueError, match=r"need 1000 CPUs; the cluster has \d+\. Ask for at most"):
        full.learn(**{**settings, "executor": "ray", "num_workers": 1000})


def test_ray_executor_settings_are_checked_before_any_cluster(model, data):
    pytest.importorskip("ray")
    from keras_prune.legr.executors import RayExecutor

    x, y, xv, yv = data
    legr = LeGR(model, train=(x, y), val=(xv, yv), learn_at=0.4)
    with pytest.raises(ValueError, match="threads must be >= 1"):
        RayExecutor(legr, threads=0)
    with pytest.raises(ValueError, match="cpus_per_worker must be >= 1"):
        RayExecutor(legr, cpus_per_worker=0)
    with pytest.raises(ValueError, match="needs data"):
        RayExecutor(LeGR(model), num_workers=1)  # to_spec refuses before ray.init
