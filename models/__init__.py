"""Reference architectures, built by name from a registry.

MLPerf Tiny-like references (``ds_cnn``, ``resnet8``, ``mobilenet_v1``, ``fc_autoencoder``), the
demo CNN (``demo_cnn``) and a tiny distillation student (``tiny_cnn``). Every builder takes
``input_shape`` and ``num_classes``; each model says its task (classification or reconstruction).

Usage::

    from edgekit.models import build_model, available_models
    model = build_model("resnet8", input_shape=(32, 32, 1), num_classes=10)
    reference = build_model("ds_cnn")  # reference shape (49, 10, 1), 12 classes
"""

from edgekit.models.registry import (
    ModelInfo,
    Task,
    available_models,
    build_model,
    is_model_name,
    model_info,
    register,
)

__all__ = [
    "ModelInfo",
    "Task",
    "available_models",
    "build_model",
    "is_model_name",
    "model_info",
    "register",
]
