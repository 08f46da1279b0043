"""kp.export.tflm: int8 .tflite, C array, op resolver, arena, verified in TFLM."""

import json
import re
import shutil
import subprocess
import warnings

import keras
import numpy as np
import pytest

import keras_prune as kp
from keras_prune import cli
from keras_prune.export.int8.tflm_ops import TFLM_OPS
from keras_prune.export.tflite_micro.verify import expected_tolerance
from keras_prune.models import lenet5

pytest.importorskip("tflite_micro")


@pytest.fixture(scope="module")
def digits():
    from keras_prune.datasets import mnist_5k

    x, y, xt, yt = mnist_5k()
    return x[:1500], y[:1500], xt[:300], yt[:300]


def _trained(model, digits, epochs=2):
    x, y, _, _ = digits
    model.compile(keras.optimizers.Adam(2e-3), "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=epochs, batch_size=64, verbose=0)
    return model


def ds_resnet(name="ds_resnet", head=True):
    """Depthwise convs, BatchNorm, a residual add, average pooling and a dense head;
    without the head, global average pooling (MEAN) is the output."""
    inp = keras.Input((28, 28, 1), name="image")
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", name="stem")(inp)
    x = keras.layers.BatchNormalization(momentum=0.9, name="stem_bn")(x)
    x = keras.layers.ReLU(name="stem_relu")(x)
    y = keras.layers.DepthwiseConv2D(3, padding="same", name="dw")(x)
    y = keras.layers.BatchNormalization(momentum=0.9, name="dw_bn")(y)
    y = keras.layers.ReLU(6.0, name="dw_relu")(y)
    y = keras.layers.Conv2D(16, 1, name="pw")(y)
    x = keras.layers.Add(name="add")([x, y])
    x = keras.layers.AveragePooling2D(2, name="avg")(x)
    if not head:
        return keras.Model(inp, keras.layers.GlobalAveragePooling2D(name="gap")(x), name=name)
    x = keras.layers.Flatten(name="flat")(x)
    return keras.Model(inp, keras.layers.Dense(10, activation="softmax", name="head")(x), name=name)


def mlp(name="mlp"):
    return keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Flatten(name="flatten"),
            keras.layers.Dense(64, activation="relu", name="fc1"),
            keras.layers.Dense(10, name="logits"),
        ],
        name=name,
    )


@pytest.fixture(scope="module")
def exported(digits, tmp_path_factory):
    """Each topology trained briefly and exported once; shared by the checks below."""
    x, y, xt, yt = digits
    out = {}
    for build in (lenet5, ds_resnet, mlp):
        keras.utils.set_random_seed(0)
        model = _trained(build(), digits) if build is not mlp else _trained_logits(digits)
        path = tmp_path_factory.mktemp("tflm") / build.__name__
        report = kp.export.tflm(
            model,
            path,
            x[:300],
            validation_data=(xt, yt),
            samples=300,
            print_fn=None,
            progress=False,
        )
        out[build.__name__] = (model, path, report)
    return out


def _trained_logits(digits):
    x, y, _, _ = digits
    model = mlp()
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=2, batch_size=64, verbose=0)
    return model


# exported and the tests that train on digits train on MNIST-5k: slow
@pytest.mark.slow
@pytest.mark.parametrize("name", ["lenet5", "ds_resnet", "mlp"])
def test_tflm_agrees_with_litert_within_the_documented_tolerance(exported, name):
    _, path, report = exported[name]
    g = report.agreement
    assert g.samples == 300
    assert g.tflm_deterministic
    worst, _ = expected_tolerance((path / "model.tflite").read_bytes(), report.ops)
    assert g.max_abs_diff_lsb <= g.tolerance_lsb <= worst
    n_fc = sum(op.name == "FULLY_CONNECTED" for op in report.ops)
    if name == "mlp":  # logits out: one step per FC layer
        assert g.logits_max_diff_lsb is None and g.tolerance_lsb == n_fc
    else:  # softmax out: the logits feeding it are compared as well
        assert g.logits_max_diff_lsb is not None and g.logits_max_diff_lsb <= n_fc
        assert g.logits_tolerance_lsb == n_fc
    assert g.top1_agreement >= 0.99
    assert g.exact_match >= 0.9
    assert g.ok
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["verification"]["ok"] is True
    # int8 in TFLM keeps the float model's accuracy on these digits (within 2 points)
    acc = manifest["accuracy"]
    assert acc["samples"] == 300 and acc["float"] > 0.7
    assert abs(acc["int8_tflm"] - acc["float"]) <= 0.02


def test_without_fully_connected_layers_tflm_and_litert_are_bit_exact(digits, tmp_path):
    # conv, depthwise, BatchNorm (folded), residual ADD, AVERAGE_POOL_2D and MEAN
    x, _, xt, _ = digits
    keras.utils.set_random_seed(0)
    model = ds_resnet(head=False)
    report = kp.export.tflm(
        model,
        tmp_path / "out",
        x[:300],
        validation_data=xt,
        samples=300,
        print_fn=None,
        progress=False,
    )
    assert "MEAN" in {o["op"] for o in report.manifest["ops"]}
    assert report.agreement.tolerance_lsb == 0
    assert report.agreement.exact_match == 1.0 and report.agreement.ok
    assert report.accuracy is None


@pytest.mark.slow
def test_the_ops_are_named_with_their_layers_and_the_resolver_has_exactly_them(exported):
    _, path, report = exported["ds_resnet"]
    manifest = json.loads((path / "manifest.json").read_text())
    ops = {o["op"]: o for o in manifest["ops"]}
    assert set(ops) == {
        "CONV_2D",
        "DEPTHWISE_CONV_2D",
        "ADD",
        "AVERAGE_POOL_2D",
        "RESHAPE",
        "FULLY_CONNECTED",
        "SOFTMAX",
    }
    assert ops["CONV_2D"]["count"] == 2 and {"stem", "pw"} <= set(ops["CONV_2D"]["layers"])
    assert "dw" in ops["DEPTHWISE_CONV_2D"]["layers"]
    assert ops["AVERAGE_POOL_2D"]["layers"] == ["avg"] and ops["ADD"]["layers"] == ["add"]
    assert ops["SOFTMAX"]["layers"] == ["head"]
    resolver = (path / "op_resolver.h").read_text()
    adds = re.findall(r"resolver\.(Add\w+)\(\)", resolver)
    assert sorted(adds) == sorted(TFLM_OPS[o] for o in ops)
    assert "MicroMutableOpResolver<kNumOps>" in resolver and "kNumOps = 7;" in resolver


@pytest.mark.slow
def test_files_c_array_matches_the_tflite_and_settings_match_the_manifest(exported):
    _, path, report = exported["lenet5"]
    assert sorted(p.name for p in path.iterdir()) == sorted(
        [
            "model.tflite",
            "model_data.h",
            "model_data.cc",
            "op_resolver.h",
            "model_settings.h",
            "manifest.json",
            "README.md",
        ]
    )
    data = (path / "model.tflite").read_bytes()
    cc = (path / "model_data.cc").read_text()
    body = cc[cc.index("{", cc.index("g_model[")) + 1 : cc.rindex("}")]
    assert bytes(int(b, 16) for b in re.findall(r"0x([0-9a-f]{2})", body)) == data
    assert f"g_model_len = {len(data)}" in (path / "model_data.h").read_text()
    m = json.loads((path / "manifest.json").read_text())
    settings = (path / "model_settings.h").read_text()
    assert f"#define KP_ARENA_SIZE {m['arena']['size']}\n" in settings
    assert m["arena"]["size"] >= m["arena"]["measured"] + m["arena"]["cmsis_nn_scratch"]
    assert m["arena"]["size"] % 16 == 0
    # CMSIS-NN's im2col scratch: 2 columns of int16, padded to 4. conv1 (5x5x1): 25 -> 28,
    # 112 bytes; conv2 (5x5x6): 150 -> 152, 608 bytes. The largest wins.
    assert m["arena"]["cmsis_nn_scratch"] == 2 * 152 * 2
    assert "#define KP_INPUT_SHAPE {1, 28, 28, 1}" in settings
    q = m["quantization"]["input"]
    assert f"#define KP_INPUT_ZERO_POINT {q['zero_point']}" in settings
    assert m["sizes"]["tflite_bytes"] == len(data)
    assert m["files"]["model.tflite"]["bytes"] == len(data)
    assert report.arena_bytes == m["arena"]["size"]
    assert "KP_ARENA_SIZE" in (path / "README.md").read_text()


def _tool(name):
    path = shutil.which(name)
    if path is None:
        pytest.skip(
            f"{name} not installed; run `make test` as root, or "
            "`sudo apt-get install --no-install-recommends gcc g++ gcc-arm-none-eabi`"
        )
    return path


@pytest.mark.slow
@pytest.mark.parametrize(
    "lang,std", [("c", "c99"), ("c", "c11"), ("c++", "c++11"), ("c++", "c++17")]
)
def test_c_array_and_headers_compile_and_link_on_the_host(exported, tmp_path, lang, std):
    _, path, _ = exported["lenet5"]
    cc = _tool("gcc" if lang == "c" else "g++")
    main = tmp_path / "main.c"
    main.write_text(
        '#include <stdio.h>\n#include <stdint.h>\n#include "model_data.h"\n'
        '#include "model_settings.h"\n'
        "int main(void) {\n  unsigned long sum = 0;\n  int i;\n"
        "  static const int shape[] = KP_INPUT_SHAPE;\n"
        "  for (i = 0; i < g_model_len; ++i) sum = sum * 31u + g_model[i];\n"
        '  printf("%d %lu %u %d %d %d\\n", (int)g_model_len, sum, '
        "(unsigned)((uintptr_t)g_model % 16u), KP_ARENA_SIZE, shape[1] * KP_OUTPUT_SIZE, "
        "(int)(KP_INPUT_SCALE > 0.0f));\n  return 0;\n}\n"
    )
    flags = [
        "-x",
        lang,
        f"-std={std}",
        "-Wall",
        "-Wextra",
        "-Werror",
        "-pedantic",
        "-O1",
        f"-I{path}",
    ]
    objs = []
    for src in (main, path / "model_data.cc"):
        obj = tmp_path / (src.stem + ".o")
        subprocess.run(
            [cc, *flags, "-c", str(src), "-o", str(obj)], check=True, capture_output=True, text=True
        )
        objs.append(str(obj))
    exe = tmp_path / "a.out"
    subprocess.run([cc, *objs, "-o", str(exe)], check=True, capture_output=True)
    n, digest, align, arena, prod, scale_ok = subprocess.run(
        [str(exe)], check=True, capture_output=True, text=True
    ).stdout.split()
    data = (path / "model.tflite").read_bytes()
    expect = 0
    for b in data:
        expect = (expect * 31 + b) % (1 << 64)
    m = json.loads((path / "manifest.json").read_text())
    assert int(n) == len(data) and int(digest) == expect and align == "0"
    assert int(arena) == m["arena"]["size"] and int(prod) == 280 and scale_ok == "1"


@pytest.mark.slow
def test_cortex_m4_object_holds_exactly_the_model_bytes_in_rodata(exported, tmp_path):
    _, path, _ = exported["ds_resnet"]
    gcc = _tool("arm-none-eabi-gcc")
    size = len((path / "model.tflite").read_bytes())
    for lang, std in (("c", "c11"), ("c++", "c++17")):
        obj = tmp_path / f"model_data_{lang}.o"
        subprocess.run(
            [
                gcc,
                "-mcpu=cortex-m4",
                "-mthumb",
                "-O2",
                "-x",
                lang,
                f"-std={std}",
                "-Wall",
                "-Wextra",
                "-Werror",
                "-c",
                str(path / "model_data.cc"),
                "-o",
                str(obj),
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        sections = subprocess.run(
            [_tool("arm-none-eabi-readelf"), "-SW", str(obj)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        rodata = [line.split() for line in sections.splitlines() if " .rodata" in line]
        assert len(rodata) == 1, sections
        fields = rodata[0][rodata[0].index(".rodata") :]
        assert int(fields[4], 16) == size  # Name Type Addr Off Size ES Flg Lk Inf Al
        assert fields[-1] == "16"  # alignment


@pytest.mark.slow
def test_pruned_zeros_stay_zero_after_batchnorm_folding_and_quantization(digits, tmp_path):
    x, y, xt, yt = digits
    keras.utils.set_random_seed(1)
    model = _trained(ds_resnet(), digits, epochs=1)
    schedule = kp.schedules.ConstantSparsity(0.75, begin_step=0, frequency=1)
    pruned = kp.prune(
        model,
        schedule=schedule,
        granularity=kp.granularity.SIMDGroups(4),
        layers=["stem", "pw", "head"],
    )
    pruned.compile("adam", "sparse_categorical_crossentropy")
    pruned.fit(
        x[:256],
        y[:256],
        epochs=1,
        batch_size=64,
        verbose=0,
        callbacks=[kp.callbacks.PruningScheduler()],
    )
    report = kp.export.tflm(
        pruned,
        tmp_path / "out",
        x[:200],
        validation_data=(xt, yt),
        samples=100,
        print_fn=None,
        progress=False,
    )
    checks = report.manifest["pruned_zeros"]
    assert {c["layer"] for c in checks} == {"stem", "pw", "head"}
    for c in checks:
        assert c["kept"], c
        assert c["int8_zeros"] >= c["keras_zeros"] > 0
    # independently: each int8 weight tensor has at least the Keras kernel's zeros
    plain = kp.strip(pruned)
    keras_frac = {
        n: float(np.mean(np.asarray(plain.get_layer(n).kernel) == 0))
        for n in ("stem", "pw", "head")
    }
    assert all(v >= 0.6 for v in keras_frac.values()), keras_frac
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=(tmp_path / "out" / "model.tflite").read_bytes())
    interp.allocate_tensors()
    zero_frac = {}
    for t in interp.get_tensor_details():
        for layer in ("stem", "pw", "head"):
            if (
                t["dtype"] == np.int8
                and len(t["shape"]) >= 2
                and f"/{layer}_1/" in t["name"] + "/"
                and t["name"].count(";") == 0
            ):
                w = interp.get_tensor(t["index"])
                zero_frac[layer] = float(np.mean(w == 0))
    assert set(zero_frac) == {"stem", "pw", "head"}, zero_frac
    assert all(zero_frac[n] >= keras_frac[n] for n in zero_frac), (zero_frac, keras_frac)
    assert "LOST" not in report.table()


@pytest.mark.slow
def test_activation_masks_export_as_tflm_builtins(digits, tmp_path):
    x, _, xt, yt = digits
    masked = kp.add_activation_masks(_trained(lenet5(), digits, epochs=1), 0.5)
    report = kp.export.tflm(
        masked,
        tmp_path / "out",
        x[:200],
        validation_data=(xt, yt),
        samples=100,
        print_fn=None,
        progress=False,
    )
    ops = [o["op"] for o in report.manifest["ops"]]
    assert "GREATER_EQUAL" in ops and "SELECT_V2" in ops
    assert report.agreement.ok


@pytest.mark.slow
def test_float_io_export_runs_in_tflm(digits, tmp_path):
    x, _, xt, yt = digits
    report = kp.export.tflm(
        _trained(mlp(), digits, epochs=1),
        tmp_path / "out",
        x[:200],
        int8_io=False,
        validation_data=(xt, yt),
        samples=100,
        print_fn=None,
        progress=False,
    )
    q = report.manifest["quantization"]
    assert q["input"]["dtype"] == "float32" and q["outputs"][0]["dtype"] == "float32"
    assert {"QUANTIZE", "DEQUANTIZE"} <= {o["op"] for o in report.manifest["ops"]}
    assert report.agreement.ok
    assert "KP_INPUT_TYPE_INT8 0" in (tmp_path / "out" / "model_settings.h").read_text()


@pytest.mark.slow
def test_export_is_deterministic(digits, tmp_path):
    x, _, xt, yt = digits
    model = _trained(mlp(), digits, epochs=1)
    for name in ("a", "b"):
        kp.export.tflm(
            model,
            tmp_path / name,
            x[:200],
            validation_data=(xt, yt),
            samples=50,
            print_fn=None,
            progress=False,
        )
    for f in (
        "model.tflite",
        "model_data.cc",
        "op_resolver.h",
        "model_settings.h",
        "manifest.json",
        "README.md",
    ):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f


def test_unsupported_op_is_named_with_its_layer_and_a_remedy(tmp_path):
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inp)
    x = keras.layers.UpSampling2D(name="upsample")(x)
    model = keras.Model(inp, keras.layers.GlobalAveragePooling2D()(x))
    data = np.random.default_rng(0).random((120, 8, 8, 3), dtype=np.float32)
    with pytest.raises(kp.export.UnsupportedOpsError) as err:
        kp.export.tflm(model, tmp_path / "out", data, print_fn=None, progress=False)
    msg = str(err.value)
    assert "TILE" in msg and "'upsample' (UpSampling2D)" in msg and "bilinear" in msg
    assert not (tmp_path / "out").exists()
    assert [p for p in tmp_path.iterdir()] == []  # no temporary directory left either
    # the remedy works
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inp)
    x = keras.layers.UpSampling2D(interpolation="bilinear", name="upsample")(x)
    fixed = keras.Model(inp, keras.layers.GlobalAveragePooling2D()(x))
    report = kp.export.tflm(fixed, tmp_path / "out", data, print_fn=None, progress=False)
    assert "RESIZE_BILINEAR" in {o["op"] for o in report.manifest["ops"]}


@pytest.fixture
def small():
    keras.utils.set_random_seed(0)
    return mlp(), np.random.default_rng(0).random((150, 28, 28, 1), dtype=np.float32)


def test_bad_representative_data_is_refused_and_nothing_written(small, tmp_path):
    model, data = small
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=r"shape \(150, 28, 28\).*\(samples, 28, 28, 1\)"):
        kp.export.tflm(model, out, data[..., 0], print_fn=None)
    with pytest.raises(TypeError, match="dtype <U1"):
        kp.export.tflm(model, out, np.full((150, 28, 28, 1), "a"), print_fn=None)
    with pytest.raises(ValueError, match="NaN"):
        kp.export.tflm(model, out, np.full((150, 28, 28, 1), np.nan, np.float32), print_fn=None)
    with pytest.raises(ValueError, match=r"labels hold classes 0\.\.12.*10 output units"):
        kp.export.tflm(model, out, data, labels=np.arange(150) % 13, print_fn=None)
    assert list(tmp_path.iterdir()) == []


def test_few_calibration_samples_warn_with_the_count(small, tmp_path):
    model, data = small
    with pytest.warns(UserWarning, match="only 20 samples"):
        kp.export.tflm(
            model, tmp_path / "out", data[:20], samples=10, print_fn=None, progress=False
        )
    assert (tmp_path / "out" / "model.tflite").exists()


def test_existing_directory_is_kept_unless_force(small, tmp_path):
    model, data = small
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="force"):
        kp.export.tflm(model, out, data, print_fn=None)
    assert [p.name for p in out.iterdir()] == ["mine.txt"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # 150 samples: no warning
        kp.export.tflm(model, out, data, samples=20, force=True, print_fn=None, progress=False)
    assert not (out / "mine.txt").exists() and (out / "model.tflite").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_unbuilt_model_is_refused(tmp_path):
    model = keras.Sequential([keras.layers.Dense(4)])
    with pytest.raises(ValueError, match="not built"):
        kp.export.tflm(model, tmp_path / "out", np.zeros((150, 3), np.float32), print_fn=None)
    assert not (tmp_path / "out").exists()


def test_multi_input_model_is_refused(tmp_path):
    a, b = keras.Input((4,), name="a"), keras.Input((4,), name="b")
    model = keras.Model([a, b], keras.layers.Dense(2)(keras.layers.Concatenate()([a, b])))
    with pytest.raises(ValueError, match="2 inputs"):
        kp.export.tflm(model, tmp_path / "out", np.zeros((150, 4), np.float32), print_fn=None)
    assert not (tmp_path / "out").exists()


def test_cli_export_tflm(small, tmp_path, capsys):
    model, data = small
    model.save(tmp_path / "m.h5")
    np.savez(
        tmp_path / "d.npz",
        x_train=data[:120],
        y_train=np.arange(120) % 10,
        x_val=data[120:],
        y_val=np.arange(30) % 10,
    )
    args = [
        "export",
        "tflm",
        str(tmp_path / "m.h5"),
        "--data",
        str(tmp_path / "d.npz"),
        "--out",
        str(tmp_path / "out"),
        "--samples",
        "30",
    ]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "TFLM export of" in out and "TFLM/LiteRT" in out and "accuracy" in out
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["accuracy"]["samples"] == 30
    assert cli.main(args) == 2
    assert "already exists" in capsys.readouterr().err
    np.savez(tmp_path / "bad.npz", x=data)
    assert (
        cli.main(
            [
                "export",
                "tflm",
                str(tmp_path / "m.h5"),
                "--data",
                str(tmp_path / "bad.npz"),
                "--out",
                str(tmp_path / "o2"),
            ]
        )
        == 2
    )
    assert "x_train" in capsys.readouterr().err
