"""Where the speed went: the work (MACs) and p50 latency of every ``.tflite`` against references.

Every report entry counts its work (``macs``, ``params``: :mod:`edgekit.converters.work`). This
module sets each ``.tflite`` beside two references, when the run made them:

- **float32**: the float model converted as it is (``convert.float32_baseline``), and
- **dense int8**: the float model, uncompressed, converted to int8: the deliverable itself when
  no compression stage ran, else ``int8_dense.tflite`` (``convert.int8_baseline``, on by
  default); a run without one says ``n/a``, never a made-up figure.

Ratios are this entry's figure over the reference's: MACs x0.50 is half the work, p50 x0.50
half the time. A ``.tflite`` whose p50 on a target is higher than that of an earlier ``.tflite``
made from the same model or from one before it in the stage chain is *slower than* it:
:func:`with_slower_than` records that in the entry's ``slower_than`` (report.json), and the
Markdown and HTML reports flag it. Only ``.tflite`` files are benchmarked, so a flag names the
stages and the conversion that lie between the two models. No TensorFlow here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from edgekit.compress.stage_notes import StageNotes
from edgekit.converters.work import format_macs
from edgekit.report_types import Entry, KerasEntry, Report, SlowerThan, TfliteEntry

__all__ = ["NA", "references", "speed_markdown", "speed_notes", "with_slower_than"]

NA = "n/a"
FLOAT32, DENSE_INT8 = "float32", "dense int8"
_HEADERS = [".tflite", "from", "MACs", "MACs ÷ float32", "MACs ÷ dense int8", "target",
            "p50 ms", "p50 ÷ float32", "p50 ÷ dense int8", "flag"]


def _stage_order(stages: Sequence[Entry]) -> dict[str, int]:
    """Keras stage name -> its place in the chain (float first)."""
    return {e.name: i for i, e in enumerate(s for s in stages if isinstance(s, KerasEntry))}


def references(stages: Sequence[Entry]) -> dict[str, TfliteEntry | None]:
    """The reference ``.tflite`` entries of a run (None where the run did not make one).

    Args:
        stages: The report's entries, in run order (the float model first).

    Returns:
        ``{"float32": entry | None, "dense int8": entry | None}``: the float model converted
        to float32, and to int8.
    """
    float_name = stages[0].name if stages else None
    tfl = [e for e in stages if isinstance(e, TfliteEntry) and e.source == float_name]
    return {FLOAT32: next((e for e in tfl if e.conversion.mode == "float32"), None),
            DENSE_INT8: next((e for e in tfl if e.conversion.mode == "int8"), None)}


def _p50(entry: TfliteEntry | None, target: str) -> float | None:
    bench = entry.bench.get(target) if entry is not None else None
    return None if bench is None else bench.latency_ms.p50


def _made_from(entry: TfliteEntry, earlier: TfliteEntry, order: dict[str, int]) -> bool:
    """Whether ``earlier`` converts ``entry``'s source or a stage before it in the chain."""
    mine, theirs = order.get(entry.source), order.get(earlier.source)
    return mine is not None and theirs is not None and theirs <= mine


def with_slower_than(stages: Sequence[Entry]) -> tuple[Entry, ...]:
    """The entries with each ``.tflite``'s ``slower_than`` filled in (empty when none applies).

    Args:
        stages: The report's entries, in run order.

    Returns:
        The same entries; every ``.tflite`` entry's ``slower_than`` lists, per target, each
        earlier ``.tflite`` made from its model (or from one before it) whose p50 was lower.
    """
    order = _stage_order(stages)
    out: list[Entry] = []
    done: list[TfliteEntry] = []
    for e in stages:
        if not isinstance(e, TfliteEntry):
            out.append(e)
            continue
        flags = []
        for earlier in done:
            if not _made_from(e, earlier, order):
                continue
            for target in e.bench:
                mine, theirs = _p50(e, target), _p50(earlier, target)
                if mine is not None and theirs is not None and theirs > 0 and mine > theirs:
                    flags.append(SlowerThan(than=earlier.name, target=target, p50_ms=mine,
                                            than_p50_ms=theirs, ratio=round(mine / theirs, 4)))
        e = replace(e, slower_than=tuple(flags))
        done.append(e)
        out.append(e)
    return tuple(out)


def _ratio(value: float | None, reference: float | None) -> str:
    if value is None or reference is None or reference == 0:
        return NA
    return f"×{value / reference:.2f}"


def _between(report: Report, entry: TfliteEntry, earlier: TfliteEntry) -> str:
    """What lies between two ``.tflite``: the stages after ``earlier``'s source, the modes."""
    order = _stage_order(report.stages)
    lo, hi = order.get(earlier.source, -1), order.get(entry.source, -1)
    stages = [name for name, i in order.items() if lo < i <= hi]
    parts = [f"stage{'s' if len(stages) > 1 else ''} {', '.join(stages)}"] if stages else []
    mode, was = entry.conversion.mode, earlier.conversion.mode
    parts.append(f"the {mode} conversion" if mode == was else
                 f"the {mode} conversion (instead of {was})")
    return " and ".join(parts)


def _flag_fact(report: Report, entry: TfliteEntry, flag: SlowerThan) -> str:
    earlier = next(e for e in report.tflite_entries if e.name == flag.than)
    return (f"{entry.artefact} is SLOWER than {earlier.artefact} on `{flag.target}`: p50 "
            f"{flag.p50_ms:.4g} ms against {flag.than_p50_ms:.4g} ms (×{flag.ratio:.2f}), with "
            f"{_ratio(entry.macs, earlier.macs)} the MACs; between them: "
            f"{_between(report, entry, earlier)}.")


def speed_notes(report: Report) -> StageNotes | None:
    """The "where the speed went" table and its facts, or None for a report without ``.tflite``.

    Args:
        report: The report.

    Returns:
        The notes: one row per ``.tflite`` and target (one row when it was not benchmarked),
        facts on the references, the MACs along the stage chain, and every slower-than flag.
    """
    entries = report.tflite_entries
    if not entries:
        return None
    refs = references(report.stages)
    float32, dense = refs[FLOAT32], refs[DENSE_INT8]
    keras = [e for e in report.stages if isinstance(e, KerasEntry)]
    facts = [
        "Ratios are this model's figure over the reference's (×0.50: half the MACs, half the "
        "p50 time). References: float32 = "
        + (f"`{float32.artefact}` (the float model as float32)" if float32 else NA)
        + "; dense int8 = "
        + (f"`{dense.artefact}` (the uncompressed float model as int8)" if dense else
           f"{NA} (this run converted no uncompressed model to int8)") + ".",
    ]
    if any(e.macs is not None for e in keras):
        chain = " → ".join(f"{e.name} {format_macs(e.macs)}" for e in keras)
        facts.append(f"MACs per inference along the stages: {chain} (dense counts: pruned "
                     "zeros still count; structured pruning and low rank remove MACs).")
    rows: list[list[str]] = []
    for e in entries:
        flagged: dict[str, list[str]] = {}
        for f in e.slower_than or ():
            flagged.setdefault(f.target, []).append(f.than)
        head = [e.artefact, e.source, format_macs(e.macs), _ratio(e.macs, _macs(float32)),
                _ratio(e.macs, _macs(dense))]
        if not e.bench:
            rows.append([*head, "—", "not benchmarked", NA, NA, ""])
        for target in e.bench:
            p50 = _p50(e, target)
            than = flagged.get(target)
            rows.append([*head, target, "not measured" if p50 is None else f"{p50:.4g}",
                         _ratio(p50, _p50(float32, target)), _ratio(p50, _p50(dense, target)),
                         f"SLOWER than {', '.join(than)}" if than else ""])
        facts += [_flag_fact(report, e, f) for f in e.slower_than or ()]
    if not any(e.slower_than for e in entries):
        facts.append("No .tflite ran slower on a target than one made before it from the "
                     "same model chain." if report.targets else
                     "Nothing was benchmarked: no latency to compare.")
    return StageNotes(".tflite models", "MACs and p50 latency", facts, list(_HEADERS), rows,
                      "Work and latency of each .tflite")


def _macs(entry: TfliteEntry | None) -> int | None:
    return None if entry is None else entry.macs


def speed_markdown(report: Report) -> list[str]:
    """The "Where the speed went" part of report.md (empty for a report without ``.tflite``).

    Args:
        report: The report.

    Returns:
        Markdown lines.
    """
    notes = speed_notes(report)
    if notes is None:
        return []
    lines = ["", "## Where the speed went", ""]
    lines += [f"- {fact}" for fact in notes.facts]
    lines += ["", "| " + " | ".join(notes.headers) + " |", "|" + "---|" * len(notes.headers)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in notes.rows]
    return lines
