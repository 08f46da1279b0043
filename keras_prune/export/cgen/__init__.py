"""The C exporter: ``kp.export.cmsis``, CMSIS-NN-ready C99 for a Cortex-M4.

* ``exporter``: ``cmsis()`` and its report, ``CExport``;
* ``generate``: ``.tflite`` -> the library's files in memory (decode, lower, plan, emit);
* ``lowering``: one registered unit per TFLite op, giving our kernel call and CMSIS-NN's;
* ``memory``: the static arena plan; ``emit``: the C sources;
* ``sparse_format``: the SIMD-group sparse weight encodings; ``cost_model``: which kernel
  (dense, sparse, zero-skipping) a layer runs, from cycles fitted on the emulator;
* ``kernel_library`` and ``csrc/``: the int8 kernels, portable C99 with Cortex-M4 DSP paths;
* ``verify``: the one step that builds and runs the result (through ``keras_prune.mcu``).
"""

from keras_prune.export.cgen.exporter import CExport, cmsis
from keras_prune.export.cgen.lowering import CExportError

__all__ = ["cmsis", "CExport", "CExportError"]
