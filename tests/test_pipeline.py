"""The export pipeline's shared steps: a bad destination fails first, in plain words, and
nothing is converted or written."""

import sys

import keras
import numpy as np
import pytest

import keras_prune as kp
from keras_prune import cli
from keras_prune.export import pipeline


def _mlp():
    return keras.Sequential(
        [keras.Input((8,)), keras.layers.Dense(4, activation="relu"), keras.layers.Dense(3)]
    )


@pytest.fixture
def no_conversion(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the destination must be checked before the int8 conversion")

    monkeypatch.setattr(pipeline, "convert", refuse)


@pytest.mark.skipif(sys.platform != "linux", reason="/proc is Linux's")
@pytest.mark.parametrize("export", ["tflm", "cmsis", "saved_model"])
def test_unwritable_destination_fails_before_any_work(export, no_conversion):
    x = np.zeros((4, 8), np.float32)
    with pytest.raises(PermissionError, match=r"Cannot write the output directory '/proc/kp_out"):
        if export == "saved_model":
            kp.export.saved_model(_mlp(), "/proc/kp_out", print_fn=None)
        else:
            getattr(kp.export, export)(_mlp(), "/proc/kp_out", x, print_fn=None)


def test_destination_under_a_file_is_refused(tmp_path, no_conversion):
    blocker = tmp_path / "a_file"
    blocker.write_text("keep me")
    with pytest.raises(NotADirectoryError, match="is a file"):
        kp.export.tflm(_mlp(), blocker / "out", np.zeros((4, 8), np.float32), print_fn=None)
    assert blocker.read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


@pytest.mark.skipif(sys.platform != "linux", reason="/proc is Linux's")
def test_cli_names_the_unwritable_out(tmp_path, capsys):
    model = tmp_path / "m.keras"
    kp.io.save(_mlp(), model)
    data = tmp_path / "d.npz"
    np.savez(data, x_train=np.zeros((4, 8), np.float32))
    for target in ("tflm", "cmsis"):
        args = ["export", target, str(model), "--data", str(data), "--out", "/proc/kp_out"]
        assert cli.main(args) == 2
        err = capsys.readouterr().err
        assert f"keras-prune export {target}: error: Cannot write the output directory" in err
        assert "Errno" not in err


def test_conversion_failure_is_one_message(monkeypatch):
    from keras_prune.export.int8 import convert as int8_convert

    def broken(*args, **kwargs):
        raise RuntimeError("op FOO is not supported\nlong converter log")

    monkeypatch.setattr(int8_convert, "convert_int8", broken)
    with pytest.raises(
        ValueError, match=r"int8 conversion of model 'm' failed: op FOO .*built-ins"
    ):
        pipeline.convert(_mlp(), np.zeros((2, 8), np.float32), "m")


def test_file_digests_are_sha256_with_or_without_sizes():
    files = {"a.txt": "abc", "b.bin": b"\x00"}
    plain = pipeline.file_digests(files)
    assert plain["a.txt"] == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    sized = pipeline.file_digests(files, sizes=True)
    assert sized["b.bin"]["bytes"] == 1 and sized["a.txt"]["sha256"] == plain["a.txt"]
