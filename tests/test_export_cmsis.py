"""kp.export.cmsis: generated C, bit-exact with TFLM on the host and on a QEMU Cortex-M4.

Four topologies cover every op the generator lowers: LeNet-5 (conv, max pool, reshape,
FC, softmax), LeNet-300-100 (FC chain), a ResNet-8-style CNN (strided and 1x1 convs,
residual ADDs, average pooling) and a DS-CNN (depthwise convs). They are exported once
each (100 verification inputs), then the checks read the reports and rebuild the code with
the sanitizers.
"""

from __future__ import annotations

import json
import os

import keras
import numpy as np
import pytest

import keras_prune as kp
from keras_prune.mcu import firmware as m4
from keras_prune.mcu import host as mcu_host
from keras_prune.mcu import toolchain as cbuild

pytest.importorskip("tflite_micro")
needs_cc = pytest.mark.skipif(
    cbuild.find_cc() is None, reason="gcc not installed (make test installs it as root)"
)
HAVE_M4 = m4.find_cross_toolchain() is not None and m4.find_qemu() is not None

L = keras.layers


def resnet_small():
    """ResNet-8's layout at a test-friendly size: 16x16 input, 8/16/32 filters."""
    return kp.models.resnet8(input_shape=(16, 16, 3), width=8)


def ds_cnn_small():
    return kp.models.ds_cnn(input_shape=(25, 10, 1), width=16, blocks=2)


def gap_pad_model():
    """MEAN (global average pooling) and PAD (ZeroPadding2D), which the others lack."""
    inp = keras.Input((12, 12, 2))
    x = L.ZeroPadding2D(((1, 2), (2, 1)))(inp)
    x = L.Conv2D(6, 3, strides=2, activation="relu6", name="conv")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inp, L.Dense(4, name="head")(x), name="gap_pad")


BUILDERS = {
    "lenet5": kp.models.lenet5,
    "lenet_300_100": kp.models.lenet_300_100,
    "resnet8": resnet_small,
    "ds_cnn": ds_cnn_small,
    "gap_pad": gap_pad_model,
}


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    if cbuild.find_cc() is None:
        pytest.skip("gcc not installed (make test installs it as root)")
    rng = np.random.default_rng(0)
    out = {}
    for name, build in BUILDERS.items():
        keras.utils.set_random_seed(0)
        model = build()
        x = rng.random((150, *model.inputs[0].shape[1:])).astype("float32")
        path = tmp_path_factory.mktemp("c") / name
        report = kp.export.cmsis(
            model,
            path,
            x[:100],
            validation_data=x[50:150],
            samples=100,
            print_fn=None,
            progress=False,
        )
        out[name] = (model, path, report)
    return out


# exports builds every model for a Cortex-M4 and runs it on QEMU: its users are slow
@pytest.mark.slow
@needs_cc
@pytest.mark.parametrize("name", list(BUILDERS))
def test_host_build_is_bit_exact_with_tflm(exports, name):
    _, path, report = exports[name]
    host = report.manifest["verification"]["host"]
    assert host["samples"] == 100
    assert host["bit_exact"], host
    files = {p.name for p in path.iterdir()}
    assert {
        "kp_model.h",
        "kp_model.c",
        "kp_weights.c",
        "kernels",
        "model.tflite",
        "manifest.json",
        "README.md",
    } <= files
    assert json.loads((path / "manifest.json").read_text())["verification"]["host"] == host


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_M4, reason="arm-none-eabi-gcc/qemu-system-arm not installed")
@pytest.mark.parametrize("name", list(BUILDERS))
def test_cortex_m4_on_qemu_equals_host(exports, name):
    _, _, report = exports[name]
    m4_check = report.manifest["verification"]["cortex_m4"]
    assert m4_check["samples"] == 100 and m4_check["bit_exact"], m4_check
    size = report.manifest["sizes"]["cortex_m4"]
    # the bar: weights + code within the .tflite's size + 16 KB
    assert size["model_flash"] <= report.manifest["sizes"]["tflite_bytes"] + 16 * 1024


@pytest.mark.slow
@needs_cc
@pytest.mark.parametrize("name", list(BUILDERS))
def test_static_arena_is_no_larger_than_tflm(exports, name):
    mem = exports[name][2].manifest["memory"]
    assert 0 < mem["arena_bytes"] <= mem["tflm_arena_bytes"]
    # buffers alive at the same time never overlap
    bufs = mem["buffers"]
    for i, a in enumerate(bufs):
        for b in bufs[i + 1 :]:
            live = a["layers"][0] <= b["layers"][1] and b["layers"][0] <= a["layers"][1]
            apart = (
                a["offset"] + a["bytes"] <= b["offset"] or b["offset"] + b["bytes"] <= a["offset"]
            )
            assert not live or apart, (a, b)


@pytest.mark.slow
@needs_cc
def test_sanitizer_build_runs_clean_and_agrees(exports, tmp_path):
    """ASan + UBSan over every model on its verification inputs: no report, same bytes."""
    rng = np.random.default_rng(1)
    for name, (_, path, report) in exports.items():
        exe = mcu_host.build_host(path, tmp_path / f"{name}_asan", sanitize=True)
        size = int(np.prod(report.manifest["io"]["input"]["shape"]))
        xq = rng.integers(-128, 128, (20, size), dtype=np.int8)
        plain = mcu_host.run_host(
            mcu_host.build_host(path, tmp_path / name),
            xq,
            int(np.prod(report.manifest["io"]["output"]["shape"])),
        )
        checked = mcu_host.run_host(exe, xq, plain.shape[1])
        np.testing.assert_array_equal(checked, plain, err_msg=name)


def test_unsupported_op_names_op_and_layer(tmp_path):
    inp = keras.Input((8,))
    x = L.Dense(6, name="fc")(inp)
    x = L.LeakyReLU(negative_slope=0.2, name="leaky")(x)
    model = keras.Model(inp, L.Dense(3, name="out")(x))
    with pytest.raises(kp.export.CExportError, match=r"LEAKY_RELU.*'leaky'"):
        kp.export.cmsis(
            model,
            tmp_path / "c",
            np.random.rand(20, 8).astype("float32"),
            print_fn=None,
            progress=False,
        )
    assert not (tmp_path / "c").exists()
    assert not list(tmp_path.iterdir())  # no temporary left behind


def test_existing_directory_needs_force(tmp_path):
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "keep.txt").write_text("mine")
    model = kp.models.lenet_300_100()
    with pytest.raises(FileExistsError, match="force"):
        kp.export.cmsis(model, tmp_path / "c", np.zeros((4, 28, 28, 1), "float32"), print_fn=None)
    assert (tmp_path / "c" / "keep.txt").read_text() == "mine"


def test_bad_target_and_samples(tmp_path):
    model = kp.models.lenet_300_100()
    x = np.zeros((4, 28, 28, 1), "float32")
    with pytest.raises(ValueError, match="target"):
        kp.export.cmsis(model, tmp_path / "a", x, target="cortex-m0")
    with pytest.raises(ValueError, match="samples"):
        kp.export.cmsis(model, tmp_path / "b", x, samples=0)


def test_kernel_limits_are_refused(tmp_path):
    """A dot product longer than the kernels accept is refused before anything is built."""
    inp = keras.Input((40000,))
    model = keras.Model(inp, L.Dense(2, name="wide")(inp))
    with pytest.raises(kp.export.CExportError, match=r"'wide'.*limit"):
        kp.export.cmsis(
            model,
            tmp_path / "c",
            np.random.rand(8, 40000).astype("float32"),
            print_fn=None,
            progress=False,
        )
    assert not (tmp_path / "c").exists()


@pytest.mark.slow
def test_asymmetric_weights_are_refused(exports):
    """Non-zero weight zero points cannot be expressed by the kernels."""
    from keras_prune.export.cgen.lowering import lower
    from keras_prune.export.int8.flatbuffer import read_tflite

    _, path, _ = exports["lenet_300_100"]
    graph = read_tflite((path / "model.tflite").read_bytes())
    fc = next(op for op in graph.operators if op.name == "FULLY_CONNECTED")
    graph.tensors[fc.inputs[1]].zero_point = np.array([3])
    with pytest.raises(kp.export.CExportError, match="zero point"):
        lower(graph, {fc.index: ("fc1",)})


@pytest.mark.slow
@pytest.mark.skipif(
    not os.environ.get("KP_CMSIS_NN_DIR"),
    reason="set KP_CMSIS_NN_DIR to a CMSIS-NN checkout to check that path",
)
def test_cmsis_nn_path_agrees(exports, tmp_path):  # pragma: no cover - needs CMSIS-NN
    root = os.environ["KP_CMSIS_NN_DIR"]
    rng = np.random.default_rng(2)
    for name, (_, path, report) in exports.items():
        size = int(np.prod(report.manifest["io"]["input"]["shape"]))
        xq = rng.integers(-128, 128, (20, size), dtype=np.int8)
        ours = mcu_host.run_host(
            mcu_host.build_host(path, tmp_path / name),
            xq,
            int(np.prod(report.manifest["io"]["output"]["shape"])),
        )
        exe = mcu_host.build_host(path, tmp_path / f"{name}_cmsis", cmsis_nn=root)
        np.testing.assert_array_equal(mcu_host.run_host(exe, xq, ours.shape[1]), ours, err_msg=name)


def test_mobilenet_v1_layout():
    """MLPerf Tiny's VWW MobileNetV1: 13 depthwise-separable blocks, 2 classes at 96x96."""
    model = kp.models.mobilenet_v1()
    assert model.output.shape == (None, 2)
    depthwise = [la for la in model.layers if isinstance(la, L.DepthwiseConv2D)]
    assert [la.name for la in depthwise] == [f"dw{k}" for k in range(1, 14)]
    assert [la.strides[0] for la in depthwise] == [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1]
    assert model.get_layer("stem").filters == 8 and model.get_layer("pw13").filters == 256
    assert model.count_params() == 219_058
    wider = kp.models.mobilenet_v1(alpha=0.5, input_shape=(32, 32, 3), classes=5)
    assert wider.output.shape == (None, 5)
    assert wider.get_layer("pw13").filters == 512
    assert wider.predict(np.zeros((1, 32, 32, 3), "float32"), verbose=0).shape == (1, 5)
