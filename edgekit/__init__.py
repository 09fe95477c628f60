"""edgekit: Keras model -> small, fast, full-integer TFLite, verified and benchmarked on the device.

Importing ``edgekit`` is cheap: TensorFlow loads only when a stage that needs it runs
(``edgekit.core._keras`` selects tf_keras for tfmot before TensorFlow is imported).

The Python API mirrors the CLI: ``edgekit.run``, ``edgekit.demo``, ``edgekit.compress``,
``edgekit.convert``, ``edgekit.inspect``, ``edgekit.bench``, ``edgekit.compare``
(see :mod:`edgekit.api`).
"""

from typing import Any

__version__ = "0.3.0"

_API = ("run", "plan", "demo", "compress", "convert", "inspect", "bench", "compare", "kws_data",
        "RunOutcome")
__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        from edgekit import api

        return getattr(api, name)
    raise AttributeError(f"module 'edgekit' has no attribute {name!r}")
