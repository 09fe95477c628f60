"""Quantization-aware training with tfmot on real architectures; prune-preserving when sparse.

The model is flattened first (nested models inlined); then only the layers tfmot's default 8-bit
scheme supports are annotated (``quantize_annotate_layer``). ``Rescaling``, ``Normalization``,
``TFOpLambda``, ``Multiply``, ``LayerNormalization``, a ``BatchNormalization`` that is not right
after a Conv/Dense, custom layers ... are left unannotated and reported with the reason; the
converter quantizes them from its calibration data, so the model still converts to full int8
(a QAT model needs the representative dataset for that: tensorflow/tensorflow#38285).

Plain QAT would let fine-tuning refill pruned weights; ``Default8BitPrunePreserveQuantizeScheme``
keeps every zero at zero, so the sparsity measured after pruning survives into the int8 model.
The result keeps its QuantizeWrapper layers (the converter reads their learned ranges), so it is
saved as ``.h5``: tf_keras cannot reload a QAT model from ``.keras`` (the QuantizeLayer's
variables do not round-trip).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from edgekit.compress.base import (
    StageResult,
    kernel_sparsity,
    require_graph_model,
)
from edgekit.compress.layer_support import (
    LayerDecision,
    LayerSelectingStage,
    LayerSelection,
    flatten_model,
    model_layers,
    param_count,
    quantize_reason,
    summarize,
)
from edgekit.compress.registry import register_stage
from edgekit.compress.stage_notes import StageNotes, counts_fact, left_table, pct
from edgekit.compress.training import accuracy
from edgekit.core._keras import keras, tfmot
from edgekit.core.errors import InputError
from edgekit.data import Dataset

PRESERVE_CHOICES = ("auto", "always", "never")
SPARSE_THRESHOLD = 0.2  # a kernel with at least this share of zeros counts as pruned


# TFLite's int8 AVERAGE_POOL_2D must keep its input's scale; tfmot gives average pooling an output
# range of its own, and the converter then fails ("same scale constraint") when that range and
# the input's range meet, e.g. in DenseNet's transitions. These layers get no output quantizer.
KEEP_INPUT_SCALE = frozenset({"AveragePooling1D", "AveragePooling2D"})


def _no_output_config() -> Any:
    """A quantize config with no weights, activations or output to quantize."""
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_registry as d8,
    )

    return d8.Default8BitQuantizeConfig([], [], False)


def _prune_preserve_scheme() -> Any:
    """tfmot's prune-preserving 8-bit scheme, fixed for layers left unannotated.

    Its registry calls every layer without trainable weights supported, so quantize_apply asks it
    for an output config of an unannotated ``Rescaling``/``TFOpLambda`` that feeds an annotated
    layer, and the default registry then raises. Here a layer is supported only when the default
    8-bit registry supports it too.
    """
    from tensorflow_model_optimization.python.core.quantization.keras.collab_opts.prune_preserve import (  # noqa: E501
        prune_preserve_quantize_registry as pqr,
    )
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_registry as d8,
    )

    class Registry(pqr.Default8bitPrunePreserveQuantizeRegistry):
        def supports(self, layer: Any) -> bool:  # type: ignore[override]
            return bool(d8.Default8BitQuantizeRegistry().supports(layer)
                        and pqr.Default8bitPrunePreserveQuantizeRegistry.supports(layer))

    class Scheme(tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme):
        def get_quantize_registry(self) -> Any:
            return Registry()

    return Scheme()


def _qat_notes(name: str, d: Mapping[str, Any]) -> StageNotes:
    """The report section of a QAT stage from its ``details`` (its registered reader)."""
    facts = [
        f"{counts_fact(d, 'quantized')}; the annotated layers hold "
        f"{pct(d.get('weights_share_quantized'))} of the weights.",
        f"Scheme: {d.get('scheme')}"
        + (" (keeps the pruned zeros)." if d.get("prune_preserving") else "."),
    ]
    if d.get("calibration_needed"):
        facts.append("Layers QAT left are quantized by the converter from calibration data.")
    notes = StageNotes(name, "QAT", facts)
    left_table(notes, d.get("left_with_weights") or {}, d.get("layers", []))
    return notes


@register_stage(notes=_qat_notes, quantized_ranges=True)
@dataclass(frozen=True)
class QAT(LayerSelectingStage):
    """Fine-tune with fake-quantization so the int8 model keeps the float accuracy.

    Attributes:
        epochs: Fine-tuning epochs.
        learning_rate: Peak Adam learning rate (cosine-decayed); small, QAT only adapts.
        batch_size: Samples per step.
        augment_shift: Max random shift in pixels for image inputs.
        preserve_sparsity: ``"auto"`` (PQAT when some kernel is >= 20 % zeros), ``"always"``,
            ``"never"``.
        seed: Seed of batches and augmentation.
        layers: Which layers to annotate: ``{names, regex, types, exclude: {...}}`` (None:
            every layer the 8-bit scheme supports). Layers left out are quantized by the
            converter from calibration data.
        distill: Fine-tune guided by a teacher: ``{teacher: float|PATH, temperature, alpha,
            feature_layer}`` (see edgekit.compress.distillation), or None for plain labels.
    """

    class_name: ClassVar[str] = "QAT"
    artefact_suffix: ClassVar[str] = ".h5"

    epochs: int = 10
    learning_rate: float = 1e-4
    batch_size: int = 32
    augment_shift: int = 2
    preserve_sparsity: str = "auto"
    seed: int = 0
    layers: LayerSelection | None = None
    distill: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        self.parse_layers()
        self.check_distill()
        if self.preserve_sparsity not in PRESERVE_CHOICES:
            raise InputError(
                f"preserve_sparsity must be one of {', '.join(PRESERVE_CHOICES)}, "
                f"got {self.preserve_sparsity!r}"
            )

    def _use_pqat(self, model: keras.Model) -> bool:
        if self.preserve_sparsity != "auto":
            return self.preserve_sparsity == "always"
        return any(s >= SPARSE_THRESHOLD for s in kernel_sparsity(model).values())

    def plan(self, model: keras.Model, prune_preserve: bool) -> list[LayerDecision]:
        """Decides for every layer of a flattened model whether it is annotated, and why.

        Args:
            model: The flattened model.
            prune_preserve: Whether the prune-preserving scheme is used.

        Returns:
            One decision per non-input layer, in graph order.

        Raises:
            InputError: The selection names unknown layers or types.
        """
        selection = self.selection
        selection.check(model)
        annotated: set[str] = set()
        out = []
        for layer in model_layers(model):
            kind, params = type(layer).__name__, param_count(layer)
            reason = selection.decide(layer)
            if reason is None:
                reason = quantize_reason(layer, model, annotated, prune_preserve)
            if reason is None:
                annotated.add(layer.name)
                out.append(LayerDecision(layer.name, kind, "quantized",
                                         "annotated for the 8-bit scheme", params, params))
            else:
                out.append(LayerDecision(layer.name, kind, "left",
                                         f"{reason}; the converter calibrates it", params))
        return out

    def _quantize(self, flat: keras.Model, pqat: bool) -> tuple[keras.Model, list[LayerDecision]]:
        """Annotates the layers :meth:`plan` picks and applies the (prune-preserving) scheme."""
        qk = tfmot.quantization.keras
        scheme: Any = (_prune_preserve_scheme() if pqat
                       else qk.default_8bit.Default8BitQuantizeScheme())
        decisions = self.plan(flat, pqat)
        chosen = {d.name for d in decisions if d.action == "quantized"}
        if not chosen:
            raise InputError(f"no layer of model {flat.name!r} can be quantized by tfmot's "
                             "8-bit scheme with this selection")

        def annotate(layer: keras.layers.Layer) -> Any:
            if layer.name not in chosen:
                return layer
            if type(layer).__name__ in KEEP_INPUT_SCALE:
                return qk.quantize_annotate_layer(layer, quantize_config=_no_output_config())
            return qk.quantize_annotate_layer(layer)

        annotated = keras.models.clone_model(flat, clone_function=annotate)
        # Custom layers (ConvNeXt's LayerScale) must be known when tfmot rebuilds the model.
        custom = {type(layer).__name__: type(layer) for layer in flat.layers}
        try:
            with qk.quantize_scope(custom):
                return qk.quantize_apply(annotated, scheme), decisions
        except (ValueError, RuntimeError, TypeError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise InputError(f"model {flat.name!r} cannot be prepared for QAT: {first}") from e

    def apply(self, model: keras.Model, data: Dataset) -> StageResult:
        """Annotates what tfmot supports, applies QAT (PQAT if sparse) and fine-tunes.

        Args:
            model: A plain tf_keras Sequential or Functional model (pruning wrappers stripped),
                nested models allowed.
            data: The dataset (training split only).

        Returns:
            The QAT model (QuantizeWrapper layers kept) and details: scheme, every layer with
            its action and reason, the share of weights quantized, sparsity before and after,
            history.

        Raises:
            InputError: A subclassed model, a selection naming unknown layers, or no layer the
                scheme can quantize.
        """
        require_graph_model(model, "QAT")
        flat = flatten_model(model)
        pqat = self._use_pqat(flat)
        before = kernel_sparsity(flat)
        qmodel, decisions = self._quantize(flat, pqat)
        history = self.fine_tune(qmodel, data, "PQAT" if pqat else "QAT", teacher=model)
        report = summarize(decisions, int(flat.count_params()))
        details = {
            "scheme": (
                "Default8BitPrunePreserveQuantizeScheme" if pqat else "Default8BitQuantizeScheme"
            ),
            "prune_preserving": pqat,
            "layers": report["layers"],
            "counts": report["counts"],
            "weights_share_quantized": report["weights_share"],
            "left_with_weights": report["left_with_weights"],
            "calibration_needed": report["counts"]["left"] > 0,
            "sparsity_before": before,
            "sparsity_after": kernel_sparsity(qmodel),
            "train_accuracy": accuracy(qmodel, data.x_train, data.y_train),
            "history": history,
        }
        return StageResult(model=qmodel, details=details)
