"""Shared tiny models and data for the converters tests (session-scoped: built once)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from edgekit.converters import ConversionConfig, IOType, Mode, convert_keras, select_calibration
from edgekit.core._keras import keras, tfmot

INPUT_SHAPE = (8, 8, 1)


def make_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random 8x8 images; the class is the brightest of three regions (a learnable rule)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, *INPUT_SHAPE)).astype(np.float32)
    regions = np.stack(
        [x[:, :4, :4].mean((1, 2, 3)), x[:, :4, 4:].mean((1, 2, 3)), x[:, 4:].mean((1, 2, 3))],
        axis=1,
    )
    return x, regions.argmax(axis=1).astype(np.int64)


def build_cnn() -> keras.Model:
    """Conv2D(8) -> ReLU -> Flatten -> Dense(3) logits (dense kernel 1536 weights)."""
    return keras.Sequential([
        keras.layers.Input(INPUT_SHAPE, name="image"),
        keras.layers.Conv2D(8, 3, padding="same"),
        keras.layers.ReLU(),
        keras.layers.Flatten(),
        keras.layers.Dense(3),
    ])


def compile_and_fit(model: keras.Model, x: np.ndarray, y: np.ndarray, epochs: int, lr: float,
                    callbacks: list | None = None) -> keras.Model:
    model.compile(
        optimizer=keras.optimizers.Adam(lr),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(x, y, epochs=epochs, batch_size=32, verbose=0, callbacks=callbacks or [])
    return model


@pytest.fixture(scope="session")
def data() -> dict[str, np.ndarray]:
    x_train, y_train = make_data(600, seed=0)
    x_test, y_test = make_data(300, seed=1)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


@pytest.fixture(scope="session")
def float_model(data: dict[str, np.ndarray]) -> keras.Model:
    keras.utils.set_random_seed(0)
    return compile_and_fit(build_cnn(), data["x_train"], data["y_train"], epochs=4, lr=0.01)


@pytest.fixture(scope="session")
def calibration(data: dict[str, np.ndarray]) -> np.ndarray:
    samples, _ = select_calibration(data["x_train"], num_samples=100, seed=0)
    return samples


@pytest.fixture(scope="session")
def convert(float_model: keras.Model, calibration: np.ndarray) -> Callable[..., bytes]:
    """Converts the float model once per (mode, io, per_channel) and caches the bytes."""
    cache: dict[tuple, bytes] = {}

    def _convert(mode: str, io: str | None = None, per_channel: bool = True) -> bytes:
        key = (mode, io, per_channel)
        if key not in cache:
            config = ConversionConfig(mode=Mode(mode), io=None if io is None else IOType(io),
                                      per_channel=per_channel)
            cache[key] = convert_keras(float_model, config, calibration)
        return cache[key]

    return _convert


@pytest.fixture(scope="session")
def int8_path(convert: Callable[..., bytes], tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("int8") / "model_int8.tflite"
    path.write_bytes(convert("int8"))
    return path


@pytest.fixture(scope="session")
def qat_model(float_model: keras.Model, data: dict[str, np.ndarray]) -> keras.Model:
    keras.utils.set_random_seed(0)
    model = tfmot.quantization.keras.quantize_model(float_model)
    return compile_and_fit(model, data["x_train"], data["y_train"], epochs=1, lr=0.001)


def half_zeroed(model: keras.Model) -> keras.Model:
    """A copy of ``model`` with the smaller-magnitude half of every kernel set to 0 by hand."""
    clone = keras.models.clone_model(model)
    weights = []
    for w in model.get_weights():
        w = w.copy()
        if w.ndim > 1:  # kernels, not biases
            flat = w.reshape(-1)
            flat[np.argsort(np.abs(flat))[: flat.size // 2]] = 0.0
        weights.append(w)
    clone.set_weights(weights)
    return clone


@pytest.fixture(scope="session")
def helpers() -> dict[str, Callable[..., object]]:
    """The model helpers above, for tests (imported as a fixture, not through ``conftest``)."""
    return {"build_cnn": build_cnn, "fit": compile_and_fit, "half_zeroed": half_zeroed}


# --- a model with one layer whose int8 quantization destroys it (debugger / selective tests) ---

def make_outlier_model(x: np.ndarray, y: np.ndarray, *, hidden: int = 32, epochs: int = 12,
                       seed: int = 0) -> keras.Model:
    """An MLP on digits pixels whose ``fc_outlier`` layer has one huge weight per unit.

    The huge weights sit on a pixel that is 0 in every digits image, so the float model computes
    exactly what it did before they were set. int8 quantization gives each output channel of
    ``fc_outlier`` one weight scale, stretched by the outlier to ~1000x the useful weights, which
    all round to 0: the int8 model falls to chance. Keeping ``fc_outlier`` in float repairs it.
    """
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.layers.Input(x.shape[1:], name="image"),
        keras.layers.Flatten(name="flat"),
        keras.layers.Dense(hidden, activation="relu", name="fc_outlier"),
        keras.layers.Dense(10, name="logits"),
    ])
    compile_and_fit(model, x, y, epochs=epochs, lr=0.01)
    dead = np.flatnonzero(x.reshape(len(x), -1).max(axis=0) == 0)
    kernel, bias = model.get_layer("fc_outlier").get_weights()
    signs = np.where(np.arange(hidden) % 2, 1.0, -1.0)
    kernel[dead[0], :] = 1000.0 * np.abs(kernel).max() * signs
    model.get_layer("fc_outlier").set_weights([kernel, bias])
    return model


@pytest.fixture(scope="session")
def digits8():
    """scikit-learn's digits at their own 8x8 resolution (1437 train / 360 held-out)."""
    from edgekit.data import load_digits

    return load_digits(8)


@pytest.fixture(scope="session")
def outlier_model(digits8) -> keras.Model:
    return make_outlier_model(digits8.x_train, digits8.y_train)


@pytest.fixture(scope="session")
def outlier_keras(outlier_model, tmp_path_factory) -> Path:
    """The outlier model saved as .keras (for the CLI and the pipeline)."""
    from edgekit.core.model_io import save_model

    return save_model(outlier_model, tmp_path_factory.mktemp("outlier") / "outlier.keras")
