"""A real local Ray cluster on 127.0.0.1 for the Ray executor's tests and bench (no mocks).

:func:`start_cluster` makes sure Ray is importable (installing the pin of setup.py's ``ray``
extra with pip when it is not; with ``CI=true`` a failed install fails the test, elsewhere it
skips, saying why), runs ``ray start --head`` on a free loopback port with a unique, short
``--temp-dir``, the given CPUs and custom resources, and the environment given (a ``PATH`` whose
``ssh`` reaches a test sshd), and waits until it answers. On the way out it stops exactly the
processes of that cluster: every process whose command line names its temp dir (``ray stop``
would stop every Ray cluster on the machine), SIGTERM first, then SIGKILL.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RAY_BIN = Path(sys.executable).with_name("ray")


def on_ci() -> bool:
    """True when ``CI=true``: a missing Ray fails instead of skipping."""
    return os.environ.get("CI", "").lower() == "true"


def _unavailable(reason: str) -> None:
    import pytest

    if on_ci():
        pytest.fail(f"{reason} (CI=true: these tests must run)")
    pytest.skip(reason)


def ray_requirement() -> str:
    """The ``ray==X`` pin of setup.py (its one source)."""
    found = re.search(r'^RAY = "(ray==[^"]+)"', (REPO / "setup.py").read_text(), re.M)
    if found is None:
        raise RuntimeError("setup.py has no RAY = \"ray==...\" pin")
    return found.group(1)


def ensure_ray() -> None:
    """Imports Ray, installing setup.py's pin with pip first when it is missing."""
    try:
        import ray
        return
    except ImportError:
        pass
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", ray_requirement()]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or ["no message"]
        _unavailable(f"cannot pip install {ray_requirement()}: {tail[0]}")
    try:
        import ray  # noqa: F401
    except ImportError as e:
        _unavailable(f"ray is installed but does not import: {e}")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class RayCluster:
    """A running test cluster.

    Attributes:
        address: ``127.0.0.1:PORT`` (what ``--executor ray:ADDRESS`` takes).
        temp_dir: Its ``--temp-dir`` (logs under ``session_latest/logs``).
        env: The environment it was started with (its workers inherit it).
    """

    address: str
    temp_dir: Path
    env: dict[str, str]


def cluster_pids(temp_dir: Path) -> list[int]:
    """The processes whose command line names ``temp_dir`` (this cluster's, and only it)."""
    mine = str(temp_dir).encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if mine in cmdline:
            pids.append(int(entry.name))
    return pids


def stop_cluster(temp_dir: Path, grace_s: float = 3.0) -> None:
    """Stops every process of the cluster that uses ``temp_dir`` (SIGTERM, then SIGKILL)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = cluster_pids(temp_dir)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace_s
        while pids and time.monotonic() < deadline:
            pids = [p for p in pids if Path(f"/proc/{p}").exists()
                    and "Z" not in _state(p)]
            time.sleep(0.1)
        if not pids:
            return


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "Z"


@contextlib.contextmanager
def start_cluster(num_cpus: int = 2, resources: dict[str, float] | None = None,
                  env: dict[str, str] | None = None, timeout_s: float = 120.0
                  ) -> Iterator[RayCluster]:
    """Runs a one-node Ray cluster on 127.0.0.1 for the ``with`` block.

    Args:
        num_cpus: Its logical CPUs (so, its concurrent one-CPU tasks: worker processes).
        resources: Custom resources (boards).
        env: Extra environment of the cluster's processes.
        timeout_s: How long ``ray start`` may take.

    Yields:
        The cluster.
    """
    ensure_ray()
    temp_dir = Path(tempfile.mkdtemp(prefix="ekray", dir="/tmp"))  # short: socket paths
    port = free_port()
    full_env = {**os.environ, **(env or {}), "RAY_USAGE_STATS_ENABLED": "0"}
    full_env.pop("RAY_ADDRESS", None)
    cmd = [str(RAY_BIN), "start", "--head", "--node-ip-address", "127.0.0.1",
           "--port", str(port), "--num-cpus", str(num_cpus), "--num-gpus", "0",
           "--resources", json.dumps(resources or {}), "--temp-dir", str(temp_dir),
           "--include-dashboard", "false", "--disable-usage-stats"]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, env=full_env,
                              timeout=timeout_s, check=False)
        if done.returncode != 0:
            tail = (done.stderr.strip() or done.stdout.strip()).splitlines()[-3:]
            _unavailable(f"`ray start --head` failed ({done.returncode}): {' | '.join(tail)}")
        yield RayCluster(f"127.0.0.1:{port}", temp_dir, full_env)
    finally:
        stop_cluster(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)
