"""MobileNetV1 (alpha 0.25): the MLPerf Tiny visual-wake-words reference model.

Follows ``benchmark/training/visual_wake_words/vww_model.py`` of https://github.com/mlcommons/tiny,
which is Silicon Labs' ``eembc/Person_detection/mobilenet_v1_eembc.py``
(https://github.com/SiliconLabs/platform_ml_models): MobileNetV1 of arXiv:1704.04861 at width
multiplier 0.25 on 96x96x3 images, 2 classes (person / no person). A 3x3 stride-2 Conv-BN-ReLU
stem of 8 filters, 13 depthwise-separable blocks (3x3 DepthwiseConv-BN-ReLU, 1x1 Conv-BN-ReLU)
whose pointwise widths double at blocks 1, 2, 4, 6 and 12 (8 -> 256), average pooling over the
whole remaining map and a Dense classifier. As in the reference: plain ReLU (not ReLU6), 'same'
padding, conv biases, ``he_normal`` initializers and L2(1e-4) regularizers on the Conv2D kernels.
The reference also passes them to DepthwiseConv2D, which Keras 2 accepts and does not apply to the
depthwise kernel; its depthwise kernels keep the default initializer and no regularizer, and so do
ours. At the reference shape (96, 96, 3) with 2 classes the model has 221,794 parameters (216,322
trainable), as the reference has (NXP's eIQ model zoo lists 221,794 for the MLCommons VWW model).

One deliberate difference: the reference's last Dense has a softmax; here it outputs logits (same
parameters), as every model of the registry does (edgekit trains with a from-logits loss).
"""

from __future__ import annotations

from typing import Any

from edgekit.core._keras import keras
from edgekit.core.errors import InputError
from edgekit.models.registry import Task, register

REFERENCE_INPUT_SHAPE = (96, 96, 3)
REFERENCE_NUM_CLASSES = 2

# (depthwise stride, pointwise width as a multiple of the stem width) of the 13 separable blocks.
_BLOCKS = ((1, 2), (2, 4), (1, 4), (2, 8), (1, 8), (2, 16),
           (1, 16), (1, 16), (1, 16), (1, 16), (1, 16), (2, 32), (1, 32))


def _ds_block(x: Any, filters: int, strides: int, regularizer: Any, name: str) -> Any:
    """One depthwise-separable block: 3x3 depthwise, then 1x1 pointwise, each BN + ReLU."""
    x = keras.layers.DepthwiseConv2D(3, strides=strides, padding="same", name=f"{name}_dw")(x)
    x = keras.layers.BatchNormalization(name=f"{name}_dw_bn")(x)
    x = keras.layers.ReLU(name=f"{name}_dw_relu")(x)
    x = keras.layers.Conv2D(filters, 1, padding="same", kernel_initializer="he_normal",
                            kernel_regularizer=regularizer, name=f"{name}_pw")(x)
    x = keras.layers.BatchNormalization(name=f"{name}_pw_bn")(x)
    return keras.layers.ReLU(name=f"{name}_pw_relu")(x)


@register("mobilenet_v1", task=Task.CLASSIFICATION)
def mobilenet_v1(
    *,
    input_shape: tuple[int, ...] = REFERENCE_INPUT_SHAPE,
    num_classes: int = REFERENCE_NUM_CLASSES,
    alpha: float = 0.25,
    weight_decay: float = 1e-4,
) -> keras.Model:
    """Builds the MLPerf Tiny MobileNetV1 visual-wake-words model.

    Args:
        input_shape: (H, W, C); the reference is (96, 96, 3). Any H, W >= 1 builds (five
            stride-2 layers shrink 96 to 3 and 32 to 1).
        num_classes: Number of logits (2 in the reference).
        alpha: Width multiplier: the stem has ``int(32 * alpha)`` filters (0.25 -> 8 in the
            reference).
        weight_decay: L2 factor of the Conv2D kernel regularizers (1e-4 in the reference).

    Returns:
        An untrained functional tf_keras model with logits output.

    Raises:
        InputError: ``input_shape`` is not (H, W, C), or ``alpha`` gives a stem of no filters.
    """
    if len(input_shape) != 3:
        raise InputError(f"mobilenet_v1 needs an (H, W, C) input shape, got {tuple(input_shape)}")
    stem = int(32 * alpha)
    if stem < 1:
        raise InputError(f"mobilenet_v1 alpha must be >= 1/32, got {alpha}")
    regularizer = keras.regularizers.l2(weight_decay)
    inputs = keras.Input(shape=input_shape, name="image")
    x = keras.layers.Conv2D(stem, 3, strides=2, padding="same", kernel_initializer="he_normal",
                            kernel_regularizer=regularizer, name="conv1")(inputs)
    x = keras.layers.BatchNormalization(name="conv1_bn")(x)
    x = keras.layers.ReLU(name="conv1_relu")(x)
    for i, (strides, width) in enumerate(_BLOCKS):
        x = _ds_block(x, stem * width, strides, regularizer, name=f"ds{i + 1}")
    x = keras.layers.AveragePooling2D(pool_size=(int(x.shape[1]), int(x.shape[2])), name="pool")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    outputs = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name="mobilenet_v1")
