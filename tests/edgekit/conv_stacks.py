"""Small trained conv stacks on 8x8 digits for the channel-pruning and search tests."""

from __future__ import annotations

from typing import Any


def trained_conv_stack(digits: Any, filters: tuple[int, ...], epochs: int, name: str
                       ) -> Any:
    """3x3 conv + BN + ReLU blocks of ``filters`` channels, GAP, Dense(10), trained on 8x8 digits.

    Args:
        digits: The 8x8 digits data set.
        filters: Channels of each block (blocks ``c1``, ``c2``...).
        epochs: Training epochs (seed 0).
        name: Its progress-bar label.

    Returns:
        The trained tf_keras model.
    """
    from edgekit.compress.training import fit
    from edgekit.core._keras import keras

    layers = keras.layers
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 1))
    x = inp
    for i, width in enumerate(filters, start=1):
        x = layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"c{i}")(x)
        x = layers.BatchNormalization(name=f"c{i}_bn")(x)
        x = layers.ReLU(name=f"c{i}_relu")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    model = keras.Model(inp, layers.Dense(10, name="logits")(x))
    fit(model, digits.x_train, digits.y_train, epochs=epochs, learning_rate=2e-3,
        augment_shift=0, seed=0, desc=name)
    return model

