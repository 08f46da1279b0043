"""Exporters.

``kp.export.tflm(model, out_dir, representative_data)`` writes an int8 ``.tflite``, its C
array, op resolver and arena size for TFLite Micro, verified in the TFLM interpreter.
The implementation lives in ``tflite_micro`` (the module is not named ``tflm`` so that
``kp.export.tflm`` is unambiguously the function). ``tflite`` holds the int8 conversion
and the TFLM runner the exporters share.
"""

from keras_prune.export.tflite_micro import TflmExport, UnsupportedOpsError, tflm

__all__ = ["tflm", "TflmExport", "UnsupportedOpsError"]
