"""Which Keras layers each operator of an int8 ``.tflite`` came from.

The converter names tensors after the layers that produced them; ``model_ops`` reads
those names back so that every report and error can point at a Keras layer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import keras

from keras_prune.export.int8.runtime import litert_interpreter

__all__ = ["Op", "model_ops"]


@dataclass(frozen=True)
class Op:
    """One operator of the ``.tflite`` and the Keras layers it came from."""

    index: int
    name: str
    layers: tuple[str, ...]
    layer_classes: tuple[str, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]


def _layer_classes(model: keras.Model | None) -> dict[str, str]:
    out: dict[str, str] = {}

    def walk(m):
        for layer in m.layers:
            out[layer.name] = type(layer).__name__
            if isinstance(layer, keras.Model):
                walk(layer)

    if model is not None:
        walk(model)
    return out


def _layers_in(tensor_name: str, classes: dict[str, str]) -> list[str]:
    """Keras layer names in a converter tensor name like ``model_1/conv_1/Relu;...``.

    Keras scopes a layer's ops as ``<name>_<k>``; the deepest path component that names a
    layer wins (a nested model's layers over the model itself).
    """
    found = []
    for path in tensor_name.split(";"):
        hit = None
        for part in path.split("/"):
            for cand in (part, re.sub(r"_\d+$", "", part)):
                if cand in classes:
                    hit = cand
                    break
        if hit and hit not in found:
            found.append(hit)
    return found


def model_ops(model_bytes: bytes, model: keras.Model | None = None) -> list[Op]:
    """The operators of an int8 model, each with the Keras layers it came from."""
    interp = litert_interpreter(model_bytes)
    names = {t["index"]: t["name"] for t in interp.get_tensor_details()}
    classes = _layer_classes(model)
    ops = []
    for d in interp._get_ops_details():
        ins = tuple(i for i in d["inputs"] if i >= 0)
        outs = tuple(d["outputs"])
        layers: list[str] = []
        for group in (outs, ins):
            for i in group:
                layers += [n for n in _layers_in(names.get(i, ""), classes) if n not in layers]
            if layers:
                break
        ops.append(
            Op(
                d["index"],
                d["op_name"],
                tuple(layers),
                tuple(classes[n] for n in layers),
                ins,
                outs,
            )
        )
    return ops
