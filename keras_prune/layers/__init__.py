"""Keras layers of keras-prune."""

from keras_prune.layers.prunable import PRUNABLE_CLASSES, is_prunable
from keras_prune.layers.prune_wrapper import PruneWrapper

__all__ = ["PruneWrapper", "PRUNABLE_CLASSES", "is_prunable"]
