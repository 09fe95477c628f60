"""What each compression stage and each conversion did, for report.md and report.html.

A stage's ``details`` in report.json hold everything (every layer with its action and reason,
histories, configs); a ``.tflite`` entry holds its per-layer quantization debug and selective
quantization results. This module picks what a reader needs from them: facts, and a table of
the layers that matter (layers left with weights and why; factorized layers with their ranks;
ops kept in float; the worst-quantized ops). The readers here build :class:`StageNotes`; the
Markdown and HTML reports only format them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["DEBUG_ROWS", "MAX_ROWS", "StageNotes", "conversion_notes", "markdown_lines",
           "notes_markdown", "stage_notes"]

MAX_ROWS = 20  # table rows shown; the rest are counted, and all are in report.json
DEBUG_ROWS = 10  # worst-ranked ops shown from a per-layer quantization debug


@dataclass
class StageNotes:
    """The readable summary of one compression stage.

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


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{100.0 * v:.2f} %"


def _kib(n: int | None) -> str:
    return "—" if n is None else f"{n / 1024:.1f} KiB"


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _counts(d: dict[str, Any], action: str) -> str:
    counts = d.get("counts", {})
    return (f"{_n(counts.get(action, 0), 'layer')} {action}, {counts.get('left', 0)} left as they "
            "are "
            f"({len(d.get('left_with_weights') or d.get('skipped_layers') or {})} of those hold "
            "weights)")


def _left_table(notes: StageNotes, left: dict[str, str], layers: list[dict[str, Any]]) -> None:
    types = {entry["name"]: entry["type"] for entry in layers}
    params = {entry["name"]: entry["params"] for entry in layers}
    items = list(left.items())
    notes.headers = ["layer", "type", "params", "why it was left"]
    notes.rows = [[name, types.get(name, "?"), str(params.get(name, "?")), reason]
                  for name, reason in items[:MAX_ROWS]]
    notes.more = max(0, len(items) - MAX_ROWS)
    notes.caption = "Layers with weights that were left as they are"


def _prune(name: str, d: dict[str, Any]) -> StageNotes:
    size = d.get("size", {})
    before, after = size.get("before", {}), size.get("after", {})
    target = "reached" if d.get("target_reached") else (
        "NOT reached in " + ", ".join(f"{k} ({_pct(v)})" for k, v in
                                      (d.get("short_of_target") or {}).items()))
    facts = [
        f"{_counts(d, 'pruned')}; the pruned kernels hold "
        f"{_pct(d.get('weights_share_pruned'))} of the weights; zeros overall "
        f"{_pct(d.get('zeros_share'))}.",
        f"Sparsity target {target}.",
        f"Weights as float32: {_kib(before.get('bytes'))} -> {_kib(after.get('bytes'))}, "
        f"gzip {_kib(before.get('gzip_bytes'))} -> {_kib(after.get('gzip_bytes'))}.",
    ]
    if d.get("m_by_n"):
        holds = d["m_by_n"]["holds"]
        facts.append(f"{d['m_by_n']['pattern']} pattern holds in {sum(holds.values())} of "
                     f"{len(holds)} pruned kernels.")
    if d.get("policy"):
        facts.append(f"Pruning policy: {d['policy']}.")
    notes = StageNotes(name, "Prune", facts)
    _left_table(notes, d.get("skipped_layers") or {}, d.get("layers", []))
    return notes


def _qat(name: str, d: dict[str, Any]) -> StageNotes:
    facts = [
        f"{_counts(d, 'quantized')}; the annotated layers hold "
        f"{_pct(d.get('weights_share_quantized'))} of the weights.",
        f"Scheme: {d.get('scheme')}"
        + (" (keeps the pruned zeros)." if d.get("prune_preserving") else "."),
    ]
    if d.get("calibration_needed"):
        facts.append("Layers QAT left are quantized by the converter from calibration data.")
    notes = StageNotes(name, "QAT", facts)
    _left_table(notes, d.get("left_with_weights") or {}, d.get("layers", []))
    return notes


def _distill(name: str, d: dict[str, Any]) -> StageNotes:
    config = (d.get("config") or {}).get("config", {})
    agree = d.get("heldout_agreement_with_teacher", {})
    history = d.get("history", {})
    facts = [
        f"Teacher `{d.get('teacher')}` ({d.get('teacher_params')} parameters) -> student "
        f"{d.get('student')} ({d.get('student_params')} parameters), T = "
        f"{config.get('temperature')}, alpha = {config.get('alpha')}, "
        f"{len(history.get('loss', []))} epochs.",
        f"Held-out top-1 agreement with the teacher: {_pct(agree.get('before'))} before, "
        f"{_pct(agree.get('after'))} after.",
    ]
    unlabeled = d.get("unlabeled")
    if unlabeled:
        facts.append(f"Trained on {d.get('labelled_samples')} labelled samples and "
                     f"{unlabeled['samples']} unlabelled ones from `{unlabeled['source']}` "
                     "(teacher's outputs only).")
    if history.get("kd"):
        facts.append(f"Last epoch: KD term {history['kd'][-1]:.4f}, cross-entropy "
                     f"{history['ce'][-1]:.4f}.")
    return StageNotes(name, "Distill", facts)


def _lowrank(name: str, d: dict[str, Any]) -> StageNotes:
    layers = d.get("layers", {})
    facts = [
        f"{_n(len(layers), 'layer')} factorized: {d.get('params_before')} -> "
        f"{d.get('params_after')} parameters.",
    ]
    if "train_accuracy_before_fine_tune" in d:
        tuned = (f", {_pct(d['train_accuracy'])} after {len(d['history'].get('loss', []))} "
                 "fine-tune epochs" if d.get("history") else " (no fine-tune)")
        facts.append(f"Training accuracy {_pct(d['train_accuracy_before_fine_tune'])} right "
                     f"after the factorization{tuned}.")
    notes = StageNotes(name, "LowRank", facts, caption="Factorized and skipped layers")
    notes.headers = ["layer", "rank", "energy kept", "kernel params", "why skipped"]
    rows = [[n, f"{v['rank']} / {v['max_rank']}", f"{v['energy_kept']:.3f}",
             f"{v['params_before']} -> {v['params_after']}", ""] for n, v in layers.items()]
    rows += [[n, "—", "—", "—", why] for n, why in (d.get("skipped") or {}).items()]
    notes.rows, notes.more = rows[:MAX_ROWS], max(0, len(rows) - MAX_ROWS)
    return notes


_READERS = {"Prune": _prune, "QAT": _qat, "Distill": _distill, "LowRank": _lowrank}


def stage_notes(entry: dict[str, Any]) -> StageNotes | None:
    """The summary of one report entry, or None for entries that are not compression stages.

    Args:
        entry: An entry of ``report["stages"]``.

    Returns:
        The notes, or None (the float model, ``.tflite`` entries, stages without details).
    """
    reader = _READERS.get(entry.get("kind", ""))
    details = entry.get("details")
    if reader is None or not isinstance(details, dict):
        return None
    return reader(entry["name"], details)


def _num(v: float | None, fmt: str) -> str:
    return "—" if v is None else fmt.format(v)


def _selective(artefact: str, sel: dict[str, Any]) -> StageNotes:
    kind = "selective quantization"
    if sel.get("skipped"):
        return StageNotes(artefact, kind, [f"Skipped: {sel['skipped']}."])
    plain, chosen = sel["int8"], sel["selected"]
    facts = [
        f"Budget {sel['budget_points']} points on {sel['eval_samples']} held-out samples "
        f"(float {_pct(sel['float_accuracy'])}): {'met' if sel['met'] else 'NOT met'}.",
        f"Plain int8: {_pct(plain['accuracy'])} (drop {plain['drop_points']:.2f} points), "
        f"{plain['bytes']} bytes, {_num(plain['latency_ms'], '{:.4f}')} ms.",
        f"Selected: {_pct(chosen['accuracy'])} (drop {chosen['drop_points']:.2f} points), "
        f"{chosen['bytes']} bytes ({sel['cost']['bytes']:+d}), "
        f"{_num(chosen['latency_ms'], '{:.4f}')} ms (x{sel['cost']['latency_ratio']}; quick "
        f"local interpreter median), {chosen['float_ops']} float op(s).",
    ]
    rows = [[r["layer"] or r["tensor"], r["op"], str(r["rank"])] for r in chosen["kept_float"]]
    if not rows:
        facts.append("Nothing kept in float: plain int8 meets the budget.")
    return StageNotes(artefact, kind, facts, ["kept in float", "op", "debugger rank"], rows,
                      "Ops kept in float")


def _debug(artefact: str, dbg: dict[str, Any]) -> StageNotes:
    facts = [
        f"{dbg['samples']} calibration samples. alone SNR: the model output's SNR with only that "
        "op in int8 (the ranking key); SNR, median channel SNR, rmse / scale: the op's own "
        "output against its float shadow from the same quantized input. Worst first.",
    ]
    rows = [[str(r["rank"]), r["layer"] or r["tensor"], r["op"],
             _db(r.get("alone_snr_db")), _db(r["snr_db"]), _db(r["channel_snr_db"]),
             _num(r["rmse_over_scale"], "{:.3f}"),
             f"[{r['float_min']:.3g}, {r['float_max']:.3g}]"] for r in dbg["layers"]]
    return StageNotes(artefact, "per-layer quantization error", facts,
                      ["rank", "layer", "op", "alone SNR dB", "SNR dB", "median channel SNR dB",
                       "rmse / scale", "float range"], rows[:DEBUG_ROWS],
                      "Ops ranked by quantization error", max(0, len(rows) - DEBUG_ROWS),
                      f"`{dbg['record']}`")


def _db(v: float | None) -> str:
    return "∞" if v is None else f"{v:.1f}"


def conversion_notes(entry: dict[str, Any]) -> list[StageNotes]:
    """Selective quantization and per-layer quantization error of a ``.tflite`` entry.

    Args:
        entry: An entry of ``report["stages"]``.

    Returns:
        Zero, one or two notes (none for entries without either result).
    """
    out = []
    if entry.get("selective"):
        out.append(_selective(entry["artefact"], entry["selective"]))
    if entry.get("quant_debug"):
        out.append(_debug(entry["artefact"], entry["quant_debug"]))
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


def markdown_lines(report: dict[str, Any]) -> list[str]:
    """The "Compression stages" part of report.md (empty when the run had none).

    Args:
        report: An ``edgekit.report/1`` dict.

    Returns:
        Markdown lines.
    """
    lines: list[str] = []
    for notes in filter(None, map(stage_notes, report.get("stages", []))):
        lines += notes_markdown(notes)
    return ["", "## Compression stages", *lines] if lines else []
