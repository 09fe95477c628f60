"""The demo CNN: three Conv-BN-ReLU blocks and a small classifier head.

Sized for 32x32x1 digits (about 85 k parameters). Every conv is followed by BatchNormalization
with no conv bias, the pattern that QAT folds into the conv, so the int8 graph has one CONV_2D per
block; every Conv2D and Dense kernel is prunable by tfmot.
"""

from __future__ import annotations

from typing import Any

from edgekit.core._keras import keras
from edgekit.core.errors import InputError
from edgekit.models.registry import register


def _conv_block(x: Any, filters: int, name: str) -> Any:
    x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
    x = keras.layers.ReLU(name=f"{name}_relu")(x)
    return keras.layers.MaxPooling2D(name=f"{name}_pool")(x)


@register("demo_cnn")
def demo_cnn(
    *,
    input_shape: tuple[int, ...] = (32, 32, 1),
    num_classes: int = 10,
    filters: tuple[int, int, int] = (16, 32, 64),
    dense_units: int = 64,
    dropout: float = 0.3,
) -> keras.Model:
    """Builds the demo CNN.

    Args:
        input_shape: (H, W, C); H and W divisible by 8.
        num_classes: Number of logits.
        filters: Filters of the three conv blocks.
        dense_units: Width of the hidden Dense layer.
        dropout: Dropout rate before the hidden Dense layer.

    Returns:
        An untrained functional tf_keras model with logits output.

    Raises:
        InputError: ``input_shape`` is not (H, W, C).
    """
    if len(input_shape) != 3:
        raise InputError(f"demo_cnn needs an (H, W, C) input shape, got {input_shape}")
    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    for i, f in enumerate(filters):
        x = _conv_block(x, f, name=f"block{i + 1}")
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    x = keras.layers.Dense(dense_units, activation="relu", name="fc1")(x)
    outputs = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name="demo_cnn")
