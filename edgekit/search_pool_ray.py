"""The channel search's pool on a Ray cluster: proposals and measurements as Ray tasks.

A latency search (:mod:`edgekit.compress.channel_search`) scores every proposal of a step
with a short fine-tune; under the Ray executor those fine-tunes are Ray tasks
(:class:`RaySearchPool`), spread over the cluster's CPUs, ``cpus_per_candidate`` each. Inside a
sweep the search runs in a candidate's build task and its proposals are nested tasks (a task
waiting on them lends its CPUs back to Ray meanwhile, so a full cluster does not deadlock);
``edgekit run RECIPE --executor ray`` without a sweep runs the stages in the driver and only the
proposals on the cluster.

The search's measurements go through the pool too, placed as the sweep's benchmarks are
(:func:`measure_options`): on an ``ssh://`` or ``adb://`` board they hold its resource of
capacity 1, so a search never measures beside another candidate's benchmark on that board;
``local`` holds every CPU of the bench node; ``qemu-aarch64`` one CPU anywhere. The ``.tflite``
travels as bytes, so the node that reaches the board needs no shared folder for it.

A worker that dies under a proposal is retried ``max_retries`` times (Ray's); an exception of
the proposal's own is raised in the search as it would be here.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgekit.compress.search_pool import worker_id
from edgekit.executor import bench_placement, board_resource

__all__ = ["PoolSpec", "RaySearchPool", "measure_options"]


@dataclass(frozen=True)
class PoolSpec:
    """Where a search's tasks go (picklable: it travels into a candidate's build task).

    Attributes:
        cpus: CPUs of each proposal task (the executor's ``cpus_per_candidate``).
        max_retries: Re-runs of a task whose worker died.
        bench_node_id: Ray node id of the node that runs ``local`` measurements (None: no
            ``local`` measurement was planned; one is then placed on the caller's node).
        bench_cpus: That node's CPUs (a ``local`` measurement holds them all).
    """

    cpus: float = 1.0
    max_retries: int = 2
    bench_node_id: str | None = None
    bench_cpus: float = 1.0


def measure_options(target: str, spec: PoolSpec) -> dict[str, Any]:
    """Ray task options for a benchmark or measurement on ``target``.

    Args:
        target: The device_bench target spec.
        spec: The pool's placement (bench node, its CPUs).

    Returns:
        ``num_cpus`` and ``resources`` or a node-affinity ``scheduling_strategy``.
    """
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    where = bench_placement(target)
    if where == "board":
        return {"num_cpus": 0, "resources": {board_resource(target): 1}}
    if where == "bench_node":
        node = spec.bench_node_id
        if node is None:
            import ray

            node = ray.get_runtime_context().get_node_id()
        return {"num_cpus": spec.bench_cpus, "scheduling_strategy":
                NodeAffinitySchedulingStrategy(node, soft=False)}
    return {"num_cpus": 1}


_TARGETS: dict[str, Any] = {}  # device_bench targets made in this worker process, by spec


def _measure_task(spec: str, method: str, blob: bytes, name: str, options: Any
                  ) -> tuple[dict[str, Any], str]:
    """Runs ``target.bench`` or ``target.check`` on a ``.tflite`` sent as bytes.

    Returns:
        (the target's result, ``host:pid`` of this worker).
    """
    from device_bench.targets import get_target

    target = _TARGETS.get(spec)
    if target is None:
        target = _TARGETS[spec] = get_target(spec)
    with tempfile.TemporaryDirectory(prefix="edgekit-measure-") as tmp:
        path = Path(tmp) / name
        path.write_bytes(blob)
        return getattr(target, method)(str(path), options), worker_id()


class _RemoteTarget:
    """A device_bench target whose ``bench`` and ``check`` run as placed Ray tasks."""

    def __init__(self, pool: RaySearchPool, spec: str) -> None:
        self.pool, self.spec = pool, spec

    def bench(self, model_path: str, options: Any) -> dict[str, Any]:
        """``target.bench`` on the node (and board) the placement gives."""
        return self.pool.measure(self.spec, "bench", model_path, options)

    def check(self, model_path: str, options: Any) -> dict[str, Any]:
        """``target.check`` (qemu's instruction count) where the placement gives."""
        return self.pool.measure(self.spec, "check", model_path, options)


class RaySearchPool:
    """Runs a search's proposals and measurements as Ray tasks (Ray already connected).

    Args:
        spec: CPUs per task, retries, the bench node.
    """

    kind = "ray"

    def __init__(self, spec: PoolSpec) -> None:
        import ray

        self.ray = ray
        self.spec = spec
        self.tasks = 0
        self.measurements = 0
        self.workers: set[str] = set()
        self._remote: dict[Callable[..., Any], Any] = {}

    def _remote_fn(self, fn: Callable[..., Any]) -> Any:
        if fn not in self._remote:  # made remote once: Ray exports each function once
            self._remote[fn] = self.ray.remote(fn)
        return self._remote[fn]

    def _wait(self, refs: list[Any]) -> list[Any]:
        """``ray.get`` of every ref; cancels the rest when one fails or the wait is interrupted."""
        try:
            return self.ray.get(refs)
        except BaseException:
            for ref in refs:
                self.ray.cancel(ref, force=False)
            raise

    def map(self, fn: Callable[[Any, Any], Any], items: Sequence[Any], common: Any) -> list[Any]:
        """``fn(item, common)`` for every item as Ray tasks; the results in order.

        ``common`` is put in the object store once and shared by every task.
        """
        if not items:
            return []
        shared = self.ray.put(common)
        task = self._remote_fn(fn)
        refs = [task.options(num_cpus=self.spec.cpus, max_retries=self.spec.max_retries,
                             retry_exceptions=False,
                             name=f"edgekit proposal {getattr(item, 'label', i)}"
                             ).remote(item, shared) for i, item in enumerate(items)]
        self.tasks += len(refs)
        results = self._wait(refs)
        self.workers.update(w for r in results if isinstance(w := getattr(r, "worker", None), str))
        return results

    def measure(self, spec: str, method: str, model_path: str, options: Any) -> dict[str, Any]:
        """One measurement of a ``.tflite`` on ``spec``, placed by :func:`measure_options`."""
        blob = Path(model_path).read_bytes()
        task = self._remote_fn(_measure_task)
        ref = task.options(**measure_options(spec, self.spec), max_retries=self.spec.max_retries,
                           retry_exceptions=False, name=f"edgekit measure {spec}"
                           ).remote(spec, method, blob, Path(model_path).name, options)
        result, worker = self._wait([ref])[0]
        self.measurements += 1
        self.workers.add(worker)
        return result

    def measuring(self, spec: str, target: Any) -> Any:
        """A stand-in for ``target`` whose measurements run as placed Ray tasks."""
        return _RemoteTarget(self, spec)

    def stats(self) -> dict[str, Any]:
        """``kind``, ``tasks`` (proposals), ``measurements``, ``workers`` (``host:pid``)."""
        return {"kind": self.kind, "tasks": self.tasks, "measurements": self.measurements,
                "workers": sorted(self.workers)}
