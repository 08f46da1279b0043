"""Where a pruned model runs, and what a candidate of it costs there.

- ``CortexM4(clock_mhz)``: the C export's cycles, flash and arena (``kp.export.cmsis``);
- ``CPU(batch)``: TensorFlow serving latency measured on this machine;
- ``MACs()``: multiply-accumulates, device-independent.
"""

from keras_prune.targets.base import (
    METRICS,
    LayerView,
    Target,
    kernel_rows,
    layer_views,
    op_kind,
)
from keras_prune.targets.cortex_m4 import CortexM4
from keras_prune.targets.cpu import CPU
from keras_prune.targets.macs import MACs

__all__ = [
    "METRICS",
    "LayerView",
    "Target",
    "CortexM4",
    "CPU",
    "MACs",
    "kernel_rows",
    "layer_views",
    "op_kind",
]
