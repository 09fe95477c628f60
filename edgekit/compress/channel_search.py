"""Hit a budget on a named target: a NetAdapt-style per-group channel search.

``ChannelPrune`` with a ``target`` (:mod:`~edgekit.compress.search_target`) instead of a
``ratio`` runs :func:`search_channels`. Following NetAdapt (Yang et al., ECCV 2018,
arXiv 1804.03230), driven by what the target measures, never by MACs alone:

1. The dense model is converted to full int8 and measured on the target; the budget is
   ``latency_ms`` or the ratio times that figure. A share (``validation``) of the training split
   is held out to choose between proposals (the test split is never read).
2. Each **step** asks for a reduction: ``search_steps`` geometric steps from the current figure
   to the budget. For every prunable group it proposes the **largest** kept count (a multiple of
   ``round_to``) whose estimated figure meets the step's goal. The estimate is the measured
   parent plus the change the per-layer cost table (:mod:`~edgekit.compress.cost_table`,
   measured on the target and cached per board) gives for the layers the cut touches, so
   channel counts that cost the same as a larger count (one SIMD tile) are never chosen over it.
   An estimate of zero or less is impossible (a parent's entry measured in a spike, or a stale
   table): the parent's layers it subtracted are measured again, once per search, and replace
   their table entries.
   With ``spread`` the step also proposes every group cut by one share (the gentlest share of
   95 %, 90 % ... 5 % that meets the goal, found by bisection on the estimate), so a goal that
   one group reaches only by a deep cut can be met by a shallow cut of all of them.
3. Each proposal removes the group's least important channels (the stage's ``importance``),
   re-estimates BatchNormalization statistics (adaptive BN), is fine-tuned for
   ``proposal_batches`` batches and scored on the held-out share. The proposals of a step are
   scored on the search pool (:mod:`~edgekit.compress.search_pool`): here one after another,
   or as Ray tasks when the executor is Ray. The most accurate proposal
   that meets the goal wins, **if** measured whole, interleaved with its parent and the dense
   model, it is faster than the parent; otherwise the next is tried. No step makes the model
   slower. Its figure is the dense figure times child / dense of that run (anchored on the
   dense model, so measurement error does not accumulate over the steps).
4. Steps repeat until the measured figure is within the budget. When no group can be cut
   further, or no proposal is faster than its parent, the search fails (``CheckFailed``, exit 1)
   and says by how much it missed.
5. A figure within the budget is confirmed by measuring the model beside the dense one in
   one run (up to three times, searching on after a miss). The stage's long fine-tune follows
   (``epochs``, optionally distilled); QAT and full-int8 conversion follow as stages, and the
   report checks the budget again on the shipped model (:mod:`edgekit.report_search`).

On the step that crosses the budget (its goal, or a cut that saves more than the step asks) a
proposal whose estimate lands within ``BAND`` (5 %) under the budget is preferred over a more
accurate one that cuts further (:func:`_rank`); when every cut meeting the goal lands past
the band, the group's next larger count is proposed too, and that shorter cut is taken first
if it covers ``PROGRESS`` of the step: the next step then asks for less, which one group can
meet inside the band. A goal
that only a destructive cut reaches alone is not forced: a proposal more than
``ACCURACY_SLACK`` (3 points) more accurate that covers at least ``PROGRESS`` (a quarter) of the
step is taken first, and the search goes on from it (up to four times ``search_steps`` steps).

Resumable at step granularity: given a checkpoint folder (``edgekit run`` passes
``OUT/.<stage>.steps``; ``--resume`` keeps it), every accepted step saves its model and the
search state there, keyed on the stage's config and the input model's weights, and a search
started again on the same key continues after the last saved step.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from device_bench.atomicio import write_json
from edgekit.compress.channel_graph import ChannelGroup, build_channel_graph, select_groups
from edgekit.compress.channel_surgery import remove_channels
from edgekit.compress.cost_table import CostMeter, layer_signature
from edgekit.compress.importance import parse_importance, score_groups
from edgekit.compress.search_pool import (
    ScoreJob,
    current_pool,
    model_from_bytes,
    model_to_bytes,
    score_data,
    score_proposal,
)
from edgekit.compress.search_target import SearchTarget
from edgekit.converters.work import keras_work
from edgekit.core._keras import keras
from edgekit.core.errors import CheckFailed
from edgekit.core.model_io import load_model, save_model
from edgekit.data import Dataset

__all__ = ["BAND", "candidate_counts", "search_channels", "split_validation"]

BAND = 0.05  # the step that crosses the budget prefers proposals within 5 % under it
ACCURACY_SLACK = 0.03  # held-out accuracy a goal-meeting proposal may lose to a partial one
PROGRESS = 0.25  # ... when the partial one covers at least this share of the step


def _stderr(line: str) -> None:
    """One progress line on stderr, above any progress bar that is drawing."""
    tqdm.write(line, file=sys.stderr)


def candidate_counts(size: int, round_to: int) -> list[int]:
    """Kept counts a group of ``size`` may shrink to, largest first.

    Args:
        size: Channels in the group now.
        round_to: Counts are multiples of this (and at least this, or 1).

    Returns:
        The counts below ``size``, descending (empty when the group cannot shrink).
    """
    step = max(1, round_to)
    top = (size - 1) // step * step
    return [c for c in range(top, 0, -step) if c < size]


def split_validation(data: Dataset, share: float, seed: int) -> tuple[Dataset, np.ndarray,
                                                                      np.ndarray]:
    """Holds out ``share`` of the training split (seeded) to choose between proposals.

    Args:
        data: The dataset.
        share: Share of the training samples held out, in (0, 0.5].
        seed: Seed of the draw.

    Returns:
        ``(data with the rest as its training split, held-out x, held-out y)``.
    """
    n = len(data.x_train)
    order = np.random.default_rng(seed + 7919).permutation(n)
    k = min(n - 1, max(1, round(share * n)))
    val, rest = np.sort(order[:k]), np.sort(order[k:])
    train = dataclasses.replace(data, x_train=data.x_train[rest], y_train=data.y_train[rest])
    return train, data.x_train[val], data.y_train[val]


SPREAD = "spread"  # the group name a spread proposal (every group by one share) reports


@dataclasses.dataclass
class _Proposal:
    group: str  # the group cut, or SPREAD
    cuts: dict[str, list[int]]  # group -> the channels removed (indices into the parent's)
    sizes: dict[str, tuple[int, int]]  # group -> (channels before, after)
    model: keras.Model
    estimate: float
    meets_goal: bool
    accuracy: float | None = None
    measured: float | None = None
    trained: bytes | None = None  # the model after BN re-estimation and the short fine-tune
    worker: str = ""
    seconds: float = 0.0

    @property
    def before(self) -> int:
        """Channels before the cut (summed over the groups of a spread)."""
        return sum(b for b, _ in self.sizes.values())

    @property
    def after(self) -> int:
        """Channels after the cut (summed over the groups of a spread)."""
        return sum(a for _, a in self.sizes.values())


def _past_band(estimate: float, budget: float) -> bool:
    """Whether an estimate cuts more than ``BAND`` under the budget (further than it asks)."""
    return estimate < (1 - BAND) * budget


def _rank(proposals: list[_Proposal], figure: float, asked: float, budget: float,
          room: bool = True) -> list[_Proposal]:
    """The order in which a step's scored proposals are measured against their parent.

    Goal-meeting proposals first; among them, those whose estimate does not cut past the
    budget's band (more than ``BAND`` under ``budget``): cutting further than the budget asks
    costs accuracy for nothing, on whichever step the budget is crossed (a step whose goal is
    above the budget can still cross it: one rounding step of a wide group can save more than
    the step asks). When every goal-meeting proposal cuts past the band and the search has
    ``room`` for another step, a shorter cut that covers ``PROGRESS`` of the step comes before
    them: the next step goes on from it with a smaller reduction, which a single group can
    meet inside the band. Then the most accurate, then the cheapest. A goal only a destructive
    cut reaches alone (one group to a few channels) is not worth it: a proposal more than
    ``ACCURACY_SLACK`` more accurate that still covers ``PROGRESS`` of the way is taken first,
    and the next step goes on from there; that proposal is chosen among those that keep to the
    band (on the emulated A72 at budget 0.35 the slack took conv1 24->16, 9 points more
    accurate on the held-out share than ds1_pw 40->16, and the search shipped at 0.303 of the
    dense model where the band ends at 0.3325).

    Args:
        proposals: The step's proposals, scored.
        figure: The parent's figure.
        asked: The step's goal.
        budget: The search's budget.
        room: Whether the search may take another step after this one.

    Returns:
        The proposals, best first.
    """
    def past(p: _Proposal) -> bool:
        return _past_band(p.estimate, budget)

    def progress(p: _Proposal) -> bool:
        return figure - p.estimate >= PROGRESS * (figure - asked)

    inside = any(p.meets_goal and not past(p) for p in proposals)

    def tier(p: _Proposal) -> int:
        if p.meets_goal and not past(p):
            return 0
        if p.meets_goal:
            return 2
        # a shorter cut (above the goal, so never past the band) beats cutting past the band
        # only while another step can follow it
        return 1 if room and not inside and progress(p) else 3

    ranked = sorted(proposals, key=lambda p: (tier(p), -(p.accuracy or 0.0), p.estimate))
    # the accuracy slack never jumps a cut past the band over one that keeps to it
    best = max([p for p in proposals if not past(p)] or proposals,
               key=lambda p: p.accuracy or 0.0)
    if ranked[0] is not best and (best.accuracy or 0.0) - (ranked[0].accuracy or 0.0) \
            > ACCURACY_SLACK and progress(best) and (best.meets_goal or room):
        ranked.remove(best)
        ranked.insert(0, best)
    return ranked


class _Search:
    """One search: the state shared by its steps (see the module docstring)."""

    def __init__(self, stage: Any, model: keras.Model, data: Dataset, target: SearchTarget,
                 meter: CostMeter | None, log: Callable[[str], None],
                 checkpoints: Path | None = None) -> None:
        self.stage, self.target, self.log = stage, target, log
        self.model = model
        self.checkpoints = checkpoints
        self.train, self.val_x, self.val_y = split_validation(data, stage.validation, stage.seed)
        pick = np.random.default_rng(stage.seed).choice(
            len(self.train.x_train), min(64, len(self.train.x_train)), replace=False)
        self.pool = current_pool()
        self.meter = meter or CostMeter(target, self.train.x_train[np.sort(pick)], log=log,
                                        wrap=self.pool.measuring)
        self.scoring = score_data(self.train.x_train, self.train.y_train, self.val_x, self.val_y,
                                  recalibrate_bn=stage.recalibrate_bn,
                                  proposal_batches=stage.proposal_batches,
                                  batch_size=stage.batch_size, seed=stage.seed)
        self.importance = parse_importance(stage.importance)
        self.budget_goal = 0.0
        self.dense_figure = 0.0  # the dense model's figure, measured when the search starts
        self._remeasured: set[str] = set()  # table entries measured again after a bad estimate
        self.step_limit = max(1, stage.search_steps) * 4  # steps a search may take at most

    def _estimate(self, parent: keras.Model, parent_figure: float, child: keras.Model) -> float:
        """Measured parent + the cost table's change over the layers whose shape changed."""
        if self.target.measure == "macs":
            return float(keras_work(child)["macs"])
        before = {layer.name: layer_signature(layer) for layer in parent.layers}
        changed = [(before.get(layer.name), sig) for layer in child.layers
                   if (sig := layer_signature(layer)) is not None and sig != before.get(layer.name)]
        sigs = [s for pair in changed for s in pair if s is not None]

        def from_table(costs: dict[str, float]) -> float:
            return parent_figure + sum(costs[new] - (costs[old] if old else 0.0)
                                       for old, new in changed)

        estimate = from_table(self.meter.layer_costs(sigs))
        # No model costs nothing: an estimate at or below zero subtracted too much, so one of
        # the parent's layer entries (the subtracted ones) was measured in a spike or is stale.
        # Those are measured again, once per search, and replace their table entries.
        redo = [old for old, _ in changed if old is not None and old not in self._remeasured]
        if estimate <= 0 and redo:
            self._remeasured.update(redo)
            self.log(f"channel search: estimate {estimate:.6g} {self.target.unit} is "
                     f"impossible; measured the parent's {len(redo)} layer shape(s) again")
            estimate = from_table(self.meter.layer_costs(sigs, again=redo))
        return estimate

    def _propose(self, parent: keras.Model, parent_figure: float, goal: float
                 ) -> tuple[list[_Proposal], dict[str, str]]:
        graph = build_channel_graph(parent)
        chosen, left = select_groups(graph, parent, self.stage.selection)
        ctx = self.stage._context(parent, graph, self.train)
        scores = score_groups(ctx, chosen, self.importance)
        proposals: list[_Proposal] = []
        for group in chosen:
            proposals += self._propose_group(parent, parent_figure, goal, graph, group,
                                             scores[group.name])
        if self.stage.spread:
            spread = self._propose_spread(parent, parent_figure, goal, graph, chosen, scores)
            if spread is not None:
                proposals.append(spread)
        return proposals, left

    def _cut(self, parent: keras.Model, parent_figure: float, goal: float, graph: Any,
             counts: dict[str, tuple[ChannelGroup, np.ndarray, int]], label: str
             ) -> _Proposal:
        """The proposal that keeps ``count`` channels of each group (its highest-scored ones)."""
        cuts = {}
        for name, (group, score, count) in counts.items():
            order = np.lexsort((np.arange(group.size), np.asarray(score)))  # lowest score first
            cuts[name] = sorted(int(c) for c in order[:group.size - count])
        child, _ = remove_channels(parent, graph, cuts)
        estimate = self._estimate(parent, parent_figure, child)
        sizes = {name: (group.size, count) for name, (group, _, count) in counts.items()}
        return _Proposal(label, cuts, sizes, child, estimate, estimate <= goal)

    def _propose_group(self, parent: keras.Model, parent_figure: float, goal: float,
                       graph: Any, group: ChannelGroup, score: np.ndarray) -> list[_Proposal]:
        """The group's proposals: the largest kept count whose estimate meets ``goal`` (else
        the deepest cut cheaper than the parent), and, when that count cuts past the budget's
        band, the next larger count too (the shorter cut :func:`_rank` may take instead)."""
        last = None
        for count in candidate_counts(group.size, self.stage.round_to):
            found = self._cut(parent, parent_figure, goal, graph,
                              {group.name: (group, score, count)}, group.name)
            if found.estimate >= parent_figure:
                continue  # inside one tile of the target's kernels: saves nothing, keep them
            if found.meets_goal:
                past = _past_band(found.estimate, self.budget_goal)
                return [last, found] if past and last is not None else [found]
            last = found
        return [] if last is None else [last]

    def _propose_spread(self, parent: keras.Model, parent_figure: float, goal: float,
                        graph: Any, chosen: list[ChannelGroup], scores: dict[str, np.ndarray]
                        ) -> _Proposal | None:
        """Every chosen group cut by the same share: the gentlest spread cut meeting the goal.

        A per-group proposal must reach the step's goal with one group, so on a model whose
        groups each hold a small part of the work every accepted cut takes one group far; this
        one keeps ``round_to`` multiples of the same share of every group (HALP and AMC
        allocate the cut over all layers at once). The shares run 95 % down to 5 % in steps of
        5 %; the plans they give (two groups cut at least) are searched by bisection on the
        estimate, so a step measures the cost of a few plans, not of every share.

        Returns:
            The gentlest plan whose estimate meets ``goal``, else the deepest plan that is
            cheaper than the parent, else None (fewer than two groups can shrink).
        """
        step = max(1, self.stage.round_to)
        by_name = {g.name: g for g in chosen}
        plans: list[dict[str, int]] = []
        for k in range(19, 0, -1):
            plan = {g.name: max(step, int(g.size * k / 20) // step * step) for g in chosen}
            plan = {name: n for name, n in plan.items() if n < by_name[name].size}
            if len(plan) >= 2 and plan not in plans:
                plans.append(plan)
        if not plans:
            return None
        tried: dict[int, _Proposal] = {}

        def at(i: int) -> _Proposal:
            if i not in tried:
                tried[i] = self._cut(parent, parent_figure, goal, graph, {
                    name: (by_name[name], scores[name], n) for name, n in plans[i].items()},
                    SPREAD)
            return tried[i]

        deepest = at(len(plans) - 1)
        if not deepest.meets_goal:
            return deepest if deepest.estimate < parent_figure else None
        lo, hi = 0, len(plans) - 1  # plans[hi] meets the goal; find the gentlest that does
        while lo < hi:
            mid = (lo + hi) // 2
            if at(mid).meets_goal:
                hi = mid
            else:
                lo = mid + 1
        return at(hi)

    def _score(self, proposals: list[_Proposal]) -> None:
        """Scores every proposal of a step on the pool (BN re-estimation, short fine-tune)."""
        stage = self.stage
        jobs = [ScoreJob(f"{p.group} {p.before}->{p.after}", model_to_bytes(p.model),
                         recalibrate_bn=stage.recalibrate_bn, batch_size=stage.batch_size,
                         learning_rate=stage.learning_rate, augment_shift=stage.augment_shift,
                         seed=stage.seed) for p in proposals]
        for p, scored in zip(proposals, self.pool.map(score_proposal, jobs, self.scoring),
                             strict=True):
            p.accuracy, p.trained = scored.accuracy, scored.model
            p.worker, p.seconds = scored.worker, scored.seconds

    def _step(self, index: int, current: keras.Model, figure: float, goal: float
              ) -> tuple[_Proposal | None, dict[str, Any], str | None]:
        """One step: proposals, scores, and the most accurate one measured faster."""
        proposals: list[_Proposal] = []
        asked = goal
        for _ in range(4):  # a reduction no single group reaches is asked for in halves
            proposals, left = self._propose(current, figure, asked)
            if not proposals or any(p.meets_goal for p in proposals):
                break
            asked = figure - (figure - asked) / 2
        if not proposals:
            return None, {"left": left}, "no group can be cut further"
        self._score(proposals)
        room = index + 1 < self.step_limit  # a shorter cut needs a step after it
        ranked = _rank(proposals, figure, asked, self.budget_goal, room)
        rejected = []
        for p in ranked:
            if p.trained is not None:
                p.model, p.trained = model_from_bytes(p.trained), None
            figures = self.meter.compare({"dense": self.model, "parent": current,
                                          "child": p.model})
            if figures["child"] < figures["parent"]:
                # the dense model, measured again in the same run, anchors the figure: a machine
                # that drifts between steps moves all three, and unlike a product of step ratios
                # (child / parent) the error does not add up over the steps (on a noisy host the
                # chained figure read 0.327 of dense where the confirmation measured 0.263)
                p.measured = self.dense_figure * figures["child"] / figures["dense"]
                return p, {"left": left, "goal": asked, "proposals": proposals,
                           "rejected_slower": rejected, "pair": figures}, None
            rejected.append({"group": p.group, "channels": [p.before, p.after],
                             "measured": figures["child"], "parent": figures["parent"]})
        unit = self.target.unit
        tried = ", ".join(f"{r['group']} {r['channels'][0]}->{r['channels'][1]}: "
                          f"{r['measured']:.6g} vs parent {r['parent']:.6g} {unit}"
                          for r in rejected)
        return None, {"left": left}, ("no proposal was faster than its parent when measured "
                                      f"({tried})")

    def run(self) -> tuple[keras.Model, dict[str, Any]]:
        t0 = time.perf_counter()
        dense_figure = self.meter.compare({"dense": self.model})["dense"]
        budget = self.target.budget(dense_figure)
        self.budget_goal = budget
        self.dense_figure = dense_figure
        unit = self.target.unit
        self.log(f"channel search: {self.target.describe()}: dense {dense_figure:.6g} {unit}, "
                 f"budget {budget:.6g} {unit}")
        current, figure = self.model, dense_figure
        alive = {g.name: list(range(g.size)) for g in build_channel_graph(current).groups}
        steps: list[dict[str, Any]] = []
        saved = self._load_checkpoint()
        if saved is not None:
            current, state = saved
            figure, alive, steps = state["figure"], state["alive"], state["steps"]
            dense_figure, budget = state["dense_figure"], state["budget"]
            self.budget_goal, self.dense_figure = budget, dense_figure
            self.log(f"channel search: resuming after step {len(steps)} ({figure:.6g} {unit})")
        else:
            self._check_floor(dense_figure, budget)
        confirmations: list[dict[str, float]] = []
        left: dict[str, str] = {}
        failure = None
        final = dense_figure
        while len(steps) < self.step_limit and failure is None:
            if figure <= budget:
                final = self._confirm(current, dense_figure, confirmations, len(steps))
                if final <= budget or len(confirmations) >= 3:
                    break
                figure = final  # measured beside the dense model, it missed: search on
                continue
            remaining = max(1, self.stage.search_steps - len(steps))
            goal = max(budget, figure * (budget / figure) ** (1.0 / remaining))
            accepted, info, failure = self._step(len(steps), current, figure, goal)
            left = info["left"]
            if accepted is None:
                break
            current, parent_figure, figure = accepted.model, figure, accepted.measured
            for name, removed in accepted.cuts.items():
                kept = alive.setdefault(name, list(range(accepted.sizes[name][0])))
                gone = set(removed)
                alive[name] = [c for i, c in enumerate(kept) if i not in gone]
            steps.append({
                "step": len(steps) + 1, "goal": info["goal"], "group": accepted.group,
                "channels": [accepted.before, accepted.after],
                "cuts": {n: list(v) for n, v in accepted.sizes.items()},
                "estimate": accepted.estimate,
                "measured": figure, "parent": parent_figure, "pair": info["pair"],
                "validation_accuracy": accepted.accuracy,
                "macs": int(keras_work(current)["macs"]),
                "proposals": [{"group": p.group, "channels": [p.before, p.after],
                               "cuts": {n: list(v) for n, v in p.sizes.items()},
                               "estimate": p.estimate, "meets_goal": p.meets_goal,
                               "validation_accuracy": p.accuracy, "worker": p.worker,
                               "seconds": round(p.seconds, 2)} for p in info["proposals"]],
                "rejected_slower": info["rejected_slower"]})
            self._save_checkpoint(current, {"figure": figure, "alive": alive, "steps": steps,
                                            "dense_figure": dense_figure, "budget": budget})
            what = accepted.group if accepted.group != SPREAD else \
                f"{SPREAD} over {len(accepted.cuts)} groups"
            self.log(f"step {len(steps)}: {what} {accepted.before}->{accepted.after}; "
                     f"{figure:.6g} {unit} (parent {parent_figure:.6g}, estimate "
                     f"{accepted.estimate:.6g}, goal {info['goal']:.6g}); validation accuracy "
                     f"{100 * (accepted.accuracy or 0):.2f} %")
        if not confirmations or confirmations[-1]["after_step"] != len(steps):
            # the loop stopped on a step: confirm a figure that met the budget, else report it
            final = self._confirm(current, dense_figure, confirmations, len(steps)) \
                if figure <= budget else figure
        details = {"target": self.target.to_dict(), "unit": unit, "dense_figure": dense_figure,
                   "budget": budget, "searched_figure": final, "steps": steps,
                   "confirmations": confirmations, "validation_samples": len(self.val_x),
                   "cost_table": {"path": str(self.meter.table_path or ""),
                                  "hits": self.meter.hits, "misses": self.meter.misses,
                                  "measurements": self.meter.measurements,
                                  "remeasured": self.meter.remeasured,
                                  "noisy": self.meter.noisy},
                   "pool": self.pool.stats(),
                   "search_seconds": round(time.perf_counter() - t0, 1)}
        if final > budget:
            raise CheckFailed(
                f"channel search could not meet {self.target.describe()}: budget "
                f"{budget:.6g} {unit}, best {final:.6g} {unit} "
                f"({100 * (final / budget - 1):+.1f} %, {len(steps)} step(s)); "
                f"{failure or 'the step limit was reached'}")
        self.log(f"channel search done: {final:.6g} {unit} against a budget of {budget:.6g} "
                 f"({100 * final / dense_figure:.1f} % of the dense model), {len(steps)} step(s)")
        sizes = {g.name: g.size for g in build_channel_graph(self.model).groups}
        removed = {name: sorted(set(range(sizes[name])) - set(kept))
                   for name, kept in alive.items() if name in sizes and len(kept) < sizes[name]}
        return current, {**details, "left_by_search": left, "removed": removed}

    def _key(self) -> str:
        """What a checkpoint belongs to: the stage's config and the input model's weights."""
        h = hashlib.sha256(json.dumps(self.stage.get_config(), sort_keys=True,
                                      default=str).encode())
        for w in self.model.get_weights():
            h.update(np.ascontiguousarray(w).tobytes())
        return h.hexdigest()[:32]

    def _load_checkpoint(self) -> tuple[keras.Model, dict[str, Any]] | None:
        """The last saved step of a search with this key, or None."""
        if self.checkpoints is None:
            return None
        path = self.checkpoints / "state.json"
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
            if state.get("key") != self._key():
                return None
            model = load_model(self.checkpoints / state["model"])
        except (OSError, ValueError, KeyError, TypeError):
            return None  # no checkpoint, or one from another search: start afresh
        self.meter.compare({"dense": self.model})  # opens the cost table for this runtime
        return model, state

    def _save_checkpoint(self, model: keras.Model, state: dict[str, Any]) -> None:
        """Saves the accepted step's model, then the state that names it (both atomic)."""
        if self.checkpoints is None:
            return
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        name = f"step{len(state['steps'])}.keras"
        save_model(model, self.checkpoints / name)
        write_json(self.checkpoints / "state.json",
                   {"key": self._key(), "model": name, **state})
        for old in self.checkpoints.glob("step*.keras"):
            if old.name != name:
                old.unlink(missing_ok=True)

    def _check_floor(self, dense_figure: float, budget: float) -> None:
        """Fails at once when even the smallest model the search can reach misses the budget.

        Every prunable group cut to its smallest count (``round_to``, or 1) in one surgery and
        measured beside the dense model: a budget below that figure cannot be met, and saying so
        before the search costs one measurement instead of a search's worth.
        """
        graph = build_channel_graph(self.model)
        chosen, _ = select_groups(graph, self.model, self.stage.selection)
        smallest = max(1, self.stage.round_to)
        plan = {g.name: list(range(g.size - smallest)) for g in chosen if g.size > smallest}
        if not plan:
            floor_figure = dense_figure
        else:
            floor, _ = remove_channels(self.model, graph, plan)
            pair = self.meter.compare({"dense": self.model, "floor": floor})
            floor_figure = dense_figure * pair["floor"] / pair["dense"] \
                if self.target.is_ratio or self.target.measure == "macs" else pair["floor"]
        if floor_figure > budget:
            unit = self.target.unit
            raise CheckFailed(
                f"channel search could not meet {self.target.describe()}: budget "
                f"{budget:.6g} {unit}, best {floor_figure:.6g} {unit} "
                f"({100 * (floor_figure / budget - 1):+.1f} %) even with every prunable group "
                f"at {smallest} channel(s) ({len(plan)} group(s); the rest stay dense)")

    def _confirm(self, current: keras.Model, dense_figure: float,
                 confirmations: list[dict[str, float]], after_step: int) -> float:
        """Measures the dense and the current model in one run; returns the current figure.

        A ratio budget compares the two measured together (``dense_figure`` times their ratio);
        an absolute one (``latency_ms``) takes the current model's measured figure as it is.
        """
        pair = self.meter.compare({"dense": self.model, "final": current})
        figure = dense_figure * pair["final"] / pair["dense"] if self.target.is_ratio \
            else pair["final"]
        confirmations.append({**pair, "figure": figure, "after_step": after_step})
        return figure


def search_channels(stage: Any, model: keras.Model, data: Dataset, target: SearchTarget, *,
                    meter: CostMeter | None = None, log: Callable[[str], None] = _stderr,
                    checkpoints: str | Path | None = None
                    ) -> tuple[keras.Model, dict[str, Any]]:
    """Cuts channels until ``model`` meets ``target`` on its device (no long fine-tune here).

    Args:
        stage: The ``ChannelPrune`` stage (importance, layers, round_to, recalibrate_bn,
            search_steps, proposal_batches, validation, batch_size, learning_rate, seed).
        model: A flat plain tf_keras model.
        data: The dataset (training split only).
        target: The parsed target.
        meter: The cost meter (None: one for ``target``, measuring on ``target.on``).
        log: Called with one line per step.
        checkpoints: Folder for the per-step checkpoints (None: not resumable).

    Returns:
        ``(model that meets the budget, details)``: ``dense_figure``, ``budget``,
        ``searched_figure`` (measured), ``steps`` (one per accepted cut, with its proposals),
        ``cost_table`` (path, hits, misses).

    Raises:
        CheckFailed: The budget cannot be met (the message gives the best figure and the miss).
        InputError: The target cannot be measured.
    """
    search = _Search(stage, model, data, target, meter, log,
                     None if checkpoints is None else Path(checkpoints))
    try:
        return search.run()
    finally:
        search.meter.close()
