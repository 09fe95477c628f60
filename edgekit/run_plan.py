"""Planning a run, apart from running it: the stages, their fingerprints and artefacts.

:func:`plan_run` reads a recipe (and the hash of a model file) and nothing else: no TensorFlow,
no training, nothing written. Its :class:`RunPlan` lists, in order, the float model and every
compression stage with the fingerprint that names its result in the stage cache
(:mod:`edgekit.stage_cache`), and the conversions with the stage each converts from. The
pipeline executes a plan; a scheduler (a sweep, a cluster executor) reads the plans of all
candidates first, and :func:`shared_stages` tells it which stages several candidates share, so
it can run those once before fanning out.

A fingerprint chains everything that determines an artefact: the model source (a registry name
with the training config, or a file's SHA-256), data, global seed, then each stage's config.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgekit.compress import get_stage
from edgekit.converters import Mode
from edgekit.core.errors import InputError
from edgekit.models.registry import is_model_name
from edgekit.recipe import Recipe
from edgekit.stage_cache import file_sha256, fingerprint

__all__ = ["PlannedConversion", "PlannedStage", "RunPlan", "plan_run", "plan_sweep",
           "shared_stages"]

FLOAT = "float"  # the name (and kind) of the first planned stage: the trained or loaded model


@dataclass(frozen=True)
class PlannedStage:
    """One model-producing step of a run.

    Attributes:
        name: Its name in the report and run folder (``float``, ``prune``, ``prune2``...).
        kind: ``float``, or the stage's registered ``class_name``.
        fingerprint: The stage cache key of its result.
        artefact: Its file in the run folder (``prune.keras``, ``qat.h5``).
        stage: The stage object (None for ``float``).
        quantized_ranges: Its model carries learned int8 ranges (only int8 may convert it).
    """

    name: str
    kind: str
    fingerprint: str
    artefact: str
    stage: Any = None
    quantized_ranges: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: name, kind, fingerprint, artefact and the stage's recipe entry."""
        return {"name": self.name, "kind": self.kind, "fingerprint": self.fingerprint,
                "artefact": self.artefact,
                "stage": None if self.stage is None else self.stage.to_dict()}


@dataclass(frozen=True)
class PlannedConversion:
    """One ``.tflite`` a run writes.

    Attributes:
        name: Its name in the report (``model_int8``, ``float32``).
        artefact: Its file in the run folder.
        source: The planned stage whose model it converts.
        mode: The conversion mode (``int8``...).
        final: It is the deliverable (the others are the float32 and dense int8 baselines).
    """

    name: str
    artefact: str
    source: str
    mode: str
    final: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready copy of the fields."""
        return {"name": self.name, "artefact": self.artefact, "source": self.source,
                "mode": self.mode, "final": self.final}


@dataclass(frozen=True)
class RunPlan:
    """What a run will do, in order.

    Attributes:
        stages: The float model, then each compression stage.
        conversions: The float32 baseline (when the recipe asks for one), then the deliverable.
        needs_training: The model is a registry name that the run trains (else a file it loads).
        notes: Choices the plan made that a user should hear about (said in the run's log).
    """

    stages: tuple[PlannedStage, ...]
    conversions: tuple[PlannedConversion, ...]
    needs_training: bool
    notes: tuple[str, ...] = ()

    def stage(self, name: str) -> PlannedStage:
        """The planned stage called ``name``.

        Raises:
            KeyError: No such stage.
        """
        for planned in self.stages:
            if planned.name == name:
                return planned
        raise KeyError(name)

    @property
    def fingerprints(self) -> tuple[str, ...]:
        """The stages' fingerprints, in order."""
        return tuple(s.fingerprint for s in self.stages)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (``edgekit run RECIPE --plan`` prints it)."""
        return {"stages": [s.to_dict() for s in self.stages],
                "conversions": [c.to_dict() for c in self.conversions],
                "needs_training": self.needs_training, "notes": list(self.notes)}


def _model_source(recipe: Recipe) -> tuple[dict[str, Any], bool]:
    """What identifies the float model, and whether the run trains it."""
    source: dict[str, Any] = {"model": recipe.model, "data": recipe.data, "seed": recipe.seed}
    if is_model_name(recipe.model):
        source["train"] = recipe.train.to_dict()
        return source, True
    path = Path(recipe.model)
    if not path.exists():
        raise InputError(f"model {recipe.model!r} does not exist; expected a models/ name "
                         "(see `edgekit models`) or a .keras, .h5 or SavedModel path")
    source["model_sha256"] = file_sha256(path)
    return source, False


def _conversion_source(stages: tuple[PlannedStage, ...], mode: Mode) -> tuple[str, list[str]]:
    """The stage the deliverable converts from: the last, except that a model with learned
    int8 ranges (QAT) converts only to int8; other modes take the last stage before it."""
    if mode is Mode.INT8:
        return stages[-1].name, []
    for planned in reversed(stages):
        if not planned.quantized_ranges:
            notes = ([] if planned is stages[-1] else
                     [f"mode {mode.value}: converting {planned.name!r} "
                      f"({stages[-1].kind} ranges are int8-only)"])
            return planned.name, notes
    return stages[0].name, []


def plan_run(recipe: Recipe) -> RunPlan:
    """Plans ``recipe`` (one candidate: a recipe without a sweep).

    Args:
        recipe: The recipe.

    Returns:
        The plan.

    Raises:
        InputError: The recipe has a sweep (plan its candidates with :func:`plan_sweep`), or
            its model is a path that does not exist.
    """
    if recipe.sweep:
        raise InputError("this recipe has a sweep; plan its candidates with plan_sweep")
    source, needs_training = _model_source(recipe)
    fp = fingerprint("", source)
    stages = [PlannedStage(FLOAT, FLOAT, fp, f"{FLOAT}.keras")]
    seen: dict[str, int] = {}
    for stage in recipe.stages:
        info = get_stage(stage.class_name)
        base = stage.class_name.lower()
        seen[base] = seen.get(base, 0) + 1
        name = base if seen[base] == 1 else f"{base}{seen[base]}"
        fp = fingerprint(fp, stage.to_dict())
        stages.append(PlannedStage(name, info.name, fp, f"{name}{info.artefact_suffix}", stage,
                                   info.quantized_ranges))
    planned = tuple(stages)
    config = recipe.convert.conversion_config()
    source_name, notes = _conversion_source(planned, config.mode)
    conversions = []
    if recipe.convert.float32_baseline and config.mode is not Mode.FLOAT32:
        conversions.append(PlannedConversion("float32", "float32.tflite", FLOAT,
                                             Mode.FLOAT32.value, False))
    if recipe.convert.int8_baseline and config.mode is Mode.INT8 and source_name != FLOAT:
        conversions.append(PlannedConversion("int8_dense", "int8_dense.tflite", FLOAT,
                                             Mode.INT8.value, False))
    final = f"model_{config.mode.value}"
    conversions.append(PlannedConversion(final, f"{final}.tflite", source_name,
                                         config.mode.value, True))
    return RunPlan(planned, tuple(conversions), needs_training, tuple(notes))


def plan_sweep(recipe: Recipe) -> dict[str, RunPlan]:
    """Plans every candidate of a recipe (one, named ``run``, when it has no sweep).

    Args:
        recipe: The recipe.

    Returns:
        Candidate name -> plan, in the sweep's order.

    Raises:
        InputError: A candidate is not a valid recipe, or the model path does not exist.
    """
    return {name: plan_run(candidate) for name, _, candidate in recipe.candidates()}


def shared_stages(plans: Mapping[str, RunPlan]) -> dict[str, list[str]]:
    """The stages that more than one candidate would compute: run them once.

    Args:
        plans: Candidate name -> plan.

    Returns:
        Fingerprint -> the candidates whose plans hold it (two or more), in plan order.
    """
    users: dict[str, list[str]] = {}
    for name, plan in plans.items():
        for fp in plan.fingerprints:
            users.setdefault(fp, []).append(name)
    return {fp: names for fp, names in users.items() if len(names) > 1}
