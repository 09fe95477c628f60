"""Name -> builder registry of reference models.

Builders take ``input_shape`` (no batch dim) and ``num_classes`` and return an untrained tf_keras
model. Every model says what task it is for (:class:`Task`): a ``classification`` model outputs
logits, one per class; a ``reconstruction`` model (an autoencoder) has no classes and outputs a
tensor of its input's shape. Architectures register themselves on import of their module; the
registry imports the built-in modules lazily so that importing it stays cheap.
"""

from __future__ import annotations

import enum
import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edgekit.core.errors import InputError

Builder = Callable[..., Any]

_BUILTIN_MODULES = (
    "edgekit.models.demo_cnn",
    "edgekit.models.tiny_cnn",
    "edgekit.models.ds_cnn",
    "edgekit.models.resnet8",
    "edgekit.models.mobilenet_v1",
    "edgekit.models.fc_autoencoder",
)


class Task(str, enum.Enum):
    """What a model's output means."""

    CLASSIFICATION = "classification"
    RECONSTRUCTION = "reconstruction"


@dataclass(frozen=True)
class ModelInfo:
    """One registry entry.

    Attributes:
        name: The registry key (what recipes and the CLI use).
        task: What the model's output means.
        builder: The function that builds it.
        summary: First line of the builder module's docstring.
    """

    name: str
    task: Task
    builder: Builder
    summary: str

    def to_dict(self) -> dict[str, str]:
        """Returns the JSON-ready description (without the builder)."""
        return {"name": self.name, "task": self.task.value, "summary": self.summary}


_REGISTRY: dict[str, ModelInfo] = {}


def register(name: str, *, task: Task | str = Task.CLASSIFICATION) -> Callable[[Builder], Builder]:
    """Decorator that registers a model builder under ``name``.

    Args:
        name: The registry key (what recipes and the CLI use).
        task: What the model is for (``classification`` or ``reconstruction``).

    Returns:
        The decorator, which returns the builder unchanged.

    Raises:
        ValueError: ``name`` is already registered to another builder, or ``task`` is unknown.
    """
    task = Task(task)

    def deco(fn: Builder) -> Builder:
        known = _REGISTRY.get(name)
        if known is not None and known.builder is not fn:
            raise ValueError(f"model name {name!r} is already registered")
        module = sys.modules.get(fn.__module__)
        doc = (module.__doc__ if module is not None else None) or fn.__doc__ or name
        summary = doc.strip().splitlines()[0] if doc.strip() else name
        _REGISTRY[name] = ModelInfo(name=name, task=task, builder=fn, summary=summary)
        return fn

    return deco


def _load_builtins() -> None:
    for module in _BUILTIN_MODULES:
        importlib.import_module(module)


def available_models(task: Task | str | None = None) -> list[str]:
    """Returns the registered model names, sorted.

    Args:
        task: Only the models for this task (default: all).

    Raises:
        ValueError: ``task`` is not a known task.
    """
    _load_builtins()
    wanted = None if task is None else Task(task)
    return sorted(n for n, info in _REGISTRY.items() if wanted in (None, info.task))


def is_model_name(name: str) -> bool:
    """Tells whether ``name`` is a registered model name."""
    _load_builtins()
    return name in _REGISTRY


def model_info(name: str) -> ModelInfo:
    """Returns the registry entry of ``name``.

    Raises:
        InputError: Unknown name (the message lists the known ones).
    """
    _load_builtins()
    if name not in _REGISTRY:
        raise InputError(f"unknown model {name!r}; known models: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def build_model(
    name: str,
    *,
    input_shape: tuple[int, ...] | None = None,
    num_classes: int | None = None,
    **kwargs: Any,
) -> Any:
    """Builds a registered reference model.

    Args:
        name: Registry key.
        input_shape: Sample shape (no batch dim); None keeps the builder's reference shape.
        num_classes: Number of output logits; None keeps the builder's reference count. Must be
            None for a ``reconstruction`` model.
        **kwargs: Builder-specific options.

    Returns:
        An untrained tf_keras model.

    Raises:
        InputError: Unknown name (the message lists the known ones), ``num_classes`` given for a
            model that is not a classifier, or a shape the builder cannot use.
    """
    info = model_info(name)
    if num_classes is not None and info.task is not Task.CLASSIFICATION:
        classifiers = ", ".join(available_models(Task.CLASSIFICATION))
        raise InputError(
            f"model {name!r} is a {info.task.value} model, not a classifier: it takes no "
            f"num_classes (got {num_classes}); classification models: {classifiers}"
        )
    if input_shape is not None:
        kwargs["input_shape"] = tuple(input_shape)
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    return info.builder(**kwargs)
