"""Callbacks that drive pruning during ``model.fit``."""

from keras_prune.callbacks.pruning_scheduler import PruningScheduler
from keras_prune.callbacks.sparsity_logger import SparsityLogger, measure_sparsity

__all__ = ["PruningScheduler", "SparsityLogger", "measure_sparsity"]
