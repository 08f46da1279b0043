"""The plan as a picture: what each layer kept, and where the cost went."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from keras_prune.io import atomic_path

__all__ = ["plot_plan"]


def plot_plan(result, path: Path) -> Path:
    """Two panels: per layer, the fraction of output channels kept and of 4-weight groups
    kept (bars); and the layer's cost in the first budget's metric, original beside
    final."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = next(iter(result.budget))
    orig_cost = {p: c.get(metric, 0.0) for p, c in result.original_layers.items()}
    names = [p.name for p in result.plan]
    x = np.arange(len(names))
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(max(6, 0.45 * len(names) + 2), 7), sharex=True)
    ax1.bar(
        x - 0.2,
        [p.channels / p.channels_original for p in result.plan],
        0.4,
        label="output channels kept",
        color="#4c72b0",
    )
    ax1.bar(
        x + 0.2,
        [1 - p.group_sparsity for p in result.plan],
        0.4,
        label="4-weight groups kept",
        color="#dd8452",
    )
    ax1.set_ylim(0, 1.05)
    ax1.set_ylabel("fraction kept")
    ax1.legend(loc="lower left", fontsize=8)
    est = ", ".join(f"{m} {result.estimate[m]:,.3g}/{b:,.3g}" for m, b in result.budget.items())
    acc = result.accuracy
    ax1.set_title(
        f"{result.target!r}: {est}\naccuracy original {acc.get('original', float('nan')):.3f}"
        f" -> final {acc.get('final', float('nan')):.3f}",
        fontsize=9,
    )
    if orig_cost:
        ax2.bar(
            x - 0.2, [orig_cost.get(n, 0.0) for n in names], 0.4, label="original", color="#999999"
        )
    ax2.bar(
        x + 0.2, [p.cost.get(metric, 0.0) for p in result.plan], 0.4, label="final", color="#55a868"
    )
    ax2.set_ylabel(metric)
    ax2.legend(fontsize=8)
    ax2.set_xticks(x)
    ax2.set_xticklabels(names, rotation=60, ha="right", fontsize=7)
    fig.tight_layout()
    with atomic_path(path, overwrite=True) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", dpi=110)
    plt.close(fig)
    return path
