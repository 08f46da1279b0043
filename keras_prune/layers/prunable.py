"""Which Keras layers can be pruned, and how each of their kernels is read."""

from __future__ import annotations

from dataclasses import dataclass

import keras

from keras_prune import granularity as gr

__all__ = ["KernelSpec", "kernel_specs", "is_prunable", "PRUNABLE_CLASSES"]


@dataclass(frozen=True)
class KernelSpec:
    """One prunable kernel of a layer: its attribute, row layout, and whether its rows
    are the layer's output channels (only those are pruned by ``Channels``)."""

    attr: str
    layout: gr.KernelLayout
    output: bool = True


_SPECS: dict[type, tuple[KernelSpec, ...]] = {
    keras.layers.Dense: (KernelSpec("kernel", gr.DENSE),),
    keras.layers.Conv1D: (KernelSpec("kernel", gr.CONV1D),),
    keras.layers.Conv2D: (KernelSpec("kernel", gr.CONV2D),),
    keras.layers.DepthwiseConv2D: (KernelSpec("kernel", gr.DEPTHWISE2D),),
    keras.layers.SeparableConv2D: (
        KernelSpec("depthwise_kernel", gr.DEPTHWISE2D, output=False),
        KernelSpec("pointwise_kernel", gr.CONV2D),
    ),
    keras.layers.Conv2DTranspose: (KernelSpec("kernel", gr.CONV2D_TRANSPOSE),),
}

PRUNABLE_CLASSES: tuple[type, ...] = tuple(_SPECS)


def kernel_specs(layer: keras.layers.Layer) -> tuple[KernelSpec, ...]:
    """The prunable kernels of ``layer`` (empty if its class is not prunable).

    Subclasses of a prunable class are prunable the same way; the nearest class in the
    MRO wins (Conv1D is not mistaken for its base class).
    """
    for cls in type(layer).__mro__:
        if cls in _SPECS:
            return _SPECS[cls]
    return ()


def is_prunable(layer: keras.layers.Layer) -> bool:
    return bool(kernel_specs(layer))
