"""FC autoencoder: the MLPerf Tiny anomaly-detection reference model.

Follows ``benchmark/training/anomaly_detection/keras_model.py`` of https://github.com/mlcommons/tiny,
itself the DCASE 2020 task 2 baseline (https://github.com/y-kawagu/dcase2020_task2_baseline): a
dense autoencoder 128-128-128-128-8-128-128-128-128 on 640 inputs (5 frames x 128 log-mel bins),
every hidden Dense followed by BatchNormalization and ReLU, and a linear Dense back to the input
size. It is trained to reproduce normal machine sounds; the anomaly score is the reconstruction
error. At the reference shape (640,) the model has 269,992 parameters (267,928 trainable), as the
reference has.

It is not a classifier: its registry task is ``reconstruction``; it has no ``num_classes`` and its
output has the input's shape. For an (H, W, C) input it flattens first and reshapes back at the
end (a 32x32x1 digit has 1,024 inputs).
"""

from __future__ import annotations

import math

from edgekit.core._keras import keras
from edgekit.core.errors import InputError
from edgekit.models.registry import Task, register

REFERENCE_INPUT_SHAPE = (640,)


@register("fc_autoencoder", task=Task.RECONSTRUCTION)
def fc_autoencoder(
    *,
    input_shape: tuple[int, ...] = REFERENCE_INPUT_SHAPE,
    num_classes: int | None = None,
    hidden: tuple[int, ...] = (128, 128, 128, 128),
    bottleneck: int = 8,
) -> keras.Model:
    """Builds the MLPerf Tiny dense autoencoder.

    Args:
        input_shape: Sample shape; (640,) in the reference. Other shapes are flattened.
        num_classes: Must be None: an autoencoder has no classes (the argument exists so that
            every registry builder has the same signature).
        hidden: Widths of the encoder's hidden layers; the decoder mirrors them.
        bottleneck: Width of the code layer (8 in the reference).

    Returns:
        An untrained functional tf_keras model whose output has the input's shape.

    Raises:
        InputError: ``num_classes`` is given, or ``input_shape`` is empty or has a zero dimension.
    """
    if num_classes is not None:
        raise InputError(f"fc_autoencoder is a reconstruction model (anomaly detection), not a "
                         f"classifier; num_classes must be None, got {num_classes!r}")
    size = math.prod(input_shape) if input_shape else 0
    if size < 1:
        raise InputError(f"fc_autoencoder needs a non-empty input shape, got {tuple(input_shape)}")
    inputs = keras.Input(shape=input_shape, name="features")
    x = keras.layers.Flatten(name="flatten")(inputs) if len(input_shape) > 1 else inputs
    widths = [*hidden, bottleneck, *reversed(hidden)]
    names = [f"enc{i + 1}" for i in range(len(hidden))] + ["code"]
    names += [f"dec{i + 1}" for i in range(len(hidden))]
    for width, name in zip(widths, names, strict=True):
        x = keras.layers.Dense(width, name=name)(x)
        x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
        x = keras.layers.ReLU(name=f"{name}_relu")(x)
    x = keras.layers.Dense(size, name="reconstruction")(x)
    if len(input_shape) > 1:
        x = keras.layers.Reshape(tuple(input_shape), name="unflatten")(x)
    return keras.Model(inputs, x, name="fc_autoencoder")
