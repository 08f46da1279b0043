"""keras-prune: pruning for Keras 3 that ends in real speed, down to a Cortex-M4.

Example:

```python
import keras_prune as kp

pruned = kp.prune(model,
                  schedule=kp.schedules.PolynomialDecay(0.0, 0.9, begin_step=0, end_step=2000),
                  granularity=kp.granularity.SIMDGroups(width=4))
pruned.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
pruned.fit(x, y, callbacks=[kp.callbacks.PruningScheduler(), kp.callbacks.SparsityLogger()])
plain = kp.strip(pruned)
kp.summary(plain)
```
"""

from keras_prune import (
    auto,
    callbacks,
    datasets,
    distill,
    export,
    granularity,
    graph,
    integral,
    io,
    layers,
    legr,
    lottery,
    mcu,
    model_utils,
    models,
    schedules,
    surgery,
    targets,
)
from keras_prune.flops import count_flops, count_macs
from keras_prune.integral import add_activation_masks
from keras_prune.pruning import prune, strip, summary
from keras_prune.surgery import shrink

__version__ = "0.1.0"

__all__ = [
    "prune",
    "strip",
    "summary",
    "add_activation_masks",
    "count_macs",
    "count_flops",
    "shrink",
    "schedules",
    "granularity",
    "layers",
    "callbacks",
    "integral",
    "graph",
    "surgery",
    "auto",
    "targets",
    "legr",
    "lottery",
    "io",
    "export",
    "mcu",
    "datasets",
    "model_utils",
    "models",
    "distill",
    "__version__",
]
