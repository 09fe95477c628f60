"""Runs every writer against a full disk and prints one JSON line per writer (the test's child).

``tests/reliability/test_full_disk.py`` starts it inside a private mount namespace with a small
tmpfs mounted on FOLDER::

    python full_disk_child.py FOLDER ASSETS [WRITER ...]

For each writer: a previous file of the same name is written to FOLDER, the disk is filled up
(a filler file written until ENOSPC), the writer runs (a CLI in-process or as a real child
process, or the library function), and the line records its exit code (or the exception it
raised), its stderr lines, whether the previous file is byte-identical, and what else is left
in FOLDER (a temp file would show there). Then the filler is removed. ASSETS is the folder of
``tests/reliability/cases.py``'s :class:`Assets` (outside the tmpfs).
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import subprocess
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
PREVIOUS = b"the previous file, which a writer that failed must leave as it was\n"
FILLER = ".filler"
DB_FAST = ["--runs", "3", "--warmup", "1", "--warmup-seconds", "0", "--min-seconds", "0.01",
           "--windows", "1"]


def fill(folder: Path) -> int:
    """Writes ``folder/.filler`` until the disk is full.

    Args:
        folder: The tmpfs.

    Returns:
        The bytes written.
    """
    fd = os.open(folder / FILLER, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    written = 0
    try:
        for size in (65536, 4096, 512, 1):
            chunk = b"\0" * size
            while True:
                try:
                    written += os.write(fd, chunk)
                except OSError as e:
                    if e.errno != errno.ENOSPC:
                        raise
                    break
    finally:
        os.close(fd)
    return written


def _cli(argv: list[str]) -> tuple[int, str]:
    """``edgekit ARGV`` in this process: (exit code, stderr)."""
    from edgekit.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(argv)
    return code, err.getvalue()


def _call(fn: Callable[[], Any]) -> tuple[int, str]:
    """A library writer: (2 and its one-line message for an input error, else it re-raises)."""
    from edgekit.core.errors import INPUT_ERRORS

    try:
        fn()
    except INPUT_ERRORS as e:  # what the CLIs turn into exit 2 and one stderr line
        return 2, f"error: {e}\n"
    return 0, ""


def _device_bench(args: list[str]) -> tuple[int, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "device_bench", *args], env=env, text=True,
                          capture_output=True, timeout=120, check=False)
    return done.returncode, done.stderr


def _report(assets: Path) -> dict[str, Any]:
    return json.loads((assets / "run" / "report.json").read_text(encoding="utf-8"))


def _kws_arrays() -> Any:
    """A small keyword-spotting set of the shape ``edgekit data kws`` writes."""
    import numpy as np

    from edgekit.data.kws import KwsArrays

    rng = np.random.default_rng(0)
    n = 64
    return KwsArrays(x_train=rng.random((n, 49, 10, 1), np.float32),
                     y_train=np.arange(n, dtype=np.int64) % 12,
                     speaker_train=np.zeros(n, np.int64),
                     x_test=rng.random((16, 49, 10, 1), np.float32),
                     y_test=np.arange(16, dtype=np.int64) % 12,
                     speaker_test=np.zeros(16, np.int64),
                     speakers_train=("en-us+m1",), speakers_test=("en-us+f2",),
                     meta={"note": "full-disk test"})


def writers(folder: Path, assets: Path) -> dict[str, tuple[str, Callable[[], tuple[int, str]]]]:
    """Every writer: name -> (the file it writes, relative to ``folder``; the call)."""
    from device_bench.atomicio import write_bytes, write_json, write_text

    def report_md() -> None:
        from edgekit.report import render_markdown

        write_text(folder / "report.md", render_markdown(_report(assets)))

    def report_html() -> None:
        from edgekit.report_html import write_html

        write_html(folder / "report.html", _report(assets))

    def stage_record() -> None:
        from edgekit.stage_cache import StageCache

        StageCache(folder, resume=False).record("f00d", folder / "stage.keras",
                                                {"name": "prune"})

    def kws_npz() -> None:
        from edgekit.data.kws import save_npz

        save_npz(_kws_arrays(), folder / "kws.npz")

    fast = ["--runs", "3", "--warmup", "1", "--min-seconds", "0.01", "--windows", "1"]
    return {
        "atomicio-json": ("a.json", lambda: _call(lambda: write_json(folder / "a.json",
                                                                      {"k": "v" * 5000}))),
        "atomicio-text": ("a.txt", lambda: _call(lambda: write_text(folder / "a.txt",
                                                                     "text\n" * 2000))),
        "atomicio-bytes": ("a.bin", lambda: _call(lambda: write_bytes(folder / "a.bin",
                                                                       b"\1" * 20000))),
        "convert-tflite": ("m.tflite", lambda: _cli([
            "convert", str(assets / "tiny.keras"), "--data", str(assets / "data.npz"),
            "--mode", "float32", "--out", str(folder / "m.tflite")])),
        "inspect-json-out": ("i.json", lambda: _cli([
            "inspect", str(assets / "int8.tflite"), "--json-out", str(folder / "i.json")])),
        "bench-json": ("b.json", lambda: _cli([
            "bench", str(assets / "int8.tflite"), *fast, "--json", str(folder / "b.json")])),
        "report-json": ("report.json", lambda: _call(lambda: write_json(
            folder / "report.json", _report(assets)))),
        "report-md": ("report.md", lambda: _call(report_md)),
        "report-html": ("report.html", lambda: _call(report_html)),
        "stage-cache-record": ("stages/f00d.json", lambda: _call(stage_record)),
        "data-kws-npz": ("kws.npz", lambda: _call(kws_npz)),
        # The whole `edgekit data kws` (made with espeak-ng, ~1 min the first time: slow).
        "data-kws-cli": ("k.npz", lambda: _cli([
            "data", "kws", "--out", str(folder / "k.npz"), "--takes", "1", "--test-takes", "1"])),
        "device_bench-json": ("db.json", lambda: _device_bench([
            str(assets / "int8.tflite"), *DB_FAST, "--json", str(folder / "db.json")])),
    }


def _listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def run_one(folder: Path, name: str, dest: str, call: Callable[[], tuple[int, str]]
            ) -> dict[str, Any]:
    """Runs one writer on a full disk and says what it did.

    Args:
        folder: The tmpfs.
        name: The writer's name.
        dest: The file it writes (relative to ``folder``).
        call: Runs it: (exit code, stderr).

    Returns:
        ``{"writer", "dest", "code", "stderr", "previous_intact", "left", "filled"}``.
    """
    target = folder / dest
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(PREVIOUS)
    (folder / "stage.keras").write_bytes(b"a stage artefact")
    before = set(_listing(folder))
    filled = fill(folder)
    try:
        code, err = call()
    except BaseException:  # an uncaught error is a defect: report it as its traceback
        code, err = -1, traceback.format_exc()
    finally:
        os.unlink(folder / FILLER)
    left = sorted(set(_listing(folder)) - before - {FILLER})
    return {"writer": name, "dest": str(target), "code": code, "stderr": err,
            "previous_intact": target.read_bytes() == PREVIOUS, "left": left, "filled": filled}


def main(argv: list[str]) -> int:
    """Runs the writers named in ``argv[2:]`` (all when none), one JSON line each.

    Args:
        argv: FOLDER ASSETS [WRITER ...].

    Returns:
        0.
    """
    folder, assets = Path(argv[0]), Path(argv[1])
    table = writers(folder, assets)
    for name in argv[2:] or list(table):
        dest, call = table[name]
        print(json.dumps(run_one(folder, name, dest, call)), flush=True)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main(sys.argv[1:]))
