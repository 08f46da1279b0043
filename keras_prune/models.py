"""Reference models from the papers and benchmarks this project measures itself against.

LeNet-300-100 and LeNet-5 (the pruning papers' MNIST models), and MLPerf Tiny's ResNet-8
(image classification), MobileNetV1 (visual wake words) and DS-CNN (keyword spotting)
layouts. They are untrained
builders; the demo, the benchmarks and the tests train or calibrate them as needed.

Example:

```python
model = kp.models.ds_cnn()          # 49x10 MFCC input, 12 keywords
model.summary()
```
"""

from __future__ import annotations

import keras

__all__ = ["lenet_300_100", "lenet5", "resnet8", "mobilenet_v1", "ds_cnn"]

L = keras.layers


def lenet_300_100() -> keras.Model:
    inp = keras.Input((28, 28, 1), name="image")
    x = L.Flatten(name="flatten")(inp)
    x = L.Dense(300, activation="relu", name="fc1")(x)
    x = L.Dense(100, activation="relu", name="fc2")(x)
    out = L.Dense(10, activation="softmax", name="fc3")(x)
    return keras.Model(inp, out, name="lenet_300_100")


def lenet5() -> keras.Model:
    inp = keras.Input((28, 28, 1), name="image")
    x = L.Conv2D(6, 5, padding="same", activation="relu", name="conv1")(inp)
    x = L.MaxPooling2D(name="pool1")(x)
    x = L.Conv2D(16, 5, activation="relu", name="conv2")(x)
    x = L.MaxPooling2D(name="pool2")(x)
    x = L.Flatten(name="flatten")(x)
    x = L.Dense(120, activation="relu", name="fc1")(x)
    x = L.Dense(84, activation="relu", name="fc2")(x)
    out = L.Dense(10, activation="softmax", name="fc3")(x)
    return keras.Model(inp, out, name="lenet5")


def resnet8(input_shape=(32, 32, 3), classes: int = 10, width: int = 16) -> keras.Model:
    """MLPerf Tiny's ResNet-8 layout (at ``width=16``: about 78k parameters, 12.5M MACs)."""

    def conv_bn(x, filters, name, strides=1, kernel=3, relu=True):
        x = L.Conv2D(
            filters, kernel, strides=strides, padding="same", use_bias=False, name=f"{name}_conv"
        )(x)
        x = L.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
        return L.ReLU(name=f"{name}_relu")(x) if relu else x

    inp = keras.Input(input_shape, name="image")
    x = conv_bn(inp, width, "stem")
    for i, (mult, strides) in enumerate(((1, 1), (2, 2), (4, 2)), start=1):
        filters = width * mult
        h = conv_bn(x, filters, f"stack{i}a", strides=strides)
        h = conv_bn(h, filters, f"stack{i}b", relu=False)
        s = (
            x
            if strides == 1
            else conv_bn(x, filters, f"stack{i}_proj", strides=strides, kernel=1, relu=False)
        )
        x = L.ReLU(name=f"stack{i}_out")(L.Add(name=f"stack{i}_add")([s, h]))
    x = L.AveragePooling2D(x.shape[1], name="pool")(x)
    x = L.Flatten(name="flatten")(x)
    out = L.Dense(classes, activation="softmax", name="fc")(x)
    return keras.Model(inp, out, name="resnet8")


# MobileNetV1's 13 depthwise-separable blocks: (stride of the 3x3 depthwise conv, filters
# of the 1x1 pointwise conv at alpha=1).
_MOBILENET_V1_BLOCKS = (
    (1, 64),
    (2, 128),
    (1, 128),
    (2, 256),
    (1, 256),
    (2, 512),
    (1, 512),
    (1, 512),
    (1, 512),
    (1, 512),
    (1, 512),
    (2, 1024),
    (1, 1024),
)


def mobilenet_v1(alpha: float = 0.25, input_shape=(96, 96, 3), classes: int = 2) -> keras.Model:
    """MobileNetV1 as MLPerf Tiny's Visual Wake Words reference builds it (person / no
    person at 96x96x3, width multiplier ``alpha=0.25``).

    A 3x3 stride-2 stem convolution with ``int(32 * alpha)`` filters, the paper's 13
    depthwise-separable blocks (3x3 depthwise, then a 1x1 convolution of ``int(f * alpha)``
    filters), each convolution followed by batch normalization and a plain ReLU (as the
    MLPerf Tiny reference, which does not use ReLU6), then average pooling over the whole
    map, Flatten and a softmax Dense. Convolutions have no bias (the batch normalization
    supplies it). Layers are named ``stem``, ``dw1``..``dw13``, ``pw1``..``pw13``, each
    with its ``_bn`` and ``_relu``.

    At the defaults the last block leaves a 3x3x256 map; the model has 219,058 parameters
    (213,586 trainable; the reference, whose convolutions keep their biases, has 221,794)
    and does 7.49M MACs per image (``kp.count_macs``): 6.19M in the 1x1 convolutions,
    0.80M in the depthwise ones, 0.50M in the stem.
    """
    inp = keras.Input(input_shape, name="image")

    def bn_relu(x, name):
        x = L.BatchNormalization(name=f"{name}_bn")(x)
        return L.ReLU(name=f"{name}_relu")(x)

    x = L.Conv2D(int(32 * alpha), 3, strides=2, padding="same", use_bias=False, name="stem")(inp)
    x = bn_relu(x, "stem")
    for k, (strides, filters) in enumerate(_MOBILENET_V1_BLOCKS, start=1):
        x = L.DepthwiseConv2D(3, strides=strides, padding="same", use_bias=False, name=f"dw{k}")(x)
        x = bn_relu(x, f"dw{k}")
        x = L.Conv2D(int(filters * alpha), 1, use_bias=False, name=f"pw{k}")(x)
        x = bn_relu(x, f"pw{k}")
    x = L.AveragePooling2D((x.shape[1], x.shape[2]), name="pool")(x)
    x = L.Flatten(name="flatten")(x)
    out = L.Dense(classes, activation="softmax", name="fc")(x)
    return keras.Model(inp, out, name="mobilenet_v1")


def ds_cnn(
    input_shape=(49, 10, 1), classes: int = 12, width: int = 64, blocks: int = 4
) -> keras.Model:
    """MLPerf Tiny's DS-CNN keyword-spotting layout: a strided stem, ``blocks`` depthwise
    separable blocks, average pooling and a dense head (at the defaults, 2.7M MACs)."""
    inp = keras.Input(input_shape, name="mfcc")
    x = L.Conv2D(width, (10, 4), strides=2, padding="same", use_bias=False, name="stem")(inp)
    x = L.ReLU(name="stem_relu")(L.BatchNormalization(name="stem_bn")(x))
    for k in range(blocks):
        x = L.DepthwiseConv2D(3, padding="same", use_bias=False, name=f"dw{k}")(x)
        x = L.ReLU(name=f"dw{k}_relu")(L.BatchNormalization(name=f"dw{k}_bn")(x))
        x = L.Conv2D(width, 1, use_bias=False, name=f"pw{k}")(x)
        x = L.ReLU(name=f"pw{k}_relu")(L.BatchNormalization(name=f"pw{k}_bn")(x))
    x = L.AveragePooling2D((x.shape[1], x.shape[2]), name="pool")(x)
    x = L.Flatten(name="flatten")(x)
    out = L.Dense(classes, activation="softmax", name="fc")(x)
    return keras.Model(inp, out, name="ds_cnn")
