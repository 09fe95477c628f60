"""Programs the tests of real components need, installed with apt-get when missing.

With ``CI=true`` a program that cannot be installed fails the test; elsewhere the test skips and
says why (a developer's laptop without root).
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest


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
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, check=False)
    if proc.returncode != 0:  # the package lists may be missing: refresh once and retry
        subprocess.run(["apt-get", "update", "-q"], capture_output=True, env=env, timeout=600,
                       check=False)
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600,
                              check=False)
    found = shutil.which(program)
    if proc.returncode != 0 or not found:
        tail = proc.stderr.strip().splitlines()[-1:] or ["no message"]
        unavailable(f"cannot install {' '.join(packages)} with apt-get: {tail[0]}")
    return str(found)
