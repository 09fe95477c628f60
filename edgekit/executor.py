"""Running a sweep's candidates: the schedule every executor follows, the phases, the local one.

A candidate runs in three phases, each a function here that any process can run (this one, or
a Ray worker: :mod:`edgekit.executor_ray`)::

    build   its stages (each reused when the stage cache has it) and conversions -> BuiltRun
    bench   every .tflite of the candidate on one target (one phase per target)  -> results
    report  report.json / report.md / report.html                                 -> the report

:func:`schedule` reads every candidate's plan (:mod:`edgekit.run_plan`) before anything runs.
Each stage belongs to the first candidate, in sweep order, whose plan holds it (its *owner*):
the owner computes it, and every other candidate that shares it waits until it is recorded in
the stage cache, then reuses it. So a shared stage runs once, before the candidates that share
it fan out. The local executor (candidates in order, in this process) meets every wait by
construction; a cluster executor starts a candidate once the stages it needs are recorded. Both
compute each stage in the same state (the recipe's seed set afresh, the same stages before it),
so their figures agree.

Each phase records where and when it ran in ``OUT/tasks/<candidate>.<phase>.json`` (node, pid,
attempt, start and end, the stages it recorded): the progress table, the sweep's ``timeline``
and the cluster executor's dependency tracking read these files.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from device_bench.atomicio import write_json
from device_bench.result import BenchResult
from device_bench.targets import get_target
from device_bench.targets.base import spec_scheme
from edgekit.core.errors import INPUT_ERRORS
from edgekit.pipeline import BuiltRun, Log, Pipeline
from edgekit.recipe import Recipe
from edgekit.run_plan import plan_run, shared_stages
from edgekit.stage_cache import StageCache

__all__ = ["CandidateJob", "CandidateOutcome", "LocalExecutor", "PhaseRecord", "SweepCache",
           "bench_phase", "bench_placement", "board_resource", "build_phase", "file_log",
           "new_run_id", "one_line", "report_phase", "schedule", "storage_probe", "timeline"]

TASKS = "tasks"  # OUT/tasks/<candidate>.<phase>.json
BUILD, REPORT = "build", "report"


def new_run_id() -> str:
    """A fresh id for one invocation of a sweep (tells this run's phase records from older)."""
    return uuid.uuid4().hex[:12]


def one_line(error: BaseException) -> str:
    """An exception as one line: its message (its type too, unless it is a user error).

    Args:
        error: The exception.

    Returns:
        The line (at most 300 characters).
    """
    text = (str(error).strip().splitlines() or [""])[0]
    if not isinstance(error, INPUT_ERRORS) or not text:
        text = f"{type(error).__name__}: {text}" if text else type(error).__name__
    return text[:300]


@dataclass(frozen=True)
class CandidateJob:
    """One candidate as the executors see it.

    Attributes:
        name: Candidate name.
        params: Its swept values.
        recipe: Its recipe (no sweep).
        run: Its run folder, relative to the sweep folder.
        fingerprints: Its planned stages' fingerprints, in order.
        needs: Stage fingerprint -> the earlier candidate that computes it (the owner); this
            candidate reuses those stages once they are recorded.
    """

    name: str
    params: dict[str, Any]
    recipe: Recipe
    run: str
    fingerprints: tuple[str, ...]
    needs: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CandidateOutcome:
    """How one candidate ended.

    Attributes:
        name: Candidate name.
        report: Its ``edgekit.report/1`` dict when it finished.
        error: One line, when it failed.
        phase: The phase that failed (``build``, ``bench TARGET``, ``report``).
    """

    name: str
    report: dict[str, Any] | None = None
    error: str | None = None
    phase: str | None = None

    @property
    def ok(self) -> bool:
        """True when the candidate finished (it has a report)."""
        return self.report is not None


def schedule(candidates: Sequence[tuple[str, dict[str, Any], Recipe]]) -> list[CandidateJob]:
    """The candidates as jobs, each with the stages it reuses from an earlier one.

    Args:
        candidates: ``Recipe.candidates()``.

    Returns:
        One job per candidate, in sweep order.

    Raises:
        InputError: A candidate cannot be planned (its model path does not exist).
    """
    plans = {name: plan_run(cand) for name, _, cand in candidates}
    owner: dict[str, str] = {}
    for name, plan in plans.items():
        for fp in plan.fingerprints:
            owner.setdefault(fp, name)
    shared = shared_stages(plans)
    return [CandidateJob(name, params, cand, f"candidates/{name}", plans[name].fingerprints,
                         {fp: owner[fp] for fp in plans[name].fingerprints
                          if fp in shared and owner[fp] != name})
            for name, params, cand in candidates]


# -- phase records ----------------------------------------------------------------------------
def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", text)


def phase_file(root: Path, name: str, phase: str) -> Path:
    """``OUT/tasks/<candidate>.<phase>.json``."""
    return root / TASKS / f"{_safe(name)}.{_safe(phase)}.json"


def read_record(path: Path) -> dict[str, Any] | None:
    """A phase record, or None when it is missing or unreadable (mid-rename, another run's)."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


class PhaseRecord:
    """Records one phase of a candidate while it runs (a context manager).

    On entry it writes node, pid, attempt (1, or one more than an unfinished attempt of the
    same run) and the start time; :meth:`add_stage` adds each stage the phase recorded in the
    stage cache; on exit it adds the end time and whether it succeeded. Every write is atomic.

    Args:
        root: The sweep folder.
        run_id: This invocation's id.
        name: Candidate name.
        phase: ``build``, ``bench TARGET`` or ``report``.
        node: Where it runs (an IP address, or ``local``).
    """

    def __init__(self, root: Path, run_id: str, name: str, phase: str, node: str) -> None:
        self.path = phase_file(root, name, phase)
        earlier = read_record(self.path) or {}
        attempt = 1
        if earlier.get("run_id") == run_id:
            attempt = int(earlier.get("attempt", 0)) + 1
        self.record: dict[str, Any] = {
            "run_id": run_id, "candidate": name, "phase": phase, "node": node,
            "pid": os.getpid(), "attempt": attempt,
            "pids": [*(earlier.get("pids", []) if attempt > 1 else []), os.getpid()],
            "started": time.time(), "finished": None, "ok": None, "stages": []}

    def __enter__(self) -> PhaseRecord:
        write_json(self.path, self.record)
        return self

    def add_stage(self, fp: str) -> None:
        """Notes a stage this phase recorded in the stage cache."""
        self.record["stages"].append(fp)
        write_json(self.path, self.record)

    def __exit__(self, kind: Any, error: BaseException | None, tb: Any) -> None:
        self.record.update(finished=time.time(), ok=error is None,
                           **({"error": one_line(error)} if error is not None else {}))
        write_json(self.path, self.record)


def timeline(root: Path, run_id: str, name: str, phases: Iterable[str]) -> dict[str, Any]:
    """Where and when each phase of a candidate ran in this invocation.

    Args:
        root: The sweep folder.
        run_id: This invocation's id.
        name: Candidate name.
        phases: The phases to read.

    Returns:
        Phase -> ``{node, started, finished, seconds, attempts, ok}`` (Unix seconds); phases
        that did not run in this invocation are left out.
    """
    out: dict[str, Any] = {}
    for phase in phases:
        rec = read_record(phase_file(root, name, phase))
        if rec is None or rec.get("run_id") != run_id:
            continue
        start, end = rec.get("started"), rec.get("finished")
        out[phase] = {"node": rec.get("node"), "started": start, "finished": end,
                      "seconds": None if end is None else round(end - start, 3),
                      "attempts": rec.get("attempt"), "ok": rec.get("ok")}
    return out


def file_log(path: Path) -> Log:
    """A progress sink that appends timestamped lines to ``path`` (a worker's run log)."""
    path.parent.mkdir(parents=True, exist_ok=True)

    def log(msg: str) -> None:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(f"{time.strftime('%H:%M:%S')} {msg}\n")

    return log


class SweepCache(StageCache):
    """A candidate's stage cache: it also sees the stages other candidates of this sweep
    recorded (``trusted``, even without resume), and tells ``listener`` of each it records.

    Args:
        root: The sweep folder.
        resume: See every record in ``root`` (``edgekit run --resume``).
        trusted: Fingerprints recorded by other processes of this invocation.
        listener: Called with each fingerprint this cache records.
    """

    def __init__(self, root: Path, resume: bool, trusted: Iterable[str] = (),
                 listener: Callable[[str], None] | None = None) -> None:
        super().__init__(root, resume=resume)
        self.trusted = set(trusted)
        self.listener = listener

    def lookup(self, fp: str) -> dict[str, Any] | None:
        """As :meth:`StageCache.lookup`, also finding trusted fingerprints."""
        hit = super().lookup(fp)
        if hit is None and fp in self.trusted and not self.resume:
            hit = StageCache(self.root, resume=True).lookup(fp)
        return hit

    def record(self, fp: str, artefact: Path, entry: Any) -> None:
        """As :meth:`StageCache.record`, then tells the listener."""
        super().record(fp, artefact, entry)
        if self.listener is not None:
            self.listener(fp)


# -- the phases (run here or on a worker) -----------------------------------------------------
def build_phase(job: CandidateJob, root: Path, run_id: str, node: str, *, resume: bool,
                log: Log, cache: SweepCache | None = None) -> BuiltRun:
    """Builds a candidate: its stages (reusing recorded ones) and conversions.

    Args:
        job: The candidate.
        root: The sweep folder.
        run_id: This invocation's id.
        node: Where this runs.
        resume: Reuse every recorded stage (``--resume``).
        log: Progress sink.
        cache: A cache shared with earlier candidates (the local executor); default: a fresh
            one that trusts ``job.needs``.

    Returns:
        The built run.
    """
    cache = cache or SweepCache(root, resume, trusted=job.needs)
    with PhaseRecord(root, run_id, job.name, BUILD, node) as rec:
        cache.listener = rec.add_stage
        try:
            return Pipeline(job.recipe, root / job.run, log=log, cache=cache).build()
        finally:
            cache.listener = None


def bench_phase(job: CandidateJob, root: Path, run_id: str, node: str, built: BuiltRun,
                target: str, *, log: Log) -> tuple[dict[str, dict[str, BenchResult]], float]:
    """Benchmarks a built candidate's ``.tflite`` files on one target.

    Returns:
        (target -> entry name -> result, seconds it took).
    """
    t0 = time.perf_counter()
    with PhaseRecord(root, run_id, job.name, f"bench {target}", node):
        results = Pipeline(job.recipe, root / job.run, log=log).bench(built, [target])
    return results, time.perf_counter() - t0


def report_phase(job: CandidateJob, root: Path, run_id: str, node: str, built: BuiltRun,
                 parts: Sequence[tuple[dict[str, dict[str, BenchResult]], float]], *,
                 log: Log) -> dict[str, Any]:
    """Writes a candidate's reports from its build and its bench results.

    Returns:
        The ``edgekit.report/1`` dict.
    """
    bench: dict[str, dict[str, BenchResult]] = {}
    for results, _ in parts:
        bench.update(results)
    seconds = built.seconds + sum(s for _, s in parts)
    with PhaseRecord(root, run_id, job.name, REPORT, node):
        report = Pipeline(job.recipe, root / job.run, log=log).finish(built, bench, seconds)
    return report.to_dict()


def phases_of(job: CandidateJob) -> list[str]:
    """A candidate's phases, in order."""
    return [BUILD, *(f"bench {t}" for t in job.recipe.bench.targets), REPORT]


# -- where benchmarks may run ------------------------------------------------------------------
BOARD_PREFIX = "edgekit_board_"


def board_resource(spec: str) -> str | None:
    """The cluster resource (capacity 1) that stands for the board a target spec names.

    Args:
        spec: A bench target spec.

    Returns:
        ``edgekit_board_ssh_HOST_PORT`` / ``edgekit_board_adb_SERIAL`` for ``ssh://`` and
        ``adb://`` targets (the user and options do not count: one board is one board), None
        for every other kind.

    Raises:
        BenchInputError: A malformed spec.
    """
    scheme = spec_scheme(spec)
    if scheme not in ("ssh://", "adb://"):
        return None
    target: Any = get_target(spec)
    key = (f"ssh_{target.host}_{target.port or 22}" if scheme == "ssh://"
           else f"adb_{target.serial}")
    return BOARD_PREFIX + re.sub(r"[^A-Za-z0-9]+", "_", key).strip("_")


def bench_placement(spec: str) -> str:
    """Where a target's benchmarks may run: ``board`` (hold the board's resource), ``bench_node``
    (``local``: the benchmarking node, alone), or ``anywhere`` (``qemu-aarch64`` counts
    instructions, which load does not change)."""
    scheme = spec_scheme(spec)
    if scheme in ("ssh://", "adb://"):
        return "board"
    return "bench_node" if scheme == "local" else "anywhere"


def storage_probe(path: str, token: str) -> str | None:
    """Checks, on a node, that the sweep folder is the driver's: the probe file the driver
    wrote there holds ``token``, and the folder takes a new file.

    Args:
        path: The probe file.
        token: What it must hold.

    Returns:
        None when it is, else why not (one line).
    """
    probe = Path(path)
    try:
        text = probe.read_text(encoding="utf-8")
    except OSError as e:
        return f"cannot read {str(probe)!r} ({e.strerror or e})"
    if text.strip() != token:
        return f"{str(probe)!r} holds another run's token (a different folder at this path)"
    mine = probe.with_name(f"{probe.name}.{socket.gethostname()}.{os.getpid()}")
    try:
        mine.write_text(token, encoding="utf-8")
        mine.unlink()
    except OSError as e:
        return f"cannot write in {str(probe.parent)!r} ({e.strerror or e})"
    return None


# -- the local executor -------------------------------------------------------------------------
class LocalExecutor:
    """Runs the candidates one after another in this process, sharing one stage cache.

    A candidate that fails with an error of its own is recorded as failed and the others go
    on; an interrupt (Ctrl-C, SIGTERM) stops the sweep.
    """

    kind = "local"
    node = "local"

    def open(self, log: Log) -> None:
        """Nothing to connect to."""

    def check(self, root: Path, jobs: Sequence[CandidateJob]) -> None:
        """This process writes and benchmarks everything itself: nothing to check."""

    def close(self) -> None:
        """Nothing to release."""

    def run(self, jobs: Sequence[CandidateJob], root: Path, run_id: str, resume: bool,
            progress: Any, log: Log) -> dict[str, CandidateOutcome]:
        """Runs every job in order.

        Args:
            jobs: From :func:`schedule`.
            root: The sweep folder.
            run_id: This invocation's id.
            resume: Reuse the stages an earlier invocation recorded.
            progress: The progress table (:class:`edgekit.sweep_progress.SweepProgress`).
            log: Progress sink.

        Returns:
            Candidate name -> outcome.
        """
        cache = SweepCache(root, resume)
        outcomes: dict[str, CandidateOutcome] = {}
        for i, job in enumerate(jobs):
            log(f"candidate {i + 1}/{len(jobs)}: {job.name}")
            phase = BUILD
            try:
                progress.update(job.name, "running", node=self.node, phase=phase)
                built = build_phase(job, root, run_id, self.node, resume=resume, log=log,
                                    cache=cache)
                parts = []
                for target in job.recipe.bench.targets:
                    phase = f"bench {target}"
                    progress.update(job.name, "running", node=self.node, phase=phase)
                    parts.append(bench_phase(job, root, run_id, self.node, built, target,
                                             log=log))
                phase = REPORT
                progress.update(job.name, "running", node=self.node, phase=phase)
                report = report_phase(job, root, run_id, self.node, built, parts, log=log)
            except Exception as e:  # the candidate's own failure: the others go on
                outcomes[job.name] = CandidateOutcome(job.name, error=one_line(e), phase=phase)
                progress.update(job.name, "failed", error=f"{phase}: {one_line(e)}")
                continue
            outcomes[job.name] = CandidateOutcome(job.name, report=report)
            progress.update(job.name, "done", report=report)
        return outcomes
