"""What a ``python -m device_bench`` child (local, ssh, adb, qemu) wrote to its stderr.

The runner writes errors as ``device_bench: error: ...`` (its last line) and warnings as
``device_bench: warning: ...`` lines; every target hands the warnings on and turns the last line
into its own error message.
"""

from __future__ import annotations

import sys

__all__ = ["ERROR_PREFIX", "WARNING_PREFIX", "last_line", "relay_warnings"]

ERROR_PREFIX = "device_bench: error: "
WARNING_PREFIX = "device_bench: warning: "


def last_line(text: str) -> str:
    """The last non-blank line of ``text``, stripped ("" when there is none).

    Args:
        text: A program's output.

    Returns:
        The line.
    """
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def relay_warnings(stderr: str) -> None:
    """Prints the child's ``device_bench: warning:`` lines on this process's stderr.

    Args:
        stderr: The child's stderr text.
    """
    for line in stderr.splitlines():
        if line.startswith(WARNING_PREFIX):
            print(line, file=sys.stderr)
