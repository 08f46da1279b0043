"""Layer-level view of a Sequential or functional model's top-level graph (who feeds whom)."""

from __future__ import annotations

import keras

__all__ = ["LayerGraph", "functional_nodes"]


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
