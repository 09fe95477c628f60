"""Shared fixtures: tiny real data and models (no mocks), and the order of files in workers."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

TESTS = Path(__file__).resolve().parent

# The files that take longest (pytest --durations, 2026-12-04: 2 to 4 minutes each, mostly a
# shared fixture), started first when the suite runs in pytest-xdist workers (`make test`), so
# that the many short files fill the end instead of one long file running alone (longest
# processing time first). xdist's own reorder, by number of tests per file, put these last: they
# have few tests. Order matters only for the schedule; every file is independent of the others.
LONGEST_FIRST = (
    "edgekit/test_sweep_ray.py",
    "edgekit/test_sweep.py",
    "edgekit/test_search_ray.py",
    "edgekit/test_cli.py",
    "edgekit/test_interrupts.py",
    "edgekit/test_channel_search.py",
    "edgekit/test_channel_coverage.py",
    "edgekit/test_kws.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In an xdist worker, moves the :data:`LONGEST_FIRST` files to the front (stable sort:
    every file's tests stay together and in order)."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}

    def key(item: pytest.Item) -> int:
        try:
            return rank.get(item.path.relative_to(TESTS).as_posix(), len(rank))
        except ValueError:  # a file outside tests/ (given on the command line)
            return len(rank)

    items.sort(key=key)


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
