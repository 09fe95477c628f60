"""What tfmot inserts into a model, named once: the QAT and pruning wrapper layer classes.

tfmot's ``quantize_apply`` wraps layers in ``QuantizeWrapper``/``QuantizeWrapperV2`` and adds
``QuantizeLayer`` after inputs; ``prune_low_magnitude`` wraps layers in ``PruneLowMagnitude``.
Code that must tell a QAT model from a plain one (the converters: a QAT model converts with its
learned ranges; the stages: LowRank and Distill refuse wrapped models) asks here, by class name,
so that nothing needs TensorFlow loaded to answer.
"""

from __future__ import annotations

from typing import Any

__all__ = ["PRUNE_WRAPPER_CLASSES", "QAT_LAYER_CLASSES", "WRAPPER_CLASSES", "is_qat_model",
           "wrapped_layers"]

# Class names of the layers that tfmot's quantize_apply inserts (QAT models).
QAT_LAYER_CLASSES = frozenset({"QuantizeLayer", "QuantizeWrapper", "QuantizeWrapperV2"})
# Class name of tfmot's pruning wrapper (stripped by strip_pruning).
PRUNE_WRAPPER_CLASSES = frozenset({"PruneLowMagnitude"})
WRAPPER_CLASSES = QAT_LAYER_CLASSES | PRUNE_WRAPPER_CLASSES


def is_qat_model(model: Any) -> bool:
    """Tells whether ``model`` (or a model nested in it) holds tfmot quantize-apply layers.

    Args:
        model: A tf_keras model.

    Returns:
        True for a QAT model.
    """
    modules = [model, *getattr(model, "submodules", ())]
    return any(type(m).__name__ in QAT_LAYER_CLASSES for m in modules)


def wrapped_layers(model: Any) -> list[str]:
    """Names of the top-level layers of ``model`` that are tfmot wrappers (QAT or pruning).

    Args:
        model: A tf_keras model.

    Returns:
        The layer names, in model order.
    """
    return [layer.name for layer in model.layers if type(layer).__name__ in WRAPPER_CLASSES]
