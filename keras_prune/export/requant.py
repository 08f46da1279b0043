"""NumPy integer model of TFLite's int8 requantization: the arithmetic TFLM runs.

TFLite kernels scale an int32 accumulator back to int8 by a real factor
``s_in * s_w / s_out``. TFLM (and CMSIS-NN) do it in integers, rounding twice:
``QuantizeMultiplier`` turns the factor into a Q31 multiplier and a shift, then
``SaturatingRoundingDoublingHighMul`` rounds the high half of the product and
``RoundingDivideByPOT`` rounds the shift, both half away from zero. LiteRT's reference
FULLY_CONNECTED kernel instead rounds once, in double precision. This module models both,
exactly, in int64; ``docs/tflm-export.md`` explains the difference and the tests check
each model against its runtime bit for bit.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "quantize_multiplier",
    "multiply_by_quantized_multiplier",
    "requantize_float",
    "effective_scale",
    "fully_connected_int8",
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


def fully_connected_int8(
    x,
    weights,
    bias,
    input_zero_point: int,
    output_zero_point: int,
    scale,
    act_min: int = -128,
    act_max: int = 127,
    rounding: str = "double",
) -> np.ndarray:
    """int8 FULLY_CONNECTED: ``x`` (N, K) int8, ``weights`` (C, K) int8 (symmetric),
    ``bias`` (C,) int32 or None, ``scale`` per channel (``effective_scale``).

    ``rounding="double"`` is TFLM's (and CMSIS-NN's) arithmetic; ``"float"`` is LiteRT's
    reference kernel.
    """
    acc = (np.asarray(x, np.int64) - input_zero_point) @ np.asarray(weights, np.int64).T
    if bias is not None:
        acc = acc + np.asarray(bias, np.int64)
    scale = np.broadcast_to(np.asarray(scale, np.float64), acc.shape[-1:])
    if rounding == "double":
        ms, shifts = zip(*(quantize_multiplier(float(s)) for s in scale), strict=True)
        out = multiply_by_quantized_multiplier(acc, np.array(ms), np.array(shifts))
    elif rounding == "float":
        out = requantize_float(acc, scale)
    else:
        raise ValueError(f"rounding must be 'double' or 'float', got {rounding!r}.")
    return np.clip(out + output_zero_point, act_min, act_max).astype(np.int8)
