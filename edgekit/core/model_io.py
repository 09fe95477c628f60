"""Loading and saving Keras model files: ``.keras``, ``.h5`` and SavedModel folders.

Every model file edgekit reads goes through :func:`load_model`: a file saved by Keras 3 (the
default format of TensorFlow 2.16+) is detected and bridged to tf_keras by
:mod:`edgekit.core.keras3_bridge` (architecture + weights, checked by comparing outputs); tfmot's
wrappers and the custom layers of ``keras.applications`` models are always known. Every model
file edgekit writes goes through :func:`save_model`, atomically.

**Safe mode.** A ``Lambda`` layer is stored as Python bytecode, which loading would run: anyone
who can hand over a model file could run code. Models load in Keras's safe mode, for ``.keras``
files (``safe_mode=True``) and legacy ``.h5`` files alike (tf_keras checks ``.h5`` Lambda layers
only inside a ``SafeModeScope``, which is opened here); such a model is refused with one line
naming the file, unless the user trusts it: ``--unsafe-load`` on the command line,
``unsafe_load: true`` in a recipe, ``unsafe_load=True`` in the API, all of which open
:func:`unsafe_load_scope` around the whole job (the stage files a trusted model becomes hold the
same code, and are reloaded in the same scope). A SavedModel folder holds a TensorFlow graph, not
Python code: its Lambda layers come back from the graph. Keras 3 files go through the bridge,
which refuses Lambda layers in any case.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from device_bench.atomicio import atomic_target
from edgekit.core._keras import keras, tfmot
from edgekit.core.errors import InputError
from edgekit.core.keras3_bridge import bridge_keras3, is_keras3_file

__all__ = ["MODEL_SUFFIXES", "UNSAFE_LOAD_HINT", "load_model", "save_model", "unsafe_load_scope"]

MODEL_SUFFIXES = (".keras", ".h5")
UNSAFE_LOAD_HINT = "pass --unsafe-load to trust it"
# Whether the job running in this context trusts the Python code in model files.
_UNSAFE_LOAD: contextvars.ContextVar[bool] = contextvars.ContextVar("edgekit_unsafe_load",
                                                                     default=False)
# What tf_keras says when safe mode refuses bytecode (a Lambda layer, a lambda elsewhere).
_SAFE_MODE_REFUSALS = ("Requested the deserialization of a", "safe_mode=False")


@contextlib.contextmanager
def unsafe_load_scope(enabled: bool = True) -> Iterator[None]:
    """Within it, :func:`load_model` runs the Python code of ``Lambda`` layers (trusted files).

    Args:
        enabled: True trusts the model files loaded inside; False keeps safe mode (a no-op).

    Yields:
        Nothing.
    """
    token = _UNSAFE_LOAD.set(bool(enabled) or _UNSAFE_LOAD.get())
    try:
        yield
    finally:
        _UNSAFE_LOAD.reset(token)


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


def _refusal(path: Path, error: BaseException) -> InputError | None:
    """The one-line InputError for a model that safe mode refused, else None."""
    text = str(error)
    if not any(marker in text for marker in _SAFE_MODE_REFUSALS):
        return None
    return InputError(f"model {str(path)!r} holds Python code (a Lambda layer) that loading "
                      f"would run; {UNSAFE_LOAD_HINT} (unsafe_load: true in a recipe)")


def load_model(path: str | os.PathLike[str], custom_objects: dict[str, Any] | None = None, *,
               unsafe: bool | None = None) -> keras.Model:
    """Loads a model from ``.keras``, ``.h5`` or a SavedModel folder as a tf_keras model.

    Files saved by Keras 3 are bridged to tf_keras (see :mod:`edgekit.core.keras3_bridge`): the
    bridged model's outputs are checked against the Keras 3 model's on seeded inputs. Loading is
    in Keras's safe mode unless trusted (see the module docstring).

    Args:
        path: The model file or SavedModel directory.
        custom_objects: The user's own layer classes by name (tfmot's wrappers and the custom
            layers of ``keras.applications`` models are always known).
        unsafe: True runs the Python code a file holds (Lambda layers); None (the default)
            follows the enclosing :func:`unsafe_load_scope` (safe outside one).

    Returns:
        The tf_keras model (not compiled for training; callers compile as they need).

    Raises:
        InputError: The path is missing, is not a Keras model, holds Python code and is not
            trusted (``pass --unsafe-load to trust it``), or is a Keras 3 file that cannot be
            bridged (the message names the layer that has no tf_keras equivalent).
    """
    trusted = _UNSAFE_LOAD.get() if unsafe is None else bool(unsafe)
    p = Path(path)
    if not p.exists():
        raise InputError(f"model {str(p)!r} does not exist; expected a .keras, .h5 or SavedModel")
    if p.is_file() and p.suffix not in {".keras", ".h5", ".hdf5"}:
        raise InputError(
            f"model {str(p)!r} has suffix {p.suffix!r}; expected .keras, .h5 or a SavedModel folder"
        )
    if p.is_dir() and not (p / "saved_model.pb").exists():
        raise InputError(f"model folder {str(p)!r} has no saved_model.pb; expected a SavedModel")
    keras.load()
    from tf_keras.src.saving.serialization_lib import SafeModeScope

    if p.is_file() and is_keras3_file(p):
        with SafeModeScope(not trusted):
            return bridge_keras3(p).model
    try:
        with _custom_scope(custom_objects), SafeModeScope(not trusted):
            if p.is_file() and p.suffix == ".keras":
                return keras.models.load_model(p, compile=False, safe_mode=not trusted)
            return keras.models.load_model(p, compile=False)
    except Exception as e:  # tf_keras raises many types (OSError, ValueError, h5py errors ...)
        refused = _refusal(p, e)
        if refused is not None:
            raise refused from None
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
