"""Magnitude pruning with tfmot: gradual (PolynomialDecay) or constant sparsity, then strip.

Only layers that own a prunable kernel (Conv*, Dense, ...) are wrapped; all other layers are
left as they are and listed in the report. The sparsity ramp ends on a mask-update step, so the
final mask really reaches ``final_sparsity`` (tfmot stops updating masks after ``end_step``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from edgekit._keras import keras, tfmot
from edgekit.compress.base import (
    PRUNABLE_KERNELS,
    SerializableStage,
    StageResult,
    copy_model,
    kernel_sparsity,
    require_graph_model,
)
from edgekit.data import Dataset
from edgekit.errors import InputError
from edgekit.training import accuracy, steps_per_epoch

SCHEDULES = ("PolynomialDecay", "ConstantSparsity")


@dataclass(frozen=True)
class Prune(SerializableStage):
    """Prune the smallest-magnitude weights while fine-tuning.

    Attributes:
        final_sparsity: Share of zeros in every pruned kernel at the end, in [0, 1).
        initial_sparsity: Share at the start of the ramp (PolynomialDecay only).
        schedule: ``"PolynomialDecay"`` (gradual) or ``"ConstantSparsity"``.
        epochs: Fine-tuning epochs.
        learning_rate: Peak Adam learning rate of the fine-tune (cosine-decayed).
        ramp_fraction: Share of the fine-tune over which sparsity ramps up; the rest recovers.
        update_every: Optimizer steps between mask updates (0: four times per epoch).
        batch_size: Samples per step.
        augment_shift: Max random shift in pixels for image inputs.
        seed: Seed of batches and augmentation.
    """

    class_name: ClassVar[str] = "Prune"

    final_sparsity: float = 0.8
    initial_sparsity: float = 0.0
    schedule: str = "PolynomialDecay"
    epochs: int = 20
    learning_rate: float = 1e-3
    ramp_fraction: float = 0.6
    update_every: int = 0
    batch_size: int = 32
    augment_shift: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.final_sparsity < 1.0:
            raise InputError(f"final_sparsity must be in [0, 1), got {self.final_sparsity}")
        if not 0.0 <= self.initial_sparsity <= self.final_sparsity:
            raise InputError(
                f"initial_sparsity must be in [0, final_sparsity={self.final_sparsity}], "
                f"got {self.initial_sparsity}"
            )
        if self.schedule not in SCHEDULES:
            raise InputError(
                f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}"
            )
        if not 0.0 < self.ramp_fraction <= 1.0:
            raise InputError(f"ramp_fraction must be in (0, 1], got {self.ramp_fraction}")
        if not isinstance(self.update_every, int) or self.update_every < 0:
            raise InputError(f"update_every must be an integer >= 0, got {self.update_every!r}")

    def pruning_schedule(self, steps: int) -> Any:
        """Builds the tfmot schedule for a fine-tune of ``steps`` optimizer steps.

        Args:
            steps: Steps per epoch.

        Returns:
            A ``tfmot.sparsity.keras`` schedule whose last mask update reaches final_sparsity.

        Raises:
            InputError: ``update_every`` is longer than the whole fine-tune, so no mask update
                would reach ``final_sparsity`` (tfmot's default of 100 steps does this silently on
                small data sets).
        """
        sparsity = tfmot().sparsity.keras
        freq = self.update_every or max(1, steps // 4)
        total = self.epochs * steps
        if freq > total:
            raise InputError(
                f"update_every={freq} is longer than the fine-tune ({self.epochs} epochs x {steps} "
                f"steps = {total} steps): the masks would never reach final_sparsity; lower "
                "update_every or raise epochs"
            )
        if self.schedule == "ConstantSparsity":
            return sparsity.ConstantSparsity(self.final_sparsity, begin_step=0, frequency=freq)
        # End the ramp on an update step: tfmot applies no mask after end_step.
        end = max(freq, round(total * self.ramp_fraction / freq) * freq)
        end = min(end, (total // freq) * freq) or freq
        return sparsity.PolynomialDecay(
            initial_sparsity=self.initial_sparsity,
            final_sparsity=self.final_sparsity,
            begin_step=0,
            end_step=end,
            frequency=freq,
        )

    def apply(self, model: keras.Model, data: Dataset) -> StageResult:
        """Prunes and fine-tunes ``model`` on ``data``'s training split, then strips wrappers.

        Args:
            model: A plain (unwrapped) tf_keras Sequential or Functional model.
            data: The dataset (only the training split is used for training).

        Returns:
            The stripped model; details list pruned and skipped layers and measured sparsity.

        Raises:
            InputError: A subclassed model (tfmot can only clone Sequential/Functional models).
        """
        require_graph_model(model, "pruning")
        mot = tfmot()
        # tfmot's public API has no "is this layer prunable" query; its registry answers it.
        from tensorflow_model_optimization.python.core.sparsity.keras.prune_registry import (
            PruneRegistry as registry,
        )

        steps = steps_per_epoch(len(data.x_train), self.batch_size)
        schedule = self.pruning_schedule(steps)
        pruned_names: list[str] = []
        skipped: dict[str, str] = {}

        def wrap(layer: keras.layers.Layer) -> keras.layers.Layer:
            has_kernel = any(getattr(layer, k, None) is not None for k in PRUNABLE_KERNELS)
            if has_kernel and (
                isinstance(layer, mot.sparsity.keras.PrunableLayer) or registry.supports(layer)
            ):
                pruned_names.append(layer.name)
                return mot.sparsity.keras.prune_low_magnitude(layer, pruning_schedule=schedule)
            if has_kernel:
                skipped[layer.name] = f"{type(layer).__name__} is not supported by tfmot pruning"
            return layer

        # Work on a copy: the wrapped clone shares layer objects with the model it wraps.
        wrapped = keras.models.clone_model(copy_model(model), clone_function=wrap)
        history = self.fine_tune(wrapped, data, f"prune {self.final_sparsity:.0%}",
                                 callbacks=(mot.sparsity.keras.UpdatePruningStep(),))
        stripped = mot.sparsity.keras.strip_pruning(wrapped)
        measured = kernel_sparsity(stripped)
        short = {n: measured.get(n) for n in pruned_names
                 if (measured.get(n) or 0.0) < self.final_sparsity - 0.01}
        details = {
            "target_reached": not short,
            "short_of_target": short,
            "schedule": schedule.get_config(),
            "pruned_layers": {n: measured.get(n) for n in pruned_names},
            "skipped_layers": skipped,
            "train_accuracy": accuracy(stripped, data.x_train, data.y_train),
            "history": history,
        }
        return StageResult(model=stripped, details=details)
