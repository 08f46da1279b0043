"""A Cortex-M4 running the C export: cycles, flash and RAM of a candidate, without building it.

Each layer is costed the way ``kp.export.cmsis`` will run it:

- CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED go through the export's own
  dense-or-sparse choice (``cost_model.choose``, ``sparse="auto"``) on the candidate's
  int8 weights, so a layer whose pruned groups do not pay keeps the dense kernel here
  exactly as in the export, and its cycles are the fitted kernel models'.
- The other operators (ADD, pooling, SOFTMAX) use ``cost_model.OTHER_OPS``, per element.
  BatchNormalization and ReLU-type activations cost nothing: the int8 conversion folds
  them into the convolution before them.
- Flash is the export's constant data: weights (dense int8 or the sparse groups and
  their index), int32 biases and per-channel requantization (multiplier and shift). The
  kernels' code is the same for every candidate and is not counted.
- RAM is the export's arena: the same lifetime-based plan (``cgen.memory.plan_memory``)
  over int8 activations and each kernel's scratch.

The figures are estimates under the same assumptions as ``kp.mcu.profile_model`` (zero
wait states, no contention); ``benchmarks/budget.py`` checks them against the emulator.

```python
m4 = kp.targets.CortexM4(clock_mhz=120)
print(m4.estimate(kp.targets.layer_views(model)))   # latency_ms, flash_kb, ram_kb
```
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np

from keras_prune.export.cgen import cost_model
from keras_prune.export.cgen.memory import plan_memory
from keras_prune.export.cgen.sparse_format import WIDTH, depthwise_rows
from keras_prune.mcu.cycles import REFERENCE_MHZ
from keras_prune.targets.base import LayerView, Target

__all__ = ["CortexM4"]

# Per output channel of a kernel layer: int32 bias, int32 multiplier, int32 shift.
CHANNEL_BYTES = 12
# Ops the int8 conversion fuses into the op before them, or that move no data.
FREE_OPS = ("bn", "activation", "identity", "reshape")


def _quantize_rows(rows: np.ndarray, per_row: bool) -> np.ndarray:
    """Symmetric int8 as the converter does it (per output channel), keeping exact zeros."""
    rows = np.asarray(rows, np.float32)
    axis = 1 if per_row else 0
    scale = np.max(np.abs(rows), axis=axis, keepdims=True) / 127.0
    scale[scale == 0] = 1.0
    return np.clip(np.round(rows / scale), -127, 127).astype(np.int8)


def _pad_before(size: int, out: int, k: int, stride: int, dilation: int, padding: str) -> int:
    if padding != "same":
        return 0
    total = max((out - 1) * stride + (k - 1) * dilation + 1 - size, 0)
    return total // 2


def conv_shape(view: LayerView) -> cost_model.ConvShape:
    """The cost model's ``ConvShape`` of a convolution view."""
    layer = view.layer
    kh, kw = layer.kernel_size
    (h, w, cin), (oh, ow, _) = view.in_shape, view.out_shape
    stride, dil = tuple(layer.strides), tuple(layer.dilation_rate)
    pad = (
        _pad_before(h, oh, kh, stride[0], dil[0], layer.padding),
        _pad_before(w, ow, kw, stride[1], dil[1], layer.padding),
    )
    return cost_model.ConvShape(oh, ow, kh, kw, cin, stride, dil, pad)


class CortexM4(Target):
    """The C export on a Cortex-M4 (``kp.export.cmsis``).

    Args:
        clock_mhz: the core clock turning cycles into milliseconds (default 120 MHz,
            MLPerf Tiny's reference STM32L4R5).

    Metrics: ``latency_ms`` (one inference), ``flash_kb`` (constant data, KiB) and
    ``ram_kb`` (the activation arena, KiB).

    Example: ``kp.targets.CortexM4(clock_mhz=80).estimate(views)["latency_ms"]``.
    """

    metrics = ("latency_ms", "flash_kb", "ram_kb")
    name = "cortex-m4"

    def __init__(self, clock_mhz: float = REFERENCE_MHZ):
        if isinstance(clock_mhz, bool) or not isinstance(clock_mhz, (int, float)):
            raise TypeError(f"clock_mhz must be a number of MHz, got {clock_mhz!r}.")
        if not 0 < clock_mhz <= 1000:
            raise ValueError(f"clock_mhz must be in (0, 1000] MHz, got {clock_mhz}.")
        self.clock_mhz = float(clock_mhz)

    def get_config(self) -> dict:
        return {"clock_mhz": self.clock_mhz}

    # ------------------------------------------------------------------ one layer
    def layer_detail(self, view: LayerView) -> dict:
        """Cycles, flash bytes, scratch bytes and the kernel the export would pick."""
        op = view.op
        if op in ("conv", "fc", "dw") and view.rows is not None:
            return self._kernel_layer(view)
        n = view.out_elements
        c = cost_model.OTHER_OPS
        if op in FREE_OPS:
            cycles = 0.0
        elif op == "add":
            cycles = c["add"]["call"] + c["add"]["element"] * n
        elif op == "max_pool":
            ph, pw = view.layer.pool_size
            cycles = (
                c["max_pool"]["pixel"] * math.prod(view.out_shape[:-1])
                + c["max_pool"]["value"] * n * ph * pw
            )
        elif op in ("avg_pool", "global_pool"):
            cycles = c["avg_pool"]["value"] * math.prod(view.in_shape)
        elif op == "pad":
            cycles = c["pad"]["element"] * n
        else:  # concat and anything else: one pass over the output
            cycles = c["copy"]["element"] * n
        if view.softmax:
            cycles += self._softmax(view)
        return {"cycles": cycles, "flash": 0, "scratch": 0, "kernel": op}

    def _softmax(self, view: LayerView) -> float:
        c = cost_model.OTHER_OPS["softmax"]
        return c["call"] + c["class"] * view.out_shape[-1]

    def _kernel_layer(self, view: LayerView) -> dict:
        op, rows = view.op, view.rows
        if op == "dw":
            channels = rows.shape[1]
            shape = conv_shape(view)
            q = _quantize_rows(rows, per_row=False)
            if view.layer.depth_multiplier != 1 or channels % WIDTH:
                # no sparse depthwise kernel for this shape: dense, as the export does
                choice = cost_model.choose("dw", q.T, shape, mode="never")
            else:
                choice = cost_model.choose("dw", depthwise_rows(q), shape)
            kh, kw = view.layer.kernel_size
            scratch = cost_model.dw_scratch_bytes(kh, kw) if choice.kernel == "sparse" else 0
        elif op == "conv":
            q = _quantize_rows(rows, per_row=True)
            channels = rows.shape[0]
            shape = conv_shape(view)
            choice = cost_model.choose("conv", q, shape)
            if choice.kernel == "sparse":
                scratch = (
                    cost_model.conv_rows_scratch_bytes(shape)
                    if choice.conv_variant == "rows"
                    else cost_model.conv_scratch_bytes(shape)
                )
            else:
                scratch = 4 * shape.kh * shape.kw * shape.cin
        else:
            q = _quantize_rows(rows, per_row=True)
            channels = rows.shape[0]
            choice = cost_model.choose("fc", q, {"batches": 1})
            scratch = 0
        sparse = choice.kernel == "sparse"
        cycles = choice.sparse_cycles if sparse else choice.dense_cycles
        return {
            "cycles": float(cycles) + (self._softmax(view) if view.softmax else 0.0),
            "kernel_cycles": float(cycles),
            "flash": (choice.sparse_bytes if sparse else choice.dense_bytes)
            + CHANNEL_BYTES * channels,
            "scratch": int(scratch),
            "kernel": choice.kernel,
            "group_sparsity": float(choice.group_sparsity),
        }

    def layer_costs(self, view: LayerView) -> dict[str, float]:
        d = self.layer_detail(view)
        return {"latency_ms": self.ms(d["cycles"]), "flash_kb": d["flash"] / 1024}

    def ms(self, cycles: float) -> float:
        return cycles / (self.clock_mhz * 1e3)

    # ------------------------------------------------------------------ the model
    def estimate(
        self, views: list[LayerView], details: list[dict] | None = None
    ) -> dict[str, float]:
        details = details if details is not None else [self.layer_detail(v) for v in views]
        cycles = sum(d["cycles"] for d in details)
        flash = sum(d["flash"] for d in details)
        return {
            "latency_ms": self.ms(cycles),
            "flash_kb": flash / 1024,
            "ram_kb": self.arena_bytes(views, details) / 1024,
        }

    def arena_bytes(self, views: list[LayerView], details: list[dict]) -> int:
        """The export's arena for these views: its planner over int8 activations (ops
        that move no data share their input's bytes) and each kernel's scratch."""
        alias: dict[int, int] = {}
        sizes: dict[int, int] = {}
        layers = []
        for v, d in zip(views, details, strict=True):
            ins = tuple(alias.get(t, t) for t in v.inputs)
            for t, shape in zip(v.inputs, v.in_shapes, strict=False):
                sizes.setdefault(alias.get(t, t), math.prod(shape))
            if v.op in FREE_OPS and len(ins) == 1:
                alias[v.output] = ins[0]
                continue
            sizes[v.output] = math.prod(v.out_shape)
            layers.append(
                SimpleNamespace(inputs=ins, outputs=(v.output,), scratch=d["scratch"], alias=False)
            )
        if not layers:
            return 0
        first_in = layers[0].inputs[0]
        last_out = layers[-1].outputs[0]
        graph = SimpleNamespace(
            inputs=[first_in],
            outputs=[last_out],
            tensors={t: SimpleNamespace(size=s) for t, s in sizes.items()},
        )
        return plan_memory(graph, layers).arena_bytes
