"""What each compression stage and each conversion did, for report.md and report.html.

A stage's ``details`` in report.json hold everything (every layer with its action and reason,
histories, configs); a ``.tflite`` entry holds its per-layer quantization debug and selective
quantization results. This module picks what a reader needs from them: facts, and a table of
the layers that matter (layers left with weights and why; factorized layers with their ranks;
ops kept in float; the worst-quantized ops). Each compression stage registers the reader of
its own details (:mod:`edgekit.compress.registry`); the conversion readers are here. All build
:class:`~edgekit.compress.stage_notes.StageNotes`; the Markdown and HTML reports only format them.
"""

from __future__ import annotations

from edgekit.compress import get_stage, stage_names
from edgekit.compress.stage_notes import MAX_ROWS, StageNotes, pct
from edgekit.report_tflite import QuantDebug, Selective, SelectiveSkipped
from edgekit.report_types import Entry, KerasEntry, Report, TfliteEntry

__all__ = ["DEBUG_ROWS", "MAX_ROWS", "StageNotes", "conversion_notes", "markdown_lines",
           "notes_markdown", "stage_notes"]

DEBUG_ROWS = 10  # worst-ranked ops shown from a per-layer quantization debug


def stage_notes(entry: Entry) -> StageNotes | None:
    """The summary of one report entry, or None for entries that are not compression stages.

    Args:
        entry: An entry of ``Report.stages``.

    Returns:
        The notes, or None (the float model, ``.tflite`` entries, stages without details).
    """
    if not isinstance(entry, KerasEntry) or entry.kind not in stage_names():
        return None
    reader = get_stage(entry.kind).notes
    if reader is None:
        return None
    return reader(entry.name, dict(entry.details))


def _num(v: float | None, fmt: str) -> str:
    return "—" if v is None else fmt.format(v)


def _selective(artefact: str, sel: Selective | SelectiveSkipped) -> StageNotes:
    kind = "selective quantization"
    if isinstance(sel, SelectiveSkipped):
        return StageNotes(artefact, kind, [f"Skipped: {sel.skipped}."])
    plain, chosen = sel.int8, sel.selected
    facts = [
        f"Budget {sel.budget_points} points on {sel.eval_samples} held-out samples "
        f"(float {pct(sel.float_accuracy)}): {'met' if sel.met else 'NOT met'}.",
        f"Plain int8: {pct(plain.accuracy)} (drop {plain.drop_points:.2f} points), "
        f"{plain.bytes} bytes, {_num(plain.latency_ms, '{:.4f}')} ms.",
        f"Selected: {pct(chosen.accuracy)} (drop {chosen.drop_points:.2f} points), "
        f"{chosen.bytes} bytes ({sel.cost.bytes:+d}), "
        f"{_num(chosen.latency_ms, '{:.4f}')} ms (x{sel.cost.latency_ratio}; quick "
        f"local interpreter median), {chosen.float_ops} float op(s).",
    ]
    rows = [[r.layer or r.tensor, str(r.op), str(r.rank)] for r in chosen.kept_float]
    if not rows:
        facts.append("Nothing kept in float: plain int8 meets the budget.")
    return StageNotes(artefact, kind, facts, ["kept in float", "op", "debugger rank"], rows,
                      "Ops kept in float")


def _debug(artefact: str, dbg: QuantDebug) -> StageNotes:
    facts = [
        f"{dbg.samples} calibration samples. alone SNR: the model output's SNR with only that "
        "op in int8 (the ranking key); SNR, median channel SNR, rmse / scale: the op's own "
        "output against its float shadow from the same quantized input. Worst first.",
    ]
    rows = [[str(r.rank), r.layer or r.tensor, str(r.op),
             _db(r.alone_snr_db), _db(r.snr_db), _db(r.channel_snr_db),
             _num(r.rmse_over_scale, "{:.3f}"),
             f"[{r.float_min:.3g}, {r.float_max:.3g}]"] for r in dbg.layers]
    return StageNotes(artefact, "per-layer quantization error", facts,
                      ["rank", "layer", "op", "alone SNR dB", "SNR dB", "median channel SNR dB",
                       "rmse / scale", "float range"], rows[:DEBUG_ROWS],
                      "Ops ranked by quantization error", max(0, len(rows) - DEBUG_ROWS),
                      f"`{dbg.record}`")


def _db(v: float | None) -> str:
    return "∞" if v is None else f"{v:.1f}"


def conversion_notes(entry: Entry) -> list[StageNotes]:
    """Selective quantization and per-layer quantization error of a ``.tflite`` entry.

    Args:
        entry: An entry of ``Report.stages``.

    Returns:
        Zero, one or two notes (none for Keras entries and entries without either result).
    """
    if not isinstance(entry, TfliteEntry):
        return []
    out = []
    if entry.selective is not None:
        out.append(_selective(entry.artefact, entry.selective))
    if entry.quant_debug is not None:
        out.append(_debug(entry.artefact, entry.quant_debug))
    return out


def notes_markdown(notes: StageNotes) -> list[str]:
    """One note as a ``###`` Markdown subsection: facts as bullets, then its table.

    Args:
        notes: The note.

    Returns:
        Markdown lines.
    """
    lines = ["", f"### {notes.stage} ({notes.kind})", ""]
    lines += [f"- {fact}" for fact in notes.facts]
    if notes.rows:
        lines += ["", f"{notes.caption}:", "",
                  "| " + " | ".join(notes.headers) + " |",
                  "|" + "---|" * len(notes.headers)]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |"
                  for row in notes.rows]
    if notes.more:
        lines += ["", f"{notes.more} more in {notes.more_where}."]
    return lines


def markdown_lines(report: Report) -> list[str]:
    """The "Compression stages" part of report.md (empty when the run had none).

    Args:
        report: The report.

    Returns:
        Markdown lines.
    """
    lines: list[str] = []
    for notes in filter(None, map(stage_notes, report.stages)):
        lines += notes_markdown(notes)
    return ["", "## Compression stages", *lines] if lines else []
