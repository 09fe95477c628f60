"""device_bench.targets.remote: the one run protocol of ssh and adb, on real transports.

ssh runs against a real OpenSSH server on 127.0.0.1 (sshd_fixture.py). adb has no phone here, so
adb_fixture.py's ``adb`` runs each ``adb shell`` command with this machine's ``sh`` and each
``adb push`` as a copy: the commands the target sends run for real, only the USB hop is missing.
The "device's Python" is a small shell script that fails, hangs or is SIGKILLed, so each exit
status comes from a real process tree under the real ``timeout`` wrapper.
"""

from __future__ import annotations

import hashlib
import re
import stat
import sys
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from adb_fixture import FakeAdb, make_fake_adb
from sshd_fixture import SSHServer, start_sshd

from device_bench.errors import BenchInputError, TargetError
from device_bench.runner import SCHEMA, BenchOptions
from device_bench.targets.adb import AdbTarget
from device_bench.targets.remote import (
    KILLED,
    TIMED_OUT,
    Completed,
    Transport,
    exit_error,
    runner_error,
)
from device_bench.targets.ssh import SSHTarget

FAST = BenchOptions(runs=20, min_seconds=0.05, warmup=3, warmup_seconds=0.01)
DATA = Path(__file__).parent / "data" / "benchmark_model"


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory):
    with start_sshd(tmp_path_factory.mktemp("sshd")) as server:
        yield server


def _script(path: Path, body: str) -> str:
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


@dataclass
class Remote:
    """A target of one kind, and how to see what it left on its device."""

    target: SSHTarget | AdbTarget
    leftovers: Callable[[], list[str]]
    made_a_dir: Callable[[], bool]


def _ssh(server: SSHServer, python: str, timeout_s: float) -> Remote:
    spec = f"ssh://{server.user}@127.0.0.1:{server.port}?python={urllib.parse.quote(python)}"
    target = SSHTarget.from_spec(spec, ssh_options=["-F", str(server.ssh_config)],
                                 timeout_s=timeout_s)

    def leftovers() -> list[str]:
        d = target.last_remote_dir
        return [d] if d is not None and Path(d).exists() else []

    return Remote(target, leftovers, lambda: target.last_remote_dir is not None)


def _adb(folder: Path, python: str, timeout_s: float, **fake: bool) -> Remote:
    adb = make_fake_adb(folder, **fake)
    target = AdbTarget("emulator-5554", adb=str(adb.program), remote_root=str(adb.remote_root),
                       python=python, timeout_s=timeout_s)
    return Remote(target, lambda: [str(p) for p in adb.temp_dirs()],
                  lambda: any("mkdir -m 700" in " ".join(call) for call in adb.calls()))


@pytest.fixture(params=["ssh", "adb"])
def remote(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[..., Remote]:
    """Builds a target of the parametrized kind with a given device Python and timeout."""
    def build(python: str, timeout_s: float = 60.0) -> Remote:
        if request.param == "ssh":
            return _ssh(request.getfixturevalue("sshd"), python, timeout_s)
        return _adb(tmp_path / "phone", python, timeout_s)

    (tmp_path / "phone").mkdir()
    return build


# ---- one exit-status rule, the same for ssh and adb -------------------------------------------


@pytest.mark.parametrize("body, timeout_s, expected", [
    ("echo 'noise' >&2; echo 'device_bench: error: boom on the device' >&2; exit 3", 60,
     "{spec}: benchmark of {model} failed (exit 3): boom on the device"),
    ("exec sleep 30", 1,
     "{spec}: benchmark of {model} timed out after 1 s"),
    ("kill -9 $$", 60,
     "{spec}: benchmark of {model} was killed (exit 137, SIGKILL): the device ran out of "
     "memory, or the run ignored the stop at its 60 s timeout"),
], ids=["failed", "timed-out", "killed"])
def test_exit_status_maps_the_same_and_the_temp_dir_is_removed(
        remote: Callable[..., Remote], tiny, tmp_path: Path, body: str, timeout_s: float,
        expected: str) -> None:
    python = _script(tmp_path / "python3", body)
    r = remote(python, timeout_s)
    start = time.monotonic()
    with pytest.raises(TargetError) as err:
        r.target.bench(str(tiny.int8), FAST)
    assert str(err.value) == expected.format(spec=r.target.spec, model=repr(str(tiny.int8)))
    assert time.monotonic() - start < 20  # the device's timeout stopped it, not the host's
    assert r.made_a_dir() and r.leftovers() == []  # cleaned up after the failure too


def test_board_rejection_is_bad_input_naming_the_local_file(remote: Callable[..., Remote],
                                                            corrupt_model: Path) -> None:
    r = remote(sys.executable)
    with pytest.raises(BenchInputError) as err:
        r.target.bench(str(corrupt_model), FAST)
    assert str(err.value).startswith(f"model {str(corrupt_model)!r} is not a valid TFLite")
    assert r.leftovers() == []


def test_python_runner_over_adb_end_to_end(tiny, tmp_path: Path) -> None:
    adb = make_fake_adb(tmp_path)
    target = AdbTarget("emulator-5554", adb=str(adb.program), remote_root=str(adb.remote_root),
                       python=sys.executable, cores="0")
    result = target.bench(str(tiny.int8), FAST)
    assert result["schema"] == SCHEMA
    assert (result["target"]["kind"], result["target"]["host"]) == ("adb", "emulator-5554")
    assert result["model"]["path"] == str(tiny.int8)
    assert result["model"]["sha256"] == hashlib.sha256(tiny.int8.read_bytes()).hexdigest()
    assert BenchOptions.from_dict(result["options"]) == FAST
    assert result["runs"] >= 20
    assert adb.temp_dirs() == []
    run = [c for c in adb.calls() if c[2] == "shell" and "device_bench" in c[3]]
    assert len(run) == 1 and "taskset 1 env" in run[0][3]  # pinned, under the timeout wrapper


def test_benchmark_model_over_adb_is_pushed_executable_and_parsed(tiny, tmp_path: Path) -> None:
    capture = DATA / "nightly_gcp_c4a_aarch64_mobilenet_v2_percentiles.txt"
    tool = Path(_script(tmp_path / "benchmark_model", f"cat '{capture}'"))
    tool.chmod(0o644)  # the push must make the device's copy executable
    adb = make_fake_adb(tmp_path)
    target = AdbTarget("R58M", adb=str(adb.program), remote_root=str(adb.remote_root),
                       benchmark_model=str(tool))
    result = target.bench(str(tiny.int8), FAST)
    assert result["latency_ms"]["p50"] == 2.781 and result["runtime"]["interpreter"] == (
        "benchmark_model")
    assert result["model"]["sha256"] == hashlib.sha256(tiny.int8.read_bytes()).hexdigest()
    assert adb.temp_dirs() == []


def test_benchmark_model_killed_is_the_same_137(tiny, tmp_path: Path) -> None:
    tool = _script(tmp_path / "benchmark_model", "kill -9 $$")
    adb = make_fake_adb(tmp_path)
    target = AdbTarget("R58M", adb=str(adb.program), remote_root=str(adb.remote_root),
                       benchmark_model=tool, timeout_s=30)
    with pytest.raises(TargetError, match=r"^adb://R58M: benchmark_model run of .* was killed "
                                          r"\(exit 137, SIGKILL\)"):
        target.bench(str(tiny.int8), FAST)
    assert adb.temp_dirs() == []


def test_a_failed_push_still_removes_the_temp_dir(tiny, tmp_path: Path) -> None:
    adb = make_fake_adb(tmp_path, fail_push=True)
    target = AdbTarget("R58M", adb=str(adb.program), remote_root=str(adb.remote_root),
                       python=sys.executable)
    with pytest.raises(TargetError, match=r"^adb://R58M: pushing the device_bench package "
                                          r"failed \(exit 1\): adb: error: failed to copy"):
        target.bench(str(tiny.int8), FAST)
    assert any("mkdir -m 700" in " ".join(c) for c in adb.calls()) and adb.temp_dirs() == []


def test_a_failed_clean_up_is_a_warning_not_the_error(tiny, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    adb = make_fake_adb(tmp_path, fail_rm=True)
    python = _script(tmp_path / "python3", "echo 'device_bench: error: boom' >&2; exit 1")
    target = AdbTarget("R58M", adb=str(adb.program), remote_root=str(adb.remote_root),
                       python=python)
    with pytest.raises(TargetError, match=r"failed \(exit 1\): boom$"):
        target.bench(str(tiny.int8), FAST)
    left = adb.temp_dirs()
    assert len(left) == 1
    warning = capsys.readouterr().err.strip().splitlines()[-1]
    assert warning.startswith(f"device_bench: warning: {left[0]} was not removed from "
                              "adb://R58M: ")


# ---- the rule itself --------------------------------------------------------------------------


def test_exit_error_rule() -> None:
    kw = {"spec": "adb://X", "what": "benchmark of 'm.tflite'", "timeout_s": 30.0}
    assert exit_error(0, message="", **kw) is None
    assert str(exit_error(TIMED_OUT, message="ignored", **kw)) == (
        "adb://X: benchmark of 'm.tflite' timed out after 30 s")
    killed = str(exit_error(KILLED, message="ignored", **kw))
    assert killed.startswith("adb://X: benchmark of 'm.tflite' was killed (exit 137, SIGKILL)")
    assert "out of memory" in killed and "\n" not in killed
    assert str(exit_error(1, message="", **kw)) == (
        "adb://X: benchmark of 'm.tflite' failed (exit 1): no message")


@pytest.mark.parametrize("rc, stderr, kind, text", [
    (1, "ModuleNotFoundError: No module named 'numpy'", TargetError,
     "lacks numpy; pip install numpy ai-edge-litert on board"),
    (1, "ModuleNotFoundError: No module named 'yaml'", TargetError, "cannot import 'yaml'"),
    (127, "sh: 1: py: not found", TargetError, "cannot run 'py' (exit 127: sh: 1: py: not found)"),
    (2, "device_bench: error: runs must be >= 1", BenchInputError, "runs must be >= 1"),
])
def test_runner_error_reads_the_python_runner(rc: int, stderr: str, kind: type,
                                              text: str) -> None:
    proc = Completed(rc, "", stderr)
    message = stderr.removeprefix("device_bench: error: ")
    error = runner_error(proc, message, spec="ssh://board", host="board", python="py")
    assert isinstance(error, kind) and text in str(error)
    assert runner_error(Completed(1, "", "segfault"), "segfault", spec="s", host="h",
                        python="py") is None  # left to the generic rule


def test_ssh_and_adb_targets_are_transports() -> None:
    assert isinstance(SSHTarget("board"), Transport)
    assert isinstance(AdbTarget("R58M"), Transport)
    assert re.fullmatch(r"adb://R58M", AdbTarget("R58M").spec)


def test_fake_adb_quotes_like_the_phone(tmp_path: Path) -> None:
    # The fixture itself: adb joins arguments for the device shell, so unquoted ones would split.
    adb: FakeAdb = make_fake_adb(tmp_path)
    target = AdbTarget("R58M", adb=str(adb.program), remote_root=str(adb.remote_root))
    odd = str(adb.remote_root / "a b; echo pwned")
    assert target.make_temp_dir().startswith(str(adb.remote_root) + "/edgekit-")
    proc = target.execute(["mkdir", odd], "mkdir", 30)
    assert proc.returncode == 0 and "pwned" not in proc.stdout
    assert Path(odd).is_dir()
