"""Writes the "ray-sweep" section of BENCHMARKS.md: an 8-candidate sweep on the local executor
and on a Ray cluster on this machine, Ray's scheduling overhead per candidate, and on paper the
sweep's critical path on N nodes against its serial time.

Run: ``python bench/ray_sweep.py --out BENCHMARKS.md`` (a few minutes on 2 cores; it starts and
stops its own one-node Ray cluster on 127.0.0.1, as the tests do: tests/edgekit/ray_cluster.py).

- The sweep: demo_cnn on the real 8x8 digits (3 epochs), Prune at 4 sparsities x 2 conversion
  modes (int8, int16x8) = 8 candidates, benchmarked on ``local`` (20 runs). Both executors run
  it as ``edgekit run`` in a fresh process (TensorFlow's import counted in both), into a fresh
  folder; the Ray cluster has ``--num-cpus 2`` (two candidates build at once).
- Scheduling overhead: the same chain of three tasks a candidate is (build: 1 CPU; bench on the
  bench node holding all its CPUs; report: 1 CPU), each doing nothing, one chain at a time
  (submit to result, median of 8), then 8 chains at once; plus, from the real Ray sweep, the
  gap between one phase's end and the next phase's start where nothing else held the CPUs.
- On paper: each candidate's phase times from the local run (its ``timeline``), and the times
  of the stages it computes for others (their report entries' ``seconds``); a candidate can
  start once the shared stages it needs are recorded. The serial time is their sum; the
  makespan on N nodes is a greedy list schedule in sweep order (a candidate occupies one node
  for its build, bench and report); N = infinity is the critical path: shared stages + the
  longest candidate.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "tests" / "edgekit"))

COMMAND = "python bench/ray_sweep.py --out BENCHMARKS.md"
SPARSITIES = [0.3, 0.5, 0.6, 0.7]
MODES = ["int8", "int16x8"]


def recipe(data: Path) -> dict[str, Any]:
    """The 8-candidate sweep."""
    return {"model": "demo_cnn", "data": str(data),
            "train": {"epochs": 3, "learning_rate": 0.003, "batch_size": 8},
            "stages": [{"class_name": "Prune", "config": {"final_sparsity": 0.3, "epochs": 1,
                                                          "batch_size": 8}}],
            "convert": {"mode": "int8", "calibration_samples": 32, "float32_baseline": False,
                        "int8_baseline": False},
            "bench": {"targets": ["local"], "runs": 20, "warmup": 2, "min_seconds": 0.05},
            "budgets": {"max_accuracy_drop": 100.0},
            "sweep": {"stages.0.config.final_sparsity": SPARSITIES, "convert.mode": MODES}}


def run_sweep(recipe_path: Path, out: Path, env: dict[str, str], *flags: str
              ) -> tuple[float, dict[str, Any]]:
    """``edgekit run`` in a fresh process; returns (wall seconds, sweep.json)."""
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "edgekit", "run", str(recipe_path), "--out",
                           str(out), *flags], cwd=REPO, env=env, capture_output=True, text=True,
                          check=False)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"edgekit run {' '.join(flags)} failed: {done.stderr[-2000:]}")
    return wall, json.loads((out / "sweep.json").read_text())


def _noop(*_: Any) -> int:
    return 0


def scheduling_overhead(address: str) -> dict[str, float]:
    """Empty candidate chains through Ray (see the module docstring)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    ray.init(address=address, log_to_driver=False, logging_level="ERROR")
    try:
        node = ray.get_runtime_context().get_node_id()
        cpus = next(n["Resources"]["CPU"] for n in ray.nodes() if n["NodeID"] == node)
        task = ray.remote(_noop)
        build = task.options(num_cpus=1, max_retries=2, retry_exceptions=False)
        bench = task.options(num_cpus=cpus, scheduling_strategy=NodeAffinitySchedulingStrategy(
            node, soft=False))
        report = task.options(num_cpus=1)

        def chain() -> Any:
            b = build.remote()
            return report.remote(b, bench.remote(b))

        ray.get(chain())  # warm: the workers exist
        one = []
        for _ in range(8):
            t0 = time.perf_counter()
            ray.get(chain())
            one.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        ray.get([chain() for _ in range(8)])
        many = time.perf_counter() - t0
    finally:
        ray.shutdown()
    return {"chain_median_s": statistics.median(one), "chain_max_s": max(one),
            "eight_at_once_s": many}


def phase_gaps(sweep: dict[str, Any]) -> list[float]:
    """Gaps inside each Ray candidate between one phase's end and the next one's start."""
    gaps = []
    for c in sweep["candidates"]:
        phases = sorted(c["timeline"].values(), key=lambda p: p["started"])
        for a, b in itertools.pairwise(phases):
            gaps.append(max(0.0, b["started"] - a["finished"]))
    return gaps


def paper_schedule(sweep: dict[str, Any], out: Path, jobs: list[Any],
                   nodes: list[int | None]) -> dict[int | None, float]:
    """Makespans of the local run's candidates on N nodes (None: one node per candidate; 0:
    serial)."""
    duration = {c["name"]: sum(p["seconds"] for p in c["timeline"].values())
                for c in sweep["candidates"]}
    # When, after its start, each candidate has recorded each stage it computed.
    recorded: dict[str, tuple[str, float]] = {}
    for job in jobs:
        report = json.loads((out / job.run / "report.json").read_text())
        keras_entries = [e for e in report["stages"] if e["kind"] != "tflite"]
        at = 0.0
        for fp, entry in zip(job.fingerprints, keras_entries, strict=True):
            if "reused" not in entry:
                at += entry["seconds"]
                recorded[fp] = (job.name, at)
    result: dict[int | None, float] = {0: sum(duration.values())}
    for n in nodes:
        free = [0.0] * (n or len(jobs))
        start: dict[str, float] = {}
        for job in jobs:
            ready = max((start[recorded[fp][0]] + recorded[fp][1] for fp in job.needs
                         if fp in recorded), default=0.0)
            i = min(range(len(free)), key=lambda k: free[k])
            start[job.name] = max(ready, free[i])
            free[i] = start[job.name] + duration[job.name]
        result[n] = max(free)
    return result


def measure() -> str:
    """Runs everything; returns the section's Markdown."""
    import numpy as np
    import yaml
    from ray_cluster import start_cluster
    from sections import machine_line
    from sklearn.datasets import load_digits

    work = Path(tempfile.mkdtemp(prefix="ray_sweep_bench"))
    d = load_digits()
    data = work / "digits8.npz"
    np.savez(data, x=(d.images / 16.0).astype(np.float32)[..., None], y=d.target)
    path = work / "sweep.yaml"
    path.write_text(yaml.safe_dump(recipe(data), sort_keys=False))
    env = {**os.environ}
    env.pop("RAY_ADDRESS", None)
    local_wall, local = run_sweep(path, work / "local", env)
    with start_cluster(num_cpus=2) as cluster:
        ray_wall, ray = run_sweep(path, work / "ray", cluster.env,
                                  "--executor", f"ray:{cluster.address}")
        overhead = scheduling_overhead(cluster.address)
    same = all(a["accuracy"] == b["accuracy"] and a["bytes"] == b["bytes"]
               for a, b in zip(local["candidates"], ray["candidates"], strict=True))
    gaps = phase_gaps(ray)
    from edgekit.executor import schedule
    from edgekit.recipe import Recipe

    jobs = schedule(Recipe.load(path).candidates())
    plan = paper_schedule(local, work / "local", jobs, [1, 2, 4, 8, None])
    n = len(local["candidates"])
    rows = [f"| {label} | {plan[key]:.1f} | {plan[0] / plan[key]:.2f} |"
            for key, label in ((1, "1"), (2, "2"), (4, "4"), (8, "8"), (None, f"∞ (≥ {n})"))]
    return "\n".join([
        "## Sweeps on a Ray cluster (issue 16)",
        "",
        f"Command: `{COMMAND}` ({dt.date.today().isoformat()}; {machine_line()}; other work "
        "was running on this machine). 8 candidates: demo_cnn on 8x8 digits (3 epochs), Prune "
        f"at {SPARSITIES} x {MODES}, bench `local` 20 runs (2 warm-up).",
        "",
        "| executor | wall time (s) | per candidate (s) |",
        "|---|---|---|",
        f"| local (one process) | {local_wall:.1f} | {local_wall / n:.1f} |",
        f"| Ray, one node, `--num-cpus 2` | {ray_wall:.1f} | {ray_wall / n:.1f} |",
        "",
        f"Same accuracies and sizes on both executors: {'yes' if same else 'NO'}. On one "
        "2-core machine Ray can only overlap two candidates' builds, each worker imports "
        "TensorFlow once, and `local` benchmarks wait for the node to be free of builds.",
        "",
        "Ray's scheduling overhead per candidate (a candidate's chain of build -> bench -> "
        "report tasks, each doing nothing): "
        f"{overhead['chain_median_s'] * 1000:.0f} ms median (max "
        f"{overhead['chain_max_s'] * 1000:.0f} ms) one chain at a time; 8 chains at once "
        f"{overhead['eight_at_once_s']:.2f} s ({overhead['eight_at_once_s'] / 8 * 1000:.0f} ms "
        "per candidate). In the real sweep, gaps between a candidate's consecutive phases: "
        f"median {statistics.median(gaps) * 1000:.0f} ms, max {max(gaps):.1f} s (these include "
        "waiting for the CPUs other candidates held). Goal: under 1 s per candidate.",
        "",
        "On paper, from the local run's phase times: makespan on N nodes (a candidate holds "
        "one node for its build, bench and report; it starts once the shared stages it needs "
        f"are recorded). Serial time {plan[0]:.1f} s.",
        "",
        "| nodes | makespan (s) | speed-up vs serial |",
        "|---|---|---|",
        *rows,
        "",
    ])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="BENCHMARKS.md")
    args = parser.parse_args()
    from sections import write_section

    markdown = measure()
    write_section(args.out, "ray-sweep", markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
