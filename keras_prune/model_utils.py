"""Helpers on Keras models that the rest of the package shares: checking what a caller
passed, walking layers (nested models included), cloning with weights, and the
layer-level graph of a Sequential or functional model (who feeds whom)."""

from __future__ import annotations

from collections.abc import Iterable

import keras

from keras_prune.layers.prune_wrapper import PruneWrapper

__all__ = [
    "check_model",
    "all_layers",
    "clone_with_weights",
    "fresh",
    "functional_nodes",
    "LayerGraph",
]


def check_model(model, what: str) -> None:
    """Raise a clear error unless ``model`` is a built Sequential or functional Keras 3
    model; ``what`` names the caller in the message (e.g. ``"kp.prune"``)."""
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"{what} expects a Keras 3 model (keras.Sequential or a functional keras.Model), "
            f"got {type(model).__module__}.{type(model).__name__}. A tf.keras (Keras 2) model "
            "must be rebuilt or loaded with Keras 3 first (kp.io.load)."
        )
    if not (isinstance(model, keras.Sequential) or hasattr(model, "_nodes_by_depth")):
        raise TypeError(
            f"{what} supports Sequential and functional models; '{model.name}' is a "
            f"subclassed {type(model).__name__}. Wrap its layers with "
            "kp.layers.PruneWrapper directly instead."
        )
    if not model.built:
        raise ValueError(
            f"{what}: model '{model.name}' is not built. Give it an Input (or input_shape) or "
            "call it once on a batch of data first."
        )


def all_layers(model) -> Iterable[keras.layers.Layer]:
    """Every layer, descending into nested Sequential/functional models."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from all_layers(layer)
        else:
            yield layer


def clone_with_weights(model, clone_function, after=None):
    """clone_model with fresh weights copied over from the originals, nested models too.

    ``after`` maps a top-level layer name to a factory of a new layer to call on that
    layer's output (how activation masks are inserted).
    """
    pairs = []
    after = after or {}

    def fn(layer):
        if isinstance(layer, keras.Model):
            return clone_with_weights(layer, clone_function)
        new = clone_function(layer)
        pairs.append((layer, new))
        return new

    if isinstance(model, keras.Sequential) and after:
        # clone_model can't insert layers into a Sequential: rebuild its layer list
        spec = model.inputs[0]
        layers = [keras.Input(batch_shape=spec.shape, dtype=spec.dtype)]
        for layer in model.layers:
            layers.append(fn(layer))
            if layer.name in after:
                layers.append(after[layer.name](layer.name))
        new_model = keras.Sequential(layers, name=model.name)
    else:

        def call(layer, *args, **kwargs):
            out = layer(*args, **kwargs)
            return after[layer.name](layer.name)(out) if layer.name in after else out

        new_model = keras.models.clone_model(
            model, clone_function=fn, call_function=call if after else None
        )
    for old, new in pairs:
        if isinstance(new, PruneWrapper) and not isinstance(old, PruneWrapper):
            new.layer.set_weights(old.get_weights())
        elif isinstance(old, PruneWrapper) and not isinstance(new, PruneWrapper):
            new.set_weights(old.stripped_weights())
        else:
            new.set_weights(old.get_weights())
    return new_model


def fresh(layer):
    """A new, unbuilt layer with the same config (no weights)."""
    return layer.__class__.from_config(layer.get_config())


def functional_nodes(model: keras.Model) -> tuple[keras.Model, list]:
    """The functional graph behind ``model`` and its call nodes, inputs first."""
    graph = model._functional if isinstance(model, keras.Sequential) else model
    return graph, [
        n
        for depth in sorted(graph._nodes_by_depth, reverse=True)
        for n in graph._nodes_by_depth[depth]
    ]


class LayerGraph:
    """Producers and consumers of each top-level layer, in topological order.

    A layer called more than once (shared) appears once, with the union of its neighbours.
    Nested models are single nodes here.
    """

    def __init__(self, model: keras.Model):
        graph, nodes = functional_nodes(model)
        self.model = model
        self.layers: list = []
        self._producers: dict[int, list] = {}
        self._consumers: dict[int, list] = {}
        self.calls: dict[int, int] = {}
        for node in nodes:
            op = node.operation
            if isinstance(op, keras.layers.InputLayer):
                continue
            if id(op) not in self.calls:
                self.layers.append(op)
                self._producers[id(op)] = []
                self._consumers.setdefault(id(op), [])
            self.calls[id(op)] = self.calls.get(id(op), 0) + 1
            for t in node.input_tensors:
                src = t._keras_history[0]
                if isinstance(src, keras.layers.InputLayer):
                    continue
                if src not in self._producers[id(op)]:
                    self._producers[id(op)].append(src)
                consumers = self._consumers.setdefault(id(src), [])
                if op not in consumers:
                    consumers.append(op)
        outputs = {id(t._keras_history[0]) for t in graph.outputs}
        self.outputs = [la for la in self.layers if id(la) in outputs]

    def producers(self, layer) -> list:
        return self._producers.get(id(layer), [])

    def consumers(self, layer) -> list:
        return self._consumers.get(id(layer), [])

    def by_name(self, name: str):
        return next((la for la in self.layers if la.name == name), None)
