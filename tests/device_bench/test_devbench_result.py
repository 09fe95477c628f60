"""device_bench.result: every edgekit.bench/1 result a target writes reads back typed, unchanged.

The results come from real runs (the Python runner, qemu-aarch64 when it is installed, TFLite's
benchmark_model text in ``data/benchmark_model``, energy from the sysfs trees in
``data/energy``); the optional blocks are checked present and absent.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from module_by_path import load_module

from device_bench import energy, energy_sources
from device_bench.errors import BenchInputError, TargetError
from device_bench.result import (
    SCHEMA,
    ArmCheck,
    BenchmarkModelFigures,
    BenchResult,
    Energy,
    Latency,
)
from device_bench.runner import BenchOptions, run_benchmark
from device_bench.targets.adb import parse_benchmark_model_output

HERE = Path(__file__).parent
REPO = HERE.parents[1]
TOOL_OUTPUTS = sorted(p for p in (HERE / "data" / "benchmark_model").glob("*.txt")
                      if "failed" not in p.name)
FAST = BenchOptions(runs=20, min_seconds=0.05, warmup=2, warmup_seconds=0.0, windows=2)
CI = os.environ.get("CI", "").lower() == "true"


def _json_keys() -> Any:
    """tests/edgekit/json_keys.py (the key-structure helper both golden tests share)."""
    return load_module("json_keys", REPO / "tests" / "edgekit" / "json_keys.py")


def assert_round_trip(result: dict[str, Any]) -> BenchResult:
    """The result reads back into the types and writes the same JSON, key order included."""
    typed = BenchResult.from_dict(result)
    assert typed.to_dict() == result
    assert json.dumps(typed.to_dict()) == json.dumps(result)
    assert BenchResult.from_dict(json.loads(json.dumps(typed.to_dict()))) == typed
    return typed


@pytest.fixture(scope="module")
def local_result(tiny) -> dict[str, Any]:
    """A real measurement of the int8 model by the Python runner."""
    return run_benchmark(tiny.int8, FAST)


# ---- the runner's results -------------------------------------------------------------------


def test_runner_result_round_trips_and_keeps_the_golden_keys(local_result) -> None:
    typed = assert_round_trip(local_result)
    assert typed.energy is None and typed.arm is None and typed.benchmark_model is None
    assert typed.options == FAST.to_dict()
    assert len(typed.window_medians_ms) == FAST.windows
    keys = _json_keys()
    golden = json.loads(keys.BENCH_KEYS.read_text(encoding="utf-8"))
    got = keys.key_structure(local_result, keys.BENCH_OPAQUE)
    assert keys.ordered(keys.relax(got, keys.BENCH_MACHINE_FACTS)) == keys.ordered(
        keys.relax(golden, keys.BENCH_MACHINE_FACTS))


def test_runner_writes_the_same_json_from_the_command_line(tiny, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-m", "device_bench", "--json", str(out), "--runs", "10",
                    "--min-seconds", "0.02", "--", str(tiny.float32)], check=True, env=env,
                   capture_output=True)
    assert_round_trip(json.loads(out.read_text(encoding="utf-8")))


def test_profile_energy_estimate_round_trips(tiny) -> None:
    result = run_benchmark(tiny.int8, BenchOptions(runs=10, min_seconds=0.02, warmup=1,
                                                   energy="profile:rpi4b", energy_seconds=0.05))
    typed = assert_round_trip(result)
    assert typed.energy is not None and typed.energy.measured is False
    assert typed.energy.source == "profile:rpi4b" and typed.energy.window_s is None
    assert list(result["energy"]) == ["source", "measured", "mj_per_inference",
                                      "mj_per_inference_above_idle", "idle_w", "active_w",
                                      "detail"]


def test_measured_energy_round_trips(local_result, tmp_path: Path) -> None:
    root = tmp_path / "rapl"
    shutil.copytree(HERE / "data" / "energy" / "rapl-amd-zen", root, symlinks=True)
    source = energy_sources.RaplSource(str(root))
    assert source.available()
    block = energy.measure(source, lambda: None, seconds=0.01, idle_seconds=0.01, interval_s=0)
    typed_energy = Energy.from_dict(block)
    assert typed_energy.to_dict() == block and typed_energy.inferences == block["inferences"]
    result = copy.deepcopy(local_result)
    result["energy"] = block
    assert assert_round_trip(result).energy == typed_energy


# ---- other targets ----------------------------------------------------------------------------


@pytest.mark.parametrize("path", TOOL_OUTPUTS, ids=lambda p: p.stem)
def test_benchmark_model_results_round_trip(path: Path, tiny) -> None:
    """adb with TFLite's tool: no options or window medians, nulls where the tool is silent."""
    result = parse_benchmark_model_output(path.read_text(encoding="utf-8"), tiny.int8)
    typed = assert_round_trip(result)
    assert typed.options is None and typed.window_medians_ms is None
    assert typed.runtime.interpreter == "benchmark_model"
    assert isinstance(typed.benchmark_model, BenchmarkModelFigures)
    assert typed.latency_ms.p90 is None and typed.latency_ms.cv is None
    assert list(result)[-1] == "benchmark_model"


def test_benchmark_model_memory_delta_must_agree(tiny) -> None:
    result = parse_benchmark_model_output(TOOL_OUTPUTS[0].read_text(encoding="utf-8"))
    block = copy.deepcopy(result["benchmark_model"])
    block["memory_delta_mb"] = {"init": 1.0, "overall": -1.0}
    with pytest.raises(BenchInputError, match=r"memory_delta_mb must be .*got"):
        BenchmarkModelFigures.from_dict(block)


def _qemu_like(result: dict[str, Any], note: str | None) -> dict[str, Any]:
    """What QemuTarget.bench makes of the guest's runner result (target, memory, arm)."""
    out = copy.deepcopy(result)
    out["target"].update(kind="qemu", cpu="Cortex-A72 (emulated, qemu-aarch64 7.2.22)",
                         governor=None, temperature_c=None, throttled=None)
    peak, out["memory"]["peak_rss_mb"] = out["memory"]["peak_rss_mb"], None
    out["emulated"] = True
    counted = note is None
    out["arm"] = {
        "qemu": "7.2.22", "qemu_cpu": "cortex-a72",
        "board": "Raspberry Pi 4 Model B Rev 1.1 (emulated)",
        "sysroot": "py3.11-numpy2.4.6-litert2.3.0-qemu7.2.22-r1",
        "outputs_match_host": True, "max_abs_diff": 0.0, "integer_outputs": True,
        "instructions_per_inference": 502936 if counted else None,
        "instructions_per_segment": [502936, 502982, 502931] if counted else None,
        "instruction_runs": 30 if counted else None,
        "instruction_threads": 1 if counted else None,
        "instructions_note": note, "emulator_peak_rss_mb": peak,
    }
    return out


@pytest.mark.parametrize("note", [None, "qemu could not load the instruction-count plugin"])
def test_qemu_arm_block_round_trips(local_result, note: str | None) -> None:
    typed = assert_round_trip(_qemu_like(local_result, note))
    assert typed.emulated and typed.memory.peak_rss_mb is None
    assert isinstance(typed.arm, ArmCheck) and typed.arm.instructions_note == note
    assert list(typed.to_dict())[-1] == "arm"


def test_real_qemu_result_round_trips(tiny) -> None:
    from device_bench.targets import QemuTarget

    try:
        result = QemuTarget().bench(str(tiny.int8), FAST)
    except TargetError as e:
        if CI:
            pytest.fail(f"CI=true and qemu-aarch64 cannot run: {e}")
        pytest.skip(f"qemu-aarch64 cannot run here: {e}")
    typed = assert_round_trip(result)
    assert typed.target.kind == "qemu" and typed.arm is not None
    assert typed.arm.outputs_match_host is True


# ---- errors and construction ------------------------------------------------------------------


def test_wrong_schema_is_one_line(local_result) -> None:
    for schema in ("edgekit.report/1", None):
        bad = {**local_result, "schema": schema}
        with pytest.raises(BenchInputError) as err:
            BenchResult.from_dict(bad)
        assert str(err.value) == (f"bench result must have schema {SCHEMA!r}, got {schema!r}")
    with pytest.raises(BenchInputError, match=r"must have schema 'edgekit\.bench/1', got 'list'"):
        BenchResult.from_dict([1, 2])


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d.update(extra=1), "unknown key(s) ['extra'] in bench result; known keys: "
                                  "schema, model, target"),
    (lambda d: d["target"].pop("kind"), "missing key(s) ['kind'] in bench result.target"),
    (lambda d: d["latency_ms"].update(p50="fast"),
     "bench result.latency_ms.p50 must be a number or null, got 'fast'"),
    (lambda d: d.update(runs=True), "bench result.runs must be an integer or null, got True"),
    (lambda d: d.update(emulated=None), "bench result.emulated must be true or false, got None"),
    (lambda d: d["window_medians_ms"].append("x"),
     "bench result.window_medians_ms[2] must be a number, got 'x'"),
    (lambda d: d.update(energy=[]), "bench result.energy must be a mapping (bench result "
                                    "energy), got list"),
])
def test_bad_results_name_the_key(local_result, change, message: str) -> None:
    bad = copy.deepcopy(local_result)
    change(bad)
    with pytest.raises(BenchInputError) as err:
        BenchResult.from_dict(bad)
    assert str(err.value).startswith(message)
    assert "\n" not in str(err.value)


def test_constructor_checks_types_and_records_are_frozen(local_result) -> None:
    typed = BenchResult.from_dict(local_result)
    with pytest.raises(BenchInputError, match="bench result: runs must be an integer or null"):
        BenchResult(**{**vars(typed), "runs": "many"})
    with pytest.raises(BenchInputError, match="latency_ms must be a bench result latency_ms"):
        BenchResult(**{**vars(typed), "latency_ms": local_result["latency_ms"]})
    with pytest.raises(BenchInputError, match=r"schema must be 'edgekit\.bench/1'"):
        BenchResult(**{**vars(typed), "schema": "edgekit.bench/2"})
    with pytest.raises(AttributeError):
        typed.runs = 1  # type: ignore[misc]


def test_latency_stat_by_name(local_result) -> None:
    lat = Latency.from_dict(local_result["latency_ms"])
    assert lat.stat("p90") == local_result["latency_ms"]["p90"]
    with pytest.raises(BenchInputError, match="latency statistic must be one of init, first"):
        lat.stat("p95")


def test_result_module_needs_only_the_standard_library() -> None:
    code = ("import sys; import device_bench.result, device_bench.json_record; "
            "bad = sorted(m for m in ('numpy', 'tensorflow', 'edgekit') if m in sys.modules); "
            "print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.stdout.strip() == "[]"
