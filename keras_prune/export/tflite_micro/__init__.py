"""The TFLite Micro exporter: ``kp.export.tflm``.

* ``exporter``: ``tflm()`` and its report, ``TflmExport``;
* ``verify``: the op check, the arena, TFLM against LiteRT, pruned zeros after int8;
* ``templates``: the C array, op resolver, settings header and README it writes.
"""

from keras_prune.export.tflite_micro.exporter import TflmExport, tflm
from keras_prune.export.tflite_micro.verify import UnsupportedOpsError

__all__ = ["tflm", "TflmExport", "UnsupportedOpsError"]
