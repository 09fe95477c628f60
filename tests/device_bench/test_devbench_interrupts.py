"""Interrupts and file modes on the device side: real signals, real subprocesses, real files.

``python -m device_bench`` stopped by SIGINT (Ctrl-C) or SIGTERM ends with one line and exit
130 / 143, and leaves no file (no result, no temp file) in the ``--json`` folder. Its atomic
writer gives the result the mode the umask gives (0644 under 022, 0640 under 027), and a
writer interrupted mid-way leaves the old file intact and no temp file.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from device_bench import atomicio, interrupts
from device_bench.errors import BenchInputError
from device_bench.interrupts import Interrupted, exit_code_of, interrupts_as_exceptions

pytestmark = pytest.mark.reliability("interrupts")  # counted in RELIABILITY.md
REPO = Path(__file__).resolve().parents[2]
# What the interpreter prints once the model is loaded and the timing is about to start.
_LOADED = "XNNPACK delegate"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def _wait_for_line(proc: subprocess.Popen[str], marker: str, timeout: float) -> list[str]:
    """Reads ``proc``'s stderr until a line holds ``marker``; fails after ``timeout`` s."""
    seen: list[str] = []
    found = threading.Event()

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            seen.append(line)
            if marker in line:
                found.set()
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    if not found.wait(timeout):
        proc.kill()
        pytest.fail(f"no {marker!r} line within {timeout} s; stderr so far: {''.join(seen)!r}")
    reader.join(5)
    return seen


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)],
                         ids=["SIGINT", "SIGTERM"])
def test_a_signal_mid_benchmark_ends_with_one_line_and_no_file(tiny, tmp_path: Path,
                                                              stderr_lines,
                                                              sig: signal.Signals,
                                                              code: int) -> None:
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "device_bench", str(tiny.int8), "--runs", "100000000",
         "--min-seconds", "600", "--json", str(out / "result.json")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=tmp_path)
    before = _wait_for_line(proc, _LOADED, timeout=60)
    time.sleep(0.2)  # into the timed runs
    proc.send_signal(sig)
    stdout, rest = proc.communicate(timeout=60)
    assert proc.returncode == code
    stderr = "".join(before) + rest
    assert "Traceback" not in stderr
    assert stderr_lines(stderr) == [
        f"device_bench: interrupted ({sig.name}); nothing half-written"]
    assert stdout == ""
    assert _files(out) == []  # neither the result nor a temp file


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o027, 0o640)],
                         ids=["umask022", "umask027"])
def test_the_result_file_gets_the_mode_the_umask_gives(tiny, tmp_path: Path, umask: int,
                                                       mode: int) -> None:
    out = tmp_path / "results" / "r.json"
    proc = subprocess.run(
        [sys.executable, "-m", "device_bench", str(tiny.int8), "--runs", "5", "--warmup", "1",
         "--min-seconds", "0.01", "--json", str(out)],
        capture_output=True, text=True, env=_env(), cwd=tmp_path, timeout=120, check=False,
        umask=umask)
    assert proc.returncode == 0, proc.stderr
    assert stat.S_IMODE(out.stat().st_mode) == mode
    assert stat.S_IMODE(out.parent.stat().st_mode) == 0o777 & ~umask
    assert _files(out.parent) == ["r.json"]


def test_default_file_mode_follows_the_umask_of_a_fresh_process(tmp_path: Path) -> None:
    code = ("from device_bench.atomicio import default_file_mode, process_umask; "
            "print(oct(process_umask()), oct(default_file_mode()), "
            "oct(default_file_mode(directory=True)))")
    got = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=_env(), cwd=tmp_path, timeout=60, check=True, umask=0o027)
    assert got.stdout.split() == ["0o27", "0o640", "0o750"]


@pytest.mark.parametrize(
    ("error", "raised"), [(KeyboardInterrupt(), KeyboardInterrupt),
                          (Interrupted(signal.SIGTERM), Interrupted),
                          (OSError(28, "No space left"), BenchInputError)],  # ENOSPC: one line
    ids=["KeyboardInterrupt", "Interrupted", "OSError"])
def test_an_interrupted_writer_leaves_the_old_file_and_no_temp_file(
        tmp_path: Path, error: BaseException, raised: type[BaseException]) -> None:
    dest = tmp_path / "model.tflite"
    atomicio.write_bytes(dest, b"old")
    with pytest.raises(raised), atomicio.atomic_target(dest) as tmp:
        Path(tmp).write_bytes(b"half")
        raise error
    assert dest.read_bytes() == b"old"
    assert _files(tmp_path) == ["model.tflite"]


def test_sigterm_becomes_interrupted_and_the_old_handlers_come_back() -> None:
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    with pytest.raises(Interrupted) as caught, interrupts_as_exceptions():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises before this ends
    assert caught.value.signum == signal.SIGTERM
    assert (exit_code_of(caught.value), str(caught.value)) == (143, "interrupted (SIGTERM)")
    assert isinstance(caught.value, KeyboardInterrupt)  # Ctrl-C clean-ups run for it too
    assert exit_code_of(KeyboardInterrupt()) == 130
    assert {s: signal.getsignal(s) for s in before} == before


def test_a_second_signal_does_not_cut_the_clean_up_short(tmp_path: Path) -> None:
    cleaned = tmp_path / "cleaned"
    with pytest.raises(Interrupted), interrupts_as_exceptions():
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
        finally:
            os.kill(os.getpid(), signal.SIGTERM)  # ignored: the first one is unwinding
            time.sleep(0.05)
            cleaned.write_text("done")
    assert cleaned.read_text() == "done"


def test_a_swallowed_interrupt_is_raised_again_before_anything_is_committed(
        tmp_path: Path) -> None:
    dest = tmp_path / "report.json"
    with pytest.raises(Interrupted) as caught, interrupts_as_exceptions():
        try:  # what a C extension does to an exception raised inside it
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        except BaseException:  # swallowing it is the point
            pass
        assert interrupts.pending_signal() == signal.SIGTERM
        atomicio.write_json(dest, {"half": "done"})  # the safe point raises
    assert caught.value.exit_code == 143
    assert _files(tmp_path) == []  # neither the file nor its temp file
    assert interrupts.pending_signal() is None  # the block is over


def test_a_signal_after_the_grace_period_raises_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(interrupts, "GRACE_S", 0.0)
    with pytest.raises(Interrupted) as caught, interrupts_as_exceptions():
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
        finally:  # a clean-up that hangs: a later signal still stops it
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
    assert caught.value.signum == signal.SIGINT  # named after the first signal
