"""Magnitude pruning with tfmot that works on real architectures, then strip.

The model is flattened first (nested Functional/Sequential models inlined), then each layer is
decided on its own: tfmot wraps only layers whose weights it can prune and that the user's
``layers`` selection picks; every other layer (``Rescaling``, ``TFOpLambda``, ``Normalization``,
custom layers ...) is left as it is and reported with the reason. Options: a gradual
(PolynomialDecay) or constant schedule, structured m-by-n sparsity (``sparsity_m_by_n: "2:4"``)
and tfmot's ``PruneForLatencyOnXNNPack`` policy. The sparsity ramp ends on a mask-update step, so
the final mask really reaches ``final_sparsity`` (tfmot stops updating masks after ``end_step``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from device_bench.sizes import sizes
from edgekit.compress.base import StageResult, require_graph_model
from edgekit.compress.layer_support import (
    LayerDecision,
    LayerSelectingStage,
    LayerSelection,
    flatten_model,
    model_layers,
    param_count,
    prunable_weights,
    summarize,
)
from edgekit.compress.registry import register_stage
from edgekit.compress.stage_notes import StageNotes, counts_fact, kib, left_table, pct
from edgekit.compress.structured import check_m_by_n, parse_m_by_n
from edgekit.compress.training import accuracy, steps_per_epoch
from edgekit.core._keras import keras, tfmot
from edgekit.core.errors import InputError
from edgekit.data import Dataset

SCHEDULES = ("PolynomialDecay", "ConstantSparsity")
POLICIES = ("PruneForLatencyOnXNNPack",)


def weight_sizes(model: keras.Model) -> dict[str, int]:
    """Bytes of all the model's weights as float32, raw and gzip-compressed (zeros compress).

    Args:
        model: A tf_keras model.

    Returns:
        ``{"bytes": raw, "gzip_bytes": compressed}``.
    """
    raw = b"".join(np.asarray(w, dtype=np.float32).tobytes() for w in model.get_weights())
    return sizes(raw)


def _prune_notes(name: str, d: Mapping[str, Any]) -> StageNotes:
    """The report section of a Prune stage from its ``details`` (its registered reader)."""
    size = d.get("size", {})
    before, after = size.get("before", {}), size.get("after", {})
    target = "reached" if d.get("target_reached") else (
        "NOT reached in " + ", ".join(f"{k} ({pct(v)})" for k, v in
                                      (d.get("short_of_target") or {}).items()))
    facts = [
        f"{counts_fact(d, 'pruned')}; the pruned kernels hold "
        f"{pct(d.get('weights_share_pruned'))} of the weights; zeros overall "
        f"{pct(d.get('zeros_share'))}.",
        f"Sparsity target {target}.",
        f"Weights as float32: {kib(before.get('bytes'))} -> {kib(after.get('bytes'))}, "
        f"gzip {kib(before.get('gzip_bytes'))} -> {kib(after.get('gzip_bytes'))}.",
    ]
    if d.get("m_by_n"):
        holds = d["m_by_n"]["holds"]
        facts.append(f"{d['m_by_n']['pattern']} pattern holds in {sum(holds.values())} of "
                     f"{len(holds)} pruned kernels.")
    if d.get("policy"):
        facts.append(f"Pruning policy: {d['policy']}.")
    notes = StageNotes(name, "Prune", facts)
    left_table(notes, d.get("skipped_layers") or {}, d.get("layers", []))
    return notes


@register_stage(notes=_prune_notes)
@dataclass(frozen=True)
class Prune(LayerSelectingStage):
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
        layers: Which layers to prune: ``{names: [...], regex: "...", types: [Conv2D, Dense],
            exclude: {names, regex, types}}`` (None: every layer tfmot can prune).
        sparsity_m_by_n: Structured sparsity ``"M:N"`` (M zeros in every N input-channel
            weights, e.g. ``"2:4"``); the masks are set at the first step and the schedule
            fields are not used. Only 2-D/4-D kernels (Dense, Conv2D) are pruned then.
        policy: ``"PruneForLatencyOnXNNPack"``: prune only the 1x1 Conv2D layers of a model that
            XNNPack's sparse inference can run (tfmot checks the structure), or None.
        distill: Fine-tune guided by a teacher: ``{teacher: float|PATH, temperature, alpha,
            feature_layer}`` (see edgekit.compress.distillation), or None for plain labels.
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
    layers: LayerSelection | None = None
    sparsity_m_by_n: str | None = None
    policy: str | None = None
    distill: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        self.parse_layers()
        self.check_distill()
        m_by_n = parse_m_by_n(self.sparsity_m_by_n)
        text = None if m_by_n is None else f"{m_by_n[0]}:{m_by_n[1]}"
        object.__setattr__(self, "sparsity_m_by_n", text)
        if self.policy is not None and self.policy not in POLICIES:
            raise InputError(f"policy must be one of {', '.join(POLICIES)} or null, "
                             f"got {self.policy!r}")
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
        sparsity = tfmot.sparsity.keras
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

    @property
    def m_by_n(self) -> tuple[int, int] | None:
        """``(m, n)`` of structured sparsity, or None."""
        return parse_m_by_n(self.sparsity_m_by_n)

    def _policy(self, model: keras.Model) -> Any:
        """tfmot's policy object, after checking ``model`` fits it (None without a policy)."""
        if self.policy is None:
            return None
        policy = getattr(tfmot.sparsity.keras, self.policy)()
        try:
            policy.ensure_model_supports_pruning(model)
        except ValueError as e:
            raise InputError(
                f"model {model.name!r} does not fit the {self.policy} policy: {e} (it needs "
                "ZeroPadding2D(1) -> Conv2D 3x3 stride 2 'valid' on 3 channels at the input, "
                "XNNPack-supported layers up to a GlobalAveragePooling2D(keepdims=True))"
            ) from e
        return policy

    def plan(self, model: keras.Model) -> list[tuple[keras.layers.Layer, LayerDecision]]:
        """Decides for every layer of a flattened model whether it is pruned, and why.

        Args:
            model: The flattened model (see :func:`flatten_model`).

        Returns:
            ``(layer, decision)`` per non-input layer, in graph order.

        Raises:
            InputError: The selection names unknown layers/types, or the policy does not fit.
        """
        selection = self.selection
        selection.check(model)
        policy = self._policy(model)
        m_by_n = self.m_by_n
        out = []
        for layer in model_layers(model):
            params = param_count(layer)
            weights, reason = prunable_weights(layer)
            if reason is None:
                reason = selection.decide(layer)
            if reason is None and policy is not None and not policy.allow_pruning(layer):
                reason = f"{type(layer).__name__}: {self.policy} prunes only 1x1 Conv2D"
            if reason is None and m_by_n is not None:
                reason = self._m_by_n_reason(layer, weights, m_by_n)
            if reason is None:
                names = ", ".join(w.name.split("/")[-1].split(":")[0] for w in weights)
                touched = int(sum(int(np.prod(w.shape)) for w in weights))
                out.append((layer, LayerDecision(layer.name, type(layer).__name__, "pruned",
                                                 f"prunes {names}", params, touched)))
            else:
                out.append((layer, LayerDecision(layer.name, type(layer).__name__, "left",
                                                 reason, params)))
        return out

    def _m_by_n_reason(self, layer: keras.layers.Layer, weights: list[Any],
                       m_by_n: tuple[int, int]) -> str | None:
        """Why m-by-n sparsity cannot prune ``layer`` (tfmot handles 2-D/4-D kernels only)."""
        kind, pattern = type(layer).__name__, self.sparsity_m_by_n
        ranks = [len(w.shape) for w in weights]
        if any(r not in (2, 4) for r in ranks):
            return (f"{kind}: {pattern} sparsity needs 2-D or 4-D kernels, this layer's are "
                    f"{ranks}-D")
        # The input-channel axis: Dense [in, out], Conv2D [h, w, in, out].
        inputs = [int(w.shape[0] if len(w.shape) == 2 else w.shape[2]) for w in weights]
        if all(c <= m_by_n[1] - m_by_n[0] for c in inputs):
            return (f"{kind}: {max(inputs)} input channel(s), {pattern} sparsity would zero "
                    "nothing")
        return None

    def apply(self, model: keras.Model, data: Dataset) -> StageResult:
        """Prunes and fine-tunes ``model`` on ``data``'s training split, then strips wrappers.

        Args:
            model: A plain (unwrapped) tf_keras Sequential or Functional model, nested models
                allowed.
            data: The dataset (only the training split is used for training).

        Returns:
            The stripped (flattened) model; details: every layer with its action and reason,
            per-layer sparsity, the share of weights pruned, sizes raw and gzip before/after.

        Raises:
            InputError: A subclassed model (tfmot can only clone Sequential/Functional models),
                a selection that names unknown layers, no prunable layer selected, or a model
                that does not fit the policy.
        """
        require_graph_model(model, "pruning")
        mot = tfmot.sparsity.keras
        flat = flatten_model(model)
        plan = self.plan(flat)
        chosen = {layer.name for layer, d in plan if d.action == "pruned"}
        if not chosen:
            left = "; ".join(f"{d.name}: {d.reason}" for _, d in plan if d.params)[:400]
            raise InputError(f"no layer of model {model.name!r} can be pruned with these "
                             f"options ({left or 'no layer has weights'})")
        m_by_n = self.m_by_n
        steps = steps_per_epoch(len(data.x_train), self.batch_size)
        if m_by_n is None:
            schedule = self.pruning_schedule(steps)
            target = self.final_sparsity
        else:  # tfmot sets m-by-n masks once, at the first step; the schedule is not consulted
            target = m_by_n[0] / m_by_n[1]
            schedule = mot.ConstantSparsity(target, begin_step=0, frequency=1)

        def wrap(layer: keras.layers.Layer) -> keras.layers.Layer:
            if layer.name not in chosen:
                return layer
            return mot.prune_low_magnitude(layer, pruning_schedule=schedule,
                                           sparsity_m_by_n=m_by_n)

        size_before = weight_sizes(flat)
        wrapped = keras.models.clone_model(flat, clone_function=wrap)
        history = self.fine_tune(wrapped, data, f"prune {target:.0%}",
                                 callbacks=(mot.UpdatePruningStep(),), teacher=model)
        stripped = mot.strip_pruning(wrapped)
        return StageResult(model=stripped,
                           details=self._details(stripped, plan, schedule, target, size_before,
                                                 history, data))

    def _details(self, stripped: keras.Model, plan: list[tuple[Any, LayerDecision]],
                 schedule: Any, target: float, size_before: dict[str, int],
                 history: dict[str, list[float]], data: Dataset) -> dict[str, Any]:
        """The JSON-ready report of a finished prune."""
        by_name = {layer.name: layer for layer in stripped.layers}
        kernels: dict[str, list[np.ndarray]] = {}
        for _, d in plan:
            if d.action == "pruned":
                weights, _ = prunable_weights(by_name[d.name])
                kernels[d.name] = [np.asarray(w.numpy()) for w in weights]
        measured = {n: round(float(np.mean(np.concatenate([k.ravel() == 0 for k in ks]))), 6)
                    for n, ks in kernels.items()}
        if self.m_by_n is None:
            short = {n: s for n, s in measured.items() if s < target - 0.01}
        else:  # narrow inputs (3 channels) end below m/n; the pattern is what must hold
            holds = check_m_by_n(kernels, *self.m_by_n)
            short = {n: measured[n] for n, ok in holds.items() if not ok}
        zeros = sum(int(np.sum(k == 0)) for ks in kernels.values() for k in ks)
        total = int(stripped.count_params())
        decisions = [d for _, d in plan]
        report = summarize(decisions, total)
        details: dict[str, Any] = {
            "target_reached": not short,
            "short_of_target": short,
            "schedule": None if self.m_by_n else schedule.get_config(),
            "pruned_layers": measured,
            "skipped_layers": report["left_with_weights"],
            "layers": report["layers"],
            "counts": report["counts"],
            "weights_share_pruned": report["weights_share"],
            "zeros_share": round(zeros / total, 6) if total else 0.0,
            "size": {"before": size_before, "after": weight_sizes(stripped)},
            "train_accuracy": accuracy(stripped, data.x_train, data.y_train),
            "history": history,
        }
        if self.m_by_n is not None:
            details["m_by_n"] = {"pattern": self.sparsity_m_by_n, "holds": holds}
        if self.policy is not None:
            details["policy"] = self.policy
        return details
