"""A short, deterministic fuzz run of every parser that reads users' files (part of ``make test``).

The same targets and inputs as ``make fuzz`` (``tests/fuzz/run_fuzz.py``, 100,000 inputs), a few
hundred inputs each, derandomized so that CI sees the same inputs every time: every input must
give a result or the documented one-line error; another exception, a hang or a dead interpreter
process fails the test (Hypothesis then shrinks the input and prints it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fuzz_targets
import pytest
from hypothesis import HealthCheck, given, settings

# Inputs per target: cheap parsers get more (the whole file runs in about 20 s on 2 cores).
EXAMPLES = {"tflite_inspect": 300, "tflite_load": 150, "recipe": 300, "array_file": 200,
            "image_folder": 40}


def _check(target: str, example: Any, workdir: Path) -> None:
    outcome = fuzz_targets.TARGETS[target].run(example, workdir)
    assert outcome.kind in ("ok", "refused"), f"{target}: {outcome.detail}"


def _fuzz(target: str, tmp_path: Path) -> None:
    @settings(max_examples=EXAMPLES[target], derandomize=True, database=None, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.function_scoped_fixture])
    @given(fuzz_targets.TARGETS[target].inputs())
    def body(example: Any) -> None:
        _check(target, example, tmp_path)

    body()


@pytest.fixture(scope="module", autouse=True)
def _stop_sandbox():
    yield
    fuzz_targets.SANDBOX.close()


def test_tflite_inspect_reader_never_crashes(tmp_path: Path) -> None:
    _fuzz("tflite_inspect", tmp_path)


def test_device_bench_loading_never_crashes_the_interpreter(tmp_path: Path) -> None:
    _fuzz("tflite_load", tmp_path)
    assert fuzz_targets.SANDBOX.starts == 1  # no worker had to be restarted: nothing crashed


def test_recipe_loader_never_crashes(tmp_path: Path) -> None:
    _fuzz("recipe", tmp_path)


def test_npz_and_npy_sources_never_crash(tmp_path: Path) -> None:
    _fuzz("array_file", tmp_path)


def test_image_folders_never_crash(tmp_path: Path) -> None:
    _fuzz("image_folder", tmp_path)


def test_seeds_are_real_files() -> None:
    """Each seed parses as what it is, so the mutations start from valid inputs."""
    import numpy as np

    from device_bench.tflite_check import check_tflite
    from edgekit.converters import inspect_tflite

    seeds = sorted(fuzz_targets.fuzz_inputs.SEEDS.glob("*.tflite"))
    assert len(seeds) >= 5
    for path in seeds:
        check_tflite(path.read_bytes(), str(path))
        assert inspect_tflite(path).ops
    with np.load(fuzz_targets.fuzz_inputs.SEEDS / "data.npz", allow_pickle=False) as z:
        assert set(z.files) == {"x", "y"}
    assert len(fuzz_targets.fuzz_inputs.recipe_texts()) >= 3
