"""Exporters.

``kp.export.tflm(model, out_dir, representative_data)`` writes an int8 ``.tflite``, its C
array, op resolver and arena size for TFLite Micro, verified in the TFLM interpreter.
The implementation lives in ``tflite_micro`` (the module is not named ``tflm`` so that
``kp.export.tflm`` is unambiguously the function). ``tflite`` holds the int8 conversion
and the TFLM runner the exporters share.

``kp.export.saved_model(model, out_dir, version=1)`` writes a SavedModel for TF Serving
with the pruned channels physically removed, reloaded and checked; it lives in
``serving`` for the same reason.
"""

from keras_prune.export.serving import SavedModelExport, saved_model
from keras_prune.export.tflite_micro import TflmExport, UnsupportedOpsError, tflm

__all__ = ["tflm", "TflmExport", "UnsupportedOpsError", "saved_model", "SavedModelExport"]
