"""ResNet-8: the MLPerf Tiny image-classification reference model.

Follows ``resnet_v1_eembc`` in ``benchmark/training/image_classification/keras_model.py`` of
https://github.com/mlcommons/tiny (the 16-filter version, commit bceb91c): a 3x3 Conv-BN-ReLU stem,
three residual stacks of 16, 32 and 64 filters (two 3x3 convs each; stacks 2 and 3 stride 2 and
project the shortcut with a strided 1x1 conv), average pooling over the remaining map and a Dense
classifier. Kernel sizes, strides, conv biases, ``he_normal`` initializers and L2(1e-4) kernel
regularizers are the reference's. At the reference shape (32, 32, 3) with 10 classes the model
has 78,666 parameters (78,186 trainable), as the reference has.

One deliberate difference: the reference's last Dense has a softmax; here it outputs logits (same
parameters), as every model of the registry does (edgekit trains with a from-logits loss).
"""

from __future__ import annotations

from typing import Any

from edgekit.core._keras import keras
from edgekit.core.errors import InputError
from edgekit.models.registry import Task, register

REFERENCE_INPUT_SHAPE = (32, 32, 3)
REFERENCE_NUM_CLASSES = 10


def _conv(filters: int, kernel: int, strides: int, weight_decay: float, name: str) -> Any:
    """A 'same'-padded Conv2D with the reference's initializer and regularizer."""
    return keras.layers.Conv2D(
        filters, kernel, strides=strides, padding="same", kernel_initializer="he_normal",
        kernel_regularizer=keras.regularizers.l2(weight_decay), name=name)


def _stack(x: Any, filters: int, strides: int, weight_decay: float, name: str) -> Any:
    """One residual stack: Conv-BN-ReLU-Conv-BN plus the (projected when strided) shortcut."""
    y = _conv(filters, 3, strides, weight_decay, f"{name}_conv1")(x)
    y = keras.layers.BatchNormalization(name=f"{name}_bn1")(y)
    y = keras.layers.ReLU(name=f"{name}_relu1")(y)
    y = _conv(filters, 3, 1, weight_decay, f"{name}_conv2")(y)
    y = keras.layers.BatchNormalization(name=f"{name}_bn2")(y)
    if strides != 1:
        x = _conv(filters, 1, strides, weight_decay, f"{name}_shortcut")(x)
    x = keras.layers.Add(name=f"{name}_add")([x, y])
    return keras.layers.ReLU(name=f"{name}_relu")(x)


@register("resnet8", task=Task.CLASSIFICATION)
def resnet8(
    *,
    input_shape: tuple[int, ...] = REFERENCE_INPUT_SHAPE,
    num_classes: int = REFERENCE_NUM_CLASSES,
    filters: int = 16,
    weight_decay: float = 1e-4,
) -> keras.Model:
    """Builds the MLPerf Tiny ResNet-8 image classifier.

    Args:
        input_shape: (H, W, C); the reference is CIFAR-10's (32, 32, 3). H and W must be at
            least 4 (two stride-2 stacks).
        num_classes: Number of logits (10 in the reference).
        filters: Filters of the stem and first stack; the next stacks double them (16 in the
            reference, giving 16, 32, 64).
        weight_decay: L2 factor of the conv kernel regularizers (1e-4 in the reference).

    Returns:
        An untrained functional tf_keras model with logits output.

    Raises:
        InputError: ``input_shape`` is not (H, W, C) with H, W >= 4.
    """
    if len(input_shape) != 3 or min(input_shape[:2]) < 4:
        raise InputError(f"resnet8 needs an (H, W, C) input shape with H, W >= 4, "
                         f"got {tuple(input_shape)}")
    inputs = keras.Input(shape=input_shape, name="image")
    x = _conv(filters, 3, 1, weight_decay, "stem_conv")(inputs)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    x = keras.layers.ReLU(name="stem_relu")(x)
    x = _stack(x, filters, 1, weight_decay, "stack1")
    x = _stack(x, filters * 2, 2, weight_decay, "stack2")
    x = _stack(x, filters * 4, 2, weight_decay, "stack3")
    # The reference pools with a square window of the smaller spatial side.
    pool = int(min(x.shape[1], x.shape[2]))
    x = keras.layers.AveragePooling2D(pool_size=pool, name="pool")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    outputs = keras.layers.Dense(num_classes, kernel_initializer="he_normal", name="logits")(x)
    return keras.Model(inputs, outputs, name="resnet8")
