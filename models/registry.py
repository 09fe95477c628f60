"""Name -> builder registry of reference models.

Builders take ``input_shape`` (no batch dim) and ``num_classes`` and return an untrained tf_keras
model whose output is logits. Architectures register themselves on import of their module; the
registry imports the built-in modules lazily so that importing it stays cheap.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from edgekit.errors import InputError

Builder = Callable[..., Any]

_REGISTRY: dict[str, Builder] = {}
_BUILTIN_MODULES = ("edgekit.models.demo_cnn",)


def register(name: str) -> Callable[[Builder], Builder]:
    """Decorator that registers a model builder under ``name``.

    Args:
        name: The registry key (what recipes and the CLI use).

    Returns:
        The decorator, which returns the builder unchanged.

    Raises:
        ValueError: ``name`` is already registered.
    """

    def deco(fn: Builder) -> Builder:
        if name in _REGISTRY and _REGISTRY[name] is not fn:
            raise ValueError(f"model name {name!r} is already registered")
        _REGISTRY[name] = fn
        return fn

    return deco


def _load_builtins() -> None:
    for module in _BUILTIN_MODULES:
        importlib.import_module(module)


def available_models() -> list[str]:
    """Returns the registered model names, sorted."""
    _load_builtins()
    return sorted(_REGISTRY)


def is_model_name(name: str) -> bool:
    """Tells whether ``name`` is a registered model name."""
    _load_builtins()
    return name in _REGISTRY


def build_model(
    name: str, *, input_shape: tuple[int, ...] = (32, 32, 1), num_classes: int = 10, **kwargs: Any
) -> Any:
    """Builds a registered reference model.

    Args:
        name: Registry key.
        input_shape: Sample shape (no batch dim).
        num_classes: Number of output logits.
        **kwargs: Builder-specific options.

    Returns:
        An untrained tf_keras model.

    Raises:
        InputError: Unknown name (the message lists the known ones).
    """
    _load_builtins()
    if name not in _REGISTRY:
        raise InputError(f"unknown model {name!r}; known models: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name](input_shape=tuple(input_shape), num_classes=num_classes, **kwargs)
