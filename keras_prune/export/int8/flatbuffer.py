"""Read an int8 ``.tflite`` into plain Python objects: tensors, constant data, operators.

The flatbuffer is decoded with the schema classes TensorFlow generates and ships
(``tensorflow.lite.python.schema_py_generated``, object API) on top of the ``flatbuffers``
package, so the layout is never hand-decoded. What comes out is the part of the model the
C generator needs: one subgraph, its tensors with shapes, dtypes, quantization and constant
data, and its operators with their built-in options as a dict.

Example:

```python
graph = read_tflite(Path("model.tflite").read_bytes())
for op in graph.operators:
    print(op.name, [graph.tensors[i].shape for i in op.inputs], op.options)
```
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field

import numpy as np

__all__ = ["read_tflite", "Graph", "Tensor", "Operator", "TfliteFormatError"]


class TfliteFormatError(ValueError):
    """A ``.tflite`` the C generator cannot read (not a flatbuffer, several subgraphs...)."""


@dataclass
class Tensor:
    index: int
    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    scale: np.ndarray  # float32, one per channel or one per tensor; empty if none
    zero_point: np.ndarray  # int64, same length as scale
    quantized_dim: int
    data: np.ndarray | None  # constant tensors only, already shaped

    @property
    def size(self) -> int:
        return int(np.prod(self.shape)) if self.shape else 1

    @property
    def is_constant(self) -> bool:
        return self.data is not None


@dataclass
class Operator:
    index: int
    name: str  # e.g. "CONV_2D"
    inputs: tuple[int, ...]  # tensor indices; -1 for an optional input left out
    outputs: tuple[int, ...]
    options: dict = field(default_factory=dict)


@dataclass
class Graph:
    tensors: list[Tensor]
    operators: list[Operator]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    version: int


def _schema():
    try:
        from tensorflow.lite.python import schema_py_generated
    except ImportError as e:  # pragma: no cover - TensorFlow is a dependency
        raise ImportError(
            "Reading .tflite files needs TensorFlow's schema module "
            "(tensorflow.lite.python.schema_py_generated)."
        ) from e
    return schema_py_generated


def _enum_names(enum_cls) -> dict[int, str]:
    return {v: k for k, v in vars(enum_cls).items() if not k.startswith("_") and isinstance(v, int)}


_DTYPES = {
    "FLOAT32": np.float32,
    "INT32": np.int32,
    "INT8": np.int8,
    "UINT8": np.uint8,
    "INT16": np.int16,
    "INT64": np.int64,
    "BOOL": np.bool_,
}


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _options(obj, names: dict[str, dict[int, str]]) -> dict:
    """The options object as a dict, enum fields (padding, activation) as their names."""
    if obj is None:
        return {}
    out = {}
    for key, value in vars(obj).items():
        k = _snake(key)
        if k == "padding":
            value = names["padding"].get(value, value)
        elif k == "fused_activation_function":
            value = names["activation"].get(value, value)
        elif isinstance(value, np.ndarray):
            value = value.tolist()
        out[k] = value
    return out


def read_tflite(model_bytes: bytes) -> Graph:
    """Decode ``model_bytes`` (a ``.tflite`` flatbuffer with one subgraph)."""
    schema = _schema()
    if len(model_bytes) < 8 or model_bytes[4:8] != b"TFL3":
        raise TfliteFormatError(
            "not a TFLite flatbuffer (the file identifier 'TFL3' is "
            "missing); pass the bytes of a .tflite file."
        )
    try:
        model = schema.ModelT.InitFromPackedBuf(bytearray(model_bytes), 0)
    except Exception as e:
        raise TfliteFormatError(f"the .tflite flatbuffer could not be decoded: {e}") from e
    if not model.subgraphs or len(model.subgraphs) != 1:
        raise TfliteFormatError(
            f"the model has {len(model.subgraphs or [])} subgraphs; the "
            "C generator takes models with exactly one (no control "
            "flow ops)."
        )
    sub = model.subgraphs[0]
    types = _enum_names(schema.TensorType)
    ops = _enum_names(schema.BuiltinOperator)
    names = {
        "padding": _enum_names(schema.Padding),
        "activation": _enum_names(schema.ActivationFunctionType),
    }

    tensors = []
    for i, t in enumerate(sub.tensors or []):
        tname = types.get(t.type, str(t.type))
        dtype = np.dtype(_DTYPES.get(tname, np.uint8))
        shape = tuple(int(s) for s in (t.shape if t.shape is not None else ()))
        q = t.quantization
        scale = np.asarray(q.scale if q is not None and q.scale is not None else [], np.float32)
        zp = np.asarray(q.zeroPoint if q is not None and q.zeroPoint is not None else [], np.int64)
        data = None
        buf = model.buffers[t.buffer] if t.buffer < len(model.buffers or []) else None
        if buf is not None and buf.offset:
            raw = model_bytes[buf.offset : buf.offset + buf.size]
        else:
            raw = bytes(buf.data) if buf is not None and buf.data is not None else b""
        if raw:
            data = np.frombuffer(raw, dtype).reshape(shape).copy()
        tensors.append(
            Tensor(
                i,
                (t.name or b"").decode() if isinstance(t.name, bytes) else (t.name or ""),
                shape,
                dtype,
                scale,
                zp,
                int(q.quantizedDimension) if q is not None else 0,
                data,
            )
        )

    operators = []
    for i, o in enumerate(sub.operators or []):
        code = model.operatorCodes[o.opcodeIndex]
        builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
        name = ops.get(builtin, f"BUILTIN_{builtin}")
        if name == "CUSTOM":
            name = f"CUSTOM:{(code.customCode or b'').decode(errors='replace')}"
        operators.append(
            Operator(
                i,
                name,
                tuple(int(v) for v in o.inputs),
                tuple(int(v) for v in o.outputs),
                _options(o.builtinOptions, names),
            )
        )
    return Graph(
        tensors,
        operators,
        tuple(int(v) for v in sub.inputs),
        tuple(int(v) for v in sub.outputs),
        int(model.version),
    )


def describe(t: Tensor) -> dict:
    """A JSON-able summary of a tensor (for manifests and error messages)."""
    d = dataclasses.asdict(t)
    d.pop("data")
    d["dtype"] = t.dtype.name
    d["scale"] = t.scale.tolist()
    d["zero_point"] = t.zero_point.tolist()
    return d
