"""tiny_cnn: a few-thousand-parameter student CNN for distillation experiments.

Three 3x3 Conv-BN-ReLU blocks (8, 16, 16 filters; the first two max-pooled), global average
pooling and a Dense classifier: 3,858 parameters (3,778 trainable) on 32x32x1 digits with 10
classes, about 23x fewer than ``demo_cnn`` (its natural teacher). As in ``demo_cnn``, convs have
no bias (QAT folds the BatchNormalization into them) and every kernel is prunable by tfmot.
Not an MLPerf Tiny model.
"""

from __future__ import annotations

from edgekit.core._keras import keras
from edgekit.core.errors import InputError
from edgekit.models.registry import Task, register


@register("tiny_cnn", task=Task.CLASSIFICATION)
def tiny_cnn(
    *,
    input_shape: tuple[int, ...] = (32, 32, 1),
    num_classes: int = 10,
    filters: tuple[int, ...] = (8, 16, 16),
) -> keras.Model:
    """Builds the tiny student CNN.

    Args:
        input_shape: (H, W, C); H and W at least ``2 ** (len(filters) - 1)``.
        num_classes: Number of logits.
        filters: Filters of the conv blocks; every block but the last is max-pooled 2x2.

    Returns:
        An untrained functional tf_keras model with logits output.

    Raises:
        InputError: ``input_shape`` is not (H, W, C) or is too small for the pooling.
    """
    min_side = 2 ** (len(filters) - 1)
    if len(input_shape) != 3 or min(input_shape[:2]) < min_side:
        raise InputError(f"tiny_cnn needs an (H, W, C) input shape with H, W >= {min_side}, "
                         f"got {tuple(input_shape)}")
    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    for i, f in enumerate(filters):
        name = f"block{i + 1}"
        x = keras.layers.Conv2D(f, 3, padding="same", use_bias=False, name=f"{name}_conv")(x)
        x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
        x = keras.layers.ReLU(name=f"{name}_relu")(x)
        if i < len(filters) - 1:
            x = keras.layers.MaxPooling2D(name=f"{name}_pool")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name="tiny_cnn")
