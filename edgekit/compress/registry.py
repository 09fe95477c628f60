"""The stage registry: every compression stage declares itself here, in its own module.

A stage is a frozen dataclass (its fields are its config) decorated with :func:`register_stage`::

    @register_stage(notes=_notes)
    @dataclass(frozen=True)
    class Prune(LayerSelectingStage):
        class_name: ClassVar[str] = "Prune"
        ...

Registering records a :class:`StageInfo`: the recipe name, the class, its report section (a
function that turns the stage's ``details`` into :class:`StageNotes` for report.md/html), what it
supports (fine-tuning, the ``distill`` field: read off its fields, so they cannot drift) and what
its output is (the artefact suffix; ``quantized_ranges`` when the model carries learned int8
ranges, as QAT's does, so that only int8 conversion may use it). The pipeline, the recipe parser
and the report ask the registry; none of them names a stage. ``edgekit.compress`` imports every
module of the package, so adding a stage is one new file (plus its test).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from edgekit.compress.stage_notes import StageNotes
from edgekit.core.checks import check_keys
from edgekit.core.errors import InputError

__all__ = ["StageInfo", "StageNotes", "get_stage", "register_stage", "stage_from_dict",
           "stage_infos", "stage_names"]

T = TypeVar("T", bound=type)


NotesReader = Callable[[str, Mapping[str, Any]], StageNotes]


@dataclass(frozen=True)
class StageInfo:
    """One registered stage.

    Attributes:
        name: The recipe's ``class_name``.
        cls: The stage class (a frozen dataclass with ``apply(model, data)``).
        summary: First line of the class docstring.
        notes: Turns ``(report stage name, details)`` into the report section; None: the report
            shows only the stage's row.
        fine_tunes: The stage trains (it has ``epochs``, ``learning_rate``...).
        distills: The stage takes a ``distill`` field (a teacher guides its fine-tune).
        artefact_suffix: File format of its output model (``.keras``; ``.h5`` for QAT models).
        quantized_ranges: Its output carries learned int8 ranges (QAT): modes other than int8
            convert the model before it.
    """

    name: str
    cls: type
    summary: str
    notes: NotesReader | None
    fine_tunes: bool
    distills: bool
    artefact_suffix: str
    quantized_ranges: bool

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready description (``edgekit stages``-style listings, docs)."""
        return {"name": self.name, "summary": self.summary, "fine_tunes": self.fine_tunes,
                "distills": self.distills, "artefact_suffix": self.artefact_suffix,
                "quantized_ranges": self.quantized_ranges}


_STAGES: dict[str, StageInfo] = {}


def register_stage(*, notes: NotesReader | None = None,
                   quantized_ranges: bool = False) -> Callable[[T], T]:
    """Class decorator that registers a stage under its ``class_name``.

    Args:
        notes: The stage's report section reader.
        quantized_ranges: Its output model carries learned int8 ranges.

    Returns:
        The decorator (it returns the class unchanged).

    Raises:
        ValueError: The class is not a dataclass, has no ``class_name``, or the name is taken by
            another class (a programming error, not user input).
    """

    def decorate(cls: T) -> T:
        name = getattr(cls, "class_name", "")
        if not dataclasses.is_dataclass(cls) or not name:
            raise ValueError(f"{cls.__qualname__}: a stage must be a dataclass with a class_name")
        known = _STAGES.get(name)
        if known is not None and known.cls is not cls:
            raise ValueError(f"stage name {name!r} is registered twice ({known.cls.__qualname__} "
                             f"and {cls.__qualname__})")
        fields = {f.name for f in dataclasses.fields(cls)}
        _STAGES[name] = StageInfo(
            name=name, cls=cls, summary=(cls.__doc__ or "").strip().splitlines()[0],
            notes=notes, fine_tunes="epochs" in fields, distills="distill" in fields,
            artefact_suffix=getattr(cls, "artefact_suffix", ".keras"),
            quantized_ranges=quantized_ranges)
        return cls

    return decorate


def stage_names() -> list[str]:
    """The registered stage names, in registration order."""
    return list(_STAGES)


def stage_infos() -> Iterator[StageInfo]:
    """Every registered stage, in registration order."""
    return iter(list(_STAGES.values()))


def get_stage(name: str) -> StageInfo:
    """The stage registered as ``name``.

    Raises:
        InputError: No such stage (the known ones are listed).
    """
    if name not in _STAGES:
        raise InputError(f"unknown stage {name!r}; known stages: {', '.join(_STAGES)}")
    return _STAGES[name]


def stage_from_dict(entry: Any) -> Any:
    """Builds a stage from ``{"class_name": ..., "config": {...}}``.

    Args:
        entry: The recipe entry.

    Returns:
        The stage object.

    Raises:
        InputError: Not a mapping, unknown class_name or keys, or invalid config values.
    """
    if not isinstance(entry, Mapping) or "class_name" not in entry:
        raise InputError(f"a stage must be a mapping {{class_name, config}}, got {entry!r}")
    check_keys(entry, ("class_name", "config"), "stage")
    return get_stage(entry["class_name"]).cls.from_config(entry.get("config") or {})
