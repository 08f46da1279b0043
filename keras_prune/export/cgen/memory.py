"""The static memory plan of a generated model.

``plan_memory`` gives every activation tensor (and each layer's scratch) an offset in one
arena, reusing bytes between tensors whose lifetimes do not overlap: TFLite Micro's greedy
scheme (largest first, lowest offset that fits), with RESHAPE outputs sharing their input's
bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

from keras_prune.export.cgen.lowering import CLayer
from keras_prune.export.int8.flatbuffer import Graph

__all__ = ["ALIGN", "Buffer", "MemoryPlan", "plan_memory"]

ALIGN = 4  # word alignment: the DSP kernels read 32-bit words


@dataclass
class Buffer:
    key: str  # "t<index>" for a tensor, "s<layer>" for scratch
    size: int
    first: int  # first layer that needs it
    last: int  # last layer that needs it
    offset: int = -1


@dataclass
class MemoryPlan:
    offsets: dict[str, int]  # buffer key -> arena offset
    arena_bytes: int
    buffers: list[Buffer]

    def tensor(self, index: int) -> int:
        return self.offsets[f"t{index}"]


def _round_up(n: int) -> int:
    return n + (-n) % ALIGN


def plan_memory(graph: Graph, layers: list[CLayer]) -> MemoryPlan:
    """Offsets for every activation tensor and scratch buffer, by lifetime."""
    root = {}  # RESHAPE outputs alias their input: they share one buffer

    def find(t: int) -> int:
        while t in root:
            t = root[t]
        return t

    for layer in layers:
        if layer.alias:
            root[layer.outputs[0]] = layer.inputs[0]
    end = len(layers)
    life: dict[int, list[int]] = {}

    def touch(t: int, at: int) -> None:
        r = find(t)
        span = life.setdefault(r, [at, at])
        span[0], span[1] = min(span[0], at), max(span[1], at)

    touch(graph.inputs[0], -1)
    for i, layer in enumerate(layers):
        for t in (*layer.inputs, *layer.outputs):
            touch(t, i)
    touch(graph.outputs[0], end)
    buffers = [
        Buffer(f"t{t}", _round_up(graph.tensors[t].size), a, b) for t, (a, b) in life.items()
    ]
    buffers += [
        Buffer(f"s{i}", _round_up(layer.scratch), i, i)
        for i, layer in enumerate(layers)
        if layer.scratch
    ]

    placed: list[Buffer] = []
    for buf in sorted(buffers, key=lambda b: (-b.size, b.first, b.key)):
        live = sorted(
            (p for p in placed if p.first <= buf.last and buf.first <= p.last),
            key=lambda p: p.offset,
        )
        offset = 0
        for p in live:
            if offset + buf.size <= p.offset:
                break
            offset = max(offset, p.offset + p.size)
        buf.offset = offset
        placed.append(buf)
    offsets = {b.key: b.offset for b in placed}
    for t, r in root.items():
        offsets[f"t{t}"] = offsets[f"t{find(r)}"]
    arena = max((b.offset + b.size for b in placed), default=0)
    return MemoryPlan(offsets, max(arena, ALIGN), sorted(placed, key=lambda b: b.offset))


# ---------------------------------------------------------------------------- emission
