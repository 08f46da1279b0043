"""Keras layers of keras-prune."""

from keras_prune.layers.activation_mask import ActivationMask, ActivationThreshold
from keras_prune.layers.prunable import PRUNABLE_CLASSES, is_prunable
from keras_prune.layers.prune_wrapper import PruneWrapper

__all__ = [
    "PruneWrapper",
    "ActivationMask",
    "ActivationThreshold",
    "PRUNABLE_CLASSES",
    "is_prunable",
]
