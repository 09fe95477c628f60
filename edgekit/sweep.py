"""Sweeps: every combination of a recipe's ``sweep`` alternatives, and their Pareto front.

::

    OUT/sweep.json                 edgekit.sweep/1: candidates, their figures, the Pareto front
    OUT/report.md, OUT/report.html the comparison (the HTML has the Pareto plot)
    OUT/candidates/<name>/         one full run folder per candidate
    OUT/stages/<fingerprint>.json  finished stages shared by the candidates (one record each)
    OUT/tasks/<candidate>.<phase>.json  where and when each phase ran (edgekit.executor)

Candidates share finished stages through the stage cache: the float model is trained once, and
candidates that differ only in conversion reuse the compression. Where they run is the recipe's
``executor`` (:mod:`edgekit.executor`: this process, the default; :mod:`edgekit.executor_ray`:
a Ray cluster); either way this module assembles the result. A candidate that fails for its own
reasons is marked ``failed`` (with the phase and one line of why) and the others finish; the
Pareto front is over the finished ones.
A candidate is on the Pareto front when no other candidate is at least as accurate, as fast (p50
on the first bench target, within 3 %), as small raw and as small gzipped, and strictly better
in one of them.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from device_bench.atomicio import write_json, write_text
from edgekit.core.errors import CheckFailed, InputError
from edgekit.executor import CandidateOutcome, LocalExecutor, new_run_id, phases_of, schedule
from edgekit.executor import timeline as phase_timeline
from edgekit.executor_ray import RayExecutor, ray_search_pool
from edgekit.pipeline import Log, Pipeline, _stderr_log, check_out_dir, prepare_out_dir
from edgekit.recipe import Recipe
from edgekit.report_types import Report, as_report
from edgekit.sweep_progress import SweepProgress

SCHEMA = "edgekit.sweep/1"


def candidate_summary(name: str, params: dict[str, Any], run: str,
                      report: Report | dict[str, Any], targets: tuple[str, ...]) -> dict[str, Any]:
    """The figures of one candidate that the sweep compares.

    Args:
        name: Candidate name.
        params: The swept values.
        run: Its run folder, relative to the sweep folder.
        report: Its report (or its ``edgekit.report/1`` dict).
        targets: Bench targets.

    Returns:
        A JSON-ready dict (latency ``None`` where a target was not measured).

    Raises:
        InputError: ``report`` is not a report, or has no final ``.tflite`` entry.
    """
    report = as_report(report, f"report of candidate {name!r}")
    final_entry = report.final_entry
    if final_entry is None:
        raise InputError(f"report of candidate {name!r} has no final .tflite entry")
    latency: dict[str, float | None] = {}
    for t in targets:
        res = final_entry.bench.get(t)
        latency[t] = None if res is None else res.latency_ms.p50
    final = report.final
    return {
        "name": name,
        "params": params,
        "run": run,
        "accuracy": final.accuracy,
        "float_accuracy": final.float_accuracy,
        "accuracy_drop_points": final.accuracy_drop_points,
        "bytes": final.bytes,
        "gzip_bytes": final.gzip_bytes,
        "latency_ms": latency,
        "full_integer": final.full_integer,
        "passed": report.passed,
        "failed_budgets": list(report.failed_budgets),
        "status": "done",
    }


def failed_summary(name: str, params: dict[str, Any], run: str, outcome: CandidateOutcome,
                   targets: tuple[str, ...]) -> dict[str, Any]:
    """The row of a candidate that failed: no figures, the phase and why.

    Args:
        name: Candidate name.
        params: The swept values.
        run: Its run folder, relative to the sweep folder.
        outcome: How it ended.
        targets: Bench targets.

    Returns:
        A JSON-ready dict with the keys of :func:`candidate_summary` (figures None).
    """
    return {"name": name, "params": params, "run": run, "accuracy": None,
            "float_accuracy": None, "accuracy_drop_points": None, "bytes": None,
            "gzip_bytes": None, "latency_ms": dict.fromkeys(targets), "full_integer": None,
            "passed": False, "failed_budgets": [], "status": "failed",
            "failed_phase": outcome.phase, "error": outcome.error}


LATENCY_TOLERANCE = 0.03  # latencies within 3 % are the same figure (run-to-run noise)


def _no_worse(a: dict[str, Any], b: dict[str, Any], target: str | None) -> tuple[bool, bool]:
    """(a is no worse than b on every objective, a is strictly better on one)."""
    acc_a = a["accuracy"] if a["accuracy"] is not None else float("-inf")
    acc_b = b["accuracy"] if b["accuracy"] is not None else float("-inf")
    no_worse = acc_a >= acc_b and a["bytes"] <= b["bytes"] and a["gzip_bytes"] <= b["gzip_bytes"]
    better = acc_a > acc_b or a["bytes"] < b["bytes"] or a["gzip_bytes"] < b["gzip_bytes"]
    if target is not None:
        la, lb = a["latency_ms"][target], b["latency_ms"][target]
        no_worse = no_worse and la <= lb * (1 + LATENCY_TOLERANCE)
        better = better or la < lb * (1 - LATENCY_TOLERANCE)
    return no_worse, better


def pareto_front(candidates: list[dict[str, Any]], target: str | None) -> list[str]:
    """Names of the non-dominated candidates.

    Objectives: max held-out accuracy, min p50 latency on ``target`` (latencies within
    :data:`LATENCY_TOLERANCE` of each other count as equal), min raw size (memory), min gzip
    size (download; where pruning pays off). Latency counts only when every candidate has it.

    Args:
        candidates: Candidate summaries.
        target: The bench target whose p50 counts (None: ignore latency).

    Returns:
        Names on the front, in input order.
    """
    if target is not None and any(c["latency_ms"].get(target) is None for c in candidates):
        target = None
    front = []
    for c in candidates:
        dominated = False
        for other in candidates:
            if other is c:
                continue
            no_worse, better = _no_worse(other, c, target)
            if no_worse and better:
                dominated = True
                break
        if not dominated:
            front.append(c["name"])
    return front


def render_sweep_markdown(sweep: dict[str, Any]) -> str:
    """The sweep comparison for people (Markdown)."""
    targets = sweep["targets"]
    head = ["candidate", *sweep["axes"], "accuracy", "drop", "KiB", "gzip KiB",
            *(f"p50 {t} ms" for t in targets), "int", "budgets", "front"]
    lines = [f"# edgekit sweep — {len(sweep['candidates'])} candidates", "",
             "Pareto front: max held-out accuracy, min p50 latency"
             f"{f' ({targets[0]}, within 3 %)' if targets else ''}, min size raw and gzipped. "
             "Each candidate's full report is in its run folder.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in sweep["candidates"]:
        if c.get("status") == "failed":
            cells = [f"[{c['name']}]({c['run']}/)", *(str(c["params"].get(a)) for a in
                                                      sweep["axes"]),
                     *["—"] * (4 + len(targets) + 1),
                     f"FAILED ({c['failed_phase']}): {c['error']}", ""]
            lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
            continue
        lat = [("—" if c["latency_ms"].get(t) is None else f"{c['latency_ms'][t]:.4f}")
               for t in targets]
        cells = [f"[{c['name']}]({c['run']}/report.md)",
                 *(str(c["params"].get(a)) for a in sweep["axes"]),
                 f"{100 * c['accuracy']:.2f} %", f"{c['accuracy_drop_points']:.2f}",
                 f"{c['bytes'] / 1024:.1f}", f"{c['gzip_bytes'] / 1024:.1f}", *lat,
                 "yes" if c["full_integer"] else "no",
                 "pass" if c["passed"] else "FAIL: " + ", ".join(c["failed_budgets"]),
                 "**yes**" if c["pareto"] else ""]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"Overall: **{'PASS' if sweep['passed'] else 'FAIL'}** (every candidate must "
              "finish and meet every budget).", ""]
    return "\n".join(lines)


def open_executor(recipe: Recipe) -> LocalExecutor | RayExecutor:
    """The executor the recipe names (not yet connected).

    Args:
        recipe: The recipe.

    Returns:
        :class:`~edgekit.executor.LocalExecutor` or :class:`~edgekit.executor_ray.RayExecutor`.
    """
    return LocalExecutor() if recipe.executor.kind == "local" else RayExecutor(recipe.executor)


@contextlib.contextmanager
def search_pool_scope(recipe: Recipe, log: Log | None = None) -> Iterator[None]:
    """Within it, a run without a sweep scores channel-search proposals on its executor.

    ``executor: ray`` on a recipe without a sweep connects to the cluster only when a stage
    searches (``ChannelPrune`` with a ``target``): the stages run here, the search's proposals
    and measurements on the cluster (:func:`~edgekit.executor_ray.ray_search_pool`). Otherwise
    everything runs here, as it always does for ``executor: local``.

    Args:
        recipe: The recipe (no sweep).
        log: Progress sink.

    Yields:
        Nothing.

    Raises:
        InputError: The cluster cannot be reached or lacks what the targets need.
    """
    log = log or _stderr_log
    if recipe.executor.kind == "local":
        yield
        return
    if not any(isinstance(getattr(s, "target", None), dict) for s in recipe.stages):
        log("executor ray: this recipe has no sweep and no channel search; it runs here")
        yield
        return
    with ray_search_pool(recipe.executor, recipe.bench.targets, log):
        yield


def run_sweep(recipe: Recipe, out: str | os.PathLike[str], log: Log | None = None,
              resume: bool = False, progress: SweepProgress | None = None,
              ) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Runs every candidate of ``recipe.sweep`` on the recipe's executor and writes the comparison.

    Args:
        recipe: A recipe (with or without a sweep; without, there is one candidate).
        out: The sweep folder.
        log: Progress sink.
        resume: Reuse stages finished by an earlier invocation in ``out``.
        progress: The candidates' table (default: live on a terminal for a cluster executor,
            else plain lines through ``log``'s stream).

    Returns:
        (the ``edgekit.sweep/1`` dict, the finished candidates' reports by name).

    Raises:
        InputError: Bad recipe values, model or data, Ray missing, a cluster that does not
            answer, or a sweep folder some node cannot see (before any candidate runs).
        CheckFailed: Every candidate failed (sweep.json and report.md say why).
    """
    log = log or _stderr_log
    root = check_out_dir(out)
    candidates = recipe.candidates()
    jobs = schedule(candidates)
    executor = open_executor(recipe)
    executor.open(log)
    try:
        prepare_out_dir(root)
        executor.check(root, jobs)  # every node sees the folder (it stays empty until here)
        # Resolve inputs of the first candidate before writing anything (bad input fails here).
        Pipeline(candidates[0][2], root / "candidates" / candidates[0][0],
                 log=log).resolve_inputs()
        write_text(root / "recipe.yaml", recipe.to_yaml())
        targets = list(recipe.bench.targets)
        if progress is None:  # live on a terminal for a cluster (the local run logs its work)
            live = executor.kind != "local" and sys.stderr.isatty()
            progress = SweepProgress([j.name for j in jobs], targets[0] if targets else None,
                                     live=live, sink=None if live else log)
        run_id = new_run_id()
        outcomes = executor.run(jobs, root, run_id, resume, progress, log)
        progress.close()
    finally:
        executor.close()
    typed: dict[str, Report] = {}
    summaries = []
    for job in jobs:
        outcome = outcomes[job.name]
        cand_targets = job.recipe.bench.targets
        if outcome.ok:
            report = typed[job.name] = as_report(outcome.report, f"report of {job.name!r}")
            summary = candidate_summary(job.name, job.params, job.run, report, cand_targets)
        else:
            summary = failed_summary(job.name, job.params, job.run, outcome, cand_targets)
        summary["timeline"] = phase_timeline(root, run_id, job.name, phases_of(job))
        summaries.append(summary)
    done = [c for c in summaries if c["status"] == "done"]
    front = pareto_front(done, targets[0] if targets else None) if done else []
    for c in summaries:
        c["pareto"] = c["name"] in front
    sweep = {
        "schema": SCHEMA,
        "axes": {k: list(v) for k, v in recipe.sweep.items()},
        "targets": targets,
        "executor": executor.kind,
        "candidates": summaries,
        "pareto_front": front,
        "failed": [c["name"] for c in summaries if c["status"] == "failed"],
        "passed": all(c["passed"] for c in summaries),
    }
    write_json(root / "sweep.json", sweep)
    write_text(root / "report.md", render_sweep_markdown(sweep))
    if not done:
        first = summaries[0]
        raise CheckFailed(f"every candidate of the sweep failed (first: {first['name']}, "
                          f"{first['failed_phase']}: {first['error']}); see {root / 'report.md'}")
    _write_html(root, {**sweep, "candidates": done}, typed)
    failed = f", {len(sweep['failed'])} failed" if sweep["failed"] else ""
    log(f"sweep: {len(summaries)} candidates{failed}, Pareto front {front}; {root / 'report.md'}")
    return sweep, {name: report.to_dict() for name, report in typed.items()}


def _write_html(root: Path, sweep: dict[str, Any], reports: dict[str, Report]) -> None:
    """report.html: the sweep page, built around the most accurate front candidate."""
    from edgekit.report_html import write_html

    write_html(root / "report.html", reports[best_candidate(sweep)["name"]], sweep=sweep)


def best_candidate(sweep: dict[str, Any]) -> dict[str, Any]:
    """The most accurate candidate on the Pareto front (the sweep's headline run).

    Args:
        sweep: An ``edgekit.sweep/1`` dict.

    Returns:
        That candidate's summary.
    """
    done = [c for c in sweep["candidates"] if c.get("status", "done") == "done"]
    front = [c for c in done if c["pareto"]] or done
    return max(front, key=lambda c: c["accuracy"])
