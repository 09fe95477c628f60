"""Full disk: every writer fails cleanly, and the previous file of the same name survives.

A real tmpfs of :data:`SIZE` in a private mount namespace (``unshare -m``, as root; the mount
is gone when the child ends). The child (``tests/reliability/full_disk_child.py``) writes the
previous file, fills the disk to ENOSPC and runs each writer: ``device_bench.atomicio``'s json,
text and bytes writes, ``edgekit convert``'s .tflite, ``edgekit inspect --json-out``,
``edgekit bench --json``, the report writers (report.json / .md / .html), the stage cache
record, the ``.npz`` ``edgekit data kws --out`` writes (and, marked slow, the whole ``edgekit
data kws`` command) and ``python -m device_bench ... --json``. Each must end with exit 2 (an
input error, for the library writers) and one line naming the path and "no space left", no
traceback, the previous file byte-identical and no temp file left. Without ``unshare`` or the
right to mount, the test skips with the reason; with ``CI=true`` it fails instead.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cases import Assets

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SIZE = "256k"
WRITERS = ("atomicio-json", "atomicio-text", "atomicio-bytes", "convert-tflite",
           "inspect-json-out", "bench-json", "report-json", "report-md", "report-html",
           "stage-cache-record", "data-kws-npz", "device_bench-json")
CLI_WRITERS = {"convert-tflite", "inspect-json-out", "bench-json", "device_bench-json",
               "data-kws-cli"}
# The mount point and the command come in as arguments: no path is pasted into the shell line.
MOUNT_THEN_EXEC = 'mount -t tmpfs -o "size=$1" tmpfs "$0" && shift && exec "$@"'


def run_child(mount: Path, assets: Path, writers: tuple[str, ...],
              env: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """Runs the child on a fresh tmpfs at ``mount``: writer name -> its JSON line.

    Args:
        mount: An empty folder to mount the tmpfs on (in the child's namespace only).
        assets: The valid inputs (outside the tmpfs).
        writers: The writers to run.
        env: Extra environment.

    Returns:
        What each writer did (see ``full_disk_child.run_one``).
    """
    from apt_packages import ensure_program, unavailable

    ensure_program("unshare", "util-linux")  # skips (fails on CI) when it cannot be had
    mount.mkdir()
    command = ["unshare", "-m", "sh", "-c", MOUNT_THEN_EXEC, str(mount), SIZE,
               sys.executable, str(HERE / "full_disk_child.py"), str(mount), str(assets),
               *writers]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False,
                          env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines and done.returncode != 0 and ("mount" in done.stderr or
                                                "unshare" in done.stderr):
        unavailable(f"cannot mount a tmpfs in a private namespace: "
                     f"{done.stderr.strip().splitlines()[-1:]}")
    assert done.returncode == 0, done.stderr[-3000:]
    assert not any(mount.iterdir()), "the tmpfs leaked out of its namespace"
    return {line["writer"]: line for line in lines}


@pytest.fixture(scope="module")
def results(assets: Assets, tmp_path_factory: pytest.TempPathFactory
            ) -> dict[str, dict[str, Any]]:
    """Every default writer run once on the full tmpfs."""
    return run_child(tmp_path_factory.mktemp("full-disk") / "disk", assets.root, WRITERS)


def check_clean_failure(found: dict[str, Any], cli: bool) -> None:
    """Exit 2, one line naming the path and "no space left", nothing lost, nothing left.

    Args:
        found: The writer's JSON line.
        cli: A command (its stderr carries the program's prefix).
    """
    assert found["filled"] > 0  # the disk really was full
    assert "Traceback" not in found["stderr"], found["stderr"]
    lines = [line for line in found["stderr"].splitlines()
             if line.strip() and not line.startswith("INFO: Created TensorFlow Lite XNNPACK")]
    assert found["code"] == 2, found
    assert len(lines) == 1, lines
    line = lines[0]
    assert repr(found["dest"]) in line and "no space left" in line, line
    if cli:
        assert line.startswith(("edgekit: error: ", "device_bench: error: ")), line
    assert found["previous_intact"], "the previous file changed"
    assert found["left"] == [], f"left behind: {found['left']}"


@pytest.mark.reliability("full-disk")
@pytest.mark.parametrize("writer", WRITERS)
def test_a_full_disk_fails_cleanly(results: dict[str, dict[str, Any]], writer: str) -> None:
    check_clean_failure(results[writer], writer in CLI_WRITERS)


@pytest.mark.slow
@pytest.mark.reliability("full-disk")
def test_edgekit_data_kws_on_a_full_disk(assets: Assets, tmp_path: Path) -> None:
    from apt_packages import ensure_program

    ensure_program("espeak-ng")
    found = run_child(tmp_path / "disk", assets.root, ("data-kws-cli",),
                      env={"EDGEKIT_CACHE": str(tmp_path / "cache")})
    check_clean_failure(found["data-kws-cli"], cli=True)
