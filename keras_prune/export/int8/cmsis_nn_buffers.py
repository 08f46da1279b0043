"""The scratch buffers CMSIS-NN's Cortex-M4 (DSP) kernels ask for, from tensor shapes.

Both exporters size memory with them: the TFLM arena adds the largest one (a board built
with CMSIS-NN requests it from TFLM), and the C export gives the ``KP_USE_CMSIS_NN``
build one static buffer that fits every layer's request.
"""

from __future__ import annotations

__all__ = ["cmsis_nn_scratch_bytes"]


def cmsis_nn_scratch_bytes(op: str, input_shape, filter_shape) -> int:
    """Bytes of scratch one op asks for from CMSIS-NN's Cortex-M4 (DSP) kernels.

    Sizes follow CMSIS-NN's ``*_get_buffer_size`` for DSP targets: conv im2col (none for
    1x1 with GCC), depthwise, and average pooling.
    """
    if op == "CONV_2D":
        _, kh, kw, cin = filter_shape
        if (kh, kw) != (1, 1):
            cols = kh * kw * cin
            return 2 * (cols + (-cols) % 4) * 2
    elif op == "DEPTHWISE_CONV_2D":
        _, kh, kw, _ = filter_shape
        return input_shape[-1] * kh * kw * 2
    elif op == "AVERAGE_POOL_2D":
        return input_shape[-1] * 4
    return 0
