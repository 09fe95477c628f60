"""device_bench.targets: the registry and the local (fresh-process) target."""

from __future__ import annotations

import stat
import sys
from pathlib import Path

import pytest

from device_bench.errors import BenchInputError, TargetError
from device_bench.runner import SCHEMA, BenchOptions
from device_bench.targets import KNOWN_SPECS, LocalTarget, Target, get_target

FAST = BenchOptions(runs=20, min_seconds=0.05, warmup=3, warmup_seconds=0.01)


def test_get_target_local() -> None:
    target = get_target("local")
    assert isinstance(target, LocalTarget)
    assert isinstance(target, Target)
    assert target.kind == "local"


@pytest.mark.parametrize("spec", ["foo", "", "LOCAL", "qemu-aarch64x", "ssh:/pi@host"])
def test_get_target_unknown_lists_known_kinds(spec: str) -> None:
    with pytest.raises(BenchInputError) as err:
        get_target(spec)
    assert str(err.value) == (
        f"unknown target {spec!r}; expected one of: local, ssh://USER@HOST[:PORT], "
        "adb://SERIAL, qemu-aarch64[:CPU]"
    )
    assert ", ".join(KNOWN_SPECS) in str(err.value)


def test_local_target_benchmarks_in_a_fresh_process(tiny) -> None:
    result = LocalTarget().bench(str(tiny.int8), FAST)
    assert result["schema"] == SCHEMA
    assert result["target"]["kind"] == "local"
    assert result["model"]["path"] == str(tiny.int8)
    assert result["runs"] >= 20
    assert BenchOptions.from_dict(result["options"]) == FAST
    # The child never loaded TensorFlow (this test process holds ~800 MB of it): numpy and the
    # interpreter take ~60 MB. ru_maxrss would have inherited the parent's peak across exec.
    assert result["memory"]["peak_rss_mb"] < 250


def test_local_target_command_is_an_argument_list(tiny) -> None:
    cmd = LocalTarget().command(str(tiny.int8), BenchOptions(runs=20, threads=2), "/tmp/o.json")
    assert cmd[:3] == [sys.executable, "-m", "device_bench"]
    assert cmd[-2:] == ["--", str(tiny.int8)]
    assert ["--runs", "20"] == cmd[cmd.index("--runs"):cmd.index("--runs") + 2]
    assert ["--threads", "2"] == cmd[cmd.index("--threads"):cmd.index("--threads") + 2]


def test_local_target_model_named_like_an_option(tiny, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    odd = tmp_path / "-odd.tflite"
    odd.write_bytes(tiny.int8.read_bytes())
    result = LocalTarget().bench("-odd.tflite", FAST)
    assert result["model"]["path"] == "-odd.tflite"


def test_local_target_child_input_errors_become_bench_input_errors(
        tmp_path: Path, corrupt_model: Path) -> None:
    with pytest.raises(BenchInputError) as err:
        LocalTarget().bench(str(tmp_path / "missing.tflite"), FAST)
    assert str(err.value).startswith("model ")
    assert "does not exist" in str(err.value)
    with pytest.raises(BenchInputError, match="is not a valid TFLite flatbuffer"):
        LocalTarget().bench(str(corrupt_model), FAST)


def _fake_python(path: Path, body: str) -> str:
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_local_target_child_failure_is_a_target_error(tmp_path: Path) -> None:
    crash = _fake_python(tmp_path / "crash", "echo 'noise' >&2; echo 'boom: out of memory' >&2; "
                                             "exit 3")
    with pytest.raises(TargetError, match=r"failed \(exit 3\): boom: out of memory$"):
        LocalTarget(python=crash).bench("m.tflite", FAST)
    silent = _fake_python(tmp_path / "silent", "exit 0")
    with pytest.raises(TargetError, match="wrote no valid JSON result"):
        LocalTarget(python=silent).bench("m.tflite", FAST)


def test_local_target_timeout(tmp_path: Path) -> None:
    slow = _fake_python(tmp_path / "slow", "exec sleep 10")
    with pytest.raises(TargetError, match=r"timed out after 0\.3 s"):
        LocalTarget(timeout_s=0.3, python=slow).bench("m.tflite", FAST)


@pytest.mark.parametrize("timeout", [0, -1, True, "10"])
def test_local_target_rejects_bad_timeout(timeout: object) -> None:
    with pytest.raises(BenchInputError, match="timeout_s must be a number > 0"):
        LocalTarget(timeout_s=timeout)  # type: ignore[arg-type]


def test_local_target_rejects_non_options(tiny) -> None:
    with pytest.raises(BenchInputError, match="options must be BenchOptions"):
        LocalTarget().bench(str(tiny.int8), {"runs": 20})  # type: ignore[arg-type]


def test_local_target_relays_child_warnings(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    # argv of the child: -m device_bench --json OUT ...: $4 is where the result goes.
    child = _fake_python(
        tmp_path / "noisy",
        "echo 'INFO: Created TensorFlow Lite XNNPACK delegate for CPU.' >&2\n"
        "echo 'device_bench: warning: latency cv 0.200 across 5 windows is above 0.05' >&2\n"
        "echo '{\"schema\": \"edgekit.bench/1\"}' > \"$4\"",
    )
    assert LocalTarget(python=child).bench("m.tflite", FAST) == {"schema": "edgekit.bench/1"}
    err = capsys.readouterr().err
    assert err == "device_bench: warning: latency cv 0.200 across 5 windows is above 0.05\n"
