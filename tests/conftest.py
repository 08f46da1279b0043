import os
import struct
import subprocess
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

tf.config.experimental.enable_op_determinism()


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(0)
    yield
    # without the full gc.collect(): on a heap grown by TensorFlow it took about 2 s per
    # test, minutes over the suite; Python's own collector still runs
    keras.backend.clear_session(free_memory=False)


def small_cnn(name="cnn") -> keras.Model:
    """Every prunable layer class, in one functional model."""
    inp = keras.Input((8, 8, 3), name="img")
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv")(inp)
    x = keras.layers.DepthwiseConv2D(3, depth_multiplier=2, name="dw")(x)
    x = keras.layers.SeparableConv2D(6, 3, padding="same", name="sep")(x)
    x = keras.layers.Conv2DTranspose(5, 3, name="convt")(x)
    x = keras.layers.Reshape((36, 5))(x)
    x = keras.layers.Conv1D(4, 3, name="conv1d")(x)
    x = keras.layers.Flatten()(x)
    out = keras.layers.Dense(10, name="dense")(x)
    return keras.Model(inp, out, name=name)


def mlp(name="mlp") -> keras.Model:
    return keras.Sequential(
        [
            keras.Input((16,)),
            keras.layers.Dense(32, activation="relu", name="fc1"),
            keras.layers.Dense(4, name="fc2"),
        ],
        name=name,
    )


def data(shape=(8, 8, 3), n=64, out=10, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, *shape), dtype=np.float32), rng.random((n, out), dtype=np.float32)


def compile_mse(model, lr=0.01, **kwargs):
    model.compile(keras.optimizers.Adam(lr), keras.losses.MeanSquaredError(), **kwargs)
    return model


def group_pruned(rng, rows: int, k: int, sparsity: float, contiguous: bool = False) -> np.ndarray:
    """Random int8 (rows, k) weights with a fraction ``sparsity`` of the 4-groups zeroed
    (``contiguous``: each row keeps one run of groups). Kept groups may hold zeros."""
    w = rng.integers(-128, 128, (rows, k)).astype(np.int8)
    gpr = -(-k // 4)
    if contiguous:
        keep = np.zeros((rows, gpr), bool)
        n = int(round(gpr * (1 - sparsity)))
        for r in range(rows):
            s = int(rng.integers(0, gpr - n + 1))
            keep[r, s : s + n] = True
    else:
        keep = rng.random((rows, gpr)) >= sparsity
    mask = np.repeat(keep, 4, axis=1)[:, :k]
    return np.where(mask, w, 0).astype(np.int8)


class PipeDriver:
    """One sanitizer-built C test driver process, fed case after case over pipes: each
    reply is an int32 status and out_len int8 values. A crash fails the case with the
    driver's stderr; the next case starts a fresh process."""

    def __init__(self, exe: Path):
        self.exe = exe
        self.proc: subprocess.Popen | None = None

    def _start(self) -> None:
        self.err = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [str(self.exe)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.err
        )

    def run(self, case: bytes, out_len: int) -> tuple[int, np.ndarray]:
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        try:
            self.proc.stdin.write(case)
            self.proc.stdin.flush()
            reply = self.proc.stdout.read(4 + out_len)
        except BrokenPipeError:
            reply = b""
        if len(reply) != 4 + out_len:
            code = self.proc.wait()
            self.err.seek(0)
            log = self.err.read().decode(errors="replace")
            self.err.close()
            self.proc = None
            raise AssertionError(f"{self.exe.name} died (exit {code}):\n{log[-6000:]}")
        return struct.unpack("<i", reply[:4])[0], np.frombuffer(reply[4:], np.int8).copy()

    def close(self) -> None:
        if self.proc is not None:
            self.proc.stdin.close()
            self.proc.wait()
            self.err.close()


def sanitized_driver(tmp_path_factory, sources, name: str):
    """A PipeDriver over the test driver ``name`` built from ``sources`` (kernels and the
    driver's .c) with ASan + UBSan; skips without a host C compiler. Yield it from a
    fixture and close it after."""
    from keras_prune.export.cgen import kernel_library
    from keras_prune.mcu import toolchain as cbuild

    if cbuild.find_cc() is None:
        pytest.skip("needs a host C compiler: sudo apt-get install gcc")
    exe = cbuild.compile_host(
        list(sources),
        [kernel_library.KERNEL_DIR],
        tmp_path_factory.mktemp(name) / name,
        sanitize=True,
    )
    return PipeDriver(exe)
