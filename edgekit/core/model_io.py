"""Loading and saving Keras model files: ``.keras``, ``.h5`` and SavedModel folders.

Every model file edgekit reads goes through :func:`load_model`: a file saved by Keras 3 (the
default format of TensorFlow 2.16+) is detected and bridged to tf_keras by
:mod:`edgekit.core.keras3_bridge` (architecture + weights, checked by comparing outputs); tfmot's
wrappers and the custom layers of ``keras.applications`` models are always known. Every model
file edgekit writes goes through :func:`save_model`, atomically.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

from device_bench.atomicio import atomic_target
from edgekit.core._keras import keras, tfmot
from edgekit.core.errors import InputError
from edgekit.core.keras3_bridge import bridge_keras3, is_keras3_file

__all__ = ["MODEL_SUFFIXES", "load_model", "save_model"]

MODEL_SUFFIXES = (".keras", ".h5")


def _application_layers() -> dict[str, Any]:
    """Custom layers that tf_keras's own ``keras.applications`` models use but do not register.

    ConvNeXt's ``LayerScale`` and ``StochasticDepth`` live in a private module; without them a
    saved ConvNeXt fails to reload with "'str' object is not callable".
    """
    keras.load()
    try:
        from tf_keras.src.applications import convnext
    except ImportError:  # pragma: no cover - a tf_keras that moved them
        return {}
    return {name: getattr(convnext, name) for name in ("LayerScale", "StochasticDepth")
            if hasattr(convnext, name)}


def _custom_scope(custom_objects: dict[str, Any] | None = None) -> Any:
    """Scope that knows tfmot's wrappers, keras.applications' custom layers and the user's own."""
    known = {**_application_layers(), **(custom_objects or {})}
    return tfmot.quantization.keras.quantize_scope(known)


def load_model(path: str | os.PathLike[str],
               custom_objects: dict[str, Any] | None = None) -> keras.Model:
    """Loads a model from ``.keras``, ``.h5`` or a SavedModel folder as a tf_keras model.

    Files saved by Keras 3 are bridged to tf_keras (see :mod:`edgekit.core.keras3_bridge`): the
    bridged model's outputs are checked against the Keras 3 model's on seeded inputs.

    Args:
        path: The model file or SavedModel directory.
        custom_objects: The user's own layer classes by name (tfmot's wrappers and the custom
            layers of ``keras.applications`` models are always known).

    Returns:
        The tf_keras model (not compiled for training; callers compile as they need).

    Raises:
        InputError: The path is missing, is not a Keras model, or is a Keras 3 file that cannot be
            bridged (the message names the layer that has no tf_keras equivalent).
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"model {str(p)!r} does not exist; expected a .keras, .h5 or SavedModel")
    if p.is_file() and p.suffix not in {".keras", ".h5", ".hdf5"}:
        raise InputError(
            f"model {str(p)!r} has suffix {p.suffix!r}; expected .keras, .h5 or a SavedModel folder"
        )
    if p.is_dir() and not (p / "saved_model.pb").exists():
        raise InputError(f"model folder {str(p)!r} has no saved_model.pb; expected a SavedModel")
    if p.is_file() and is_keras3_file(p):
        return bridge_keras3(p).model
    try:
        with _custom_scope(custom_objects):
            return keras.models.load_model(p, compile=False)
    except Exception as e:  # tf_keras raises many types (OSError, ValueError, h5py errors ...)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"model {str(p)!r} could not be loaded as a Keras model: {first}") from e


def save_model(model: keras.Model, path: str | os.PathLike[str]) -> Path:
    """Saves a model atomically (temp file in the same folder, then rename).

    Args:
        model: The tf_keras model.
        path: Destination ``.keras`` or ``.h5`` file.

    Returns:
        The destination path.

    Raises:
        InputError: The destination suffix is not ``.keras``/``.h5`` or the folder is unwritable.
    """
    dest = Path(path)
    if dest.suffix not in MODEL_SUFFIXES:
        raise InputError(f"output {str(dest)!r} must end in .keras or .h5, got {dest.suffix!r}")
    with atomic_target(dest) as tmp, warnings.catch_warnings():
        # .h5 is chosen on purpose for QAT models (see edgekit.compress.qat).
        warnings.filterwarnings("ignore", message=".*HDF5 file via `model.save\\(\\)`")
        if dest.suffix == ".h5":
            model.save(tmp, include_optimizer=False)
        else:
            model.save(tmp)
    return dest
