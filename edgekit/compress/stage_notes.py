"""A stage's report section: :class:`StageNotes` and the helpers the stages' readers share.

Each stage module turns its own ``details`` (what ``apply`` returned, stored in report.json) into
``StageNotes`` with a reader it registers beside the class (``register_stage(notes=...)``); the
Markdown and HTML reports only format the notes. A leaf of ``edgekit.compress``: it imports
nothing of edgekit, so the report can read it without loading the stages' TensorFlow code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["MAX_ROWS", "StageNotes", "counts_fact", "fine_tune_fact", "kib", "left_table", "pct",
           "plural", "set_rows"]

MAX_ROWS = 20  # table rows shown; the rest are counted, and all are in report.json


@dataclass
class StageNotes:
    """The readable summary of one compression stage (or conversion) in report.md/html.

    Attributes:
        stage: The stage's name in the report (``prune``, ``qat``...).
        kind: The stage class (``Prune``, ``QAT``, ``Distill``, ``LowRank``).
        facts: Sentences, each a complete fact.
        headers: Column names of ``rows`` (empty: no table).
        rows: Table rows, plain text.
        caption: What the table lists.
        more: Rows left out of ``rows``.
        more_where: Where the left-out rows are.
    """

    stage: str
    kind: str
    facts: list[str]
    headers: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    caption: str = ""
    more: int = 0
    more_where: str = "report.json (`details` of this stage)"


def pct(v: float | None) -> str:
    """A share as ``12.34 %`` (``—`` when unknown)."""
    return "—" if v is None else f"{100.0 * v:.2f} %"


def kib(n: int | None) -> str:
    """A byte count as ``1.5 KiB`` (``—`` when unknown)."""
    return "—" if n is None else f"{n / 1024:.1f} KiB"


def plural(count: int, noun: str) -> str:
    """``1 layer``, ``2 layers``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def counts_fact(details: Mapping[str, Any], action: str) -> str:
    """``N layers ACTION, M left as they are (K of those hold weights)`` from a stage's counts.

    Args:
        details: The stage's details (``counts``, and ``left_with_weights`` or
            ``skipped_layers``).
        action: The counted action (``pruned``, ``quantized``).
    """
    counts = details.get("counts", {})
    left = details.get("left_with_weights") or details.get("skipped_layers") or {}
    return (f"{plural(counts.get(action, 0), 'layer')} {action}, {counts.get('left', 0)} left as "
            f"they are ({len(left)} of those hold weights)")


def left_table(notes: StageNotes, left: Mapping[str, str],
               layers: list[dict[str, Any]]) -> StageNotes:
    """Fills ``notes``' table with the layers that kept their weights as they were, and why.

    Args:
        notes: The notes to fill (changed in place).
        left: Layer name -> reason.
        layers: The stage's per-layer records (``name``, ``type``, ``params``).

    Returns:
        ``notes``.
    """
    types = {entry["name"]: entry["type"] for entry in layers}
    params = {entry["name"]: entry["params"] for entry in layers}
    items = list(left.items())
    notes.headers = ["layer", "type", "params", "why it was left"]
    notes.rows = [[name, types.get(name, "?"), str(params.get(name, "?")), reason]
                  for name, reason in items[:MAX_ROWS]]
    notes.more = max(0, len(items) - MAX_ROWS)
    notes.caption = "Layers with weights that were left as they are"
    return notes


def fine_tune_fact(details: Mapping[str, Any], after: str) -> str | None:
    """``Training accuracy X right after AFTER, Y after N fine-tune epochs.`` (None if unknown).

    Args:
        details: The stage's details (``train_accuracy_before_fine_tune``, ``train_accuracy``,
            ``history``).
        after: What the first figure follows (``the cut``, ``the factorization``).
    """
    if "train_accuracy_before_fine_tune" not in details:
        return None
    tuned = (f", {pct(details['train_accuracy'])} after "
             f"{len(details['history'].get('loss', []))} fine-tune epochs"
             if details.get("history") else " (no fine-tune)")
    return (f"Training accuracy {pct(details['train_accuracy_before_fine_tune'])} right after "
            f"{after}{tuned}.")


def set_rows(notes: StageNotes, headers: list[str], rows: list[list[str]]) -> StageNotes:
    """Fills ``notes``' table with the first :data:`MAX_ROWS` rows and counts the rest.

    Returns:
        ``notes``.
    """
    notes.headers = headers
    notes.rows, notes.more = rows[:MAX_ROWS], max(0, len(rows) - MAX_ROWS)
    return notes
