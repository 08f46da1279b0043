"""kp.lottery: iterative magnitude pruning with rewinding. Mask rules (exact counts, no
regrowth, each round from the survivors), rewinding, resume, the random re-init control,
the CLI and the errors, on a small MLP."""

import json

import keras
import numpy as np
import pytest

import keras_prune as kp
from keras_prune import cli
from keras_prune.lottery import IMP


def _mlp(name="mlp"):
    return keras.Sequential(
        [
            keras.Input((16,)),
            keras.layers.Dense(32, activation="relu", name="fc1"),
            keras.layers.Dense(4, activation="softmax", name="fc2"),
        ],
        name=name,
    )


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.random((240, 16)).astype("float32")
    y = (x[:, 0] > 0.5).astype("int64") + 2 * (x[:, 1] > 0.5)
    return (x[:200], y[:200]), (x[200:], y[200:])


def _search(data, **kwargs):
    train, val = data
    settings = dict(rounds=3, epochs=2, batch_size=50, progress=False)
    keras.utils.set_random_seed(1)  # the same initial weights for every search
    return IMP(_mlp(), train, val, **{**settings, **kwargs})


def test_masks_exact_counts_no_regrowth_from_survivors(data):
    search = _search(data, layer_rates={"fc2": 0.1})
    search.train_dense()
    previous = search.masks()
    for r in (1, 2, 3):
        kernels = {n: w.kernels[0].numpy().copy() for n, w in search.wrappers.items()}
        search.prune_round(r)
        masks = search.masks()
        for name, (mask,) in masks.items():
            (before,) = previous[name]
            rate = 0.1 if name == "fc2" else 0.2
            assert int(mask.size - mask.sum()) == round((1 - (1 - rate) ** r) * mask.size)
            assert not np.any(mask > before)  # no regrowth
            # the newly pruned are the smallest |w| among the survivors
            alive = np.abs(kernels[name][before > 0])
            gone = np.abs(kernels[name][(before > 0) & (mask == 0)])
            kept = np.abs(kernels[name][mask > 0])
            assert gone.size and gone.max() <= kept.min()
            assert np.isin(gone, alive).all()
        search.rewind()
        search.train(r)
        previous = masks
    assert [h["round"] for h in search.history] == [0, 1, 2, 3]
    assert search.history[-1]["remaining"] == pytest.approx(search.remaining())


def test_rewinding_restores_the_survivors_early_values(data):
    model = _mlp()
    initial = [w.copy() for w in model.get_weights()]
    train, val = data
    search = IMP(model, train, val, rounds=1, epochs=2, rewind_epoch=0, progress=False)
    search.train_dense()
    search.prune_round(1)
    search.rewind()
    plain = kp.strip(search.model)
    for got, start in zip(plain.get_weights(), initial, strict=True):
        nonzero = got != 0
        np.testing.assert_array_equal(got[nonzero], start[nonzero])
    # the user's model is never touched
    for now, start in zip(model.get_weights(), initial, strict=True):
        np.testing.assert_array_equal(now, start)
    mask = search.masks()["fc1"][0]
    assert np.all(plain.get_layer("fc1").kernel.numpy()[mask == 0] == 0)

    # rewinding to epoch 1: the survivors take the weights after exactly one epoch
    later = _search(data, rounds=1, rewind_epoch=1, early_stopping=False)
    later.train_dense()
    trained = [v.numpy().copy() for v in later.rewound]
    assert all(
        not np.array_equal(a, b)
        for a, b in zip(later.rewind_values, trained, strict=True)
        if a.ndim == 2
    )
    later.prune_round(1)
    later.rewind()
    for v, value in zip(later.rewound, later.rewind_values, strict=True):
        got = v.numpy()
        np.testing.assert_array_equal(got[got != 0], value[got != 0])


@pytest.mark.slow  # three IMP runs: about 10 s
def test_resume_gives_the_same_masks_and_history(data, tmp_path, monkeypatch):
    straight = _search(data, rounds=2).run()
    real_train = IMP.train

    def dies_at_two(self, round_):
        if round_ == 2:
            raise KeyboardInterrupt
        real_train(self, round_)

    monkeypatch.setattr(IMP, "train", dies_at_two)
    with pytest.raises(KeyboardInterrupt):
        _search(data, rounds=2, checkpoint=tmp_path / "ckpt").run()
    monkeypatch.setattr(IMP, "train", real_train)
    saved = json.loads((tmp_path / "ckpt" / "state.json").read_text())
    assert [h["round"] for h in saved["history"]] == [0, 1]
    resumed = _search(data, rounds=2, checkpoint=tmp_path / "ckpt").run()
    for name, masks in straight.mask.items():
        np.testing.assert_array_equal(resumed.mask[name][0], masks[0])
    assert resumed.history == straight.history
    with pytest.raises(ValueError, match="other settings"):
        _search(data, rounds=2, rate=0.3, checkpoint=tmp_path / "ckpt").run()


@pytest.mark.slow  # IMP and its re-init control: about 7 s
def test_simd_groups_ticket_keeps_whole_groups_and_random_reinit(data, tmp_path):
    result = _search(data, rounds=2, granularity=kp.granularity.SIMDGroups(4)).run()
    rows = kp.summary(result.ticket, granularity=kp.granularity.SIMDGroups(4), print_fn=None)
    assert all(r.pattern_ok for r in rows)
    assert result.remaining == pytest.approx(result.history[-1]["remaining"])
    assert 0.6 < result.remaining < 0.7
    control = result.random_reinit()
    assert control.round == 2 and 0 <= control.val_accuracy <= 1
    kernel = control.model.get_layer("fc1").kernel.numpy()
    np.testing.assert_array_equal(kernel != 0, result.mask["fc1"][0] > 0)
    assert result.history[-1]["random_reinit_accuracy"] == control.val_accuracy
    png = result.plot(tmp_path / "lottery.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_errors(data):
    train, val = data
    for rate in (0, 1, 1.5, -0.2, True):
        with pytest.raises(ValueError, match="rate must be a fraction in"):
            IMP(_mlp(), train, val, rounds=2, rate=rate)
    with pytest.raises(ValueError, match="rounds must be an integer >= 1"):
        IMP(_mlp(), train, val, rounds=0)
    with pytest.raises(ValueError, match="past training"):
        IMP(_mlp(), train, val, rounds=1, epochs=2, rewind_epoch=3)
    with pytest.raises(ValueError, match="past training"):
        IMP(_mlp(), train, val, rounds=1, epochs=1, rewind_step=10_000)
    with pytest.raises(ValueError, match=r"layer_rates names \['nope'\]"):
        IMP(_mlp(), train, val, rounds=1, layer_rates={"nope": 0.1})
    with pytest.raises(ValueError, match="N/M"):
        IMP(_mlp(), train, val, rounds=1, granularity=kp.granularity.NofM(2, 4))
    with pytest.raises(ValueError, match="expects"):
        IMP(_mlp(), (train[0][:, :8], train[1]), val, rounds=1)
    with pytest.raises(RuntimeError, match="no rewind point yet"):
        IMP(_mlp(), train, val, rounds=1).rewind()


@pytest.mark.slow  # a whole lottery job and its control: about 7 s
def test_cli_lottery(data, tmp_path, capsys):
    (x, y), (xv, yv) = data
    model = tmp_path / "mlp.keras"
    kp.io.save(_mlp(), model)
    npz = tmp_path / "d.npz"
    np.savez(npz, x_train=x, y_train=y, x_val=xv, y_val=yv)
    out = tmp_path / "out"
    args = [
        "lottery",
        str(model),
        "--data",
        str(npz),
        "--out",
        str(out),
        "--rounds",
        "2",
        "--epochs",
        "1",
        "--granularity",
        "simd4",
        "--layer-rate",
        "fc2=0.1",
    ]
    assert cli.main(args) == 0
    assert "lottery ticket of 'mlp'" in capsys.readouterr().out
    for name in ("dense.keras", "ticket.keras", "history.json", "lottery.png"):
        assert (out / name).stat().st_size > 0
    history = json.loads((out / "history.json").read_text())
    assert [h["round"] for h in history] == [0, 1, 2]
    assert "random_reinit_accuracy" in history[-1]
    assert not list(tmp_path.glob(".out.lottery-checkpoint*"))  # removed once done
    assert cli.main(args) == 2  # exists, no --force
    assert "already exists" in capsys.readouterr().err
    bad = [*args[:5], str(tmp_path / "bad"), "--rounds", "2", "--layer-rate", "fc2"]
    assert cli.main(bad) == 2
    assert "NAME=RATE" in capsys.readouterr().err and not (tmp_path / "bad").exists()
