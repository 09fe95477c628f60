"""What every compression stage shares: the result type and ``{class_name, config}`` serialization.

A stage is a frozen dataclass whose fields are its config; ``apply(model, data)`` returns a
:class:`StageResult`. Recipes name stages as ``{"class_name": "Prune", "config": {...}}``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Protocol

import numpy as np

from edgekit.compress.distillation import DistillConfig, fit_distilled, load_teacher
from edgekit.compress.training import fit
from edgekit.core._keras import keras
from edgekit.core.checks import checked_kwargs
from edgekit.core.errors import InputError
from edgekit.data import Dataset

# The training fields every fine-tuning stage has (Prune, QAT, LowRank).
TRAINING_FIELDS = ("epochs", "learning_rate", "batch_size", "augment_shift", "seed")


@dataclass(frozen=True)
class StageResult:
    """What a compression stage hands on.

    Attributes:
        model: The compressed tf_keras model (wrappers stripped where the stage allows).
        details: JSON-ready facts for the report (layers touched/left and why, sparsity, history).

    The file format of the model is the stage's ``artefact_suffix`` (known before it runs, so a
    finished stage can be found again).
    """

    model: keras.Model
    details: dict[str, Any] = field(default_factory=dict)


class Stage(Protocol):
    """A compression stage (plug-in interface)."""

    class_name: ClassVar[str]
    artefact_suffix: ClassVar[str]

    def apply(self, model: keras.Model, data: Dataset) -> StageResult:
        """Compresses ``model`` using the training split of ``data``."""
        ...

    def to_dict(self) -> dict[str, Any]:
        """Returns ``{"class_name": ..., "config": {...}}``."""
        ...


class SerializableStage:
    """Mixin giving frozen-dataclass stages ``to_dict``/``from_dict``/``get_config``."""

    class_name: ClassVar[str] = ""
    # File format of the stage's output model (QAT models only round-trip through .h5).
    artefact_suffix: ClassVar[str] = ".keras"

    def get_config(self) -> dict[str, Any]:
        """Returns the stage's config (its dataclass fields)."""
        return asdict(self)  # type: ignore[call-overload]

    def to_dict(self) -> dict[str, Any]:
        """Returns ``{"class_name": ..., "config": {...}}``."""
        return {"class_name": self.class_name, "config": self.get_config()}

    def fine_tune(
        self, model: keras.Model, data: Dataset, desc: str, callbacks: tuple[Any, ...] = (),
        teacher: keras.Model | None = None,
    ) -> dict[str, list[float]]:
        """Trains ``model`` on the training split with the stage's own training fields.

        A stage with a ``distill`` field set (``{teacher, temperature, alpha, feature_layer}``)
        trains with the distillation loss instead (see :mod:`edgekit.compress.distillation`); the
        callbacks (tfmot's ``UpdatePruningStep``) run the same way.

        Args:
            model: The wrapped (pruning / QAT) model.
            data: The dataset.
            desc: Progress-bar label.
            callbacks: Extra Keras callbacks.
            teacher: The model the stage started from: the teacher when ``distill.teacher`` is
                ``"float"`` outside a pipeline (a pipeline points it at its float model file).

        Returns:
            The Keras history.

        Raises:
            InputError: A bad ``distill`` mapping or teacher.
        """
        training = {key: getattr(self, key) for key in TRAINING_FIELDS}
        distill = getattr(self, "distill", None)
        if distill is not None:
            name = type(self).class_name
            config = DistillConfig.from_dict(distill, f"{name} distill")
            return fit_distilled(
                model, load_teacher(config.teacher, teacher, name), data.x_train, data.y_train,
                temperature=config.temperature, alpha=config.alpha,
                feature_layer=config.feature_layer, callbacks=callbacks,
                desc=f"{desc} + distill", **training,
            )
        return fit(model, data.x_train, data.y_train, callbacks=callbacks, desc=desc, **training)

    def check_distill(self) -> None:
        """Validates the stage's ``distill`` mapping, if it has one, when the stage is built.

        Raises:
            InputError: Unknown keys or bad values (see ``edgekit.compress.distillation``).
        """
        if getattr(self, "distill", None) is not None:
            DistillConfig.from_dict(self.distill, f"{self.class_name} distill")  # type: ignore[attr-defined]

    @classmethod
    def from_config(cls, config: dict[str, Any] | None) -> Any:
        """Builds the stage from its config, rejecting unknown keys.

        Raises:
            InputError: Unknown keys (all known ones are listed) or invalid values.
        """
        return cls(**checked_kwargs(cls, config, f"{cls.class_name} config"))


PRUNABLE_KERNELS = ("kernel", "depthwise_kernel")


def require_graph_model(model: keras.Model, what: str) -> None:
    """Refuses subclassed models, which tfmot cannot clone.

    Args:
        model: The model.
        what: The stage, for the message ("pruning", "QAT").

    Raises:
        InputError: ``model`` is neither Sequential nor Functional.
    """
    if not isinstance(model, keras.Sequential) and not model._is_graph_network:
        raise InputError(
            f"model {model.name!r} is a subclassed Keras model; {what} needs a Sequential "
            "or Functional model (rebuild it with the functional API)"
        )


def copy_model(model: keras.Model) -> keras.Model:
    """A structural copy with the same weights (wrapping never touches the caller's model)."""
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def kernel_of(layer: keras.layers.Layer) -> np.ndarray | None:
    """Returns the main kernel of a Conv/Dense-like layer (unwrapping tfmot wrappers), or None."""
    # By variable name: QAT wrappers swap the layer's kernel attribute for a fake-quant tensor.
    for w in layer.weights:
        if w.name.split("/")[-1].split(":")[0] in PRUNABLE_KERNELS:
            return np.asarray(w.numpy())
    return None


def kernel_sparsity(model: keras.Model) -> dict[str, float]:
    """Share of exactly-zero weights in every Conv/Dense kernel of ``model``.

    Args:
        model: A tf_keras model (plain, pruned-wrapped or QAT-wrapped).

    Returns:
        ``{layer_name: zero_fraction}`` for each layer that has a kernel.
    """
    out: dict[str, float] = {}
    for layer in model.layers:
        k = kernel_of(layer)
        if k is not None and k.size:
            name = getattr(getattr(layer, "layer", layer), "name", layer.name)
            out[name] = round(float(np.mean(k == 0.0)), 6)
    return out
