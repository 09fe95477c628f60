"""Programs the tests of real components need, installed with apt-get when missing.

With ``CI=true`` a program that cannot be installed fails the test; elsewhere the test skips and
says why (a developer's laptop without root).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from device_bench.qemu_host import file_lock


def on_ci() -> bool:
    """True when the tests run on CI (``CI=true``): missing real components fail there."""
    return os.environ.get("CI", "").lower() == "true"


def unavailable(reason: str) -> None:
    """Fails (on CI) or skips the current test, with ``reason``."""
    if on_ci():
        pytest.fail(f"{reason} (CI=true: these tests must run)")
    pytest.skip(reason)


def ensure_program(program: str, *packages: str) -> str:
    """The path of ``program``, installing the Debian ``packages`` first when it is missing.

    Args:
        program: The executable to find on PATH (or an absolute path).
        packages: The Debian packages that provide it.

    Returns:
        Its path.
    """
    found = shutil.which(program)
    if found:
        return found
    if not shutil.which("apt-get"):
        unavailable(f"{program} is not installed and there is no apt-get to install it")
    with apt_lock():  # the second worker finds what the first installed
        return shutil.which(program) or _install(program, packages)


def apt_lock() -> contextlib.AbstractContextManager[None]:
    """One apt-get at a time across the suite's pytest-xdist workers (dpkg's own lock fails the
    second instead of waiting, and ``apt-get update`` ignores ``DPkg::Lock::Timeout``)."""
    return file_lock(Path(tempfile.gettempdir()) / "edgekit-tests-apt.lock", timeout_s=1200)


def _install(program: str, packages: tuple[str, ...]) -> str:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "-o", "DPkg::Lock::Timeout=600", "install", "-y", "-q",
           "--no-install-recommends", *packages]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, check=False)
    if proc.returncode != 0:  # the package lists may be missing: refresh once and retry
        subprocess.run(["apt-get", "-o", "DPkg::Lock::Timeout=600", "update", "-q"],
                       capture_output=True, env=env, timeout=600, check=False)
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600,
                              check=False)
    found = shutil.which(program)
    if proc.returncode != 0 or not found:
        tail = proc.stderr.strip().splitlines()[-1:] or ["no message"]
        unavailable(f"cannot install {' '.join(packages)} with apt-get: {tail[0]}")
    return str(found)
