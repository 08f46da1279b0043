"""Cortex-M4 firmware on QEMU (keras_prune.export.m4) with a hand-written toy model directory
in the generated layout: its outputs must equal the host build's and NumPy's bit for bit."""

import shutil
import subprocess

import numpy as np
import pytest

from keras_prune.mcu import firmware as m4

IN, OUT = 12, 20

needs_m4 = pytest.mark.skipif(
    m4.find_cross_toolchain() is None or m4.find_qemu() is None,
    reason=f"arm-none-eabi-gcc, newlib or qemu-system-arm missing: {m4.INSTALL_HINT}",
)

MODEL_H = f"""\
#ifndef KP_MODEL_H
#define KP_MODEL_H
#include <stdint.h>
#define KP_MODEL_INPUT_SIZE {IN}
#define KP_MODEL_OUTPUT_SIZE {OUT}
#define KP_MODEL_NUM_LAYERS 1
#define KP_MODEL_ARENA_SIZE {IN + OUT}
int kp_model_invoke(const int8_t *in, int8_t *out);
void kp_model_set_input(const int8_t *in);
int kp_model_run_layer(int32_t i);
void kp_model_get_output(int8_t *out);
#endif
"""

# TOY_FAIL_AT / TOY_FAULT_AT / TOY_HANG make the n-th invoke misbehave.
MODEL_C = """\
#include <string.h>
#include "kp_model.h"
#include "toy_scale.h"

static int8_t arena[KP_MODEL_ARENA_SIZE];
static int32_t calls;

void kp_model_set_input(const int8_t *in) { memcpy(arena, in, KP_MODEL_INPUT_SIZE); }

int kp_model_run_layer(int32_t layer)
{
    int32_t i;
    if (layer != 0) {
        return -1;
    }
    for (i = 0; i < KP_MODEL_OUTPUT_SIZE; ++i) {
        arena[KP_MODEL_INPUT_SIZE + i] = toy_scale(arena[i % KP_MODEL_INPUT_SIZE], i);
    }
    return 0;
}

void kp_model_get_output(int8_t *out)
{
    memcpy(out, arena + KP_MODEL_INPUT_SIZE, KP_MODEL_OUTPUT_SIZE);
}

int kp_model_invoke(const int8_t *in, int8_t *out)
{
    int32_t layer;
#ifdef TOY_FAIL_AT
    if (calls == TOY_FAIL_AT) {
        return -7;
    }
#endif
#ifdef TOY_FAULT_AT
    if (calls == TOY_FAULT_AT) {
        __builtin_trap();
    }
#endif
#ifdef TOY_HANG
    for (;;) {
    }
#endif
    ++calls;
    kp_model_set_input(in);
    for (layer = 0; layer < KP_MODEL_NUM_LAYERS; ++layer) {
        if (kp_model_run_layer(layer) != 0) {
            return -1;
        }
    }
    kp_model_get_output(out);
    return 0;
}
"""

# A portable kernel and a DSP one beside it, each compiled only where it applies, as the
# generated kernels do: the firmware must build both files and end up with the DSP one.
SCALE_H = """\
#ifndef TOY_SCALE_H
#define TOY_SCALE_H
#include <stdint.h>
int8_t toy_scale(int8_t x, int32_t i);
#endif
"""
SCALE_C = """\
#include "toy_scale.h"
#if !defined(__ARM_FEATURE_DSP)
int8_t toy_scale(int8_t x, int32_t i) { return (int8_t)(x * 3 + i); }
#endif
"""
SCALE_DSP_C = """\
#include "toy_scale.h"
#if defined(__ARM_FEATURE_DSP)
#include <arm_acle.h>
int8_t toy_scale(int8_t x, int32_t i) { return (int8_t)__smlabb(x, 3, i); }
#endif
"""


def reference(x: np.ndarray) -> np.ndarray:
    idx = np.arange(OUT)
    return (x[:, idx % IN].astype(np.int32) * 3 + idx).astype(np.int8)


@pytest.fixture(scope="module")
def toy_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("toy_model")
    (d / "kernels").mkdir()
    (d / "kp_model.h").write_text(MODEL_H)
    (d / "kp_model.c").write_text(MODEL_C)
    (d / "kernels" / "toy_scale.h").write_text(SCALE_H)
    (d / "kernels" / "toy_scale.c").write_text(SCALE_C)
    (d / "kernels" / "toy_scale_dsp.c").write_text(SCALE_DSP_C)
    (d / "manifest.json").write_text("{}")
    return d


@pytest.fixture(scope="module")
def inputs():
    x = np.random.default_rng(0).integers(-128, 128, (5, IN), dtype=np.int8)
    x[0], x[1] = -128, 127  # the ends of int8 wrap differently
    return x


@pytest.fixture(scope="module")
def firmware(toy_dir, inputs, tmp_path_factory):
    if m4.find_cross_toolchain() is None or m4.find_qemu() is None:
        pytest.skip(f"arm-none-eabi-gcc, newlib or qemu-system-arm missing: {m4.INSTALL_HINT}")
    return m4.build_firmware(toy_dir, inputs, tmp_path_factory.mktemp("m4"))


def host_outputs(toy_dir, x, tmp_path):
    gcc = shutil.which("gcc")
    if gcc is None:
        return None
    exe = tmp_path / "toy_host"
    host_main = m4.FIRMWARE_DIR.parent / "host" / "kp_host_main.c"
    subprocess.run(
        [
            gcc,
            "-std=c99",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-O2",
            f"-I{toy_dir}",
            f"-I{toy_dir / 'kernels'}",
            str(toy_dir / "kp_model.c"),
            str(toy_dir / "kernels" / "toy_scale.c"),
            str(toy_dir / "kernels" / "toy_scale_dsp.c"),
            str(host_main),
            "-o",
            str(exe),
        ],
        check=True,
    )
    done = subprocess.run(
        [str(exe), str(len(x))], input=x.tobytes(), capture_output=True, check=True
    )
    return np.frombuffer(done.stdout, np.int8).reshape(len(x), OUT)


def test_write_test_data(tmp_path):
    x = np.arange(-6, 6, dtype=np.int8).reshape(2, 2, 3)
    c, h = m4.write_test_data(x, tmp_path)
    assert "#define KP_TEST_COUNT 2" in h.read_text()
    assert "#define KP_TEST_INPUT_SIZE 6" in h.read_text()
    assert "{-6,-5,-4,-3,-2,-1}" in c.read_text() and "{0,1,2,3,4,5}" in c.read_text()
    with pytest.raises(TypeError, match="int8"):
        m4.write_test_data(x.astype(np.int16), tmp_path)
    with pytest.raises(ValueError, match="at least one"):
        m4.write_test_data(np.zeros((0, 3), np.int8), tmp_path)


@pytest.mark.slow
@needs_m4
def test_qemu_outputs_equal_host_and_numpy(firmware, toy_dir, inputs, tmp_path):
    run = m4.run_qemu_full(firmware, len(inputs), OUT, timeout=30)
    np.testing.assert_array_equal(run.outputs, reference(inputs))
    host = host_outputs(toy_dir, inputs, tmp_path)
    if host is not None:
        np.testing.assert_array_equal(run.outputs, host)
    assert 0 < run.stack_bytes < 4096
    assert run.log.count("KP_OUT") == len(inputs)
    np.testing.assert_array_equal(m4.run_qemu(firmware, len(inputs), OUT), run.outputs)


@pytest.mark.slow
@needs_m4
def test_wrong_output_size_is_an_error(firmware, inputs):
    with pytest.raises(m4.M4Error, match="expected 5 outputs of 21 bytes"):
        m4.run_qemu(firmware, len(inputs), OUT + 1)


@pytest.mark.slow
@needs_m4
def test_size_report_adds_up(firmware, inputs):
    r = m4.size_report(firmware)
    assert r["text"] > 0 and r["bss"] > 0
    assert r["flash"] == r["text"] + r["data"] and r["ram"] == r["data"] + r["bss"]
    groups = r["groups"]
    assert sum(g["flash"] for g in groups.values()) == r["flash"]
    assert sum(g["ram"] for g in groups.values()) == r["ram"]
    model = groups["model"]
    assert r["model_flash"] == model["flash"] > 0 and r["model_ram"] == model["ram"]
    assert groups["test_data"]["const"] == inputs.size
    assert r["overhead_flash"] == r["flash"] - r["model_flash"] > 0
    assert any(lib.endswith("memcpy.o)") for lib in r["libraries"])
    objects = {o["object"]: o for o in r["objects"] if o["category"] == "model"}
    assert objects["kernels/toy_scale_dsp.o"]["code"] > 0  # the DSP variant was built
    assert "kernels/toy_scale.o" not in objects  # the portable one is empty
    assert objects["kp_model.o"]["bss"] >= IN + OUT  # the arena
    assert r["largest"] and all(s["bytes"] > 0 for s in r["largest"])


@pytest.mark.slow
@needs_m4
def test_compile_error_names_the_file(toy_dir, inputs, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(toy_dir, broken)
    (broken / "kernels" / "bad.c").write_text("int bad(int x) { int unused; return x; }\n")
    with pytest.raises(m4.M4Error, match=r"compiling kernels/bad\.c(.|\n)*unused"):
        m4.build_firmware(broken, inputs, tmp_path / "m4")


@pytest.mark.slow
@needs_m4
@pytest.mark.parametrize(
    "define, status, says",
    [
        ("TOY_FAIL_AT=2", 3, r"kp_model_invoke returned an error(.|\n)*KP_ERROR input=2 status=-7"),
        ("TOY_FAULT_AT=1", 4, r"the CPU faulted(.|\n)*KP_FAULT exception=3"),
    ],
)
def test_firmware_failure_is_an_error(toy_dir, inputs, tmp_path, define, status, says):
    elf = m4.build_firmware(toy_dir, inputs, tmp_path, defines=[define])
    with pytest.raises(m4.M4Error, match=rf"exited {status} \(" + says):
        m4.run_qemu(elf, len(inputs), OUT, timeout=30)


@pytest.mark.slow
@needs_m4
def test_hang_times_out(toy_dir, inputs, tmp_path):
    elf = m4.build_firmware(toy_dir, inputs, tmp_path, defines=["TOY_HANG"])
    with pytest.raises(m4.M4Error, match="more than 1 s"):
        m4.run_qemu(elf, len(inputs), OUT, timeout=1)
