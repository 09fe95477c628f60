"""Shared fixtures: tiny real data and models (no mocks)."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="session")
def digits8():
    """The real digits at their native 8x8 resolution (fast to train on)."""
    from edgekit.data import load_digits

    return load_digits(8)


@pytest.fixture(scope="session")
def tiny_trained_model(digits8):
    """A small conv net trained for a few epochs on 8x8 digits (about 90 % held-out)."""
    from edgekit.compress.training import fit
    from edgekit.core._keras import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(16, 3, padding="same", use_bias=False, name="conv")(inp)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.ReLU(name="relu")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(32, activation="relu", name="fc")(x)
    out = keras.layers.Dense(10, name="logits")(x)
    model = keras.Model(inp, out, name="tiny")
    fit(model, digits8.x_train, digits8.y_train, epochs=6, learning_rate=3e-3, augment_shift=0)
    return model


@pytest.fixture
def rng():
    return np.random.default_rng(0)
