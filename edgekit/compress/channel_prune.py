"""Structured channel pruning: remove whole filters so the shipped model is a smaller dense one.

Unstructured sparsity makes a model compress better but not run faster: XNNPACK has no sparse
int8 kernels. Removing whole channels cuts the work on every target. ``ChannelPrune``:

1. flattens the model and finds its dependency groups (:mod:`~edgekit.compress.channel_graph`;
   refused groups are reported with the reason and left dense);
2. scores every channel of every selected group with an importance criterion or a weighted
   combination (:mod:`~edgekit.compress.importance`; data-driven ones draw ``batches`` seeded
   training batches);
3. decides **where to cut**: ``scope: layer`` removes ``ratio`` of every group's channels;
   ``scope: global`` removes the ``ratio`` share of all selected channels with the lowest scores
   (each group's scores divided by their mean, so layers compare), never more than
   ``max_layer_ratio`` of one group. ``ratio`` is the share of channels removed, as Torch-Pruning's
   ``pruning_ratio``. The kept count of each group is rounded **up** to a multiple of
   ``round_to`` (never below it), because XNNPACK's kernels work in tiles of channels;
4. rebuilds the model without those channels (:mod:`~edgekit.compress.channel_surgery`, constant
   channels folded into the next bias), re-estimates the BatchNormalization statistics on
   ``recalibrate_bn`` seeded training batches (:mod:`~edgekit.compress.bn_recalibration`: the
   layers after a cut still hold the unpruned network's statistics) and fine-tunes it,
   optionally distilled from the model it started from. The output is a plain model:
   ``Prune``, ``QAT`` and the int8 converter follow.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from edgekit.compress.base import StageResult, require_graph_model
from edgekit.compress.bn_recalibration import recalibrate_batch_norm
from edgekit.compress.channel_graph import (
    ChannelGraph,
    ChannelGroup,
    build_channel_graph,
    select_groups,
)
from edgekit.compress.channel_search import search_channels
from edgekit.compress.channel_surgery import remove_channels
from edgekit.compress.importance import (
    ScoringContext,
    needs_data,
    parse_importance,
    score_groups,
)
from edgekit.compress.layer_support import LayerSelectingStage, LayerSelection, flatten_model
from edgekit.compress.registry import register_stage
from edgekit.compress.search_target import parse_search_target
from edgekit.compress.stage_notes import StageNotes, fine_tune_fact, pct, plural, set_rows
from edgekit.compress.training import _check_fit_args, accuracy
from edgekit.converters.work import keras_work
from edgekit.core._keras import keras
from edgekit.core.errors import InputError
from edgekit.core.tfmot_wrappers import wrapped_layers
from edgekit.data import Dataset

__all__ = ["ChannelPrune", "plan_cut", "rounded_keep"]

SCOPES = ("layer", "global")
# Default channel rounding, from BENCHMARKS.md "channel-rounding" (bench/channel_rounding.py): on
# an emulated Cortex-A72 a 1x1 or 3x3 convolution costs the same for every channel count in a
# band of 8 (steps at 8k + 1: 17 channels cost what 24 do), so a count that is not a multiple of 8
# pays for the whole tile; rounding the kept count up to 8 keeps channels for free there. Its
# largest cost was +1.1 % instructions (depthwise, 17 -> 20/24); 16 costs up to +63 % (conv3x3
# 17-24 -> 32). The section's table gives 8 at an A72 tolerance of 1 % or more; the host medians
# on this shared machine were too noisy to decide (bimodal depthwise timings), so the default
# follows the deterministic instruction counts.
DEFAULT_ROUND_TO = 8


def rounded_keep(size: int, remove: int, round_to: int) -> int:
    """Channels to keep in a group of ``size`` when ``remove`` are asked to go.

    Args:
        size: Channels in the group.
        remove: Channels the criterion would remove.
        round_to: Keep a multiple of this (rounded up, so never more is removed than asked).

    Returns:
        The kept count: at least 1 (at least ``round_to`` when the group is that wide), at most
        ``size``.
    """
    keep = max(1, size - max(0, remove))
    if round_to > 1:
        keep = max(round_to, math.ceil(keep / round_to) * round_to)
    return min(size, keep)


def plan_cut(groups: list[ChannelGroup], scores: Mapping[str, np.ndarray], *, ratio: float,
             scope: str, max_layer_ratio: float, round_to: int) -> dict[str, list[int]]:
    """Which channels of each group to remove.

    Args:
        groups: The selected, prunable groups.
        scores: Group name -> one score per channel (higher = keep).
        ratio: Share of channels to remove (per group for ``layer``; overall for ``global``).
        scope: ``"layer"`` or ``"global"``.
        max_layer_ratio: Most of one group a global cut may remove.
        round_to: Kept counts are rounded up to a multiple of this.

    Returns:
        Group name -> sorted channel numbers to remove (lowest scores first go; ties by index).
    """
    if ratio <= 0.0 or not groups:
        return {}
    asked: dict[str, int] = {}
    if scope == "layer":
        asked = {g.name: round(ratio * g.size) for g in groups}
    else:
        normalized = {}
        for g in groups:
            s = np.asarray(scores[g.name], np.float64)
            mean = float(np.mean(s))
            normalized[g.name] = s / mean if mean > 0 else s
        pooled = np.concatenate([normalized[g.name] for g in groups])
        owner = np.concatenate([np.full(g.size, i) for i, g in enumerate(groups)])
        k = round(ratio * len(pooled))
        lowest = owner[np.argsort(pooled, kind="stable")[:k]]  # the k lowest, ties by position
        for i, g in enumerate(groups):
            asked[g.name] = min(int(np.sum(lowest == i)), math.floor(max_layer_ratio * g.size))
    out = {}
    for g in groups:
        keep = rounded_keep(g.size, asked[g.name], round_to)
        if keep < g.size:
            order = np.lexsort((np.arange(g.size), np.asarray(scores[g.name])))
            out[g.name] = sorted(int(c) for c in order[:g.size - keep])
    return out


def _channel_notes(name: str, d: Mapping[str, Any]) -> StageNotes:
    """The report section of a ChannelPrune stage from its ``details``."""
    work = d.get("work", {})
    before, after = work.get("before", {}), work.get("after", {})
    groups = d.get("groups", {})
    ratio = (after.get("macs", 0) / before["macs"]) if before.get("macs") else None
    facts = [
        f"{plural(len(groups), 'channel group')} cut by {d.get('importance')} "
        f"({'a channel search' if d.get('search') else str(d.get('scope')) + ' scope'}, "
        f"{'' if d.get('search') else 'ratio ' + str(d.get('ratio')) + ', '}"
        f"kept counts rounded to multiples of "
        f"{d.get('round_to')}); {plural(len(d.get('left', {})), 'group')} left dense.",
        f"Channels {d.get('channels', {}).get('before')} -> {d.get('channels', {}).get('after')}; "
        f"MACs {before.get('macs')} -> {after.get('macs')} ({pct(ratio)} of the dense model); "
        f"parameters {before.get('params')} -> {after.get('params')}.",
    ]
    search = d.get("search") or {}
    if search:
        unit = search.get("unit", "")
        facts.append(
            f"Channel search for {search.get('target')}: dense {search.get('dense_figure'):.6g} "
            f"{unit}, budget {search.get('budget'):.6g} {unit}, reached "
            f"{search.get('searched_figure'):.6g} {unit} (measured) in "
            f"{plural(len(search.get('steps', [])), 'step')}; cost table "
            f"{search.get('cost_table', {}).get('hits', 0)} hits, "
            f"{search.get('cost_table', {}).get('misses', 0)} layer shapes measured.")
        pool = search.get("pool") or {}
        if pool.get("kind") == "ray":
            facts.append(
                f"On the Ray cluster: {plural(pool.get('tasks', 0), 'proposal')} scored and "
                f"{plural(pool.get('measurements', 0), 'measurement')} taken as Ray tasks, by "
                f"{len(pool.get('workers', []))} worker process(es).")
    if d.get("batches"):
        facts.append(f"Scored on {d['batches']} seeded training batches "
                     f"({d.get('samples')} samples).")
    bn = d.get("bn_recalibration") or {}
    if bn.get("layers"):
        facts.append(f"BatchNormalization statistics of {plural(bn['layers'], 'layer')} "
                     f"re-estimated on {bn['batches']} training batches after the cut.")
    if d.get("folded"):
        facts.append(f"Constant channels folded into the bias of {len(d['folded'])} layer(s).")
    tuned = fine_tune_fact(d, "the cut")
    if tuned:
        facts.append(tuned)
    facts += list(d.get("criterion_notes", []))[:3]
    notes = StageNotes(name, "ChannelPrune", facts, caption="Channel groups: cut and left")
    rows = [[n, ", ".join(v["producers"][:3]) + (" ..." if len(v["producers"]) > 3 else ""),
             f"{v['before']} -> {v['after']}", ""] for n, v in groups.items()]
    rows += [[n, "—", "—", why] for n, why in (d.get("left") or {}).items()]
    return set_rows(notes, ["group", "layers", "channels", "why left"], rows)


@register_stage(notes=_channel_notes)
@dataclass(frozen=True)
class ChannelPrune(LayerSelectingStage):
    """Remove whole channels (filters) by importance, then fine-tune: a smaller dense model.

    Attributes:
        ratio: Share of channels removed, in [0, 1) (Torch-Pruning's ``pruning_ratio``); 0.5
            when neither it nor ``target`` is set.
        target: A budget on a device instead of a ratio (``{latency_ms, on, stat}``,
            ``{latency_ratio, on}``, ``{instructions_ratio, on: qemu-aarch64[:CPU]}`` or
            ``{macs_ratio}``): the channel search of :mod:`~edgekit.compress.channel_search`.
        search_steps: Steps the search takes from the dense figure to the budget.
        proposal_batches: Fine-tune batches of each search proposal before it is scored.
        validation: Share of the training split the search holds out to score proposals.
        spread: The search also proposes, at each step, every group cut by the same share
            (the gentlest share that meets the step's goal) beside the one-group cuts.
        importance: A criterion name (``l1``, ``l2``, ``bn_gamma``, ``taylor``, ``fisher``,
            ``snip``, ``hessian``, ``activation``, ``apoz``) or ``{name: weight}``.
        scope: ``layer`` (every group loses ``ratio``) or ``global`` (one threshold).
        max_layer_ratio: Most of one group a global cut removes, in (0, 1).
        round_to: Kept channel counts are multiples of this (rounded up).
        layers: Which groups to cut, by their producer layers: ``{names, regex, types,
            exclude}`` (None: every group that can be cut).
        batches: Seeded training batches the data-driven criteria read.
        recalibrate_bn: Training batches over which the BatchNormalization statistics are
            re-estimated right after the cut (0: keep the unpruned model's statistics).
        epochs: Fine-tuning epochs after the cut (0: none).
        learning_rate: Peak Adam learning rate of the fine-tune.
        batch_size: Samples per step (and per scoring batch).
        augment_shift: Max random shift in pixels for image inputs.
        seed: Seed of the batch draw, fine-tune batches and augmentation.
        distill: Fine-tune guided by a teacher (``{teacher: float|PATH, temperature, alpha,
            feature_layer}``; ``float`` is the model before the cut outside a pipeline).
    """

    class_name: ClassVar[str] = "ChannelPrune"

    ratio: float | None = None
    target: dict[str, Any] | None = None
    search_steps: int = 6
    proposal_batches: int = 50
    validation: float = 0.1
    spread: bool = False
    importance: Any = "l1"
    scope: str = "layer"
    max_layer_ratio: float = 0.8
    round_to: int = DEFAULT_ROUND_TO
    layers: LayerSelection | None = None
    batches: int = 8
    recalibrate_bn: int = 16
    epochs: int = 10
    learning_rate: float = 1e-3
    batch_size: int = 32
    augment_shift: int = 2
    seed: int = 0
    distill: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        self.parse_layers()
        self.check_distill()
        if self.target is not None:
            if self.ratio is not None:
                raise InputError(f"set ratio or target, not both (ratio {self.ratio!r}, target "
                                 f"{self.target!r})")
            object.__setattr__(self, "target", parse_search_target(self.target).to_dict())
            for key in ("search_steps", "proposal_batches"):
                value = getattr(self, key)
                if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                    raise InputError(f"{key} must be an integer >= 1, got {value!r}")
            if not isinstance(self.spread, bool):
                raise InputError(f"spread must be true or false, got {self.spread!r}")
            if isinstance(self.validation, bool) or \
                    not isinstance(self.validation, (int, float)) or \
                    not 0.0 < self.validation <= 0.5:
                raise InputError(f"validation must be a share in (0, 0.5] of the training "
                                 f"split, got {self.validation!r}")
        elif self.ratio is None:
            object.__setattr__(self, "ratio", 0.5)
        if self.ratio is not None and (
                isinstance(self.ratio, bool) or not isinstance(self.ratio, (int, float))
                or not 0.0 <= self.ratio < 1.0):
            raise InputError(f"ratio must be in [0, 1) (the share of channels removed), got "
                             f"{self.ratio!r}")
        parsed = parse_importance(self.importance)
        if not isinstance(self.importance, str):
            object.__setattr__(self, "importance", dict(parsed))
        if self.scope not in SCOPES:
            raise InputError(f"scope must be one of {', '.join(SCOPES)}, got {self.scope!r}")
        if isinstance(self.max_layer_ratio, bool) or \
                not isinstance(self.max_layer_ratio, (int, float)) or \
                not 0.0 < self.max_layer_ratio < 1.0:
            raise InputError(f"max_layer_ratio must be in (0, 1), got {self.max_layer_ratio!r}")
        for key in ("round_to", "batches", "recalibrate_bn", "epochs"):
            value = getattr(self, key)
            low = 1 if key == "round_to" else 0
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise InputError(f"{key} must be an integer >= {low}, got {value!r}")
        if needs_data(parse_importance(self.importance)) and self.batches < 1:
            raise InputError(f"importance {self.importance!r} reads training batches; batches "
                             "must be >= 1")
        _check_fit_args(max(1, self.epochs), self.learning_rate, self.batch_size,
                        self.augment_shift)

    def with_checkpoints(self, folder: str | os.PathLike[str]) -> ChannelPrune:
        """A copy whose channel search saves (and resumes from) per-step checkpoints.

        Args:
            folder: Where the search keeps its state (created on the first step).

        Returns:
            The copy (same config, so the same fingerprint).
        """
        copy = replace(self)
        object.__setattr__(copy, "_checkpoints", Path(folder))
        return copy

    def _context(self, model: keras.Model, graph: ChannelGraph, data: Dataset
                 ) -> ScoringContext:
        """The scoring context, with a seeded draw of ``batches`` training batches if needed."""
        importance = parse_importance(self.importance)
        x = np.zeros((0, *data.x_train.shape[1:]), np.float32)
        y = np.zeros((0,), np.int64)
        if needs_data(importance):
            n = min(len(data.x_train), self.batches * self.batch_size)
            pick = np.random.default_rng(self.seed).choice(len(data.x_train), n, replace=False)
            x, y = data.x_train[np.sort(pick)], data.y_train[np.sort(pick)]
        return ScoringContext(model, graph, np.asarray(x, np.float32), np.asarray(y),
                              batch_size=self.batch_size, seed=self.seed)

    def cut(self, model: keras.Model, data: Dataset) -> tuple[keras.Model, dict[str, Any]]:
        """Scores and removes channels, without fine-tuning.

        Args:
            model: A plain Sequential or Functional tf_keras model (nested models allowed).
            data: The dataset (training split, for data-driven criteria).

        Returns:
            ``(cut model, details)``.

        Raises:
            InputError: A subclassed or tfmot-wrapped model, or a selection naming unknown
                layers.
        """
        require_graph_model(model, "channel pruning")
        wrapped = wrapped_layers(model)
        if wrapped:
            raise InputError(f"model {model.name!r} has tfmot wrappers ({', '.join(wrapped[:3])});"
                             " apply ChannelPrune to a plain model (before Prune and QAT)")
        flat = flatten_model(model)
        self.selection.check(flat)
        graph = build_channel_graph(flat)
        chosen, left = select_groups(graph, flat, self.selection)
        importance = parse_importance(self.importance)
        ctx = self._context(flat, graph, data)
        searched: dict[str, Any] = {}
        if self.target is not None:
            new, searched = search_channels(self, flat, data, parse_search_target(self.target),
                                            checkpoints=getattr(self, "_checkpoints", None))
            plan = searched.pop("removed")  # original channel numbers, step by step
            surgery: dict[str, Any] = {"folded": []}
            recalibrated = {"layers": 0, "batches": 0, "samples": 0}  # done per proposal
        else:
            scores = score_groups(ctx, chosen, importance) if self.ratio > 0 else {}
            plan = plan_cut(chosen, scores, ratio=self.ratio, scope=self.scope,
                            max_layer_ratio=self.max_layer_ratio, round_to=self.round_to)
            new, surgery = remove_channels(flat, graph, plan)
            if new is flat or not plan:
                new = keras.models.clone_model(flat)
                new.set_weights(flat.get_weights())
            recalibrated = recalibrate_batch_norm(
                new, data.x_train, batches=self.recalibrate_bn if any(plan.values()) else 0,
                batch_size=self.batch_size, seed=self.seed)
        before, after = keras_work(flat), keras_work(new)
        groups = {g.name: {"producers": g.producers, "before": g.size,
                           "after": g.size - len(plan.get(g.name, []))} for g in chosen}
        details: dict[str, Any] = {
            "ratio": self.ratio, "scope": self.scope, "round_to": self.round_to,
            "importance": (self.importance if isinstance(self.importance, str)
                           else " + ".join(f"{w:g} {n}" for n, w in importance.items())),
            "groups": groups, "left": left,
            "channels": {"before": sum(v["before"] for v in groups.values()),
                         "after": sum(v["after"] for v in groups.values())},
            "removed": {n: c for n, c in plan.items()},
            "folded": surgery["folded"],
            "bn_recalibration": recalibrated,
            "batches": len(ctx.batches()) if len(ctx.x) else 0, "samples": len(ctx.x),
            "criterion_notes": list(dict.fromkeys(ctx.notes)),
            "work": {"before": {"macs": before["macs"], "params": before["params"]},
                     "after": {"macs": after["macs"], "params": after["params"]}},
        }
        if searched:
            details["search"] = searched
        return new, details

    def apply(self, model: keras.Model, data: Dataset) -> StageResult:
        """Cuts channels and fine-tunes ``model`` on ``data``'s training split.

        Args:
            model: A plain Sequential or Functional tf_keras model.
            data: The dataset (only the training split is used).

        Returns:
            The smaller model; details: groups cut (channels before/after) and left (why),
            channels removed, MACs and parameters before/after, the batch draw, training
            accuracy right after the cut and after the fine-tune.

        Raises:
            InputError: See :meth:`cut`.
        """
        new, details = self.cut(model, data)
        details["train_accuracy_before_fine_tune"] = accuracy(new, data.x_train, data.y_train)
        if self.epochs > 0 and details["removed"]:
            desc = "channel search fine-tune" if self.ratio is None else \
                f"channel prune {self.ratio:.0%} fine-tune"
            details["history"] = self.fine_tune(new, data, desc, teacher=model)
            details["train_accuracy"] = accuracy(new, data.x_train, data.y_train)
        return StageResult(model=new, details=details)

