"""The Ray executor: a sweep's candidates as Ray tasks on an existing cluster.

``executor: {kind: ray, address: auto | HOST:PORT, cpus_per_candidate: N, max_retries: N,
bench_node: IP}`` (:mod:`edgekit.executor_spec`). Ray is an optional extra (``pip install
'edgekit[ray]'``), imported only here, inside the functions that need it.

Each candidate is three kinds of task, chained by their results (the phases of
:mod:`edgekit.executor`):

- ``build`` holds ``cpus_per_candidate`` CPUs. It is submitted once every shared stage it needs
  is recorded by the candidate that owns it (the driver reads the phase records), so a shared
  stage runs once, first, and the candidates then fan out.
- ``bench TARGET``, one per target, after the build:

  - an ``ssh://`` or ``adb://`` target holds the board's custom resource (``board_resource``:
    ``edgekit_board_ssh_HOST_PORT``, which the node that reaches the board declares with
    capacity 1 in ``ray start --resources``), so a board never runs two benchmarks at once;
  - ``local`` runs on the bench node (``bench_node``, default the driver's) and holds every CPU
    of it, so it never runs beside another candidate's training there, and no training starts
    there while it runs (on a one-machine cluster: local benchmarks wait for the machine to be
    free of builds, and builds wait for them);
  - ``qemu-aarch64`` (instruction counts, which load does not change) holds one CPU anywhere.
- ``report`` (one CPU) writes the candidate's reports.

Artefacts go through the sweep folder, which every node must see at the same path (a shared
mount on a cluster): checked at start on every node (``check``). A task whose worker
process or node dies runs again, ``max_retries`` times at most (Ray's ``max_retries``; an
exception of the candidate's own is not retried: ``retry_exceptions=False``), and the sweep
completes; a candidate that fails for its own reasons is reported failed and the others go on.
An interrupted driver cancels its tasks; ``edgekit run --resume`` continues from the stage
cache.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from device_bench.atomicio import write_text
from device_bench.interrupts import raise_if_interrupted
from edgekit.compress.search_pool import use_pool
from edgekit.core.errors import InputError
from edgekit.executor import (
    BUILD,
    CandidateJob,
    CandidateOutcome,
    bench_phase,
    bench_placement,
    board_resource,
    build_phase,
    file_log,
    one_line,
    phase_file,
    phases_of,
    read_record,
    report_phase,
    storage_probe,
)
from edgekit.executor_spec import ExecutorSpec
from edgekit.pipeline import BuiltRun, Log
from edgekit.search_pool_ray import PoolSpec, RaySearchPool, measure_options
from edgekit.stage_cache import StageCache
from edgekit.sweep_progress import SweepProgress

__all__ = ["INSTALL", "RayExecutor", "import_ray", "ray_search_pool"]

INSTALL = "pip install 'edgekit[ray]'"
POLL_S = 0.2
PROBE_TIMEOUT_S = 60.0
CONNECT_TIMEOUT_S = 5.0


def import_ray() -> Any:
    """Imports Ray (the optional extra).

    Returns:
        The ``ray`` module.

    Raises:
        InputError: Ray is not installed (the message names the install command).
    """
    try:
        import ray
    except ImportError:
        raise InputError(f"executor ray needs Ray, which is not installed: {INSTALL}") from None
    return ray


def _check_reachable(address: str) -> None:
    """Refuses, in seconds rather than Ray's minute of retries, an address nothing listens on.

    Raises:
        InputError: The TCP connection fails.
    """
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    try:
        with socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S):
            return
    except OSError as e:
        why = e.strerror or type(e).__name__
    raise InputError(f"executor ray: no Ray cluster at {address!r} ({why}); expected the head "
                     "node's HOST:PORT as `ray start --head` prints it, or address: auto")


@contextlib.contextmanager
def _own_signal_handlers() -> Iterator[None]:
    """Keeps this process's SIGINT/SIGTERM handlers (``ray.init`` replaces SIGTERM's with one
    that exits at once, which would skip edgekit's clean-up: device_bench.interrupts)."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in saved.items():
            if handler is not None:
                signal.signal(s, handler)


def _node_ip() -> str:
    import ray

    return str(ray.util.get_node_ip_address())


def _enter(cwd: str) -> None:
    """Runs a task in the driver's working folder, when this node has it (relative paths in
    recipes are the driver's)."""
    if os.path.isdir(cwd):
        os.chdir(cwd)


def _worker_log(root: str, job: CandidateJob) -> Log:
    return file_log(Path(root) / job.run / "run.log")


# The task bodies: plain functions, made remote with the driver's options (ray.remote(fn)).
def _build_task(job: CandidateJob, root: str, run_id: str, resume: bool, cwd: str,
                pool: PoolSpec) -> BuiltRun:
    _enter(cwd)
    # a channel search in this build scores its proposals as nested tasks on the cluster
    with use_pool(RaySearchPool(pool)):
        return build_phase(job, Path(root), run_id, _node_ip(), resume=resume,
                           log=_worker_log(root, job))


def _bench_task(job: CandidateJob, root: str, run_id: str, built: BuiltRun, target: str,
                cwd: str) -> tuple[dict[str, Any], float]:
    _enter(cwd)
    return bench_phase(job, Path(root), run_id, _node_ip(), built, target,
                       log=_worker_log(root, job))


def _report_task(job: CandidateJob, root: str, run_id: str, built: BuiltRun, cwd: str,
                 *parts: tuple[dict[str, Any], float]) -> dict[str, Any]:
    _enter(cwd)
    return report_phase(job, Path(root), run_id, _node_ip(), built, parts,
                        log=_worker_log(root, job))


def _error_line(error: BaseException) -> str:
    """One line for a failed task: the candidate's own exception, or what happened to it."""
    import ray

    cause = error
    while isinstance(cause, ray.exceptions.RayTaskError) and cause.cause is not None:
        cause = cause.cause
    if isinstance(cause, ray.exceptions.RayTaskError):
        return one_line(cause).split("\n")[0]
    if isinstance(cause, (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
                          ray.exceptions.OutOfMemoryError)):
        return f"its worker died and every retry was used ({type(cause).__name__})"
    return one_line(cause)


class RayExecutor:
    """Runs a sweep's candidates on a Ray cluster (see the module docstring).

    Args:
        spec: The recipe's executor (kind ``ray``).
    """

    kind = "ray"

    def __init__(self, spec: ExecutorSpec) -> None:
        self.spec = spec
        self.ray: Any = None
        self.bench_node_id: str | None = None
        self.bench_cpus = 1.0
        self.cwd = os.getcwd()
        self._tasks: tuple[Any, Any, Any] | None = None

    # -- connection and checks -----------------------------------------------------------
    def open(self, log: Log) -> None:
        """Connects to the cluster.

        Raises:
            InputError: Ray is missing, nothing listens at the address, or no cluster answers.
        """
        ray = import_ray()
        address = self.spec.address
        if address != "auto":
            _check_reachable(address)
        with _own_signal_handlers():
            try:
                ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR,
                         namespace="edgekit")
            except (ConnectionError, RuntimeError, ValueError) as e:
                raise InputError(f"executor ray: cannot connect to the Ray cluster at "
                                 f"{address!r} ({one_line(e)}); start one with `ray start "
                                 "--head` or set executor.address") from None
        self.ray = ray
        nodes = self._nodes()
        log(f"executor ray: {len(nodes)} node(s), "
            f"{sum(n['Resources'].get('CPU', 0) for n in nodes):g} CPUs "
            f"({', '.join(n['NodeManagerAddress'] for n in nodes)})")

    def _nodes(self) -> list[dict[str, Any]]:
        return [n for n in self.ray.nodes() if n.get("Alive")]

    def check(self, root: Path, jobs: Sequence[CandidateJob]) -> None:
        """Checks the cluster (:meth:`check_cluster`) and the sweep folder on every node
        (:meth:`check_storage`), before anything runs.

        Raises:
            InputError: One line naming what is wrong.
        """
        self.check_cluster(jobs)
        self.check_storage(root)

    def check_storage(self, root: Path) -> None:
        """Checks that every node reads and writes the sweep folder the driver does.

        Raises:
            InputError: A node cannot (one line naming it and why).
        """
        ray = self.ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        token = uuid.uuid4().hex
        probe = root.resolve() / f".edgekit-storage-{token[:8]}"
        write_text(probe, token)
        try:
            task = ray.remote(storage_probe)
            refs = {n["NodeManagerAddress"]: task.options(
                num_cpus=0, max_retries=0, name="edgekit storage probe",
                scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False),
            ).remote(str(probe), token) for n in self._nodes()}
            ready, _ = ray.wait(list(refs.values()), num_returns=len(refs),
                                timeout=PROBE_TIMEOUT_S)
            for ip, ref in refs.items():
                why = (ray.get(ref) if ref in ready else
                       f"the check did not finish within {PROBE_TIMEOUT_S:.0f} s")
                if why is not None:
                    raise InputError(f"storage {str(root.resolve())!r} is not usable on Ray node "
                                     f"{ip}: {why}; every node must see the sweep folder at the "
                                     "same path (a shared mount), or run the sweep in one")
        finally:
            probe.unlink(missing_ok=True)

    def check_cluster(self, jobs: Sequence[CandidateJob]) -> None:
        """Checks that the cluster can run these jobs: a node with enough CPUs for a
        candidate, the bench node for ``local`` targets, each board's resource (capacity 1).

        Raises:
            InputError: One line naming what is missing and how to add it.
        """
        # (a channel search's `on` is among the bench targets: edgekit.recipe adds it)
        self.check_targets(list(dict.fromkeys(t for j in jobs for t in j.recipe.bench.targets)))

    def check_targets(self, targets: Sequence[str]) -> None:
        """Checks the cluster for tasks of ``cpus_per_candidate`` CPUs that measure or bench on
        ``targets`` (see :meth:`check_cluster`).

        Raises:
            InputError: One line naming what is missing and how to add it.
        """
        nodes = self._nodes()
        most = max((n["Resources"].get("CPU", 0) for n in nodes), default=0)
        if most < self.spec.cpus_per_candidate:
            raise InputError(f"executor.cpus_per_candidate is {self.spec.cpus_per_candidate:g} "
                             f"but the largest Ray node has {most:g} CPUs")
        if any(bench_placement(t) == "bench_node" for t in targets):
            self._find_bench_node(nodes)
        totals = self.ray.cluster_resources()
        for target in targets:
            name = board_resource(target)
            if name is None:
                continue
            have = totals.get(name)
            if have is None:
                raise InputError(
                    f"bench target {target!r} is a board: the Ray cluster needs the resource "
                    f"{name!r} with capacity 1 on the node that reaches it (start that node "
                    f"with `ray start ... --resources '{{\"{name}\": 1}}'`)")
            if have != 1:
                raise InputError(f"board resource {name!r} has capacity {have:g} in the Ray "
                                 "cluster; a board must have capacity 1 (one benchmark at a time)")

    def _find_bench_node(self, nodes: list[dict[str, Any]]) -> None:
        want = self.spec.bench_node
        if want is None:
            node_id = self.ray.get_runtime_context().get_node_id()
            node = next((n for n in nodes if n["NodeID"] == node_id), None)
        else:
            node = next((n for n in nodes if n["NodeManagerAddress"] == want), None)
        if node is None:
            known = ", ".join(n["NodeManagerAddress"] for n in nodes)
            raise InputError(f"executor.bench_node {want or 'of the driver'!r} is not a live "
                             f"node of the Ray cluster (nodes: {known})")
        self.bench_node_id = node["NodeID"]
        self.bench_cpus = float(node["Resources"].get("CPU", 0))
        if self.bench_cpus < 1:
            raise InputError(f"the bench node {node['NodeManagerAddress']} has no CPU for "
                             "`local` benchmarks")

    def close(self) -> None:
        """Disconnects from the cluster (the cluster keeps running)."""
        if self.ray is not None and self.ray.is_initialized():
            self.ray.shutdown()

    # -- running ---------------------------------------------------------------------------
    def pool_spec(self) -> PoolSpec:
        """Where a channel search's proposals and measurements go on this cluster."""
        return PoolSpec(cpus=self.spec.cpus_per_candidate, max_retries=self.spec.max_retries,
                        bench_node_id=self.bench_node_id, bench_cpus=self.bench_cpus)

    def _submit(self, job: CandidateJob, root: Path, run_id: str, resume: bool) -> tuple[Any, Any]:
        """Submits a candidate's tasks; returns (its build's ref, its report's ref)."""
        if self._tasks is None:  # made remote once: Ray exports each function once
            self._tasks = (self.ray.remote(_build_task), self.ray.remote(_bench_task),
                           self.ray.remote(_report_task))
        build_task, bench_task, report_task = self._tasks
        retry = {"max_retries": self.spec.max_retries, "retry_exceptions": False}
        build = build_task.options(
            num_cpus=self.spec.cpus_per_candidate, name=f"edgekit build {job.name}", **retry,
        ).remote(job, str(root), run_id, resume, self.cwd, self.pool_spec())
        benches = [bench_task.options(
            name=f"edgekit bench {job.name} {t}", **measure_options(t, self.pool_spec()),
            **retry,
        ).remote(job, str(root), run_id, build, t, self.cwd) for t in job.recipe.bench.targets]
        report = report_task.options(
            num_cpus=1, name=f"edgekit report {job.name}", **retry,
        ).remote(job, str(root), run_id, build, self.cwd, *benches)
        return build, report

    def run(self, jobs: Sequence[CandidateJob], root: Path, run_id: str, resume: bool,
            progress: SweepProgress, log: Log) -> dict[str, CandidateOutcome]:
        """Runs every job on the cluster (see the module docstring).

        Args:
            jobs: From :func:`edgekit.executor.schedule`.
            root: The sweep folder.
            run_id: This invocation's id.
            resume: Reuse the stages an earlier invocation recorded.
            progress: The live table.
            log: Progress sink.

        Returns:
            Candidate name -> outcome.
        """
        root = root.resolve()
        ray = self.ray
        cache = StageCache(root, resume=True)
        ready_fps = {fp for j in jobs for fp in j.needs if resume and cache.lookup(fp)}
        pending = list(jobs)
        builds: dict[str, Any] = {}
        reports: dict[Any, CandidateJob] = {}
        built_done: set[str] = set()
        outcomes: dict[str, CandidateOutcome] = {}
        try:
            while pending or reports:
                raise_if_interrupted()
                self._follow(root, run_id, jobs, builds, outcomes, ready_fps, built_done,
                             progress)
                for job in list(pending):
                    waiting = [job.needs[fp] for fp in job.needs
                               if fp not in ready_fps and job.needs[fp] not in built_done]
                    if waiting:
                        progress.update(job.name, "queued",
                                        note=f"waits for {', '.join(dict.fromkeys(waiting))}")
                        continue
                    pending.remove(job)
                    builds[job.name], ref = self._submit(job, root, run_id, resume)
                    reports[ref] = job
                    progress.update(job.name, "queued", note="submitted")
                done, _ = ray.wait(list(reports), num_returns=len(reports), timeout=POLL_S) \
                    if reports else ([], [])
                for ref in done:
                    job = reports.pop(ref)
                    outcomes[job.name] = self._outcome(job, ref, root, run_id)
                    o = outcomes[job.name]
                    if o.ok:
                        progress.update(job.name, "done", report=o.report)
                    else:
                        progress.update(job.name, "failed", error=f"{o.phase}: {o.error}")
                progress.redraw()
        except BaseException:
            for ref in [*builds.values(), *reports]:
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)
            raise
        return outcomes

    def _follow(self, root: Path, run_id: str, jobs: Sequence[CandidateJob],
                builds: dict[str, Any], outcomes: dict[str, CandidateOutcome],
                ready_fps: set[str], built_done: set[str], progress: SweepProgress) -> None:
        """Reads the phase records of the submitted candidates: the stages now recorded, the
        builds that ended, and each running candidate's phase and node."""
        open_builds = [ref for name, ref in builds.items() if name not in built_done]
        if open_builds:
            ended, _ = self.ray.wait(open_builds, num_returns=len(open_builds), timeout=0)
            by_ref = {ref: name for name, ref in builds.items()}
            built_done.update(by_ref[r] for r in ended)
        for job in jobs:
            if job.name not in builds or job.name in outcomes:
                continue
            current = None
            for phase in phases_of(job):
                rec = read_record(phase_file(root, job.name, phase))
                if rec is None or rec.get("run_id") != run_id:
                    continue
                if phase == BUILD:
                    ready_fps.update(rec.get("stages", []))
                if rec.get("finished") is None:
                    current = rec
            if current is not None:
                progress.update(job.name, "running", node=str(current.get("node")),
                                phase=str(current.get("phase")),
                                attempt=int(current.get("attempt", 1)))

    def _outcome(self, job: CandidateJob, ref: Any, root: Path, run_id: str
                 ) -> CandidateOutcome:
        try:
            return CandidateOutcome(job.name, report=self.ray.get(ref))
        except self.ray.exceptions.RayError as e:
            phase = next((p for p in phases_of(job)
                          if (rec := read_record(phase_file(root, job.name, p))) is not None
                          and rec.get("run_id") == run_id and rec.get("ok") is not True),
                         BUILD)
            return CandidateOutcome(job.name, error=_error_line(e), phase=phase)


@contextlib.contextmanager
def ray_search_pool(spec: ExecutorSpec, targets: Sequence[str], log: Log
                    ) -> Iterator[RaySearchPool]:
    """Connects to the cluster and, within, runs channel searches' proposals on it.

    For a run without a sweep (``edgekit run RECIPE --executor ray``): the stages run in this
    process, and a channel search's proposals and measurements run as Ray tasks.

    Args:
        spec: The recipe's executor (kind ``ray``).
        targets: The targets the run measures on (checked like a sweep's).
        log: Progress sink.

    Yields:
        The pool in force.

    Raises:
        InputError: Ray is missing, the cluster cannot be reached, or it lacks what the
            targets need (one line).
    """
    executor = RayExecutor(spec)
    executor.open(log)
    try:
        executor.check_targets(targets)
        with use_pool(RaySearchPool(executor.pool_spec())) as pool:
            yield pool
    finally:
        executor.close()

