"""Each bench script owns one section of BENCHMARKS.md; this module rewrites just that section.

A section sits between ``<!-- section:NAME -->`` and ``<!-- /section:NAME -->``. Writing it
replaces that block (or appends it when new), leaves every other section as it was, and replaces
the file atomically (temp file + rename, mode from the umask).
"""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path

from device_bench.atomicio import write_text

__all__ = ["goal_figure", "machine_line", "write_section"]

HEADER = "# edgekit benchmarks\n\nEvery figure below names the command that produced it.\n"


def goal_figure(value: float, goal: float, sign: str = "") -> str:
    """A figure judged against a goal, with two decimals, or three where two would round onto it.

    ``0.498`` printed as ``0.50`` beside "goal >= 0.5: missed" reads as a contradiction; this
    prints ``0.498`` there and ``0.49`` or ``0.52`` elsewhere.

    Args:
        value: The figure, in the goal's unit (points, percent).
        goal: The threshold it is judged against.
        sign: ``"+"`` to always print the sign.

    Returns:
        The text, precise enough that the printed figure agrees with the judgement beside it.
    """
    text = f"{value:{sign}.2f}"
    return f"{value:{sign}.3f}" if float(text) == goal and value != goal else text


def machine_line() -> str:
    """The machine a section was measured on: CPU model, cores, OS and Python version.

    Returns:
        For example ``"AMD EPYC, 2 cores, Linux-6.18-x86_64-with-glibc2.36, Python 3.11.7"``.
    """
    from device_bench.sysinfo import cpu_model

    cpu = cpu_model() or platform.processor() or "unknown CPU"
    return (f"{cpu}, {os.cpu_count()} cores, {platform.platform()}, "
            f"Python {platform.python_version()}")


def write_section(path: str | os.PathLike[str], name: str, markdown: str) -> None:
    """Writes one named section of a Markdown file, keeping the others.

    Args:
        path: The Markdown file (``BENCHMARKS.md``); created with a header when missing.
        name: The section's name (letters, digits, ``-`` and ``_``).
        markdown: The section's body; it should start with a ``##`` heading and name the command
            that produced it.

    Raises:
        ValueError: ``name`` has other characters.
    """
    if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
        raise ValueError(f"section name {name!r}: expected letters, digits, '-' or '_'")
    target = Path(path)
    text = target.read_text(encoding="utf-8") if target.exists() else HEADER
    block = f"<!-- section:{name} -->\n{markdown.strip()}\n<!-- /section:{name} -->"
    pattern = re.compile(
        rf"<!-- section:{re.escape(name)} -->.*?<!-- /section:{re.escape(name)} -->", re.S
    )
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    # device_bench.atomicio: temp file + rename, with the mode the user's umask gives (a bare
    # mkstemp file would stay 0600)
    write_text(target, text if text.endswith("\n") else text + "\n")
