"""Tiny real .tflite models for the device_bench tests (built once per session with TensorFlow).

The tests may import TensorFlow to *make* models; the package under test never does.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class TinyModels:
    """Paths of the session's models and the data they were calibrated on."""

    keras_model: object
    x: np.ndarray
    float32: Path
    int8: Path
    uint8: Path
    int16: Path
    two_inputs: Path


def _convert(model, x: np.ndarray, io: str | None, int16: bool = False) -> bytes:
    from edgekit.core._keras import tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if io is None:
        return converter.convert()

    def representative():
        for i in range(len(x)):
            yield [x[i : i + 1]]

    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    if int16:
        ops = tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
    else:
        ops = tf.lite.OpsSet.TFLITE_BUILTINS_INT8
    converter.target_spec.supported_ops = [ops]
    converter.inference_input_type = getattr(tf, io)
    converter.inference_output_type = getattr(tf, io)
    return converter.convert()


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyModels:
    """A 8 -> 16 -> 4 MLP as float32, int8, uint8 and int16x8 .tflite, plus a 2-input model."""
    import warnings

    from edgekit.core._keras import keras

    out = tmp_path_factory.mktemp("models")
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.random((64, 8)).astype(np.float32)
    model = keras.Sequential([
        keras.layers.Input((8,)),
        keras.layers.Dense(16, activation="relu"),
        keras.layers.Dense(4),
    ])
    a = keras.layers.Input((3,), name="a")
    b = keras.layers.Input((3,), name="b")
    two = keras.Model([a, b], keras.layers.Dense(2)(keras.layers.Add()([a, b])))

    paths = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the converter's "statistics ... not specified" notes
        for name, io, int16 in [("float32", None, False), ("int8", "int8", False),
                                ("uint8", "uint8", False), ("int16", "int16", True)]:
            paths[name] = out / f"mlp_{name}.tflite"
            paths[name].write_bytes(_convert(model, x, io, int16))
        paths["two_inputs"] = out / "two_inputs.tflite"
        paths["two_inputs"].write_bytes(_convert(two, x, None))
    return TinyModels(keras_model=model, x=x, **paths)


@pytest.fixture()
def corrupt_model(tmp_path: Path) -> Path:
    """A .tflite file of random bytes."""
    path = tmp_path / "corrupt.tflite"
    path.write_bytes(np.random.default_rng(1).bytes(3000))
    return path


def _run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return subprocess.run(
        [sys.executable, "-m", "device_bench", *args],
        capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO, check=False,
    )


@pytest.fixture()
def run_cli() -> Callable[..., subprocess.CompletedProcess[str]]:
    """Runs ``python -m device_bench ARGS`` in a fresh process from the repository root."""
    return _run_cli


def error_lines(stderr: str) -> list[str]:
    """Non-empty stderr lines, without the interpreter's native ``INFO:`` banner."""
    return [line for line in stderr.splitlines() if line.strip() and not line.startswith("INFO: ")]


@pytest.fixture()
def stderr_lines() -> Callable[[str], list[str]]:
    """See :func:`error_lines`."""
    return error_lines
