"""From an int8 ``.tflite`` to the C library's files, in memory: decode, lower, plan the
arena, emit, and add the kernel library. Nothing is written, compiled or run here."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from keras_prune.export.cgen import kernel_library
from keras_prune.export.cgen.emit import emit
from keras_prune.export.cgen.lowering import CLayer, lower
from keras_prune.export.cgen.memory import MemoryPlan, plan_memory
from keras_prune.export.int8.flatbuffer import Graph, read_tflite

__all__ = ["GeneratedModel", "generate", "write_sources"]


@dataclass
class GeneratedModel:
    """The C library for one ``.tflite``, in memory (``files``) before it is written."""

    graph: Graph
    layers: list[CLayer]
    plan: MemoryPlan
    files: dict[str, str | bytes]

    @property
    def input(self):
        return self.graph.tensors[self.graph.inputs[0]]

    @property
    def output(self):
        return self.graph.tensors[self.graph.outputs[0]]


def generate(
    model_bytes: bytes,
    names: dict[int, tuple[str, ...]] | None = None,
    model_name: str = "model",
    sparse: str = "auto",
    masks: str = "threshold",
    mask_rates: dict[str, float] | None = None,
) -> GeneratedModel:
    """Lower an int8 ``.tflite`` to C sources (nothing is written or compiled).
    ``sparse``, ``masks``, ``mask_rates``: see ``lowering.lower``."""
    from keras_prune import __version__

    graph = read_tflite(model_bytes)
    layers = lower(graph, names, sparse, masks, mask_rates)
    plan = plan_memory(graph, layers)
    files: dict[str, str | bytes] = dict(
        emit(graph, layers, plan, {"model": model_name, "version": __version__})
    )
    files.update(kernel_library.kernel_files())
    files["model.tflite"] = model_bytes
    return GeneratedModel(graph, layers, plan, files)


def write_sources(files: dict[str, str | bytes], directory: Path) -> None:
    """Write generated files under ``directory`` (a build folder; exports go through the
    atomic ``pipeline.write``)."""
    for name, content in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
