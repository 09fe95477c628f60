"""DS-CNN (small): the MLPerf Tiny keyword-spotting reference model.

Follows ``benchmark/training/keyword_spotting/keras_model.py`` (``model_architecture == 'ds_cnn'``)
of https://github.com/mlcommons/tiny, itself the DS-CNN of "Hello Edge: Keyword Spotting on
Microcontrollers" (arXiv:1711.07128): a 10x4 stride-2 Conv-BN-ReLU on the 49x10 MFCC map, four
depthwise-separable blocks (3x3 DepthwiseConv-BN-ReLU, 1x1 Conv-BN-ReLU) of 64 channels, dropout,
average pooling to 1x1 and a Dense classifier. Layers, kernel sizes, L2(1e-4) regularizers
(on Conv2D kernels only, see ``_ds_block``), dropout rates and the pool size ``(H // 2, W // 2)``
are the reference's. At the reference shape (49, 10, 1) with 12 classes the model has 24,908
parameters (23,756 trainable), as the reference has.

One deliberate difference: the reference's last Dense has a softmax; here it outputs logits (same
parameters), as every model of the registry does (edgekit trains with a from-logits loss).
"""

from __future__ import annotations

from typing import Any

from edgekit.core._keras import keras
from edgekit.core.errors import InputError
from edgekit.models.registry import Task, register

REFERENCE_INPUT_SHAPE = (49, 10, 1)
REFERENCE_NUM_CLASSES = 12


def _ds_block(x: Any, filters: int, regularizer: Any, name: str) -> Any:
    """One depthwise-separable block: 3x3 depthwise, then 1x1 pointwise, each BN + ReLU."""
    # The reference passes kernel_regularizer to DepthwiseConv2D, which Keras 2 accepts and does
    # not apply to the depthwise kernel: its depthwise kernels are unregularized, and so are ours.
    x = keras.layers.DepthwiseConv2D(3, padding="same", name=f"{name}_dw")(x)
    x = keras.layers.BatchNormalization(name=f"{name}_dw_bn")(x)
    x = keras.layers.ReLU(name=f"{name}_dw_relu")(x)
    x = keras.layers.Conv2D(filters, 1, padding="same", kernel_regularizer=regularizer,
                            name=f"{name}_pw")(x)
    x = keras.layers.BatchNormalization(name=f"{name}_pw_bn")(x)
    return keras.layers.ReLU(name=f"{name}_pw_relu")(x)


@register("ds_cnn", task=Task.CLASSIFICATION)
def ds_cnn(
    *,
    input_shape: tuple[int, ...] = REFERENCE_INPUT_SHAPE,
    num_classes: int = REFERENCE_NUM_CLASSES,
    filters: int = 64,
    blocks: int = 4,
    weight_decay: float = 1e-4,
) -> keras.Model:
    """Builds the MLPerf Tiny DS-CNN keyword-spotting model (small).

    Args:
        input_shape: (H, W, C); the reference is 49 MFCC frames x 10 coefficients x 1.
            H and W must be at least 2 (the pool is ``(H // 2, W // 2)``).
        num_classes: Number of logits (the reference has 12 keywords).
        filters: Channels of every conv (64 in the reference).
        blocks: Number of depthwise-separable blocks (4 in the reference).
        weight_decay: L2 factor of the kernel regularizers (1e-4 in the reference).

    Returns:
        An untrained functional tf_keras model with logits output.

    Raises:
        InputError: ``input_shape`` is not (H, W, C) with H, W >= 2.
    """
    if len(input_shape) != 3 or min(input_shape[:2]) < 2:
        raise InputError(f"ds_cnn needs an (H, W, C) input shape with H, W >= 2, "
                         f"got {tuple(input_shape)}")
    regularizer = keras.regularizers.l2(weight_decay)
    inputs = keras.Input(shape=input_shape, name="features")
    x = keras.layers.Conv2D(filters, (10, 4), strides=2, padding="same",
                            kernel_regularizer=regularizer, name="conv1")(inputs)
    x = keras.layers.BatchNormalization(name="conv1_bn")(x)
    x = keras.layers.ReLU(name="conv1_relu")(x)
    x = keras.layers.Dropout(0.2, name="conv1_dropout")(x)
    for i in range(blocks):
        x = _ds_block(x, filters, regularizer, name=f"ds{i + 1}")
    x = keras.layers.Dropout(0.4, name="dropout")(x)
    x = keras.layers.AveragePooling2D(pool_size=(input_shape[0] // 2, input_shape[1] // 2),
                                      name="pool")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    outputs = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name="ds_cnn")
