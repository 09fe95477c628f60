"""Low-rank factorization: a Dense (or 1x1 Conv2D) kernel W becomes two thinner layers.

The truncated SVD ``W = U S V^T`` keeps the ``r`` largest singular values::

    Dense(out)             ->  Dense(r, linear, no bias) -> Dense(out, activation, bias)
    Conv2D(out, 1x1, s)    ->  Conv2D(r, 1x1, s, linear, no bias) -> Conv2D(out, 1x1, activation)

with ``A = U_r sqrt(S_r)`` and ``B = sqrt(S_r) V_r^T`` (the singular values split evenly, so both
factors have similar ranges, which int8 quantization likes). A layer is factorized only when
``r * (in + out) < in * out``, i.e. when it saves parameters. ``r`` is either a fixed ``rank``
(capped at ``min(in, out)``) or the smallest rank that keeps an ``energy`` share of
``sum(S^2)``. The result is a plain Functional/Sequential model: every layer is a built-in one,
so pruning, QAT and conversion treat it like any other model.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from edgekit.compress.base import SerializableStage, StageResult, require_graph_model
from edgekit.compress.registry import register_stage
from edgekit.compress.stage_notes import StageNotes, fine_tune_fact, plural, set_rows
from edgekit.compress.training import _check_fit_args, accuracy
from edgekit.core._keras import keras
from edgekit.core.errors import InputError
from edgekit.core.tfmot_wrappers import wrapped_layers
from edgekit.data import Dataset

SUFFIX = "_lowrank"


def choose_rank(singular_values: np.ndarray, *, rank: int | None = None,
                energy: float | None = None) -> int:
    """The rank to keep.

    Args:
        singular_values: Singular values, largest first.
        rank: A fixed rank (capped at the number of values).
        energy: Keep the smallest rank whose ``sum(s[:r]**2) / sum(s**2) >= energy``.

    Returns:
        The rank, at least 1.

    Raises:
        InputError: Neither or both of ``rank`` and ``energy`` given.
    """
    s = np.asarray(singular_values, dtype=np.float64)
    if (rank is None) == (energy is None):
        raise InputError(f"give exactly one of rank and energy, got rank={rank!r}, "
                         f"energy={energy!r}")
    if rank is not None:
        return max(1, min(int(rank), len(s)))
    total = float(np.sum(s**2))
    if total == 0.0:
        return 1
    kept = np.cumsum(s**2) / total
    return int(min(len(s), np.searchsorted(kept, float(energy) - 1e-12) + 1))


def svd_factors(kernel: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Splits a 2-D kernel ``(in, out)`` into ``A (in, r)`` and ``B (r, out)``.

    Args:
        kernel: The kernel.
        rank: r.

    Returns:
        ``(A, B, energy_kept)`` with ``A @ B`` the best rank-r approximation of ``kernel``.
    """
    u, s, vt = np.linalg.svd(np.asarray(kernel, dtype=np.float64), full_matrices=False)
    root = np.sqrt(s[:rank])
    a = u[:, :rank] * root
    b = root[:, None] * vt[:rank]
    total = float(np.sum(s**2))
    kept = float(np.sum(s[:rank] ** 2)) / total if total else 1.0
    return a.astype(np.float32), b.astype(np.float32), kept


def _kind(layer: keras.layers.Layer) -> str | None:
    """"Dense", "Conv2D 1x1" or None (not factorizable)."""
    if type(layer) is keras.layers.Dense:
        return "Dense" if len(layer.kernel.shape) == 2 else None
    if type(layer) is keras.layers.Conv2D:
        k = layer.kernel.shape
        if tuple(k[:2]) == (1, 1) and layer.groups == 1 and tuple(layer.dilation_rate) == (1, 1):
            return "Conv2D 1x1"
    return None


def _split_configs(layer: keras.layers.Layer, rank: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """tf_keras configs of the two layers that replace ``layer`` (second one keeps the name)."""
    first = copy.deepcopy(layer.get_config())
    second = copy.deepcopy(layer.get_config())
    first.update(name=f"{layer.name}{SUFFIX}", activation="linear", use_bias=False,
                 kernel_regularizer=None, kernel_constraint=None, bias_regularizer=None,
                 bias_constraint=None, activity_regularizer=None)
    if isinstance(layer, keras.layers.Conv2D):
        first["filters"] = rank
        second["strides"] = (1, 1)  # the first 1x1 conv already strides
    else:
        first["units"] = rank
    return first, second


def _rebuild(model: keras.Model, splits: dict[str, tuple[dict[str, Any], dict[str, Any]]]
             ) -> keras.Model:
    """The model with every layer named in ``splits`` replaced by its two layers."""
    config = copy.deepcopy(model.get_config())
    layers = []
    sequential = isinstance(model, keras.Sequential)
    for entry in config["layers"]:
        name = entry["config"].get("name")
        if name not in splits:
            layers.append(entry)
            continue
        first, second = splits[name]
        a = {"class_name": entry["class_name"], "config": first}
        b = {"class_name": entry["class_name"], "config": second}
        if not sequential:
            a.update(name=first["name"], inbound_nodes=entry["inbound_nodes"])
            b.update(name=name, inbound_nodes=[[[first["name"], i, 0, {}]]
                                               for i in range(len(entry["inbound_nodes"]))])
        layers += [a, b]
    config["layers"] = layers
    cls = keras.Sequential if sequential else keras.Model
    return cls.from_config(config)


def factorize(model: keras.Model, *, rank: int | None = None, energy: float | None = None,
              layers: list[str] | None = None, min_params: int = 0,
              require_smaller: bool = True) -> tuple[keras.Model, dict[str, Any]]:
    """Replaces Dense / 1x1 Conv2D layers by low-rank pairs.

    Args:
        model: A plain Sequential or Functional tf_keras model (no tfmot wrappers).
        rank: Fixed rank for every chosen layer (exclusive with ``energy``).
        energy: Share of squared singular values to keep (exclusive with ``rank``).
        layers: Names of the layers to consider (None: every Dense / 1x1 Conv2D).
        min_params: Skip layers whose kernel has fewer parameters.
        require_smaller: Factorize only when it saves parameters (False: always, e.g. to check
            that full rank reproduces the model).

    Returns:
        ``(new model, report)``: the report has ``layers`` (per factorized layer: kind, rank,
        max_rank, energy_kept, params_before, params_after of the kernel), ``skipped`` (layer:
        reason), ``params_before`` and ``params_after`` of the whole model.

    Raises:
        InputError: Bad rank/energy, unknown layer names, a subclassed or wrapped model.
    """
    require_graph_model(model, "low-rank factorization")
    wrapped = wrapped_layers(model)
    if wrapped:
        raise InputError(f"model {model.name!r} has tfmot wrappers ({', '.join(wrapped[:3])}); "
                         "apply LowRank to a plain model (before QAT; pruned models come out "
                         "stripped)")
    by_name = {lay.name: lay for lay in model.layers}
    if layers is not None:
        unknown = sorted(set(layers) - set(by_name))
        if unknown:
            raise InputError(f"LowRank layers {unknown} are not in model {model.name!r}; its "
                             f"layers: {', '.join(by_name)}")
    report: dict[str, Any] = {"layers": {}, "skipped": {},
                              "params_before": int(model.count_params())}
    splits: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    factors: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for layer in model.layers:
        if layers is not None and layer.name not in layers:
            continue
        kind = _kind(layer)
        if kind is None:
            if layers is not None:
                report["skipped"][layer.name] = (f"{type(layer).__name__} is not a Dense or "
                                                 "1x1 Conv2D layer")
            continue
        kernel = np.asarray(layer.kernel.numpy())
        w = kernel.reshape(kernel.shape[-2], kernel.shape[-1])
        n_in, n_out = w.shape
        if w.size < min_params:
            report["skipped"][layer.name] = f"{w.size} kernel parameters < min_params {min_params}"
            continue
        s = np.linalg.svd(w.astype(np.float64), compute_uv=False)
        r = choose_rank(s, rank=rank, energy=energy)
        after = r * (n_in + n_out)
        if require_smaller and after >= w.size:
            report["skipped"][layer.name] = (f"rank {r} of {min(n_in, n_out)} would not save "
                                             f"parameters ({after} >= {w.size})")
            continue
        a, b, kept = svd_factors(w, r)
        splits[layer.name] = _split_configs(layer, r)
        factors[layer.name] = (a.reshape(*kernel.shape[:-2], n_in, r),
                               b.reshape(*kernel.shape[:-2], r, n_out))
        report["layers"][layer.name] = {
            "kind": kind, "rank": r, "max_rank": min(n_in, n_out), "energy_kept": round(kept, 6),
            "params_before": int(w.size), "params_after": int(after)}
    if not splits:
        report["params_after"] = report["params_before"]
        return model, report
    new = _rebuild(model, splits)
    for layer in new.layers:
        if layer.name in factors:
            old_weights = by_name[layer.name].get_weights()
            layer.set_weights([factors[layer.name][1], *old_weights[1:]])
        elif layer.name.endswith(SUFFIX) and layer.name[: -len(SUFFIX)] in factors:
            layer.set_weights([factors[layer.name[: -len(SUFFIX)]][0]])
        elif layer.weights:
            layer.set_weights(by_name[layer.name].get_weights())
    report["params_after"] = int(new.count_params())
    return new, report


def _lowrank_notes(name: str, d: Mapping[str, Any]) -> StageNotes:
    """The report section of a LowRank stage from its ``details`` (its registered reader)."""
    layers = d.get("layers", {})
    facts = [
        f"{plural(len(layers), 'layer')} factorized: {d.get('params_before')} -> "
        f"{d.get('params_after')} parameters.",
    ]
    tuned = fine_tune_fact(d, "the factorization")
    if tuned:
        facts.append(tuned)
    notes = StageNotes(name, "LowRank", facts, caption="Factorized and skipped layers")
    rows = [[n, f"{v['rank']} / {v['max_rank']}", f"{v['energy_kept']:.3f}",
             f"{v['params_before']} -> {v['params_after']}", ""] for n, v in layers.items()]
    rows += [[n, "—", "—", "—", why] for n, why in (d.get("skipped") or {}).items()]
    return set_rows(notes, ["layer", "rank", "energy kept", "kernel params", "why skipped"], rows)


@register_stage(notes=_lowrank_notes)
@dataclass(frozen=True)
class LowRank(SerializableStage):
    """Factorize Dense / 1x1 Conv2D kernels by truncated SVD, then optionally fine-tune.

    Attributes:
        rank: Fixed rank for every chosen layer, or None (then ``energy`` decides).
        energy: Share of squared singular values to keep, in (0, 1], or None.
        layers: Layer names to consider (None: every Dense and 1x1 Conv2D).
        min_params: Leave layers whose kernel has fewer parameters.
        epochs: Fine-tuning epochs after the factorization (0: none).
        learning_rate: Peak Adam learning rate of the fine-tune.
        batch_size: Samples per step.
        augment_shift: Max random shift in pixels for image inputs.
        seed: Seed of batches and augmentation.
        distill: Fine-tune guided by a teacher (``{teacher, temperature, alpha,
            feature_layer}``; teacher "float" outside a pipeline = the model before the stage).
    """

    class_name: ClassVar[str] = "LowRank"

    rank: int | None = None
    energy: float | None = 0.9
    layers: list[str] | None = None
    min_params: int = 1024
    epochs: int = 0
    learning_rate: float = 5e-4
    batch_size: int = 32
    augment_shift: int = 2
    seed: int = 0
    distill: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if (self.rank is None) == (self.energy is None):
            raise InputError(f"LowRank needs exactly one of rank and energy, got "
                             f"rank={self.rank!r}, energy={self.energy!r}")
        if self.rank is not None and (not isinstance(self.rank, int) or self.rank < 1):
            raise InputError(f"rank must be an integer >= 1, got {self.rank!r}")
        if self.energy is not None and (
            not isinstance(self.energy, (int, float)) or not 0.0 < self.energy <= 1.0
        ):
            raise InputError(f"energy must be in (0, 1], got {self.energy!r}")
        if self.layers is not None and (
            not isinstance(self.layers, (list, tuple))
            or not all(isinstance(n, str) for n in self.layers)
        ):
            raise InputError(f"layers must be a list of layer names, got {self.layers!r}")
        if not isinstance(self.min_params, int) or self.min_params < 0:
            raise InputError(f"min_params must be an integer >= 0, got {self.min_params!r}")
        if not isinstance(self.epochs, int) or self.epochs < 0:
            raise InputError(f"epochs must be an integer >= 0, got {self.epochs!r}")
        _check_fit_args(max(1, self.epochs), self.learning_rate, self.batch_size,
                        self.augment_shift)
        self.check_distill()

    def apply(self, model: keras.Model, data: Dataset) -> StageResult:
        """Factorizes ``model`` and fine-tunes it when ``epochs`` > 0.

        Args:
            model: A plain Sequential or Functional model.
            data: The dataset (training split only).

        Returns:
            The factorized model; details: per layer rank, max rank, energy kept, kernel
            parameters before/after, the layers left and why, model parameters before/after,
            training accuracy right after the factorization and after the fine-tune.

        Raises:
            InputError: A wrapped or subclassed model, or unknown layer names.
        """
        layers = list(self.layers) if self.layers is not None else None
        new, report = factorize(model, rank=self.rank, energy=self.energy, layers=layers,
                                min_params=self.min_params)
        details: dict[str, Any] = dict(report)
        if new is model:  # nothing factorized: hand on a copy, as every stage does
            from edgekit.compress.base import copy_model

            new = copy_model(model)
        details["train_accuracy_before_fine_tune"] = accuracy(new, data.x_train, data.y_train)
        if self.epochs > 0 and report["layers"]:
            details["history"] = self.fine_tune(new, data, f"low-rank fine-tune ({self.epochs})",
                                                teacher=model)
            details["train_accuracy"] = accuracy(new, data.x_train, data.y_train)
        return StageResult(model=new, details=details)
