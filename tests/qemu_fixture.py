"""The ``qemu-aarch64`` target made ready for a test: host tools, arm64 sysroot, plugin.

:func:`prepare_qemu` installs qemu-user and gcc with apt-get when missing (root), builds the
arm64 sysroot into the user's cache (``~/.cache/edgekit/arm-sysroot``, once per machine) and
compiles the instruction-count plugin. With ``CI=true`` a set-up that cannot be done fails the
test; otherwise it skips and says why. Used by the qemu target's own tests and by the channel
search's instruction-budget tests.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from typing import Any, NoReturn

import pytest
from apt_packages import apt_lock

from device_bench.arm_sysroot import install_host_tools
from device_bench.errors import TargetError
from device_bench.targets import QemuTarget

CI = os.environ.get("CI", "").lower() == "true"


def unavailable(reason: str) -> NoReturn:
    """Fails the test on CI, else skips it, with ``reason``."""
    if CI:
        pytest.fail(f"CI=true and {reason}")
    pytest.skip(reason)


def prepare_qemu(need_plugin: bool = False) -> dict[str, Any]:
    """qemu-user + gcc installed, the sysroot built and the plugin compiled.

    Args:
        need_plugin: Also require the instruction-count plugin (else its absence is reported
            in the returned ``plugin_error``).

    Returns:
        ``QemuTarget.prepare()``'s dict plus ``setup_seconds``.
    """
    if shutil.which("qemu-aarch64") is None or shutil.which("gcc") is None:
        try:
            with apt_lock():
                if shutil.which("qemu-aarch64") is None or shutil.which("gcc") is None:
                    install_host_tools()
        except TargetError as e:
            unavailable(f"qemu-user/gcc are missing and cannot be installed: {e}")
    start = time.monotonic()
    try:
        info = QemuTarget().prepare()
    except TargetError as e:
        unavailable(f"the arm64 sysroot cannot be built: {e}")
    info["setup_seconds"] = round(time.monotonic() - start, 1)
    print(f"\nqemu set-up: {json.dumps(info)}", file=sys.stderr)
    if need_plugin and info["plugin"] is None:
        unavailable(f"the instruction-count plugin cannot be built: {info['plugin_error']}")
    return info
