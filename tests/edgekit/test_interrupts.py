"""Interrupted runs, resumed: real ``edgekit run`` subprocesses stopped by real signals.

One run folder goes through SIGINT during training, SIGTERM during conversion, then
``--resume`` to the end, while an uninterrupted run of the same recipe works in another folder
(and a second run on that folder is refused by its lock). After every stop: exit
130 / 143, the interrupt line last on stderr and no traceback, no temp file and no lock left in
the folder, every JSON file whole, every stage record naming its (unchanged) artefact. The
finished folder matches an uninterrupted run of the same recipe in another folder (same report
keys, stages, sizes, ops and accuracies: the seeds are fixed). The uninterrupted run runs under
umask 027 and the others under 022: every file gets the mode its umask gives.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.reliability("interrupts")  # counted in RELIABILITY.md
REPO = Path(__file__).resolve().parents[2]
RECIPE = {
    "model": "demo_cnn",
    "data": "digits",
    "train": {"epochs": 1},
    "stages": [{"class_name": "LowRank", "config": {"energy": 0.9}}],
    "convert": {"mode": "int8", "io": "int8", "calibration_samples": 32,
                "float32_baseline": False, "int8_baseline": False},
    "bench": {"targets": ["local"], "runs": 5, "warmup": 1, "min_seconds": 0.01},
}
HINT = "`edgekit run --resume` continues from the last finished stage"
TIMEOUT_S = 240


class Run:
    """A real ``edgekit run`` (or any ``command``) in a subprocess; stderr is read as it comes."""

    def __init__(self, recipe: Path | None, out: Path, *extra: str, umask: int = 0o022,
                 command: list[str] | None = None) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(
            os.pathsep)
        args = command or ["run", str(recipe), "--out", str(out), *extra]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edgekit", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=out.parent,
            umask=umask)
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_for(self, marker: str) -> None:
        """Blocks until a stderr line holds ``marker`` (fails if the run ends first)."""
        with self._cond:
            ok = self._cond.wait_for(
                lambda: any(marker in line for line in self.lines)
                or not self._reader.is_alive(), TIMEOUT_S)
            if not ok or not any(marker in line for line in self.lines):
                self.proc.kill()
                pytest.fail(f"no {marker!r} on stderr; got: {self.lines[-10:]}")

    def finish(self) -> tuple[int, list[str]]:
        """Waits for the end; returns (exit code, stderr lines)."""
        self.proc.wait(TIMEOUT_S)
        self._reader.join(30)
        return self.proc.returncode, self.lines


def _write_recipe(folder: Path) -> Path:
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(RECIPE))
    return path


def _is_temp(name: str) -> bool:
    return ".tmp" in name or name.startswith(".edgekit") or name.endswith(".lock")


def _check_folder(out: Path, umask: int) -> list[str]:
    """Checks what an interrupted or finished run leaves; returns the file names."""
    from edgekit.stage_cache import file_sha256

    files = sorted(p for p in out.rglob("*"))
    names = [str(p.relative_to(out)) for p in files]
    assert not [n for n in names if _is_temp(Path(n).name)], names
    for p in files:
        want = (0o777 if p.is_dir() else 0o666) & ~umask
        assert stat.S_IMODE(p.stat().st_mode) == want, (p, oct(p.stat().st_mode))
        if p.suffix == ".json":
            json.loads(p.read_text())  # whole, never half-written
    for record in sorted((out / "stages").glob("*.json")):
        rec = json.loads(record.read_text())
        artefact = out / rec["artefact"]
        assert artefact.is_file(), rec["artefact"]
        assert file_sha256(artefact) == rec["sha256"]  # the artefact it recorded
    return names


def _without_tensorflow_reports(lines: list[str]) -> list[str]:
    """``lines`` less the tracebacks TensorFlow prints itself when it swallows an interrupt.

    A signal that lands inside TensorFlow's C++ ``nest`` helpers (while converting) can come
    back as a ``SystemError`` that TensorFlow prints and ignores; edgekit then raises the
    interrupt again at its next safe point (device_bench.interrupts). Such a block has only
    TensorFlow frames and ends in that SystemError; anything else stays.
    """
    kept: list[str] = []
    i = 0
    while i < len(lines):
        if lines[i].startswith("Traceback (most recent call last):"):
            j = i + 1
            while j < len(lines) and lines[j].startswith(" "):
                j += 1
            frames = [line for line in lines[i + 1:j] if line.lstrip().startswith("File ")]
            if (j < len(lines) and lines[j].startswith("SystemError: ") and frames
                    and all("/site-packages/tensorflow/" in f for f in frames)):
                i = j + 1
                continue
        kept.append(lines[i])
        i += 1
    return kept


def _interrupted(lines: list[str], sig: signal.Signals) -> None:
    lines = _without_tensorflow_reports(lines)
    text = "\n".join(lines)
    assert "Traceback" not in text and "KeyboardInterrupt" not in text, text[-2000:]
    message = f"edgekit: interrupted ({sig.name}); nothing half-written; {HINT}"
    assert lines[-1] == message
    assert [line for line in lines if "interrupted" in line] == [message]


def _summary(report: dict[str, Any]) -> dict[str, Any]:
    """What must not depend on the run having been interrupted (no times, no latencies)."""
    return {
        "keys": sorted(report),
        "stages": [(e["name"], e["kind"], e["artefact"], e["accuracy"], e["bytes"],
                    e.get("macs"), e.get("sparsity"),
                    json.dumps(e.get("inspection", {}).get("ops"), sort_keys=True),
                    sorted(k for k in e if k != "reused")) for e in report["stages"]],
        "final": {k: report["final"][k] for k in ("artefact", "accuracy", "float_accuracy",
                                                  "bytes", "macs", "params", "full_integer")},
    }


def test_sigint_in_training_sigterm_in_conversion_then_resume_gives_the_same_result(
        tmp_path: Path) -> None:
    # The uninterrupted run of the same recipe, in its own folder, alongside (2 cores).
    (tmp_path / "ref").mkdir()
    ref_out = tmp_path / "ref" / "out"
    ref_recipe = _write_recipe(tmp_path / "ref")
    reference = Run(ref_recipe, ref_out, umask=0o027)
    recipe = _write_recipe(tmp_path)
    out = tmp_path / "out"

    # 1. Ctrl-C while the float model trains: nothing finished, nothing half-written.
    run = Run(recipe, out)
    run.wait_for("edgekit: train demo_cnn")
    run.proc.send_signal(signal.SIGINT)

    # Meanwhile a second run on the reference's folder, while that one works, is refused.
    reference.wait_for("edgekit: train demo_cnn")
    code, lines = Run(ref_recipe, ref_out).finish()
    assert code == 2
    assert lines[-1] == (f"edgekit: error: output folder {str(ref_out)!r} is in use by "
                         f"another edgekit run (pid {reference.proc.pid}); wait for it to "
                         "finish or choose another --out")
    assert "Traceback" not in "\n".join(lines)

    code, lines = run.finish()
    assert code == 130
    _interrupted(lines, signal.SIGINT)
    assert "float.keras" not in _check_folder(out, 0o022)

    # 2. Resumed, then SIGTERM while converting: both stages were recorded, nothing else.
    run = Run(recipe, out, "--resume")
    run.wait_for("edgekit: convert lowrank -> model_int8.tflite")
    run.proc.send_signal(signal.SIGTERM)
    code, lines = run.finish()
    assert code == 143
    _interrupted(lines, signal.SIGTERM)
    names = _check_folder(out, 0o022)
    assert {"float.keras", "lowrank.keras"} <= set(names) and "report.json" not in names
    assert len(list((out / "stages").glob("*.json"))) == 2

    # 3. Resumed to the end: the finished stages are reused, the result is the same.
    code, lines = Run(recipe, out, "--resume").finish()
    assert code == 0, lines[-5:]
    assert sum("reused finished stage" in line for line in lines) == 2
    _check_folder(out, 0o022)
    code, lines = reference.finish()
    assert code == 0, lines[-5:]
    _check_folder(ref_out, 0o027)
    report = json.loads((out / "report.json").read_text())
    assert _summary(report) == _summary(json.loads((ref_out / "report.json").read_text()))


def test_a_killed_run_leaves_no_stale_lock(tmp_path: Path) -> None:
    from edgekit.core.errors import InputError
    from edgekit.run_lock import LOCK_NAME, run_folder_lock

    out = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\nfrom edgekit.run_lock import run_folder_lock\n"
         f"with run_folder_lock({str(out)!r}):\n    print('locked', flush=True)\n"
         "    time.sleep(600)\n"],
        stdout=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        with pytest.raises(InputError, match=rf"in use by another edgekit run \(pid "
                                             rf"{holder.pid}\)"), run_folder_lock(out):
            pass
    finally:
        holder.kill()  # SIGKILL: no clean-up runs, the lock file stays behind
        holder.wait(30)
    assert (out / LOCK_NAME).exists()
    with run_folder_lock(out):  # the kernel dropped the dead run's lock
        assert (out / LOCK_NAME).read_text() == f"{os.getpid()}\n"
    assert not (out / LOCK_NAME).exists()


def test_a_refused_or_failed_run_leaves_no_folder_behind(tmp_path: Path) -> None:
    from edgekit.run_lock import run_folder_lock

    out = tmp_path / "a" / "b"
    with pytest.raises(ValueError, match="bad input"), run_folder_lock(out):
        assert out.is_dir()
        raise ValueError("bad input")
    assert not (tmp_path / "a").exists()
    with run_folder_lock(out):
        (out / "report.json").write_text("{}")
    assert sorted(p.name for p in out.iterdir()) == ["report.json"]


def test_ctrl_c_during_demo_is_one_line_and_exit_130(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    run = Run(None, out, command=["demo", "--out", str(out)])
    run.wait_for("edgekit: train demo_cnn")
    run.proc.send_signal(signal.SIGINT)
    code, lines = run.finish()
    assert code == 130
    assert lines[-1] == "edgekit: interrupted (SIGINT); nothing half-written"
    assert "Traceback" not in "\n".join(lines)
    assert _check_folder(out, 0o022) == ["recipe.yaml"]


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in path.read_text().split()] if path.exists() else []


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_sigterm_during_bench_stops_the_child_and_writes_no_json(tmp_path: Path,
                                                                 tiny_trained_model) -> None:
    import time

    from edgekit.converters import ConversionConfig, Mode, convert_keras

    model = tmp_path / "tiny.tflite"
    model.write_bytes(convert_keras(tiny_trained_model, ConversionConfig(mode=Mode.FLOAT32)))
    result = tmp_path / "bench" / "r.json"
    run = Run(None, tmp_path / "x", command=["bench", str(model), "--runs", "100000000",
                                             "--min-seconds", "600", "--json", str(result)])
    deadline = time.monotonic() + TIMEOUT_S
    while not _children(run.proc.pid):  # the benchmark's own process has started
        assert run.proc.poll() is None and time.monotonic() < deadline, run.lines
        time.sleep(0.05)
    child = _children(run.proc.pid)[0]
    time.sleep(1.0)  # let it load the model and start timing
    run.proc.send_signal(signal.SIGTERM)
    code, lines = run.finish()
    assert code == 143
    assert lines[-1] == "edgekit: interrupted (SIGTERM); nothing half-written"
    assert "Traceback" not in "\n".join(lines)
    assert not Path(f"/proc/{child}").exists() or "zombie" in Path(
        f"/proc/{child}/status").read_text()  # the child went with it
    assert not result.exists() and list(result.parent.iterdir()) == []
