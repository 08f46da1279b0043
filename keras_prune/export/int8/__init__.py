"""The target-neutral int8 layer both int8 exporters stand on.

* ``convert``: Keras model -> full-integer int8 ``.tflite`` (``convert_int8``);
* ``flatbuffer``: a ``.tflite`` decoded into tensors and operators (``read_tflite``);
* ``runtime``: running a ``.tflite`` in TFLite Micro and LiteRT;
* ``reference``: TFLM's int8 kernels and their parameters in NumPy, exact to the bit;
* ``tflm_ops``: the ops TFLite Micro registers, and what to do about the others;
* ``cmsis_nn_buffers``: the scratch sizes CMSIS-NN's kernels ask for.

Nothing here knows about an output format or a target board.
"""
