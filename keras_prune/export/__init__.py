"""Exporters: one subpackage per target, on a shared int8 layer and pipeline.

* ``kp.export.tflm(model, out_dir, representative_data)`` writes an int8 ``.tflite``, its
  C array, op resolver and arena size for TFLite Micro, verified in the TFLM interpreter
  (``tflite_micro/``).
* ``kp.export.cmsis(model, out_dir, representative_data)`` generates a self-contained C99
  library for a Cortex-M4 (our int8 kernels, or CMSIS-NN's under ``-DKP_USE_CMSIS_NN``),
  bit-exact with TFLM, checked on the host and on an emulated Cortex-M4 (``cgen/``).
* ``kp.export.saved_model(model, out_dir, version=1)`` writes a SavedModel for TF Serving
  with the pruned channels physically removed, reloaded and checked (``serving``).

``int8/`` is what both int8 exporters stand on (conversion, flatbuffer decoding, the
NumPy integer reference, the TFLM op table, CMSIS-NN buffer sizes); ``pipeline`` is the
steps they share (checks, data, conversion, manifest, atomic write). The subpackages are
not named ``tflm`` or ``cmsis`` so that ``kp.export.tflm`` and ``kp.export.cmsis`` are
unambiguously the functions. Measuring on a microcontroller is ``keras_prune.mcu``.
"""

from keras_prune.export.cgen import CExport, CExportError, cmsis
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


def __getattr__(name: str):
    # kp.export.m4_cycles, the README's old path, without importing it up front
    if name == "m4_cycles":
        import importlib

        return importlib.import_module("keras_prune.export.m4_cycles")
    raise AttributeError(f"module 'keras_prune.export' has no attribute {name!r}")
