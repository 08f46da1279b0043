"""Verify and measure generated C on microcontroller targets; nothing here generates code.

* ``toolchain``: the host's gcc and the Arm cross tools, found and run one way;
* ``host``: the host build of a generated model (bit-exactness checks, sanitizers);
* ``firmware``: Cortex-M4 firmware for QEMU's ``mps2-an386``, its run, and flash/RAM
  from the linker map;
* ``profiler``: a Cortex-M4 emulator (unicorn) that counts instructions and estimates
  cycles per function;
* ``cycles``: per-layer cycles of a whole generated model (``profile_model``).

The C exporter (``kp.export.cmsis``) reaches this package only through its verification
step; the generator itself never imports it.

Example:

```python
report = kp.export.cmsis(model, "out/c", x_train[:500])
cost = kp.mcu.profile_model("out/c", x_q)      # x_q: one int8 input
print(kp.mcu.cycles.table(cost))
```
"""

from keras_prune.mcu import cycles, firmware, host, profiler, toolchain
from keras_prune.mcu.cycles import ModelCost, profile_model

__all__ = ["cycles", "firmware", "host", "profiler", "toolchain", "profile_model", "ModelCost"]
