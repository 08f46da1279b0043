"""Exporters.

``kp.export.tflm(model, out_dir, representative_data)`` writes an int8 ``.tflite``, its C
array, op resolver and arena size for TFLite Micro, verified in the TFLM interpreter.
The implementation lives in ``tflite_micro`` (the module is not named ``tflm`` so that
``kp.export.tflm`` is unambiguously the function). ``tflite`` holds the int8 conversion
and the TFLM runner the exporters share.

``kp.export.cmsis(model, out_dir, representative_data)`` generates a self-contained C99
library for a Cortex-M4 (our int8 kernels, or CMSIS-NN's under ``-DKP_USE_CMSIS_NN``),
bit-exact with TFLM, checked on the host and on an emulated Cortex-M4. It lives in
``cortex_m`` (not ``cmsis``, for the same reason); ``tflite_graph``, ``c_lowering`` and
``c_model`` decode, lower and emit, ``int8_ops`` is the NumPy model of the integer
arithmetic, ``m4`` builds firmware and runs QEMU, ``m4_profile`` counts cycles.

``kp.export.saved_model(model, out_dir, version=1)`` writes a SavedModel for TF Serving
with the pruned channels physically removed, reloaded and checked; it lives in
``serving`` for the same reason.
"""

from keras_prune.export.cortex_m import CExport, CExportError, cmsis
from keras_prune.export.serving import SavedModelExport, saved_model
from keras_prune.export.tflite_micro import TflmExport, UnsupportedOpsError, tflm

__all__ = [
    "tflm",
    "TflmExport",
    "UnsupportedOpsError",
    "saved_model",
    "SavedModelExport",
    "cmsis",
    "CExport",
    "CExportError",
]
