"""The one place that chooses the Keras implementation, and loads TensorFlow only when used.

tfmot 0.8 works only with Keras 2, which TensorFlow 2.16+ ships as the separate ``tf_keras``
package. ``TF_USE_LEGACY_KERAS=1`` must be in the environment *before* TensorFlow is imported, so
every edgekit module that needs TensorFlow, Keras or tfmot takes them from here::

    from edgekit.core._keras import keras, tf, tfmot

Each of the three is a :class:`LazyModule`: importing this module (or any edgekit module that
imports it at its top) costs nothing; TensorFlow loads the first time an attribute of one of them
is read (``keras.layers``, ``tf.constant``...). So ``edgekit inspect``, ``bench``, ``compare``,
``models`` and recipe validation never load TensorFlow, while stages that train simply use it.
Classes that subclass a Keras class are therefore built inside a function (see
``edgekit.compress.training.epoch_progress``), not at module level.

Keras 3 stays importable as the ``keras`` package (``TF_USE_LEGACY_KERAS`` only changes what
``tf.keras`` is); :func:`keras3` is the one place that imports it. Loading and saving model files
(with the Keras 3 bridge) live in :mod:`edgekit.core.model_io`.
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any

from edgekit.core._native import quiet_native_stderr
from edgekit.core.errors import InputError

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__all__ = ["LazyModule", "keras", "keras3", "tensorflow_loaded", "tf", "tfmot"]

_LOCK = threading.RLock()


class LazyModule:
    """A module imported on first attribute access.

    Args:
        name: The module's import name (for ``repr`` and messages).
        loader: Imports and returns the module (runs once, under a lock).
    """

    def __init__(self, name: str, loader: Callable[[], ModuleType]) -> None:
        self._name = name
        self._loader = loader
        self._module: ModuleType | None = None

    def load(self) -> ModuleType:
        """Imports the module now (idempotent).

        Returns:
            The real module.
        """
        if self._module is None:
            with _LOCK:
                if self._module is None:
                    self._module = self._loader()
        return self._module

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__") and attr.endswith("__"):
            raise AttributeError(attr)  # copy/pickle probes must not load TensorFlow
        return getattr(self.load(), attr)

    def __repr__(self) -> str:
        state = "loaded" if self._module is not None else "not loaded yet"
        return f"<lazy module {self._name!r} ({state})>"


def _load_tensorflow() -> ModuleType:
    with quiet_native_stderr():
        import tensorflow

        # Device discovery prints CUDA notices (cuInit failures on machines without a GPU) on
        # first use; do it now, inside the silenced block. A GPU, when present, is still used.
        tensorflow.config.list_physical_devices()
    return tensorflow


def _load_tf_keras() -> ModuleType:
    tf.load()
    with quiet_native_stderr():
        import tf_keras
    return tf_keras


def _load_tfmot() -> ModuleType:
    keras.load()
    with quiet_native_stderr():
        import tensorflow_model_optimization
    return tensorflow_model_optimization


tf = LazyModule("tensorflow", _load_tensorflow)
keras = LazyModule("tf_keras", _load_tf_keras)
tfmot = LazyModule("tensorflow_model_optimization", _load_tfmot)


def tensorflow_loaded() -> bool:
    """True once TensorFlow has been imported in this process (by edgekit or anyone)."""
    return "tensorflow" in sys.modules


def keras3() -> Any:
    """Imports Keras 3 (the ``keras`` package) for reading Keras 3 model files.

    Returns:
        The ``keras`` module (version 3.x).

    Raises:
        InputError: The installed ``keras`` package is not Keras 3.
    """
    tf.load()
    module = importlib.import_module("keras")
    version = str(getattr(module, "__version__", ""))
    if not version.startswith("3."):
        raise InputError(f"reading a Keras 3 model needs Keras 3, found keras {version!r}; "
                         "install it with: pip install 'keras>=3'")
    return module
