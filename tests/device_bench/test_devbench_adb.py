"""device_bench.targets.adb and the benchmark_model output parser.

No phone exists where these tests run. The parser is tested on real ``benchmark_model`` output
copied from public repositories (data/benchmark_model/, sources in its README.md); the adb
target on its spec parser, core masks and the exact argument lists it would run; the device
facts script is run for real by this machine's ``sh``.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shlex
import subprocess
from pathlib import Path

import pytest

from device_bench.benchmark_model_output import BenchmarkModelOutput, parse_output
from device_bench.errors import BenchInputError, TargetError
from device_bench.runner import SCHEMA, BenchOptions
from device_bench.targets import get_target
from device_bench.targets.adb import (
    FACTS_SCRIPT,
    SPEC_FORM,
    AdbTarget,
    cores_mask,
    parse_benchmark_model_output,
    parse_cores,
    parse_device_facts,
)

DATA = Path(__file__).parent / "data" / "benchmark_model"

# What each capture printed, read off the text by eye (us and MB, as printed).
EXPECTED = {
    "tf2.4_android_mi11_yolov5s_int8.txt": BenchmarkModelOutput(
        init_us=1779, first_us=152949, warmup_avg_us=110690, inference_avg_us=95788.3, runs=50,
        warmup_runs=None, min_us=93066, max_us=99490, std_us=1284,
        memory_init_delta_mb=5.15625, memory_overall_delta_mb=36.9883),
    "yocto_qemuriscv64_mobilenet_v1_op_profiling.txt": BenchmarkModelOutput(
        init_us=17187, first_us=3512391, warmup_avg_us=3.51239e6, inference_avg_us=2.95034e6,
        runs=50, warmup_runs=1, min_us=2727568, max_us=3189954, std_us=109798,
        memory_init_delta_mb=4.21094, memory_overall_delta_mb=46.0859, threads=4,
        graph="./mobilenet_v1_1.0_224.tflite", model_file_mb=16.9008),
    "tf2.18_ti_am62x_ssd_mobilenet_v2_no_xnnpack.txt": BenchmarkModelOutput(
        init_us=6418, first_us=1041765, warmup_avg_us=1.04176e6, inference_avg_us=971535,
        runs=50, warmup_runs=1, min_us=911877, max_us=1112273, std_us=39112,
        memory_init_delta_mb=6.14844, memory_overall_delta_mb=109.848, threads=4,
        graph="/usr/share/oob-demo-assets/models/ssd_mobilenet_v2_coco.tflite", delegate="none",
        model_file_mb=67.3128),
    "nightly_gcp_c4a_aarch64_mobilenet_v2_percentiles.txt": BenchmarkModelOutput(
        init_us=6395, first_us=2761, warmup_avg_us=3243.58, inference_avg_us=2942.27, runs=337,
        warmup_runs=153, min_us=2605, max_us=20356, std_us=1190, median_us=2781, p5_us=2647,
        p95_us=3169, memory_init_delta_mb=39.4531, memory_overall_delta_mb=40.8281, threads=4,
        graph="mobilenet_v2_224.tflite", delegate="xnnpack", model_file_mb=13.9193),
}


def _capture(name: str) -> str:
    return (DATA / name).read_text(encoding="utf-8")


def test_every_capture_is_documented_and_tested() -> None:
    readme = (DATA / "README.md").read_text(encoding="utf-8")
    captures = sorted(p.name for p in DATA.glob("*.txt"))
    assert captures == sorted([*EXPECTED, "tf2.4_android_mi11_nnapi_failed.txt"])
    for name in captures:
        assert f"`{name}`" in readme


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_parser_reads_real_captures(name: str) -> None:
    assert parse_output(_capture(name)) == EXPECTED[name]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_parser_ignores_line_endings_and_log_prefixes(name: str) -> None:
    text = _capture(name)
    crlf = text.replace("\n", "\r\n")  # adb shell on old devices
    logcat = "\n".join(f"11-22 06:35:01.123  4242  4242 I tflite  : {line}"
                       for line in text.splitlines())
    assert parse_output(crlf) == EXPECTED[name]
    assert parse_output(logcat) == EXPECTED[name]


def test_bench_result_from_the_percentile_capture() -> None:
    result = parse_benchmark_model_output(
        _capture("nightly_gcp_c4a_aarch64_mobilenet_v2_percentiles.txt"))
    assert result["schema"] == SCHEMA
    assert result["latency_ms"] == {
        "init": 6.395, "first": 2.761, "mean": 2.94227, "std": 1.19, "min": 2.605,
        "p50": 2.781, "p90": None, "p99": None, "max": 20.356, "cv": None,
    }
    assert (result["runs"], result["warmup"], result["emulated"]) == (337, 153, False)
    assert result["runtime"] == {"interpreter": "benchmark_model", "version": None,
                                 "threads": 4, "delegate": "xnnpack"}
    # The memory line is a delta since the tool started, not a peak RSS: kept apart.
    assert result["memory"] == {"peak_rss_mb": None}
    assert result["benchmark_model"]["memory_delta_mb"] == {"init": 39.4531, "overall": 40.8281}
    assert result["benchmark_model"]["p95_us"] == 3169
    assert result["model"] == {"path": "mobilenet_v2_224.tflite", "sha256": None, "bytes": None,
                               "gzip_bytes": None}
    assert result["target"]["kind"] == "adb" and result["target"]["cpu"] is None
    assert result["energy"] is None


def test_bench_result_without_percentiles_leaves_them_null() -> None:
    result = parse_benchmark_model_output(_capture("tf2.4_android_mi11_yolov5s_int8.txt"))
    lat = result["latency_ms"]
    assert (lat["mean"], lat["std"], lat["min"], lat["max"]) == (95.7883, 1.284, 93.066, 99.49)
    assert lat["init"] == 1.779 and lat["first"] == 152.949
    assert lat["p50"] is None and lat["p90"] is None and lat["p99"] is None and lat["cv"] is None
    assert result["warmup"] is None and result["runtime"]["threads"] is None
    assert result["runtime"]["delegate"] is None and result["model"]["path"] is None


def test_bench_result_fills_the_model_block_from_the_local_file(tiny) -> None:
    result = parse_benchmark_model_output(
        _capture("tf2.18_ti_am62x_ssd_mobilenet_v2_no_xnnpack.txt"), tiny.int8)
    assert result["model"]["path"] == str(tiny.int8)
    assert result["model"]["sha256"] == hashlib.sha256(tiny.int8.read_bytes()).hexdigest()
    assert result["model"]["bytes"] == tiny.int8.stat().st_size
    assert result["runtime"]["delegate"] == "none"


def test_periodic_peak_memory_becomes_peak_rss() -> None:
    # No stored capture has this line; it is appended as benchmark_model.cc formats it
    # ("Overall peak memory footprint (MB) via periodic monitoring: " << peak_mem_mb).
    text = (_capture("nightly_gcp_c4a_aarch64_mobilenet_v2_percentiles.txt")
            + "INFO: Overall peak memory footprint (MB) via periodic monitoring: 93.2383\n")
    result = parse_benchmark_model_output(text)
    assert result["memory"]["peak_rss_mb"] == 93.2383
    assert result["benchmark_model"]["memory_delta_mb"]["overall"] == 40.8281


def test_failed_run_is_reported_with_its_last_line() -> None:
    with pytest.raises(BenchInputError) as err:
        parse_output(_capture("tf2.4_android_mi11_nnapi_failed.txt"))
    assert "no 'Inference timings in us:' line" in str(err.value)
    assert "'Benchmarking failed.'" in str(err.value)


def test_parser_rejects_two_runs_and_non_text() -> None:
    two = _capture("tf2.4_android_mi11_yolov5s_int8.txt") * 2
    with pytest.raises(BenchInputError, match="holds 2 runs"):
        parse_output(two)
    with pytest.raises(BenchInputError, match="must be text"):
        parse_output(b"count=1")  # type: ignore[arg-type]


@pytest.mark.parametrize("text, cores, mask", [
    ("4-7", (4, 5, 6, 7), "f0"),
    ("0", (0,), "1"),
    ("0,2,4-5", (0, 2, 4, 5), "35"),
    (" 6 - 7 , 6 ", (6, 7), "c0"),
    ("0-63", tuple(range(64)), "f" * 16),
])
def test_core_lists_and_masks(text: str, cores: tuple[int, ...], mask: str) -> None:
    assert parse_cores(text) == cores
    assert cores_mask(cores) == mask
    assert int(mask, 16) == sum(1 << c for c in cores)


@pytest.mark.parametrize("text", ["", "a", "7-4", "64", "1,,2", "-1", "0-64", "4-"])
def test_bad_core_lists(text: str) -> None:
    with pytest.raises(BenchInputError, match="cores must be a core list such as '4-7'"):
        parse_cores(text)


def test_spec_parsing(tmp_path: Path) -> None:
    tool = tmp_path / "benchmark_model"
    target = get_target(f"adb://192.168.1.20:5555?cores=4-7&benchmark_model={tool}")
    assert isinstance(target, AdbTarget) and target.kind == "adb"
    assert target.serial == "192.168.1.20:5555"
    assert target.cores == (4, 5, 6, 7) and target.mask == "f0"
    assert target.benchmark_model == str(tool)
    plain = AdbTarget.from_spec("adb://emulator-5554?python=/data/local/tmp/py/bin/python3")
    assert (plain.serial, plain.cores, plain.benchmark_model) == ("emulator-5554", None, None)
    assert plain.python == "/data/local/tmp/py/bin/python3"


@pytest.mark.parametrize("spec, why", [
    ("adb://", "no serial"),
    ("adb://R58M?core=4", "unknown option(s) 'core' (known: benchmark_model, cores, python)"),
    ("adb://R58M?cores=", "each option must be given once, with a value"),
    ("adb://R58M?cores=1&cores=2", "each option must be given once"),
    ("adb://R58M?cores=9-1", "cores must be a core list"),
    ("adb://-s", "adb serial must look like"),
    ("adb://a b", "adb serial must look like"),
])
def test_malformed_specs(spec: str, why: str) -> None:
    with pytest.raises(BenchInputError) as err:
        AdbTarget.from_spec(spec)
    assert str(err.value).startswith(f"adb target {spec!r}: ")
    assert why in str(err.value)
    assert str(err.value).endswith(f"expected {SPEC_FORM}")


def test_benchmark_model_command_is_pinned_and_quoted() -> None:
    target = AdbTarget("R58M1234ABC", cores="4-7")
    model = "/data/local/tmp/edgekit-Ab12Cd/m; rm -rf $(id) `x`.tflite"
    options = BenchOptions(threads=4, warmup=5, warmup_seconds=0.5, runs=200, min_seconds=2.0)
    argv = target.benchmark_model_argv("/data/local/tmp/edgekit-Ab12Cd/benchmark_model", model,
                                       options)
    assert argv == [
        "taskset", "f0", "/data/local/tmp/edgekit-Ab12Cd/benchmark_model",
        f"--graph={model}", "--num_threads=4", "--warmup_runs=5", "--warmup_min_secs=0.5",
        "--num_runs=200", "--min_secs=2", "--use_xnnpack=true",
        "--report_peak_memory_footprint=true",
    ]
    cmd = target.shell_command(argv)
    assert cmd[:4] == ["adb", "-s", "R58M1234ABC", "shell"] and len(cmd) == 5
    assert shlex.split(cmd[4]) == argv  # the device shell gets each element as one word
    unpinned = AdbTarget("R58M1234ABC").benchmark_model_argv(
        "/b", "/m.tflite", BenchOptions(xnnpack=False))
    assert unpinned[0] == "/b" and "--use_xnnpack=false" in unpinned
    assert not any(a.startswith("--num_threads") for a in unpinned)


def test_python_runner_command() -> None:
    target = AdbTarget("emulator-5554", cores=[0, 1], python="python3")
    argv = target.python_argv("/data/local/tmp/edgekit-X", "/data/local/tmp/edgekit-X/m.tflite",
                              BenchOptions(runs=20))
    assert argv == [
        "taskset", "3", "env", "PYTHONPATH=/data/local/tmp/edgekit-X",
        "PYTHONDONTWRITEBYTECODE=1", "python3", "-m", "device_bench",
        "--json", "/data/local/tmp/edgekit-X/result.json", "--target-kind", "adb",
        "--runs", "20", "--", "/data/local/tmp/edgekit-X/m.tflite",
    ]
    assert target.adb_command("push", "a b.tflite", "/data/x") == [
        "adb", "-s", "emulator-5554", "push", "a b.tflite", "/data/x"]


def test_input_file_needs_the_python_runner(tmp_path: Path, tiny) -> None:
    tool = tmp_path / "benchmark_model"
    tool.write_bytes(b"\x7fELF")
    target = AdbTarget("R58M", benchmark_model=str(tool), adb="/nonexistent/adb")
    with pytest.raises(BenchInputError, match="input_path is not supported with benchmark_model"):
        target.bench(str(tiny.int8), BenchOptions(input_path=str(tmp_path / "x.npy")))


def test_missing_files_are_bad_input_before_adb_runs(tmp_path: Path, tiny) -> None:
    with pytest.raises(BenchInputError, match=r"model '.*nope\.tflite' does not exist"):
        AdbTarget("R58M", adb="/nonexistent/adb").bench(str(tmp_path / "nope.tflite"),
                                                        BenchOptions())
    target = AdbTarget("R58M", benchmark_model=str(tmp_path / "bm"), adb="/nonexistent/adb")
    with pytest.raises(BenchInputError, match=r"benchmark_model '.*bm' does not exist"):
        target.bench(str(tiny.int8), BenchOptions())


def test_missing_adb_is_a_target_error(tiny) -> None:
    with pytest.raises(TargetError, match=r"adb \('/nonexistent/adb'\) not found; install"):
        AdbTarget("R58M", adb="/nonexistent/adb").bench(str(tiny.int8), BenchOptions())


def test_device_facts_script_runs_in_a_real_posix_shell() -> None:
    proc = subprocess.run(["sh", "-c", FACTS_SCRIPT], capture_output=True, text=True,
                          timeout=30, check=True)
    facts = parse_device_facts(proc.stdout, serial="R58M", cores=(0,))
    assert facts["kind"] == "adb" and facts["host"] == "R58M"
    assert facts["machine"] == platform.machine()
    possible = Path("/sys/devices/system/cpu/possible")
    if possible.exists():
        assert facts["cores"] == len(parse_cores(possible.read_text().strip()))
    governor = Path("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
    expected = governor.read_text().strip() if os.access(governor, os.R_OK) else None
    assert facts["governor"] == (expected or None)
    assert facts["os"] is None and facts["cpu"] is None  # no getprop: not Android
    assert facts["temperature_c"] is None and facts["throttled"] is None
