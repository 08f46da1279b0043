"""LeGR: learned global ranking of filters, then physical shrinking to any FLOPs target.

```python
legr = kp.legr.LeGR(kp.io.load("model.h5"), train=(x, y), val=(xv, yv), learn_at=0.3)
legr.learn(generations=400, tau=200, checkpoint="legr_state.json")  # resumable
small = legr.prune(flops=0.5)
front = legr.pareto([0.7, 0.5, 0.3], finetune_epochs=5)
```
"""

from keras_prune.legr.evolution import Evolution, Member
from keras_prune.legr.ranking import Ranking, filter_norms
from keras_prune.legr.search import METHODS, LeGR, ParetoPoint, ParetoResult

__all__ = [
    "LeGR",
    "ParetoPoint",
    "ParetoResult",
    "Ranking",
    "Evolution",
    "Member",
    "filter_norms",
    "METHODS",
]
