"""What changed between two runs: compares two ``edgekit.report/1`` reports (A before, B after).

:func:`compare_reports` returns a plain dict (``edgekit.compare/1``) for scripts;
:func:`format_comparison` turns it into a text table for people, changed rows first.
:func:`load_run` reads a run folder or its ``report.json`` (:func:`load_report`: as a
:class:`~edgekit.report_types.Report`).

Numbers compare as ``{"a", "b", "delta", "rel"}`` with ``delta = b - a`` and ``rel = delta / a``
(None when either side is missing or ``a`` is 0). Accuracies are fractions in the dict and shown in
points (percentage points) in the text; sizes are bytes in the dict and KiB in the text; MACs
(multiply-accumulates per inference) and parameters are counts (None for a report written before
the work was counted).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from edgekit.core.errors import InputError
from edgekit.report_types import Report, TfliteEntry

REPORT_SCHEMA = "edgekit.report/1"  # same as edgekit.report_types.SCHEMA
SCHEMA = "edgekit.compare/1"
LATENCY_STATS = ("p50", "p90", "p99")
_FINAL_NUMBERS = ("accuracy", "float_accuracy", "accuracy_drop_points", "bytes", "gzip_bytes",
                  "macs", "params")


# ---------------------------------------------------------------- loading
def _as_report(obj: Any, where: str) -> Report:
    """``obj`` as a :class:`Report` (a report, or its dict after the schema check)."""
    if isinstance(obj, Report):
        return obj
    if not isinstance(obj, dict) or obj.get("schema") != REPORT_SCHEMA:
        got = obj.get("schema") if isinstance(obj, dict) else type(obj).__name__
        raise InputError(f"{where} is not an edgekit report: schema {got!r}, "
                         f"expected {REPORT_SCHEMA!r}")
    return Report.from_dict(obj, where)


def load_run(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Reads the report of a run (checked: it must parse as a :class:`Report`).

    Args:
        path: A run folder (its ``report.json`` is read) or a ``report.json`` path.

    Returns:
        The ``edgekit.report/1`` dict, as the file holds it.

    Raises:
        InputError: The path is missing, the folder has no ``report.json``, the file cannot be
            read or is not JSON, or it is not an ``edgekit.report/1`` report.
    """
    obj, where = _read_run(path)
    _as_report(obj, where)
    return obj


def load_report(path: str | os.PathLike[str]) -> Report:
    """Reads the report of a run as a :class:`Report`.

    Args:
        path: A run folder (its ``report.json`` is read) or a ``report.json`` path.

    Returns:
        The report.

    Raises:
        InputError: As :func:`load_run`.
    """
    return _as_report(*_read_run(path))


def _read_run(path: str | os.PathLike[str]) -> tuple[Any, str]:
    """(the parsed JSON of a run's report.json, how to name it in messages)."""
    p = Path(path)
    if p.is_dir():
        file = p / "report.json"
        if not file.is_file():
            raise InputError(f"run {str(p)!r} has no report.json; expected an edgekit run folder")
    elif p.exists():
        file = p
    else:
        raise InputError(f"run {str(p)!r} does not exist; expected an edgekit run folder or "
                         "its report.json")
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read {str(file)!r}: {e}; expected an edgekit report.json") from e
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"{str(file)!r} is not JSON (line {e.lineno}: {e.msg}); expected an "
                         "edgekit report.json") from e
    return obj, repr(str(file))


# ---------------------------------------------------------------- comparing
def _number(a: Any, b: Any) -> dict[str, Any]:
    """``{"a", "b", "delta", "rel"}`` of two numbers (either may be None)."""
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (a, b))
    delta = b - a if numeric else None
    rel = delta / a if numeric and a != 0 else None
    return {"a": a, "b": b, "delta": delta, "rel": rel}


def _value(a: Any, b: Any) -> dict[str, Any]:
    """``{"a", "b", "changed"}`` of two non-numeric values."""
    return {"a": a, "b": b, "changed": a != b}


def _ops(stage: TfliteEntry | None) -> dict[str, int]:
    out: dict[str, int] = {}
    for o in stage.inspection.ops if stage is not None else ():
        out[o.op] = out.get(o.op, 0) + o.count
    return out


def _compare_ops(a: dict[str, int], b: dict[str, int]) -> dict[str, Any]:
    names = list(dict.fromkeys([*a, *b]))
    return {
        "added": [{"op": n, "count": b[n]} for n in names if n not in a],
        "removed": [{"op": n, "count": a[n]} for n in names if n not in b],
        "changed": [{"op": n, **_number(a[n], b[n])} for n in names
                    if n in a and n in b and a[n] != b[n]],
        "unchanged": sum(1 for n in names if n in a and n in b and a[n] == b[n]),
    }


def compare_reports(a: Report | dict[str, Any], b: Report | dict[str, Any]) -> dict[str, Any]:
    """Compares two runs of the pipeline.

    Args:
        a: Run A (before): its report, or its ``edgekit.report/1`` dict.
        b: Run B (after), the same.

    Returns:
        ``{"schema": "edgekit.compare/1", "final": {...}, "latency": {target: {stat: ...}},
        "ops": {"added", "removed", "changed", "unchanged"}, "stages": {name: {"accuracy"}},
        "budgets": [...], "passed": {...}}``. ``final`` holds numbers for accuracy,
        float_accuracy, accuracy_drop_points, bytes, gzip_bytes, macs and params (the final
        ``.tflite``'s MACs and parameters) and ``{"a", "b", "changed"}``
        for artefact and full_integer. ``latency`` covers the targets benched in either run
        (final ``.tflite``; p50, p90, p99 in ms). ``stages`` covers stage names present in both.
        ``budgets`` lists only budgets whose pass/fail differs, as ``{"name", "a", "b"}`` with
        True/False, or None where the run did not set that budget.

    Raises:
        InputError: ``a`` or ``b`` is not an ``edgekit.report/1`` report.
    """
    ra, rb = _as_report(a, "run A"), _as_report(b, "run B")
    fa, fb = ra.final, rb.final
    final: dict[str, Any] = {k: _number(getattr(fa, k), getattr(fb, k)) for k in _FINAL_NUMBERS}
    final["artefact"] = _value(fa.artefact, fb.artefact)
    final["full_integer"] = _value(fa.full_integer, fb.full_integer)

    sa, sb = ra.final_entry, rb.final_entry
    bench_a = sa.bench if sa is not None else {}
    bench_b = sb.bench if sb is not None else {}
    latency = {}
    for target in dict.fromkeys([*bench_a, *bench_b]):
        la, lb = bench_a.get(target), bench_b.get(target)
        latency[target] = {s: _number(None if la is None else la.latency_ms.stat(s),
                                      None if lb is None else lb.latency_ms.stat(s))
                           for s in LATENCY_STATS}

    stages_b = {e.name: e for e in rb.stages}
    stages = {e.name: {"accuracy": _number(e.accuracy, stages_b[e.name].accuracy)}
              for e in ra.stages if e.name in stages_b}

    budgets_a = {x.name: x.passed for x in ra.budgets}
    budgets_b = {x.name: x.passed for x in rb.budgets}
    budgets = [{"name": n, "a": budgets_a.get(n), "b": budgets_b.get(n)}
               for n in dict.fromkeys([*budgets_a, *budgets_b])
               if budgets_a.get(n) != budgets_b.get(n)]
    return {
        "schema": SCHEMA,
        "final": final,
        "latency": latency,
        "ops": _compare_ops(_ops(sa), _ops(sb)),
        "stages": stages,
        "budgets": budgets,
        "passed": _value(ra.passed, rb.passed),
    }


# ---------------------------------------------------------------- text
def _fmt_value(v: Any, unit: str) -> str:
    """One side of a row in its display unit (``unit``: points, KiB, ms, count)."""
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if unit == "points":  # an accuracy fraction, shown in percent
        return f"{100.0 * v:.2f} %"
    if unit == "drop":
        return f"{v:.2f} points"
    if unit == "KiB":
        return f"{v / 1024.0:.2f} KiB"
    if unit == "ms":
        return f"{v:.4g} ms"
    if unit == "count":
        return f"{v:,}"
    return str(v)


def _fmt_change(item: dict[str, Any], unit: str) -> str:
    delta = item.get("delta")
    if delta is None:
        return "not comparable" if item["a"] != item["b"] else ""
    if unit == "points":
        text = f"{100.0 * delta:+.2f} points"
    elif unit == "drop":
        text = f"{delta:+.2f} points"
    elif unit == "KiB":
        text = f"{delta / 1024.0:+.2f} KiB"
    elif unit == "ms":
        text = f"{delta:+.4g} ms"
    elif unit == "count":
        text = f"{delta:+,}"
    else:
        text = f"{delta:+d}" if isinstance(delta, int) else f"{delta:+.4g}"
    rel = item.get("rel")
    return text if rel is None else f"{text} ({100.0 * rel:+.1f} %)"


def _rows(diff: dict[str, Any]) -> list[tuple[str, str, str, str, bool]]:
    """(label, A, B, change, differs) for every item of the comparison."""
    rows: list[tuple[str, str, str, str, bool]] = []

    def number(label: str, item: dict[str, Any], unit: str) -> None:
        rows.append((label, _fmt_value(item["a"], unit), _fmt_value(item["b"], unit),
                     _fmt_change(item, unit), item["a"] != item["b"]))

    def value(label: str, item: dict[str, Any], fmt: Any = None) -> None:
        show = fmt or (lambda v: _fmt_value(v, ""))
        rows.append((label, show(item["a"]), show(item["b"]), "changed" if item["changed"]
                     else "", bool(item["changed"])))

    final = diff["final"]
    value("final artefact", final["artefact"])
    number("final accuracy", final["accuracy"], "points")
    number("float accuracy", final["float_accuracy"], "points")
    number("accuracy drop", final["accuracy_drop_points"], "drop")
    number("size", final["bytes"], "KiB")
    number("gzip size", final["gzip_bytes"], "KiB")
    number("MACs", final["macs"], "count")
    number("params", final["params"], "count")
    value("full integer", final["full_integer"])
    for target, stats in diff["latency"].items():
        for stat, item in stats.items():
            number(f"{stat} latency [{target}]", item, "ms")
    ops = diff["ops"]
    for o in ops["added"]:
        rows.append((f"op {o['op']}", "—", str(o["count"]), "added", True))
    for o in ops["removed"]:
        rows.append((f"op {o['op']}", str(o["count"]), "—", "removed", True))
    for o in ops["changed"]:
        number(f"op {o['op']}", o, "count")
    for name, item in diff["stages"].items():
        number(f"stage {name} accuracy", item["accuracy"], "points")
    for bud in diff["budgets"]:
        a, b = (("not set" if v is None else "pass" if v else "FAIL") for v in
                (bud["a"], bud["b"]))
        change = ("added" if bud["a"] is None else "removed" if bud["b"] is None
                  else "now passes" if bud["b"] else "now fails")
        rows.append((f"budget {bud['name']}", a, b, change, True))
    value("overall", diff["passed"], lambda v: "—" if v is None else "PASS" if v else "FAIL")
    return rows


def format_comparison(diff: dict[str, Any], name_a: str, name_b: str) -> str:
    """Renders a comparison as a text table: what changed, then how many items did not.

    Args:
        diff: The dict from :func:`compare_reports`.
        name_a: What to call run A (before), e.g. its folder.
        name_b: What to call run B (after).

    Returns:
        The text, ending in a newline. Changes carry a sign and a unit (points, KiB, ms) and,
        where defined, the relative change in %.

    Raises:
        InputError: ``diff`` is not an ``edgekit.compare/1`` dict.
    """
    if not isinstance(diff, dict) or diff.get("schema") != SCHEMA:
        got = diff.get("schema") if isinstance(diff, dict) else type(diff).__name__
        raise InputError(f"diff must be an {SCHEMA!r} dict from compare_reports, got {got!r}")
    rows = _rows(diff)
    changed = [r for r in rows if r[4]]
    total = len(rows) + diff["ops"]["unchanged"]  # ops with the same count are not listed
    lines = [f"Comparing A = {name_a} (before) with B = {name_b} (after)", ""]
    if not changed:
        lines.append("Nothing changed.")
    else:
        table = [("what changed", "A", "B", "change"), *(r[:4] for r in changed)]
        widths = [max(len(r[i]) for r in table) for i in range(3)]
        lines.append(f"{'what changed'.ljust(widths[0])}  {'A'.rjust(widths[1])}  "
                     f"{'B'.rjust(widths[2])}  change")
        lines.append("  ".join("-" * w for w in [*widths, len("change")]))
        for r in table[1:]:
            lines.append(f"{r[0].ljust(widths[0])}  {r[1].rjust(widths[1])}  "
                         f"{r[2].rjust(widths[2])}  {r[3]}".rstrip())
    lines += ["", f"Unchanged: {total - len(changed)} of {total} items."]
    return "\n".join(lines) + "\n"
