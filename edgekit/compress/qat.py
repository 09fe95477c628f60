"""Quantization-aware training with tfmot; prune-preserving (PQAT) when the model is sparse.

Plain QAT would let fine-tuning refill pruned weights; ``Default8BitPrunePreserveQuantizeScheme``
keeps every zero at zero, so the sparsity measured after pruning survives into the int8 model.
The result keeps its QuantizeWrapper layers (the converter reads their learned ranges), so it is
saved as ``.h5``: tf_keras cannot reload a QAT model from ``.keras`` (the QuantizeLayer's
variables do not round-trip).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from edgekit._keras import keras, tfmot
from edgekit.compress.base import (
    SerializableStage,
    StageResult,
    copy_model,
    kernel_sparsity,
    require_graph_model,
)
from edgekit.data import Dataset
from edgekit.errors import InputError
from edgekit.training import accuracy

PRESERVE_CHOICES = ("auto", "always", "never")
SPARSE_THRESHOLD = 0.2  # a kernel with at least this share of zeros counts as pruned


@dataclass(frozen=True)
class QAT(SerializableStage):
    """Fine-tune with fake-quantization so the int8 model keeps the float accuracy.

    Attributes:
        epochs: Fine-tuning epochs.
        learning_rate: Peak Adam learning rate (cosine-decayed); small, QAT only adapts.
        batch_size: Samples per step.
        augment_shift: Max random shift in pixels for image inputs.
        preserve_sparsity: ``"auto"`` (PQAT when some kernel is >= 20 % zeros), ``"always"``,
            ``"never"``.
        seed: Seed of batches and augmentation.
    """

    class_name: ClassVar[str] = "QAT"
    artefact_suffix: ClassVar[str] = ".h5"

    epochs: int = 10
    learning_rate: float = 1e-4
    batch_size: int = 32
    augment_shift: int = 2
    preserve_sparsity: str = "auto"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.preserve_sparsity not in PRESERVE_CHOICES:
            raise InputError(
                f"preserve_sparsity must be one of {', '.join(PRESERVE_CHOICES)}, "
                f"got {self.preserve_sparsity!r}"
            )

    def _use_pqat(self, model: keras.Model) -> bool:
        if self.preserve_sparsity != "auto":
            return self.preserve_sparsity == "always"
        return any(s >= SPARSE_THRESHOLD for s in kernel_sparsity(model).values())

    def apply(self, model: keras.Model, data: Dataset) -> StageResult:
        """Wraps ``model`` for QAT (PQAT if sparse) and fine-tunes it.

        Args:
            model: A plain tf_keras Sequential or Functional model (pruning wrappers stripped).
            data: The dataset (training split only).

        Returns:
            The QAT model (QuantizeWrapper layers kept) and details: scheme, sparsity before and
            after, history.

        Raises:
            InputError: A subclassed model, or a layer tfmot cannot quantize.
        """
        require_graph_model(model, "QAT")
        mot = tfmot()
        qk = mot.quantization.keras
        pqat = self._use_pqat(model)
        before = kernel_sparsity(model)
        try:
            annotated = qk.quantize_annotate_model(copy_model(model))
            if pqat:
                scheme: Any = mot.experimental.combine.Default8BitPrunePreserveQuantizeScheme()
                qmodel = qk.quantize_apply(annotated, scheme)
            else:
                qmodel = qk.quantize_apply(annotated)
        except (ValueError, RuntimeError, TypeError) as e:
            raise InputError(f"model {model.name!r} cannot be prepared for QAT: {e}") from e
        history = self.fine_tune(qmodel, data, "PQAT" if pqat else "QAT")
        after = kernel_sparsity(qmodel)
        details = {
            "scheme": (
                "Default8BitPrunePreserveQuantizeScheme" if pqat else "Default8BitQuantizeScheme"
            ),
            "prune_preserving": pqat,
            "sparsity_before": before,
            "sparsity_after": after,
            "train_accuracy": accuracy(qmodel, data.x_train, data.y_train),
            "history": history,
        }
        return StageResult(model=qmodel, details=details)
