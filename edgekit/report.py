"""The pipeline report (``edgekit.report/1``): JSON for scripts, Markdown for people.

One entry per stage (float, each compression stage, each ``.tflite``) with its artefact, held-out
accuracy, size raw/gzip, sparsity and work (MACs, parameters); ``.tflite`` entries add
verification, inspection and bench results, and whether they ran slower than a ``.tflite`` made
before them (:mod:`edgekit.report_work`: "where the speed went"). Budgets are evaluated against
the final ``.tflite`` and the float model. The report is a :class:`~edgekit.report_types.Report`
(its ``to_dict()`` is report.json).
"""

from __future__ import annotations

import datetime as _dt
import platform
from collections.abc import Mapping, Sequence
from typing import Any

from edgekit.converters.work import format_macs
from edgekit.core.errors import InputError
from edgekit.data import Dataset
from edgekit.recipe import Budgets, Recipe
from edgekit.report_search import search_budgets
from edgekit.report_stages import conversion_notes, markdown_lines, notes_markdown
from edgekit.report_types import (
    SCHEMA,
    BudgetResult,
    DataInfo,
    Entry,
    FinalSummary,
    HostInfo,
    KerasEntry,
    Report,
    TfliteEntry,
    as_report,
)
from edgekit.report_work import speed_markdown, with_slower_than

__all__ = ["SCHEMA", "build_report", "check_budgets", "evaluate_budgets", "render_markdown"]


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("edgekit")
    except Exception:  # not installed (running from a source tree)
        return "unknown"


def _limit(name: str, limit: float, value: float | None, unit: str) -> BudgetResult:
    """One upper-limit budget; a figure that was not measured (None) fails."""
    return BudgetResult(name=name, limit=limit, value=value, unit=unit,
                        passed=value is not None and value <= limit)


def _drop_points(float_accuracy: float | None, accuracy: float | None) -> float | None:
    if float_accuracy is None or accuracy is None:
        return None
    return round(100.0 * (float_accuracy - accuracy), 4)


def check_budgets(budgets: Budgets, float_entry: Entry, final: TfliteEntry
                  ) -> tuple[BudgetResult, ...]:
    """Checks every budget the recipe sets.

    Args:
        budgets: The recipe's budgets.
        float_entry: The float stage entry (accuracy baseline).
        final: The final ``.tflite`` entry.

    Returns:
        One result per budget set, in recipe order; a figure that was not measured has value
        None and fails.
    """
    out: list[BudgetResult] = []
    if budgets.max_accuracy_drop is not None:
        drop = _drop_points(float_entry.accuracy, final.accuracy)
        out.append(_limit("max_accuracy_drop", budgets.max_accuracy_drop, drop, "points"))
    if budgets.max_size_kb is not None:
        kb = round(final.bytes / 1024.0, 3)
        out.append(_limit("max_size_kb", budgets.max_size_kb, kb, "KiB"))
    for target, limit in budgets.max_latency_ms.items():
        res = final.bench.get(target)
        value = None if res is None else res.latency_ms.stat(budgets.latency_stat)
        out.append(_limit(f"max_latency_ms[{target}]", limit, value,
                          f"ms ({budgets.latency_stat})"))
    for target, limit in budgets.max_energy_mj.items():
        res = final.bench.get(target)
        energy = None if res is None else res.energy
        value = None if energy is None else energy.mj_per_inference
        out.append(_limit(f"max_energy_mj[{target}]", limit, value, "mJ/inference"))
    if budgets.require_int8:
        insp = final.inspection
        out.append(BudgetResult(name="require_int8", limit=True, value=insp.full_integer, unit="",
                                passed=insp.full_integer,
                                float_ops=tuple(o.op for o in insp.float_ops),
                                float_io=insp.float_io))
    return tuple(out)


def _entry(entry: Entry | Mapping[str, Any], what: str) -> Entry:
    if isinstance(entry, (KerasEntry, TfliteEntry)):
        return entry
    cls = TfliteEntry if TfliteEntry.claims(entry) else KerasEntry
    return cls.from_dict(entry, what)


def evaluate_budgets(
    budgets: Budgets, float_entry: Entry | Mapping[str, Any],
    final: TfliteEntry | Mapping[str, Any]
) -> list[dict[str, Any]]:
    """Checks every budget the recipe sets (:func:`check_budgets` on entries or their dicts).

    Args:
        budgets: The recipe's budgets.
        float_entry: The float stage entry (accuracy baseline), typed or as in report.json.
        final: The final ``.tflite`` entry, typed or as in report.json.

    Returns:
        One ``{"name", "limit", "value", "unit", "passed"}`` per budget set (``require_int8``
        adds ``float_ops`` and ``float_io``); a figure that was not measured has value None and
        fails.

    Raises:
        InputError: An entry dict that is not a report entry, or ``final`` is not a ``.tflite``
            entry.
    """
    final_entry = _entry(final, "final entry")
    if not isinstance(final_entry, TfliteEntry):
        raise InputError(f"final must be a .tflite entry (kind 'tflite'), got kind "
                         f"{final_entry.kind!r}")
    results = check_budgets(budgets, _entry(float_entry, "float entry"), final_entry)
    return [b.to_dict() for b in results]


def build_report(
    recipe: Recipe, data: Dataset, entries: Sequence[Entry], seconds: float
) -> Report:
    """Assembles the ``edgekit.report/1`` report.

    Args:
        recipe: The resolved recipe.
        data: The dataset (its held-out indices go in the report).
        entries: Stage entries in order; the first is the float model, the last one flagged
            ``final`` is the deliverable.
        seconds: Wall time of the run.

    Returns:
        The report (``to_dict()`` is report.json).

    Raises:
        InputError: No entry is flagged ``final``.
    """
    float_entry = entries[0]
    final = next((e for e in reversed(entries) if isinstance(e, TfliteEntry) and e.final), None)
    if final is None:
        raise InputError("the report needs a .tflite entry flagged final; got entries "
                         f"{[e.name for e in entries]}")
    budgets = check_budgets(recipe.budgets, float_entry, final) + search_budgets(entries)
    fa, ta = float_entry.accuracy, final.accuracy
    return Report(
        schema=SCHEMA,
        edgekit_version=_version(),
        created_utc=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        host=HostInfo(python=platform.python_version(), machine=platform.machine()),
        seconds=round(seconds, 1),
        recipe=recipe.to_dict(),
        data=DataInfo.from_dict(data.describe(), "data"),
        stages=with_slower_than(entries),
        final=FinalSummary(
            artefact=final.artefact,
            accuracy=ta,
            float_accuracy=fa,
            accuracy_drop_points=_drop_points(fa, ta),
            bytes=final.bytes,
            gzip_bytes=final.gzip_bytes,
            macs=final.macs,
            params=final.params,
            full_integer=final.inspection.full_integer,
        ),
        budgets=budgets,
        passed=all(b.passed for b in budgets),
    )


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{100.0 * v:.2f} %"


def _num(v: Any, fmt: str = "{:.3f}") -> str:
    return "—" if v is None else fmt.format(v)


def _kb(n: int | None) -> str:
    return "—" if n is None else f"{n / 1024:.1f}"


def _count(n: int | None) -> str:
    return "—" if n is None else f"{n:,}"


def _share(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.1f} %"


def render_markdown(report: Report | Mapping[str, Any]) -> str:
    """Renders the report for people.

    Args:
        report: The report, or its ``edgekit.report/1`` dict.

    Returns:
        Markdown text.

    Raises:
        InputError: ``report`` is not an ``edgekit.report/1`` report.
    """
    report = as_report(report)
    final, data = report.final, report.data
    lines = [
        f"# edgekit report — {final.artefact}",
        "",
        f"Data: **{data.name}**, {data.train_samples} training / "
        f"{data.heldout_samples} held-out samples (stratified split, seed "
        f"{data.split_seed}; held-out indices in report.json `data.heldout_indices`).",
        "",
        f"Final model: **{final.artefact}**, held-out accuracy **{_pct(final.accuracy)}** "
        f"(float {_pct(final.float_accuracy)}, drop "
        f"{_num(final.accuracy_drop_points, '{:.2f}')} points), {final.bytes} bytes "
        f"({final.gzip_bytes} gzipped), "
        f"full integer: **{'yes' if final.full_integer else 'NO'}**.",
        "",
        "## Stages",
        "",
        "| stage | artefact | accuracy | size KiB | gzip KiB | sparsity | MACs | params | "
        "p50 ms | p90 ms | CV |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for e in report.stages:
        bench = next(iter(e.bench.values()), None) if isinstance(e, TfliteEntry) else None
        lat = bench.latency_ms if bench else None
        lines.append(
            f"| {e.name} | `{e.artefact}` | {_pct(e.accuracy)} | "
            f"{_kb(e.bytes)} | {_kb(e.gzip_bytes)} | "
            f"{_pct(e.zero_share)} | {format_macs(e.macs)} | {_count(e.params)} | "
            f"{_num(lat and lat.p50)} | {_num(lat and lat.p90)} | "
            f"{_num(lat and lat.cv, '{:.3f}')} |"
        )
    lines += speed_markdown(report)
    lines += markdown_lines(report)
    for e in report.tflite_entries:
        v = e.verification
        lines += [
            "",
            f"## {e.artefact}",
            "",
            f"- Source: `{e.source}` stage; conversion {e.conversion.to_dict()}.",
            f"- Agreement with the Keras model: top-1 {_pct(v.top1_agreement)}, "
            f"max abs error {_num(v.max_abs_error, '{:.4g}')}, "
            f"mean abs error {_num(v.mean_abs_error, '{:.4g}')}, "
            f"SNR {_num(v.snr_db, '{:.1f}')} dB.",
            "- Ops: " + ", ".join(f"{o.op}×{o.count}" for o in e.inspection.ops) + ".",
        ]
        if e.calibration is not None:
            c = e.calibration
            how = "its first samples" if c.selection == "first" else f"seed {c.seed}"
            lines.append(f"- Calibration: {c.samples} samples from "
                         f"{c.source or 'the training split'}, {how} "
                         f"(indices in `{c.record}`).")
        if e.weight_sparsity:
            cells = ", ".join(f"{w.tensor.split(';')[0]} {_share(w.sparsity)}"
                              for w in e.weight_sparsity)
            lines.append(f"- Zero weights per layer in the .tflite: {cells}.")
        for target, b in e.bench.items():
            lat, t, rt = b.latency_ms, b.target, b.runtime
            lines.append(
                f"- Bench `{target}` ({t.cpu}, {t.cores} cores, {rt.interpreter} "
                f"{rt.version}, threads {rt.threads or 'default'}, {b.runs} runs after "
                f"{b.warmup} warm-up): init {_num(lat.init)} ms, first "
                f"{_num(lat.first)} ms, mean {_num(lat.mean)} ± {_num(lat.std)} ms, "
                f"p50 {_num(lat.p50)}, p90 {_num(lat.p90)}, p99 {_num(lat.p99)} ms, "
                f"peak RSS {_num(b.memory.peak_rss_mb, '{:.1f}')} MB."
            )
        for notes in conversion_notes(e):
            lines += notes_markdown(notes)
    lines += ["", "## Budgets", ""]
    if not report.budgets:
        lines.append("No budgets set.")
    else:
        lines += ["| budget | limit | value | result |", "|---|---:|---:|---|"]
        for b in report.budgets:
            limit: Any = f"{b.limit} {b.unit}".strip()
            value: Any = b.value
            if b.name == "require_int8":
                limit, value = "full integer", "yes" if value else "no (float ops or I/O)"
            lines.append(f"| {b.name} | {limit} | {value} | "
                         f"{'pass' if b.passed else '**FAIL**'} |")
    lines += ["", f"Overall: **{'PASS' if report.passed else 'FAIL'}** "
              f"(run took {report.seconds} s).", ""]
    return "\n".join(lines)
