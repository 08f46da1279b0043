"""Prune to a budget on a target: per-layer channel cuts and SIMD-group sparsity chosen
by measured sensitivity against the target's cost, then recovered by distillation.

```python
result = kp.auto.prune_to_budget(model, (x, y), (xv, yv),
                                 target=kp.targets.CortexM4(clock_mhz=120),
                                 latency_ms="50%")
result.model.save("pruned.keras"); result.plot("plan.png")
```
"""

from keras_prune.auto.budget import BudgetError, BudgetResult, LayerPlan, prune_to_budget
from keras_prune.auto.plan import Plan, Space, allocate, uniform

__all__ = [
    "prune_to_budget",
    "BudgetResult",
    "BudgetError",
    "LayerPlan",
    "Plan",
    "Space",
    "allocate",
    "uniform",
]
