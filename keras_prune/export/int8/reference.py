"""The integer arithmetic of TFLite Micro's int8 kernels, in NumPy, and their parameters.

Two halves, both exact to the bit:

* **Parameters** (``conv_quant``, ``fc_quant``, ``effective_bias``, ``activation_range``,
  ``padding``, ``add_params``, ``softmax_params``, ``mean_params`` and the ``*_params``
  struct builders): what TFLM's ``Prepare`` computes from what a ``.tflite`` holds
  (float32 scales, zero points, fused activation, padding scheme), with TFLM's own mix of
  float32 and double arithmetic. The dicts they return have the field names and order of
  the C structs in ``csrc/kernels/kp_nn.h``, so the generator emits them as initialisers.
* **Ops** (``conv2d``, ``depthwise_conv2d``, ``fully_connected``, ``max_pool2d``,
  ``avg_pool2d``, ``mean_hw``, ``add``, ``softmax``, ``pad``): TFLM's reference int8
  kernels evaluated in int64, given those parameters. They follow TFLM's formulation
  (real bias, ``input + input_offset`` products, padded taps skipped), not the C kernels'
  effective-bias one, so fuzzing the C kernels against them also checks that rewrite.

Requantization is ``multiply_by_quantized_multiplier``: TFLM (and CMSIS-NN) turn the real
factor ``s_in * s_w / s_out`` into a Q31 multiplier and a shift (``quantize_multiplier``),
then round twice, half away from zero (TFLM's default build). LiteRT's reference
FULLY_CONNECTED rounds once, in double precision (``requantize_float``; ``fully_connected``
with ``scale=``); ``docs/tflm-export.md`` explains the difference.
Inputs are int8 arrays; outputs are int8 arrays.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import overload

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "quantize_multiplier",
    "multiply_by_quantized_multiplier",
    "requantize_float",
    "effective_scale",
    "ACTIVATIONS",
    "activation_range",
    "padding",
    "conv_quant",
    "fc_quant",
    "effective_bias",
    "conv_params",
    "dw_conv_params",
    "fc_params",
    "pool_params",
    "pad_params",
    "mean_params",
    "add_params",
    "softmax_params",
    "requantize",
    "conv2d",
    "depthwise_conv2d",
    "fully_connected",
    "max_pool2d",
    "avg_pool2d",
    "mean_hw",
    "add",
    "softmax",
    "pad",
    "threshold_min_kept",
    "threshold_mask",
    "topk_mask",
]

_INT32_MIN, _INT32_MAX = -(1 << 31), (1 << 31) - 1


def quantize_multiplier(real: float) -> tuple[int, int]:
    """``(m, shift)`` with ``real = m * 2**(shift - 31)`` and ``m`` in [2^30, 2^31)."""
    if real == 0.0:
        return 0, 0
    q, shift = math.frexp(real)
    m = int(math.floor(abs(q) * (1 << 31) + 0.5)) * (1 if q >= 0 else -1)  # C round()
    if m == 1 << 31:
        m, shift = m // 2, shift + 1
    if shift < -31:
        return 0, 0
    return m, shift


def effective_scale(input_scale: float, weight_scales, output_scale: float) -> np.ndarray:
    """Per output channel ``s_in * s_w / s_out`` as TFLite computes it: float32 scales
    from the flatbuffer, multiplied in double."""
    return (
        np.float64(np.float32(input_scale))
        * np.asarray(weight_scales, np.float32).astype(np.float64)
        / np.float64(np.float32(output_scale))
    )


def _high_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """High 32 bits of 2·a·b, rounded half away from zero (saturating INT32_MIN²)."""
    ab = a * b
    s = ab + np.where(ab >= 0, np.int64(1 << 30), np.int64(1 - (1 << 30)))
    q = np.where(s >= 0, s >> 31, -((-s) >> 31))  # C division truncates toward zero
    return np.where((a == b) & (a == _INT32_MIN), np.int64(_INT32_MAX), q)


def _divide_by_pot(x: np.ndarray, exponent: np.ndarray) -> np.ndarray:
    """x / 2^exponent, rounded half away from zero."""
    mask = (np.int64(1) << exponent) - 1
    threshold = (mask >> 1) + (x < 0)
    return (x >> exponent) + ((x & mask) > threshold)


def multiply_by_quantized_multiplier(x, multiplier, shift) -> np.ndarray:
    """TFLite's default ``MultiplyByQuantizedMultiplier`` (double rounding), as TFLM runs it."""
    x = np.asarray(x, np.int64)
    shift = np.asarray(shift, np.int64)
    left, right = np.maximum(shift, 0), np.maximum(-shift, 0)
    return _divide_by_pot(_high_mul(x << left, np.asarray(multiplier, np.int64)), right)


def requantize_float(x, scale) -> np.ndarray:
    """``round(double(x) * scale)``, half away from zero: LiteRT's reference FC kernel."""
    v = np.asarray(x, np.float64) * np.asarray(scale, np.float64)
    a = np.abs(v)
    return np.copysign(np.floor(a) + (a - np.floor(a) >= 0.5), v).astype(np.int64)


_I32_MIN, _I32_MAX = -(1 << 31), (1 << 31) - 1
ACTIVATIONS = ("NONE", "RELU", "RELU6", "RELU_N1_TO_1")
SOFTMAX_INPUT_INT_BITS = 5  # TFLM's kScaledDiffIntegerBits: differences in Q5.26
SOFTMAX_SUM_INT_BITS = 12  # kAccumulationIntegerBits: the sum of exps in Q12.19
ADD_LEFT_SHIFT = 20  # TFLM's headroom for int8 ADD
COMPARISON_LEFT_SHIFT = 8  # TFLM's headroom for int8 comparisons


# ------------------------------------------------------------------ parameters
def _round_away(x: float) -> int:
    """``std::round``: half away from zero."""
    return int(math.copysign(math.floor(abs(x) + 0.5), x))


def _quantize_value(f: float, scale: float, zero_point: int) -> int:
    """TFLM's ``Quantize`` (kernel_util.cc): ``zp + round(f / scale)`` in float32."""
    q = np.float32(f) / np.float32(scale)
    if not (-(2.0**31) <= float(q) <= 2.0**31 - 1):
        raise ValueError(f"quantizing {f} with scale {scale} overflows int32.")
    return int(zero_point) + _round_away(float(q))


def activation_range(
    fused_activation: str | None, output_scale: float, output_zero_point: int
) -> tuple[int, int]:
    """``(min, max)`` of the int8 output for a fused activation (``"NONE"``, ``"RELU"``,
    ``"RELU6"``, ``"RELU_N1_TO_1"``): TFLM's ``CalculateActivationRangeQuantized``."""
    act = fused_activation or "NONE"
    lo, hi = -128, 127
    if act == "NONE":
        return lo, hi
    if act == "RELU":
        return max(lo, _quantize_value(0.0, output_scale, output_zero_point)), hi
    if act == "RELU6":
        return (
            max(lo, _quantize_value(0.0, output_scale, output_zero_point)),
            min(hi, _quantize_value(6.0, output_scale, output_zero_point)),
        )
    if act == "RELU_N1_TO_1":
        return (
            max(lo, _quantize_value(-1.0, output_scale, output_zero_point)),
            min(hi, _quantize_value(1.0, output_scale, output_zero_point)),
        )
    raise ValueError(f"fused activation {act!r} has no int8 clamp; expected one of {ACTIVATIONS}.")


def _out_size(in_size: int, filter_size: int, stride: int, dilation: int, scheme: str) -> int:
    """TFLM's ``ComputeOutSizeChecked`` (TensorFlow's GetWindowedOutputSize)."""
    if stride < 1 or dilation < 1 or filter_size < 1 or in_size < 0:
        raise ValueError(
            f"bad window: in {in_size}, filter {filter_size}, stride {stride}, dilation {dilation}."
        )
    effective = (filter_size - 1) * dilation + 1
    if scheme == "SAME":
        out = (in_size + stride - 1) // stride
    elif scheme == "VALID":
        out = int((in_size + stride - effective) / stride)  # C truncation
    else:
        raise ValueError(f"padding must be 'SAME' or 'VALID', got {scheme!r}.")
    if out < 1:
        raise ValueError(
            f"a {filter_size}-tap window (dilation {dilation}) does not fit "
            f"an input of {in_size} with {scheme} padding."
        )
    return out


@overload
def padding(
    in_size: int, filter_size: int, stride: int, dilation: int, scheme: str
) -> tuple[int, int]: ...
@overload
def padding(in_size: int, filter_size: int, stride: int, dilation: int, scheme: int) -> int: ...
def padding(
    in_size: int, filter_size: int, stride: int, dilation: int, scheme: str | int
) -> tuple[int, int] | int:
    """One axis of TFLM's ``ComputePaddingHeightWidth``.

    ``scheme`` ``"SAME"``/``"VALID"``: returns ``(out_size, pad_before)``. ``scheme`` an
    int: it is the output size (as a ``.tflite`` stores it); returns ``pad_before``.
    The padding after is whatever the output size needs beyond that (TFLM's offset).
    """
    if isinstance(scheme, str):
        out = _out_size(in_size, filter_size, stride, dilation, scheme)
        return out, padding(in_size, filter_size, stride, dilation, out)
    out = int(scheme)
    if out < 0 or stride < 1 or dilation < 1 or filter_size < 1:
        raise ValueError(
            f"bad window: out {out}, filter {filter_size}, stride {stride}, dilation {dilation}."
        )
    total = (out - 1) * stride + (filter_size - 1) * dilation + 1 - in_size
    return max(total, 0) // 2


def _multipliers(scales: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    ms, shifts = zip(*(quantize_multiplier(float(s)) for s in np.ravel(scales)), strict=True)
    return np.array(ms, np.int32), np.array(shifts, np.int32)


def conv_quant(
    input_scale: float, weight_scales: ArrayLike, output_scale: float
) -> tuple[np.ndarray, np.ndarray]:
    """``(multiplier, shift)`` int32 arrays, one per weight scale, for CONV_2D and
    DEPTHWISE_CONV_2D (and per-channel FULLY_CONNECTED): TFLM's
    ``PopulateConvolutionQuantizationParams``, ``s_in * s_w / s_out`` in double."""
    return _multipliers(effective_scale(input_scale, np.atleast_1d(weight_scales), output_scale))


def fc_quant(
    input_scale: float, weight_scales: ArrayLike, output_scale: float
) -> tuple[np.ndarray, np.ndarray]:
    """``(multiplier, shift)`` for FULLY_CONNECTED: per channel as ``conv_quant`` when there
    are several weight scales; for one, TFLM's ``GetQuantizedConvolutionMultipler``, which
    multiplies ``s_in * s_w`` in float32 before dividing by ``s_out`` in double."""
    scales = np.atleast_1d(np.asarray(weight_scales, np.float32))
    if scales.size > 1:
        return conv_quant(input_scale, scales, output_scale)
    product = np.float32(np.float32(input_scale) * scales[0])
    return _multipliers([float(product) / float(np.float32(output_scale))])


def effective_bias(bias: ArrayLike | None, weights: ArrayLike, input_offset: int) -> np.ndarray:
    """int32 ``bias[c] + input_offset * sum(weights[c])`` per output channel ``c``
    (``weights`` reshapeable to (channels, taps); ``bias`` None means zeros): the bias the
    C kernels take (see kp_nn.h)."""
    w = np.asarray(weights, np.int64)
    w = w.reshape(w.shape[0], -1)
    b = np.zeros(w.shape[0], np.int64) if bias is None else np.asarray(bias, np.int64)
    if b.shape != (w.shape[0],):
        raise ValueError(f"bias has shape {b.shape}; expected ({w.shape[0]},).")
    eff = b + int(input_offset) * w.sum(axis=1)
    if eff.min(initial=0) < _I32_MIN or eff.max(initial=0) > _I32_MAX:
        raise ValueError(
            "the effective bias overflows int32; the layer's bias or weights "
            "are out of the int8 kernels' range."
        )
    return eff.astype(np.int32)


def _tile(hw: Sequence[int]) -> dict:
    return {"h": int(hw[0]), "w": int(hw[1])}


def _act(activation: Sequence[int]) -> dict:
    return {"min": int(activation[0]), "max": int(activation[1])}


def conv_params(
    input_zero_point: int,
    output_zero_point: int,
    stride: Sequence[int],
    pad: Sequence[int],
    dilation: Sequence[int],
    activation: Sequence[int],
) -> dict:
    """``kp_conv_params``: offsets from zero points, (h, w) stride/padding/dilation and the
    ``(min, max)`` of ``activation_range``."""
    return {
        "input_offset": -int(input_zero_point),
        "output_offset": int(output_zero_point),
        "stride": _tile(stride),
        "padding": _tile(pad),
        "dilation": _tile(dilation),
        "activation": _act(activation),
    }


def dw_conv_params(
    input_zero_point: int,
    output_zero_point: int,
    ch_mult: int,
    stride: Sequence[int],
    pad: Sequence[int],
    dilation: Sequence[int],
    activation: Sequence[int],
) -> dict:
    """``kp_dw_conv_params`` (as ``conv_params``, with the depth multiplier)."""
    return {
        "input_offset": -int(input_zero_point),
        "output_offset": int(output_zero_point),
        "ch_mult": int(ch_mult),
        "stride": _tile(stride),
        "padding": _tile(pad),
        "dilation": _tile(dilation),
        "activation": _act(activation),
    }


def fc_params(input_zero_point: int, output_zero_point: int, activation: Sequence[int]) -> dict:
    """``kp_fc_params``."""
    return {
        "input_offset": -int(input_zero_point),
        "output_offset": int(output_zero_point),
        "activation": _act(activation),
    }


def pool_params(
    stride: Sequence[int], pad: Sequence[int], activation: Sequence[int] = (-128, 127)
) -> dict:
    """``kp_pool_params`` (pad from ``padding`` with dilation 1, as TFLM's pooling)."""
    return {"stride": _tile(stride), "padding": _tile(pad), "activation": _act(activation)}


def pad_params(paddings: ArrayLike, zero_point: int) -> dict:
    """``kp_pad_params`` from a PAD op's (4, 2) paddings; TFLM pads int8 with the output
    zero point when the op has no constant_values input."""
    p = np.asarray(paddings, np.int64).reshape(4, 2)
    if p.min() < 0:
        raise ValueError(f"negative paddings {p.tolist()}.")
    return {
        "before": [int(v) for v in p[:, 0]],
        "after": [int(v) for v in p[:, 1]],
        "pad_value": int(zero_point),
    }


def mean_params(
    input_shape: Sequence[int],
    input_scale: float,
    input_zero_point: int,
    output_scale: float,
    output_zero_point: int,
) -> dict:
    """``kp_mean_params`` for MEAN over H and W of an NHWC ``input_shape``.

    TFLM runs every int8 MEAN through ``QuantizedMeanOrSum`` (keep_dims or not, equal
    quantization or not): ``s_in / s_out`` quantized in ``Prepare``, then, per call, the
    1/(H*W) folded into it by shifting the multiplier left by floor(log2(H*W)) (capped at
    32 and at 31 + shift) and dividing by H*W. The fold depends only on the shape, so it
    is done here and the returned multiplier/shift already include it.
    """
    if len(input_shape) != 4:
        raise ValueError(f"MEAN over H, W takes a 4-D NHWC shape, got {tuple(input_shape)}.")
    count = int(input_shape[1]) * int(input_shape[2])
    if count < 1:
        raise ValueError(f"empty MEAN window in shape {tuple(input_shape)}.")
    real = float(np.float32(input_scale)) / float(np.float32(output_scale))
    m, s = quantize_multiplier(real)
    fold = min(count.bit_length() - 1, 32, 31 + s)
    m = (m << fold) // count  # int64 division in C; both positive
    return {
        "input_offset": -int(input_zero_point),
        "output_offset": int(output_zero_point),
        "multiplier": int(m),
        "shift": int(s - fold),
    }


def _smaller_than_one(real: float, what: str) -> tuple[int, int]:
    """TFLM's ``QuantizeMultiplierSmallerThanOneExp``, whose CHECKs fail outside (0, 1)."""
    if not 0.0 < real < 1.0:
        raise ValueError(f"{what} multiplier {real} is outside (0, 1); TFLM rejects it.")
    m, s = quantize_multiplier(real)
    if s > 0:
        raise ValueError(f"{what} multiplier {real} rounds to a left shift.")
    return m, s


def add_params(
    input1_scale: float,
    input1_zero_point: int,
    input2_scale: float,
    input2_zero_point: int,
    output_scale: float,
    output_zero_point: int,
    act_min: int = -128,
    act_max: int = 127,
) -> dict:
    """``kp_add_params`` for int8 ADD: TFLM's ``CalculateOpDataAdd`` (both inputs scaled
    by ``s_i / (2 max(s_1, s_2))`` after a 20-bit left shift, the sum by
    ``2 max(s_1, s_2) / (2^20 s_out)``). ``act_min``/``act_max`` from ``activation_range``."""
    s1, s2, so = (np.float32(v) for v in (input1_scale, input2_scale, output_scale))
    twice_max = 2 * float(max(s1, s2))
    m1, sh1 = _smaller_than_one(float(s1) / twice_max, "ADD input 1")
    m2, sh2 = _smaller_than_one(float(s2) / twice_max, "ADD input 2")
    mo, sho = _smaller_than_one(twice_max / ((1 << ADD_LEFT_SHIFT) * float(so)), "ADD output")
    return {
        "input1_offset": -int(input1_zero_point),
        "input1_multiplier": m1,
        "input1_shift": sh1,
        "input2_offset": -int(input2_zero_point),
        "input2_multiplier": m2,
        "input2_shift": sh2,
        "left_shift": ADD_LEFT_SHIFT,
        "output_offset": int(output_zero_point),
        "output_multiplier": mo,
        "output_shift": sho,
        "activation": _act((act_min, act_max)),
    }


def softmax_params(beta: float, input_scale: float) -> dict:
    """``kp_softmax_params`` for int8 SOFTMAX: TFLM's ``PreprocessSoftmaxScaling``
    (``beta * s_in * 2^26``, capped at 2^31 - 1, as a multiplier > 1 and left shift) and
    ``diff_min = -CalculateInputRadius(5, left_shift)``."""
    real = min(
        float(np.float32(beta))
        * float(np.float32(input_scale))
        * (1 << (31 - SOFTMAX_INPUT_INT_BITS)),
        (1 << 31) - 1.0,
    )
    if not real > 1.0:
        raise ValueError(
            f"softmax input multiplier {real} is not above 1 (beta {beta}, "
            f"input scale {input_scale}); TFLM rejects it."
        )
    m, left_shift = quantize_multiplier(real)
    radius = math.floor(
        1.0
        * ((1 << SOFTMAX_INPUT_INT_BITS) - 1)
        * (1 << (31 - SOFTMAX_INPUT_INT_BITS))
        / (1 << left_shift)
    )
    return {"input_multiplier": m, "input_left_shift": left_shift, "diff_min": int(-1.0 * radius)}


# ------------------------------------------------------------------ arithmetic
def requantize(acc: ArrayLike, multiplier: ArrayLike, shift: ArrayLike) -> np.ndarray:
    """TFLM's ``MultiplyByQuantizedMultiplier(int32 acc, multiplier, shift)``, int64 out.

    ``acc`` must fit int32 (TFLM's accumulator); the ``acc * (1 << shift)`` of a left
    shift wraps to int32 as the int32 C arithmetic does.
    """
    acc = np.asarray(acc, np.int64)
    if acc.size and (acc.min() < _I32_MIN or acc.max() > _I32_MAX):
        raise OverflowError("an accumulator overflows int32; TFLM's kernel would too.")
    shift = np.asarray(shift, np.int64)
    left = np.maximum(shift, 0)
    shifted = ((acc << left) + (1 << 31)) % (1 << 32) - (1 << 31)
    return multiply_by_quantized_multiplier(shifted, multiplier, np.minimum(shift, 0))


def _finish(acc, multiplier, shift, output_offset: int, activation: dict) -> np.ndarray:
    out = requantize(acc, multiplier, shift) + output_offset
    return np.clip(out, activation["min"], activation["max"]).astype(np.int8)


def _per_channel(values, channels: int) -> np.ndarray:
    v = np.asarray(values, np.int64).reshape(-1)
    return np.broadcast_to(v, (channels,)) if v.size == 1 else v


def _windows(
    x: np.ndarray, filter_hw, stride: dict, pad: dict, dilation: dict, out_hw, fill
) -> tuple[np.ndarray, np.ndarray]:
    """Every filter tap's view of ``x`` (N, H, W, C): an array (KH, KW, N, OH, OW, C) with
    ``fill`` where the tap is outside the image, and the matching inside mask."""
    n, h, w, c = x.shape
    kh, kw = filter_hw
    oh, ow = out_hw
    need_h = (oh - 1) * stride["h"] + (kh - 1) * dilation["h"] + 1
    need_w = (ow - 1) * stride["w"] + (kw - 1) * dilation["w"] + 1
    ph, pw = pad["h"], pad["w"]
    hp, wp = max(ph + h, need_h), max(pw + w, need_w)
    xp = np.full((n, hp, wp, c), fill, np.int64)
    xp[:, ph : ph + h, pw : pw + w] = x
    inside = np.zeros((hp, wp), bool)
    inside[ph : ph + h, pw : pw + w] = True
    taps = np.empty((kh, kw, n, oh, ow, c), np.int64)
    mask = np.empty((kh, kw, oh, ow), bool)
    for ky in range(kh):
        ys = slice(ky * dilation["h"], ky * dilation["h"] + (oh - 1) * stride["h"] + 1, stride["h"])
        for kx in range(kw):
            xs = slice(
                kx * dilation["w"], kx * dilation["w"] + (ow - 1) * stride["w"] + 1, stride["w"]
            )
            taps[ky, kx] = xp[:, ys, xs]
            mask[ky, kx] = inside[ys, xs]
    return taps, mask


def conv2d(
    x: ArrayLike,
    weights: ArrayLike,
    bias: ArrayLike | None,
    params: dict,
    multiplier: ArrayLike,
    shift: ArrayLike,
    out_hw: Sequence[int],
) -> np.ndarray:
    """CONV_2D int8: TFLM's reference ``ConvPerChannel``. ``x`` (N, H, W, C), ``weights``
    (O, KH, KW, C), ``bias`` (O,) int32 or None, ``params`` a ``conv_params`` dict,
    ``multiplier``/``shift`` per channel or one each; returns (N, OH, OW, O)."""
    x = np.asarray(x, np.int64) + params["input_offset"]
    w = np.asarray(weights, np.int64)
    o, kh, kw, c = w.shape
    if x.shape[3] != c:
        raise ValueError(
            f"input depth {x.shape[3]} != filter depth {c} (grouped convolution is not modelled)."
        )
    taps, _ = _windows(
        x, (kh, kw), params["stride"], params["padding"], params["dilation"], out_hw, 0
    )  # a skipped tap contributes what (zp + offset) = 0 does
    acc = np.einsum("yxnhwc,oyxc->nhwo", taps, w)
    if bias is not None:
        acc = acc + np.asarray(bias, np.int64)
    return _finish(
        acc,
        _per_channel(multiplier, o),
        _per_channel(shift, o),
        params["output_offset"],
        params["activation"],
    )


def depthwise_conv2d(
    x: ArrayLike,
    weights: ArrayLike,
    bias: ArrayLike | None,
    params: dict,
    multiplier: ArrayLike,
    shift: ArrayLike,
    out_hw: Sequence[int],
) -> np.ndarray:
    """DEPTHWISE_CONV_2D int8: TFLM's reference ``DepthwiseConvPerChannel``. ``weights``
    (1, KH, KW, C * ch_mult), output channel ``c * ch_mult + m``; ``params`` a
    ``dw_conv_params`` dict; returns (N, OH, OW, C * ch_mult)."""
    x = np.asarray(x, np.int64) + params["input_offset"]
    w = np.asarray(weights, np.int64)
    _, kh, kw, o = w.shape
    if o != x.shape[3] * params["ch_mult"]:
        raise ValueError(
            f"{o} filter channels for {x.shape[3]} inputs x ch_mult {params['ch_mult']}."
        )
    taps, _ = _windows(
        x, (kh, kw), params["stride"], params["padding"], params["dilation"], out_hw, 0
    )
    taps = np.repeat(taps, params["ch_mult"], axis=-1)
    acc = np.einsum("yxnhwo,yxo->nhwo", taps, w[0])
    if bias is not None:
        acc = acc + np.asarray(bias, np.int64)
    return _finish(
        acc,
        _per_channel(multiplier, o),
        _per_channel(shift, o),
        params["output_offset"],
        params["activation"],
    )


def fully_connected(
    x: ArrayLike,
    weights: ArrayLike,
    bias: ArrayLike | None,
    params: dict,
    multiplier: ArrayLike | None = None,
    shift: ArrayLike | None = None,
    scale: ArrayLike | None = None,
) -> np.ndarray:
    """FULLY_CONNECTED int8: TFLM's reference ``FullyConnected``/``FullyConnectedPerChannel``.
    ``x`` (B, K), ``weights`` (O, K); ``params`` an ``fc_params`` dict; returns (B, O).

    With ``multiplier`` and ``shift`` (``fc_quant``) it requantizes as TFLM does (double
    rounding). With ``scale`` instead (``effective_scale``, per channel or one) it rounds
    once in double precision, as LiteRT's reference kernel does.
    """
    if (scale is None) == (multiplier is None or shift is None):
        raise ValueError(
            "fully_connected: pass multiplier and shift (TFLM's rounding) or "
            "scale (LiteRT's reference rounding), not both or neither."
        )
    x = np.asarray(x, np.int64) + params["input_offset"]
    w = np.asarray(weights, np.int64)
    acc = x @ w.T
    if bias is not None:
        acc = acc + np.asarray(bias, np.int64)
    o = w.shape[0]
    if scale is not None:
        lo, hi = params["activation"]["min"], params["activation"]["max"]
        out = requantize_float(acc, np.broadcast_to(np.asarray(scale, np.float64), (o,)))
        return np.clip(out + params["output_offset"], lo, hi).astype(np.int8)
    return _finish(
        acc,
        _per_channel(multiplier, o),
        _per_channel(shift, o),
        params["output_offset"],
        params["activation"],
    )


_ONE = {"h": 1, "w": 1}


def max_pool2d(
    x: ArrayLike, params: dict, filter_hw: Sequence[int], out_hw: Sequence[int]
) -> np.ndarray:
    """MAX_POOL_2D int8: TFLM's reference ``MaxPool`` (window clipped to the image; an
    empty one gives -128 before the clamp). ``params`` a ``pool_params`` dict."""
    x = np.asarray(x, np.int64)
    taps, _ = _windows(x, filter_hw, params["stride"], params["padding"], _ONE, out_hw, -(1 << 20))
    out = np.maximum(taps.max(axis=(0, 1)), -128)
    act = params["activation"]
    return np.clip(out, act["min"], act["max"]).astype(np.int8)


def _trunc_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """C integer division (toward zero), ``b`` > 0."""
    return np.where(a >= 0, a // b, -((-a) // b))


def avg_pool2d(
    x: ArrayLike, params: dict, filter_hw: Sequence[int], out_hw: Sequence[int]
) -> np.ndarray:
    """AVERAGE_POOL_2D int8: TFLM's reference ``AveragePool``: the sum over the taps inside
    the image, divided by their count, rounded half away from zero. Raises ValueError
    where a window has no tap inside (TFLM fails the op)."""
    x = np.asarray(x, np.int64)
    taps, mask = _windows(x, filter_hw, params["stride"], params["padding"], _ONE, out_hw, 0)
    acc = taps.sum(axis=(0, 1))
    count = mask.sum(axis=(0, 1))[None, :, :, None].astype(np.int64)
    if count.min() == 0:
        raise ValueError("an AVERAGE_POOL_2D window lies wholly in the padding.")
    half = count // 2
    out = np.where(acc > 0, _trunc_div(acc + half, count), _trunc_div(acc - half, count))
    act = params["activation"]
    return np.clip(out, act["min"], act["max"]).astype(np.int8)


def mean_hw(x: ArrayLike, params: dict) -> np.ndarray:
    """MEAN over H and W of ``x`` (N, H, W, C) int8: TFLM's ``QuantizedMeanOrSum`` with the
    ``mean_params`` fold; returns (N, C) (keep_dims only changes the shape)."""
    x = np.asarray(x, np.int64)
    count = x.shape[1] * x.shape[2]
    acc = x.sum(axis=(1, 2)) + params["input_offset"] * count
    out = requantize(acc, params["multiplier"], params["shift"]) + params["output_offset"]
    return np.clip(out, -128, 127).astype(np.int8)


def add(x1: ArrayLike, x2: ArrayLike, params: dict) -> np.ndarray:
    """ADD of two same-shape int8 tensors: TFLM's reference int8 ``AddFunc`` with an
    ``add_params`` dict."""
    p = params
    a = (np.asarray(x1, np.int64) + p["input1_offset"]) << p["left_shift"]
    b = (np.asarray(x2, np.int64) + p["input2_offset"]) << p["left_shift"]
    total = requantize(a, p["input1_multiplier"], p["input1_shift"]) + requantize(
        b, p["input2_multiplier"], p["input2_shift"]
    )
    out = requantize(total, p["output_multiplier"], p["output_shift"]) + p["output_offset"]
    return np.clip(out, p["activation"]["min"], p["activation"]["max"]).astype(np.int8)


# gemmlowp fixed point (fixedpoint.h), on int64 arrays holding int32 values
def _mul(a, b) -> np.ndarray:
    """Fixed-point product: SaturatingRoundingDoublingHighMul."""
    return _high_mul(np.asarray(a, np.int64), np.asarray(b, np.int64))


def _rdiv_pot(x, exponent) -> np.ndarray:
    return _divide_by_pot(np.asarray(x, np.int64), np.asarray(exponent, np.int64))


def _sat_mul_pot(x: np.ndarray, exponent: int) -> np.ndarray:
    """SaturatingRoundingMultiplyByPOT for a positive exponent (symmetric bounds)."""
    limit = (1 << (31 - exponent)) - 1
    return np.where(x > limit, _I32_MAX, np.where(x < -limit, _I32_MIN, x << exponent))


def _exp_on_quarter(a: np.ndarray) -> np.ndarray:
    """exp on [-1/4, 0), Q0.31: exp_on_interval_between_negative_one_quarter_and_0_excl."""
    exp_minus_one_eighth, one_third = 1895147668, 715827883
    x = a + (1 << 28)
    x2 = _mul(x, x)
    x3 = _mul(x2, x)
    x4 = _mul(x2, x2)
    poly = _rdiv_pot(_mul(_rdiv_pot(x4, 2) + x3, one_third) + x2, 1)
    return exp_minus_one_eighth + _mul(exp_minus_one_eighth, x + poly)


_EXP_MINUS_POT = (
    (-2, 1672461947),
    (-1, 1302514674),
    (0, 790015084),
    (1, 290630308),
    (2, 39332535),
    (3, 720401),
    (4, 242),
)


def _exp_on_negative(a: np.ndarray) -> np.ndarray:
    """gemmlowp's exp_on_negative_values for Q5.26 input, Q0.31 output."""
    frac_bits = 31 - SOFTMAX_INPUT_INT_BITS
    quarter = 1 << (frac_bits - 2)
    offset = (a & (quarter - 1)) - quarter
    whole = offset - a
    result = _exp_on_quarter(_sat_mul_pot(offset, SOFTMAX_INPUT_INT_BITS))
    for k, multiplier in _EXP_MINUS_POT:
        result = np.where(whole & (1 << (frac_bits + k)), _mul(result, multiplier), result)
    return np.where(a == 0, _I32_MAX, result)


def _one_over_one_plus_x(a: np.ndarray) -> np.ndarray:
    """gemmlowp's one_over_one_plus_x_for_x_in_0_1 (Q0.31 in and out)."""
    s = a + _I32_MAX
    half_d = _trunc_div(s + np.where(s >= 0, 1, -1), 2)  # RoundingHalfSum(a, 1)
    x = 1515870810 + _mul(half_d, -1010580540)
    for _ in range(3):
        x = x + _sat_mul_pot(_mul(x, (1 << 29) - _mul(half_d, x)), 2)
    return _sat_mul_pot(x, 1)


def softmax(x: ArrayLike, params: dict) -> np.ndarray:
    """SOFTMAX int8 -> int8 over the last axis: TFLM's reference int8 ``Softmax`` with a
    ``softmax_params`` dict. Raises ValueError where TFLM's output shift CHECK fails
    (a sum of exps of 2^28 or more, i.e. long rows of near-equal values)."""
    x = np.asarray(x, np.int64)
    shape = x.shape
    x = x.reshape(-1, shape[-1])
    diff = x - np.maximum(x.max(axis=1, keepdims=True), -128)
    valid = diff >= params["diff_min"]
    rescaled = _mul(
        np.where(valid, diff, 0) << params["input_left_shift"], params["input_multiplier"]
    )
    e = _exp_on_negative(rescaled)
    total = np.where(valid, _rdiv_pot(e, SOFTMAX_SUM_INT_BITS), 0).sum(axis=1)
    if total.max() >= 1 << 28:
        raise ValueError("softmax sum of exps reaches 2^28: TFLM's exponent CHECK fails.")
    headroom = 32 - np.array([int(v).bit_length() for v in total], np.int64)
    scale = _one_over_one_plus_x((total << headroom) - (1 << 31))
    exponent = SOFTMAX_SUM_INT_BITS - headroom + 31 - 8
    out = _rdiv_pot(_mul(scale[:, None], e), exponent[:, None]) - 128
    out = np.where(valid, np.clip(out, -128, 127), -128)
    return out.astype(np.int8).reshape(shape)


def pad(x: ArrayLike, params: dict) -> np.ndarray:
    """PAD of a 4-D int8 tensor with a ``pad_params`` dict (constant ``pad_value``)."""
    widths = list(zip(params["before"], params["after"], strict=True))
    return np.pad(np.asarray(x, np.int8), widths, constant_values=params["pad_value"])


# ------------------------------------------------------------------ activation masks
def threshold_min_kept(
    input_scale: float,
    input_zero_point: int,
    threshold_scale: float,
    threshold_zero_point: int,
    threshold: int,
) -> int:
    """The smallest int8 input that TFLM's int8 GREATER_EQUAL against the int8 constant
    ``threshold`` finds true (128 when none): both sides are offset, shifted left by 8 and
    rescaled by their own scale (``ComparisonsPrepare``, ``ComparisonWithScaling``) before
    the compare. The rescaling is monotonic, so one bound replaces the per-value compare;
    it is found by evaluating all 256 inputs exactly as TFLM does."""
    m1, s1 = _smaller_than_one(float(np.float32(input_scale)), "GREATER_EQUAL input 1")
    m2, s2 = _smaller_than_one(float(np.float32(threshold_scale)), "GREATER_EQUAL input 2")
    x = np.arange(-128, 128, dtype=np.int64)
    lhs = requantize((x - int(input_zero_point)) << COMPARISON_LEFT_SHIFT, m1, s1)
    rhs = requantize(
        np.array([(int(threshold) - int(threshold_zero_point)) << COMPARISON_LEFT_SHIFT]), m2, s2
    )[0]
    keep = lhs >= rhs
    first = int(np.argmax(keep)) if keep.any() else 256
    if not keep[first:].all():
        raise ValueError(
            "GREATER_EQUAL's rescaled compare is not monotonic here; "
            "this cannot happen with a positive scale."
        )
    return first - 128


def threshold_mask(x: ArrayLike, min_kept: int, fill: int) -> np.ndarray:
    """GREATER_EQUAL + SELECT_V2 as TFLite runs an ActivationThreshold: ``x`` where
    ``x >= min_kept`` (from ``threshold_min_kept``), else ``fill``."""
    x = np.asarray(x, np.int8)
    return np.where(x.astype(np.int16) >= min_kept, x, np.int8(fill)).astype(np.int8)


def topk_mask(x: ArrayLike, k: int, fill: int) -> np.ndarray:
    """The ActivationMask on int8 values, per sample (first axis): the ``k`` largest of each
    sample kept, ``fill`` elsewhere; among values equal to the k-th the earliest win."""
    x = np.asarray(x, np.int8)
    flat = x.reshape(len(x), -1)
    if k >= flat.shape[1]:
        return x.copy()
    order = np.argsort(-flat.astype(np.int16), axis=1, kind="stable")[:, :k]
    out = np.full_like(flat, np.int8(fill))
    rows = np.arange(len(flat))[:, None]
    out[rows, order] = flat[rows, order]
    return out.reshape(x.shape)
