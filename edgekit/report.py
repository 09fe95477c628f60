"""The pipeline report (``edgekit.report/1``): JSON for scripts, Markdown for people.

One entry per stage (float, each compression stage, each ``.tflite``) with its artefact, held-out
accuracy, size raw/gzip and sparsity; ``.tflite`` entries add verification, inspection and bench
results. Budgets are evaluated against the final ``.tflite`` and the float model.
"""

from __future__ import annotations

import datetime as _dt
import platform
from typing import Any

from edgekit.data import Dataset
from edgekit.recipe import Budgets, Recipe
from edgekit.report_stages import conversion_notes, markdown_lines, notes_markdown

SCHEMA = "edgekit.report/1"


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("edgekit")
    except Exception:  # not installed (running from a source tree)
        return "unknown"


def _limit(name: str, limit: float, value: float | None, unit: str) -> dict[str, Any]:
    """One upper-limit budget; a figure that was not measured (None) fails."""
    return {"name": name, "limit": limit, "value": value, "unit": unit,
            "passed": value is not None and value <= limit}


def evaluate_budgets(
    budgets: Budgets, float_entry: dict[str, Any], final: dict[str, Any]
) -> list[dict[str, Any]]:
    """Checks every budget the recipe sets.

    Args:
        budgets: The recipe's budgets.
        float_entry: The float stage entry (accuracy baseline).
        final: The final ``.tflite`` entry.

    Returns:
        One ``{"name", "limit", "value", "unit", "passed"}`` per budget set; a figure that was not
        measured has value None and fails.
    """
    out: list[dict[str, Any]] = []
    if budgets.max_accuracy_drop is not None:
        fa, ta = float_entry.get("accuracy"), final.get("accuracy")
        drop = None if fa is None or ta is None else round(100.0 * (fa - ta), 4)
        out.append(_limit("max_accuracy_drop", budgets.max_accuracy_drop, drop, "points"))
    if budgets.max_size_kb is not None:
        kb = round(final["bytes"] / 1024.0, 3)
        out.append(_limit("max_size_kb", budgets.max_size_kb, kb, "KiB"))
    bench = final.get("bench", {})
    for target, limit in budgets.max_latency_ms.items():
        res = bench.get(target)
        value = None if res is None else res["latency_ms"].get(budgets.latency_stat)
        out.append(_limit(f"max_latency_ms[{target}]", limit, value,
                          f"ms ({budgets.latency_stat})"))
    for target, limit in budgets.max_energy_mj.items():
        energy = (bench.get(target) or {}).get("energy")
        value = None if not energy else energy.get("mj_per_inference")
        out.append(_limit(f"max_energy_mj[{target}]", limit, value, "mJ/inference"))
    if budgets.require_int8:
        insp = final.get("inspection", {})
        full = bool(insp.get("full_integer"))
        out.append({"name": "require_int8", "limit": True, "value": full, "unit": "",
                    "passed": full,
                    "float_ops": [o["op"] for o in insp.get("float_ops", [])],
                    "float_io": insp.get("float_io", [])})
    return out


def build_report(
    recipe: Recipe, data: Dataset, entries: list[dict[str, Any]], seconds: float
) -> dict[str, Any]:
    """Assembles the ``edgekit.report/1`` dict.

    Args:
        recipe: The resolved recipe.
        data: The dataset (its held-out indices go in the report).
        entries: Stage entries in order; the last one flagged ``final`` is the deliverable.
        seconds: Wall time of the run.

    Returns:
        The report.
    """
    float_entry = entries[0]
    final = next(e for e in reversed(entries) if e.get("final"))
    budgets = evaluate_budgets(recipe.budgets, float_entry, final)
    fa, ta = float_entry.get("accuracy"), final.get("accuracy")
    return {
        "schema": SCHEMA,
        "edgekit_version": _version(),
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "host": {"python": platform.python_version(), "machine": platform.machine()},
        "seconds": round(seconds, 1),
        "recipe": recipe.to_dict(),
        "data": data.describe(),
        "stages": entries,
        "final": {
            "artefact": final["artefact"],
            "accuracy": ta,
            "float_accuracy": fa,
            "accuracy_drop_points": None if fa is None or ta is None
            else round(100.0 * (fa - ta), 4),
            "bytes": final["bytes"],
            "gzip_bytes": final["gzip_bytes"],
            "full_integer": final["inspection"]["full_integer"],
        },
        "budgets": budgets,
        "passed": all(b["passed"] for b in budgets),
    }


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{100.0 * v:.2f} %"


def _num(v: Any, fmt: str = "{:.3f}") -> str:
    return "—" if v is None else fmt.format(v)


def _kb(n: int | None) -> str:
    return "—" if n is None else f"{n / 1024:.1f}"


def render_markdown(report: dict[str, Any]) -> str:
    """Renders the report for people.

    Args:
        report: An ``edgekit.report/1`` dict.

    Returns:
        Markdown text.
    """
    final = report["final"]
    data = report["data"]
    lines = [
        f"# edgekit report — {final['artefact']}",
        "",
        f"Data: **{data['name']}**, {data['train_samples']} training / "
        f"{data['heldout_samples']} held-out samples (stratified split, seed "
        f"{data['split_seed']}; held-out indices in report.json `data.heldout_indices`).",
        "",
        f"Final model: **{final['artefact']}**, held-out accuracy **{_pct(final['accuracy'])}** "
        f"(float {_pct(final['float_accuracy'])}, drop "
        f"{_num(final['accuracy_drop_points'], '{:.2f}')} points), {final['bytes']} bytes "
        f"({final['gzip_bytes']} gzipped), "
        f"full integer: **{'yes' if final['full_integer'] else 'NO'}**.",
        "",
        "## Stages",
        "",
        "| stage | artefact | accuracy | size KiB | gzip KiB | sparsity | p50 ms | p90 ms | CV |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for e in report["stages"]:
        sparsity = e.get("sparsity")
        if sparsity is None and e.get("weight_sparsity"):
            ws = e["weight_sparsity"]
            params = sum(w["params"] for w in ws)
            sparsity = sum(w["zeros"] for w in ws) / params if params else None
        bench = next(iter(e.get("bench", {}).values()), None)
        lat = bench["latency_ms"] if bench else {}
        lines.append(
            f"| {e['name']} | `{e['artefact']}` | {_pct(e.get('accuracy'))} | "
            f"{_kb(e.get('bytes'))} | {_kb(e.get('gzip_bytes'))} | "
            f"{_pct(sparsity)} | {_num(lat.get('p50'))} | {_num(lat.get('p90'))} | "
            f"{_num(lat.get('cv'), '{:.3f}')} |"
        )
    lines += markdown_lines(report)
    for e in report["stages"]:
        if e.get("kind") != "tflite":
            continue
        v = e["verification"]
        lines += [
            "",
            f"## {e['artefact']}",
            "",
            f"- Source: `{e['source']}` stage; conversion {e['conversion']}.",
            f"- Agreement with the Keras model: top-1 {_pct(v.get('top1_agreement'))}, "
            f"max abs error {_num(v.get('max_abs_error'), '{:.4g}')}, "
            f"mean abs error {_num(v.get('mean_abs_error'), '{:.4g}')}, "
            f"SNR {_num(v.get('snr_db'), '{:.1f}')} dB.",
            "- Ops: " + ", ".join(f"{o['op']}×{o['count']}" for o in e["inspection"]["ops"]) + ".",
        ]
        if e.get("calibration"):
            c = e["calibration"]
            how = "its first samples" if c.get("selection") == "first" else f"seed {c['seed']}"
            lines.append(f"- Calibration: {c['samples']} samples from "
                         f"{c.get('source', 'the training split')}, {how} "
                         f"(indices in `{c['record']}`).")
        if e.get("weight_sparsity"):
            cells = ", ".join(f"{w['tensor'].split(';')[0]} {100 * w['sparsity']:.1f} %"
                              for w in e["weight_sparsity"])
            lines.append(f"- Zero weights per layer in the .tflite: {cells}.")
        for target, b in e.get("bench", {}).items():
            lat, t, rt = b["latency_ms"], b["target"], b["runtime"]
            lines.append(
                f"- Bench `{target}` ({t.get('cpu')}, {t.get('cores')} cores, {rt['interpreter']} "
                f"{rt['version']}, threads {rt['threads'] or 'default'}, {b['runs']} runs after "
                f"{b['warmup']} warm-up): init {_num(lat['init'])} ms, first "
                f"{_num(lat['first'])} ms, mean {_num(lat['mean'])} ± {_num(lat['std'])} ms, "
                f"p50 {_num(lat['p50'])}, p90 {_num(lat['p90'])}, p99 {_num(lat['p99'])} ms, "
                f"peak RSS {_num(b['memory'].get('peak_rss_mb'), '{:.1f}')} MB."
            )
        for notes in conversion_notes(e):
            lines += notes_markdown(notes)
    lines += ["", "## Budgets", ""]
    if not report["budgets"]:
        lines.append("No budgets set.")
    else:
        lines += ["| budget | limit | value | result |", "|---|---:|---:|---|"]
        for b in report["budgets"]:
            limit = f"{b['limit']} {b['unit']}".strip()
            value = b["value"]
            if b["name"] == "require_int8":
                limit, value = "full integer", "yes" if value else "no (float ops or I/O)"
            lines.append(f"| {b['name']} | {limit} | {value} | "
                         f"{'pass' if b['passed'] else '**FAIL**'} |")
    lines += ["", f"Overall: **{'PASS' if report['passed'] else 'FAIL'}** "
              f"(run took {report['seconds']} s).", ""]
    return "\n".join(lines)
