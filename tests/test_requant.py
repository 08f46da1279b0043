"""The NumPy integer model of requantization matches TFLM (double rounding) and LiteRT's
reference FC kernel (float rounding) bit for bit: the cause documented in
docs/tflm-export.md."""

import keras
import numpy as np
import pytest

from keras_prune.export.int8 import reference as requant
from keras_prune.export.int8.convert import convert_int8
from keras_prune.export.int8.op_map import model_ops
from keras_prune.export.int8.runtime import litert_interpreter, quantize_input, run_tflm_raw
from keras_prune.export.tflite_micro.verify import run_litert_reference

pytest.importorskip("tflite_micro")


def test_rounding_rules_by_hand():
    assert requant.quantize_multiplier(0.5) == (1 << 30, 0)
    assert requant.quantize_multiplier(1.0) == (1 << 30, 1)
    assert requant.quantize_multiplier(0.0) == (0, 0)
    m, s = requant.quantize_multiplier(0.25)  # -6 * 0.25 = -1.5: half away from zero
    assert requant.multiply_by_quantized_multiplier(-6, m, s) == -2
    assert requant.multiply_by_quantized_multiplier(6, m, s) == 2
    assert requant.requantize_float(np.array([-6, 6, 5]), 0.25).tolist() == [-2, 2, 1]
    # rounding twice differs from rounding once: 2^30+1 makes x*m/2^31 land just past a
    # tie, which the first rounding moves onto it
    m, s = (1 << 30) + 1, -8
    x = np.arange(-40000, 40000)
    twice = requant.multiply_by_quantized_multiplier(x, m, s)
    once = requant.requantize_float(x, m * 2.0 ** (s - 31))
    assert 0 < np.count_nonzero(twice != once) and np.abs(twice - once).max() == 1


@pytest.mark.slow  # trains on MNIST-5k
def test_fc_double_rounding_is_tflm_and_float_rounding_is_litert_reference():
    from keras_prune.datasets import mnist_5k

    x, y, xt, _ = mnist_5k()
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10, name="fc")]
    )
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x[:1000], y[:1000], epochs=1, verbose=0)
    data = convert_int8(model, x[:200])
    interp = litert_interpreter(data)
    interp.allocate_tensors()
    (fc,) = [op for op in model_ops(data) if op.name == "FULLY_CONNECTED"]
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    inp, w, b = (tensors[i] for i in fc.inputs)
    out = tensors[fc.outputs[0]]
    qin, qw, qout = (t["quantization_parameters"] for t in (inp, w, out))
    scale = requant.effective_scale(qin["scales"][0], qw["scales"], qout["scales"][0])
    xq = quantize_input(xt, qin["scales"][0], int(qin["zero_points"][0]))
    flat = xq.reshape(len(xq), -1)
    weights, bias = interp.get_tensor(w["index"]), interp.get_tensor(b["index"])
    params = requant.fc_params(int(qin["zero_points"][0]), int(qout["zero_points"][0]), (-128, 127))
    mult, shift = requant.fc_quant(qin["scales"][0], qw["scales"], qout["scales"][0])
    double = requant.fully_connected(flat, weights, bias, params, mult, shift)
    single = requant.fully_connected(flat, weights, bias, params, scale=scale)
    tflm_out = run_tflm_raw(data, xq, 1 << 20)[0]
    ref_out = run_litert_reference(data, xq)[0]
    assert np.array_equal(double, tflm_out)
    assert np.array_equal(single, ref_out)
    differ = np.count_nonzero(tflm_out != ref_out)
    assert 0 < differ < 0.02 * tflm_out.size  # a few outputs, by exactly one step
    assert np.abs(tflm_out.astype(int) - ref_out.astype(int)).max() == 1
