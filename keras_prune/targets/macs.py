"""The generic target: multiply-accumulates, when no device is in view."""

from __future__ import annotations

from keras_prune.targets.base import LayerView, Target

__all__ = ["MACs"]


class MACs(Target):
    """Multiply-accumulates per inference (metric ``macs``).

    Args:
        skip_zeros: count only the MACs of non-zero weights (default ``True``: pruned
            SIMD groups count as saved, as a sparse kernel would skip them). With
            ``False`` only channel cuts lower the count, as on a dense kernel.

    Example: ``kp.auto.prune_to_budget(model, ..., target=kp.targets.MACs(), macs="50%")``.
    """

    metrics = ("macs",)
    name = "macs"

    def __init__(self, skip_zeros: bool = True):
        if not isinstance(skip_zeros, bool):
            raise TypeError(f"skip_zeros must be True or False, got {skip_zeros!r}.")
        self.skip_zeros = skip_zeros
        self.sparse_pays = skip_zeros

    def get_config(self) -> dict:
        return {"skip_zeros": self.skip_zeros}

    def layer_costs(self, view: LayerView) -> dict[str, float]:
        return {"macs": float(view.nonzero_macs if self.skip_zeros else view.macs)}
