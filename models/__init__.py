"""Reference architectures, built by name from a registry.

Usage::

    from edgekit.models import build_model, available_models
    model = build_model("demo_cnn", input_shape=(32, 32, 1), num_classes=10)
"""

from edgekit.models.registry import available_models, build_model, register

__all__ = ["available_models", "build_model", "register"]
