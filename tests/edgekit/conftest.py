"""A real, short pipeline run shared by the pipeline and CLI tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

FAST_RECIPE = {
    "model": "demo_cnn",
    "data": "digits",
    "train": {"epochs": 4},
    "stages": [
        {"class_name": "Prune", "config": {"final_sparsity": 0.8, "epochs": 4}},
        {"class_name": "QAT", "config": {"epochs": 2}},
    ],
    "convert": {"mode": "int8", "io": "int8", "calibration_samples": 64},
    "bench": {"targets": ["local"], "runs": 20, "warmup": 2, "min_seconds": 0.05},
    "budgets": {"max_accuracy_drop": 50.0, "require_int8": True,
                "max_latency_ms": {"local": 1000.0}},
}


def run_cli(args: list[str]) -> int:
    """Runs the edgekit CLI in-process and returns its exit code."""
    from edgekit.cli import main

    return main(args)


@pytest.fixture(scope="session")
def cli():
    """The CLI entry point: ``cli([...]) -> exit code``."""
    return run_cli


@pytest.fixture(scope="session")
def fast_recipe() -> dict:
    """A copy of the short recipe the shared run uses."""
    return json.loads(json.dumps(FAST_RECIPE))


@pytest.fixture(scope="session")
def fast_run(tmp_path_factory) -> tuple[Path, dict]:
    """``edgekit run`` of a short recipe: (run folder, report)."""
    root = tmp_path_factory.mktemp("fast_run")
    recipe = root / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(FAST_RECIPE))
    out = root / "out"
    code = run_cli(["run", str(recipe), "--out", str(out)])
    assert code == 0
    return out, json.loads((out / "report.json").read_text())


@pytest.fixture(scope="session")
def wide_stack(digits8):
    """Two 3x3 conv blocks of 128 channels on 8x8 digits, 1 epoch: about 10 M MACs, so compute,
    not the per-call cost of an invoke (several microseconds on a loaded machine), dominates its
    int8 latency and a cut measures as faster however busy the machine is."""
    from conv_stacks import trained_conv_stack

    return trained_conv_stack(digits8, (128, 128), 1, "wide stack")
