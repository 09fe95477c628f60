"""The Distill stage: train a student (the incoming model or a fresh registry one) from a teacher.

The loss, its settings and the trainer are in :mod:`edgekit.compress.distillation`, shared with
the ``distill`` field of every fine-tuning stage.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from edgekit.compress.base import SerializableStage, StageResult, copy_model, require_graph_model
from edgekit.compress.distillation import (
    FLOAT_TEACHER,
    FeatureHint,
    are_probabilities,
    check_distill_values,
    fit_distilled,
    load_teacher,
    top1_agreement,
    zero_masks,
)
from edgekit.compress.registry import register_stage
from edgekit.compress.stage_notes import StageNotes, pct
from edgekit.compress.training import _check_fit_args, accuracy
from edgekit.converters.calibration_inputs import model_input_specs
from edgekit.converters.calibration_sources import CalibrationSpec
from edgekit.core._keras import keras
from edgekit.core.errors import InputError
from edgekit.core.tfmot_wrappers import is_qat_model
from edgekit.data import Dataset
from edgekit.models.registry import available_models, build_model, is_model_name

PRESERVE_CHOICES = ("auto", "always", "never")


def _distill_notes(name: str, d: Mapping[str, Any]) -> StageNotes:
    """The report section of a Distill stage from its ``details`` (its registered reader)."""
    config = (d.get("config") or {}).get("config", {})
    agree = d.get("heldout_agreement_with_teacher", {})
    history = d.get("history", {})
    facts = [
        f"Teacher `{d.get('teacher')}` ({d.get('teacher_params')} parameters) -> student "
        f"{d.get('student')} ({d.get('student_params')} parameters), T = "
        f"{config.get('temperature')}, alpha = {config.get('alpha')}, "
        f"{len(history.get('loss', []))} epochs.",
        f"Held-out top-1 agreement with the teacher: {pct(agree.get('before'))} before, "
        f"{pct(agree.get('after'))} after.",
    ]
    unlabeled = d.get("unlabeled")
    if unlabeled:
        facts.append(f"Trained on {d.get('labelled_samples')} labelled samples and "
                     f"{unlabeled['samples']} unlabelled ones from `{unlabeled['source']}` "
                     "(teacher's outputs only).")
    if history.get("kd"):
        facts.append(f"Last epoch: KD term {history['kd'][-1]:.4f}, cross-entropy "
                     f"{history['ce'][-1]:.4f}.")
    return StageNotes(name, "Distill", facts)


@register_stage(notes=_distill_notes)
@dataclass(frozen=True)
class Distill(SerializableStage):
    """Train a student from a teacher's softened outputs (and hard labels).

    Attributes:
        teacher: ``"float"`` (the pipeline's float model; outside a pipeline: the incoming model)
            or a path to a model file.
        student: None (distil into the incoming model) or a models/ registry name (a fresh
            student of that architecture, usually smaller, is built and trained).
        student_options: Builder options of a registry student (e.g. ``{filters: [4, 8, 8]}``).
        temperature: Softening temperature T > 0.
        alpha: Weight of the KL term in [0, 1].
        epochs: Training epochs.
        learning_rate: Peak Adam learning rate (cosine-decayed).
        batch_size: Samples per step.
        augment_shift: Max random shift in pixels for image inputs.
        feature_layer: Optional ``{teacher, student, weight}`` feature hint (MSE).
        preserve_sparsity: Keep pruned zeros of the incoming model at zero: ``"auto"`` (kernels
            with >= 20 % zeros), ``"always"``, ``"never"``.
        seed: Seed of the student's initial weights, batches and augmentation.
        unlabeled: Optional transfer samples without labels, read like ``convert.calibration``
            (a ``.npy``/``.npz`` file or an image folder, or ``{source, resize, normalize}``):
            the student also learns the teacher's outputs on them (KL term only). Distillation
            pays off most with few labels (BENCHMARKS.md), and unlabelled samples are cheap.
        unlabeled_samples: At most this many of them, drawn by ``seed``.
    """

    class_name: ClassVar[str] = "Distill"

    teacher: str = FLOAT_TEACHER
    student: str | None = None
    student_options: dict[str, Any] | None = None
    temperature: float = 4.0
    alpha: float = 0.9
    epochs: int = 10
    learning_rate: float = 1e-3
    batch_size: int = 32
    augment_shift: int = 2
    feature_layer: dict[str, Any] | None = None
    preserve_sparsity: str = "auto"
    seed: int = 0
    unlabeled: str | dict[str, Any] | None = None
    unlabeled_samples: int = 20000

    def __post_init__(self) -> None:
        check_distill_values(self.temperature, self.alpha, self.teacher)
        spec = self._unlabeled_spec()
        if spec is not None:
            if not Path(spec.source).exists():
                raise InputError(f"Distill.unlabeled {spec.source!r} does not exist; expected a "
                                 ".npy or .npz file or a folder of images")
        if (not isinstance(self.unlabeled_samples, int) or isinstance(self.unlabeled_samples, bool)
                or self.unlabeled_samples < 1):
            raise InputError(f"Distill.unlabeled_samples must be an integer >= 1, got "
                             f"{self.unlabeled_samples!r}")
        _check_fit_args(self.epochs, self.learning_rate, self.batch_size, self.augment_shift)
        FeatureHint.parse(self.feature_layer)
        if self.student is not None:
            if not isinstance(self.student, str) or not is_model_name(self.student):
                raise InputError(f"student must be null or a models/ name "
                                 f"({', '.join(available_models())}), got {self.student!r}")
        if self.student_options is not None and not isinstance(self.student_options, dict):
            raise InputError(f"student_options must be a mapping, got {self.student_options!r}")
        if self.preserve_sparsity not in PRESERVE_CHOICES:
            raise InputError(f"preserve_sparsity must be one of {', '.join(PRESERVE_CHOICES)}, "
                             f"got {self.preserve_sparsity!r}")

    def _student(self, model: keras.Model, data: Dataset) -> keras.Model:
        if self.student is None:
            require_graph_model(model, "distillation into the incoming model")
            if is_qat_model(model):
                raise InputError("Distill cannot train a QAT model; put Distill before QAT, or "
                                 "give QAT a distill field")
            return copy_model(model)
        keras.utils.set_random_seed(self.seed)
        try:
            return build_model(self.student, input_shape=data.sample_shape,
                               num_classes=data.num_classes, **(self.student_options or {}))
        except TypeError as e:
            raise InputError(f"student_options {self.student_options!r} do not fit model "
                             f"{self.student!r}: {e}") from e

    def _unlabeled_spec(self) -> Any:
        """``unlabeled`` parsed as a ``CalibrationSpec`` (None when unset)."""
        if self.unlabeled is None:
            return None
        return CalibrationSpec.from_value(self.unlabeled, where="Distill.unlabeled")

    def _unlabeled(self, student: keras.Model) -> tuple[np.ndarray | None, dict[str, Any] | None]:
        """The transfer samples (fitted to the student's input) and where they came from."""
        spec = self._unlabeled_spec()
        if spec is None:
            return None, None
        specs = model_input_specs(student)
        if len(specs) != 1:
            raise InputError(f"Distill.unlabeled needs a single-input student; {student.name!r} "
                             f"has {len(specs)} inputs")
        try:
            samples = spec.open().take(specs, self.unlabeled_samples, self.seed)
        except InputError as e:
            raise InputError(f"Distill.unlabeled: {e}") from e
        return samples.arrays[0], {"source": samples.source, "samples": len(samples),
                                   "selection": samples.selection}

    def apply(self, model: keras.Model, data: Dataset) -> StageResult:
        """Distils the teacher into the student on ``data``'s training split.

        Args:
            model: The incoming model (the student when ``student`` is None, and the teacher
                when ``teacher`` is "float" outside a pipeline).
            data: The dataset.

        Returns:
            The trained student; details: teacher/student sizes, which outputs were
            probabilities, held-out top-1 agreement with the teacher before and after, history.

        Raises:
            InputError: Bad teacher path, unknown layers, incompatible outputs, a QAT model.
        """
        teacher = load_teacher(self.teacher, model, "Distill")
        student = self._student(model, data)
        masks = zero_masks(student, self.preserve_sparsity) if self.student is None else []
        unlabeled, unlabeled_info = self._unlabeled(student)
        before = top1_agreement(student, teacher, data.x_test)
        history = fit_distilled(
            student, teacher, data.x_train, data.y_train, temperature=self.temperature,
            alpha=self.alpha, epochs=self.epochs, learning_rate=self.learning_rate,
            batch_size=self.batch_size, augment_shift=self.augment_shift, seed=self.seed,
            feature_layer=self.feature_layer, keep_zero=masks,
            desc=f"distill T={self.temperature:g}", x_unlabeled=unlabeled,
        )
        probe = data.x_train[:64]
        details = {
            "teacher": str(self.teacher),
            "teacher_params": int(teacher.count_params()),
            "student": self.student or "incoming model",
            "student_params": int(student.count_params()),
            "teacher_outputs": "probabilities" if are_probabilities(
                teacher.predict(probe, verbose=0)) else "logits",
            "student_outputs": "probabilities" if are_probabilities(
                student.predict(probe, verbose=0)) else "logits",
            "kept_zero_kernels": len(masks),
            "labelled_samples": len(data.x_train),
            "unlabeled": unlabeled_info,
            "heldout_agreement_with_teacher": {
                "before": round(before, 6),
                "after": round(top1_agreement(student, teacher, data.x_test), 6),
            },
            "train_accuracy": accuracy(student, data.x_train, data.y_train),
            "history": history,
        }
        return StageResult(model=student, details=details)
