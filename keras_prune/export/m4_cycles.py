"""Moved: per-layer Cortex-M4 cycles are ``keras_prune.mcu.cycles`` (``kp.mcu.profile_model``).

This name stays because the README promised ``kp.export.m4_cycles.profile_model``; it
warns once and re-exports the new module's public names.
"""

import warnings

from keras_prune.mcu.cycles import (  # noqa: F401
    ASSUMPTIONS,
    REFERENCE_MHZ,
    LayerCost,
    ModelCost,
    profile_model,
    table,
)

warnings.warn(
    "keras_prune.export.m4_cycles moved to keras_prune.mcu.cycles (kp.mcu.profile_model); "
    "the old name will be removed in a later release.",
    DeprecationWarning,
    stacklevel=2,
)
