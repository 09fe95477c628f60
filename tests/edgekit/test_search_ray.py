"""A channel search's proposals and measurements on a real local Ray cluster (ray_cluster.py).

The same search (a MAC budget on a small conv stack) scored here and on the cluster accepts the
same cuts with the same held-out accuracies (up to one sample: a Ray worker runs TensorFlow
with other thread counts); every proposal is scored in a Ray worker, never in this process;
a latency search's measurements run as Ray tasks on the bench node; inside a sweep on the
cluster, the search runs in the candidate's build task and its proposals are nested tasks.
The whole latency search on the cluster is marked slow (``make test-all``).
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from ray_cluster import RayCluster, start_cluster

from edgekit.compress import ChannelPrune
from edgekit.compress.search_pool import LocalPool, current_pool, worker_id
from edgekit.executor_ray import ray_search_pool
from edgekit.executor_spec import ExecutorSpec
from edgekit.recipe import Recipe
from edgekit.sweep import search_pool_scope

FAST = {"epochs": 0, "proposal_batches": 5, "search_steps": 3, "augment_shift": 0}


@pytest.fixture(scope="module")
def cluster() -> RayCluster:
    with start_cluster(num_cpus=2) as c:
        yield c


@pytest.fixture(scope="module")
def conv_stack(digits8):
    """Three 3x3 conv + BN + ReLU blocks (48, 64, 64 channels) on 8x8 digits, 2 epochs."""
    from conv_stacks import trained_conv_stack

    return trained_conv_stack(digits8, (48, 64, 64), 2, "conv stack")


def _on_cluster(cluster: RayCluster, fn):
    """Runs ``fn()`` with the cluster's search pool in force; returns (result, pool stats)."""
    lines: list[str] = []
    spec = ExecutorSpec(kind="ray", address=cluster.address)
    with ray_search_pool(spec, ["local"], lines.append) as pool:
        assert current_pool() is pool
        result = fn()
        return result, pool.stats()


def _cuts(search: dict) -> list[tuple[str, list[int]]]:
    return [(s["group"], s["channels"]) for s in search["steps"]]


def test_proposals_scored_on_the_cluster_match_the_local_search(cluster, conv_stack, digits8):
    config = {"target": {"macs_ratio": 0.5}, **FAST, "search_steps": 2}
    local = ChannelPrune.from_config(config).apply(conv_stack, digits8).details["search"]
    assert local["pool"] == {"kind": "local", "tasks": sum(len(s["proposals"])
                                                           for s in local["steps"])}
    out, stats = _on_cluster(cluster, lambda: ChannelPrune.from_config(config).apply(
        conv_stack, digits8))
    ray = out.details["search"]
    assert _cuts(ray) == _cuts(local) and ray["searched_figure"] == local["searched_figure"]
    one_sample = 1.0 / ray["validation_samples"]
    for a, b in zip(local["steps"], ray["steps"], strict=True):
        for pa, pb in zip(a["proposals"], b["proposals"], strict=True):
            assert (pa["group"], pa["channels"]) == (pb["group"], pb["channels"])
            assert abs(pa["validation_accuracy"] - pb["validation_accuracy"]) <= one_sample + 1e-9
    proposals = [p for s in ray["steps"] for p in s["proposals"]]
    assert stats["kind"] == "ray" and stats["tasks"] == len(proposals) >= 3
    here = worker_id()
    workers = {p["worker"] for p in proposals}
    assert here not in workers and workers <= set(stats["workers"])
    assert all(p["worker"] == here for s in local["steps"] for p in s["proposals"])
    assert ray["pool"]["kind"] == "ray"  # what the report's notes read
    assert current_pool().kind == "local"  # the scope is gone with the connection


def test_measurements_run_as_ray_tasks_on_the_bench_node(cluster, conv_stack, digits8):
    """The search's cost meter, given the pool's ``measuring``: whole models compared
    round-robin and one layer's cost, every measurement a Ray task, none in this process."""
    from edgekit.compress.cost_table import CostMeter, layer_signature
    from edgekit.compress.search_target import parse_search_target

    def measure():
        meter = CostMeter(parse_search_target({"latency_ratio": 0.5, "on": "local"}),
                          digits8.x_train[:8], cache_dir=cluster.temp_dir / "costs",
                          wrap=current_pool().measuring)
        try:
            pair = meter.compare({"a": conv_stack, "b": conv_stack})
            sig = layer_signature(conv_stack.get_layer("c2"))
            return pair, meter.layer_costs([sig])[sig], meter.measurements
        finally:
            meter.close()

    (pair, layer_ms, measured), stats = _on_cluster(cluster, measure)
    assert set(pair) == {"a", "b"} and all(v > 0 for v in pair.values()) and layer_ms > 0
    assert stats["measurements"] == measured == 2 * 3 + 1  # 3 round-robin rounds, 1 layer
    assert stats["workers"] and worker_id() not in stats["workers"]


@pytest.mark.slow
def test_a_latency_search_measures_as_ray_tasks_on_the_bench_node(cluster, wide_stack, digits8):
    config = {"target": {"latency_ratio": 0.7, "on": "local"}, **FAST, "search_steps": 1,
              "max_layer_ratio": 0.9}
    out, stats = _on_cluster(cluster, lambda: ChannelPrune.from_config(config).apply(
        wide_stack, digits8))
    search = out.details["search"]
    assert search["searched_figure"] <= search["budget"]
    # every whole-model comparison and layer cost was measured by a Ray worker, not here
    assert stats["measurements"] == search["cost_table"]["measurements"] > 0
    assert worker_id() not in stats["workers"]


def _sweep_recipe(data: Path) -> dict:
    return {"model": "demo_cnn", "data": str(data),
            "train": {"epochs": 1, "learning_rate": 0.003, "batch_size": 8},
            "stages": [{"class_name": "ChannelPrune", "config": {
                "target": {"macs_ratio": 0.6}, **FAST, "search_steps": 1, "batch_size": 8}}],
            "convert": {"mode": "int8", "calibration_samples": 16, "float32_baseline": False},
            "bench": {"targets": ["local"], "runs": 5, "warmup": 1, "min_seconds": 0.01,
                      "windows": 1},
            "budgets": {"max_accuracy_drop": 100.0},
            "sweep": {"stages.0.config.target.macs_ratio": [0.5]}}


def test_in_a_ray_sweep_each_search_scores_its_proposals_as_nested_tasks(
        cluster, tmp_path, cli, digits8):
    data = tmp_path / "digits8.npz"
    np.savez(data, x=digits8.x_train, y=digits8.y_train)
    root = tmp_path / "sweep"
    root.mkdir()
    (root / "recipe.yaml").write_text(yaml.safe_dump(_sweep_recipe(data), sort_keys=False))
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = cli(["run", str(root / "recipe.yaml"), "--out", str(root / "out"),
                    "--executor", f"ray:{cluster.address}"])
    assert code == 0, err.getvalue()[-2000:]
    sweep = json.loads((root / "out" / "sweep.json").read_text())
    assert len(sweep["candidates"]) == 1 and not sweep.get("failed")
    for c in sweep["candidates"]:
        report = json.loads((root / "out" / c["run"] / "report.json").read_text())
        search = next(e["details"]["search"] for e in report["stages"]
                      if "search" in (e.get("details") or {}))
        build = json.loads((root / "out" / "tasks" / f"{c['name']}.build.json").read_text())
        assert search["pool"]["kind"] == "ray" and search["pool"]["tasks"] > 0
        # the proposals ran in other processes than the build task that searched
        assert str(build["pid"]) not in {w.rsplit(":", 1)[1] for w in search["pool"]["workers"]}
        assert search["searched_figure"] <= search["budget"]


def test_a_run_without_a_sweep_or_a_search_does_not_connect():
    recipe = Recipe.from_dict({"model": "demo_cnn", "executor": {"kind": "ray",
                                                                 "address": "127.0.0.1:1"}})
    lines: list[str] = []
    with search_pool_scope(recipe, lines.append):
        assert isinstance(current_pool(), LocalPool)
    # nothing listens at 127.0.0.1:1: a connection attempt would have raised
    assert lines == ["executor ray: this recipe has no sweep and no channel search; it runs here"]
