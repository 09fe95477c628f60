"""Facts about the machine a benchmark ran on: the ``target`` block of a bench result.

Every file read is under ``root`` (default ``/``), so a test, or a host looking at a board's copied
``/proc`` and ``/sys``, can point it at another tree. A fact that cannot be read is None, never a
guess.
"""

from __future__ import annotations

import glob
import os
import platform
import re
import socket
import subprocess
from pathlib import Path
from typing import Any

__all__ = [
    "ARM_CPU_PARTS",
    "cpu_model",
    "parse_cpuinfo",
    "parse_throttled",
    "read_governor",
    "read_temperature_c",
    "read_throttled",
    "target_facts",
]

# Arm Ltd. (implementer 0x41) "CPU part" codes of the cores found on common boards.
ARM_CPU_PARTS: dict[int, str] = {
    0xC07: "Cortex-A7",
    0xC08: "Cortex-A8",
    0xC09: "Cortex-A9",
    0xC0F: "Cortex-A15",
    0xD03: "Cortex-A53",
    0xD04: "Cortex-A35",
    0xD05: "Cortex-A55",
    0xD07: "Cortex-A57",
    0xD08: "Cortex-A72",
    0xD09: "Cortex-A73",
    0xD0A: "Cortex-A75",
    0xD0B: "Cortex-A76",
    0xD0C: "Neoverse-N1",
    0xD0D: "Cortex-A77",
    0xD40: "Neoverse-V1",
    0xD41: "Cortex-A78",
    0xD44: "Cortex-X1",
    0xD46: "Cortex-A510",
    0xD47: "Cortex-A710",
    0xD48: "Cortex-X2",
    0xD49: "Neoverse-N2",
    0xD4F: "Neoverse-V2",
    0xD80: "Cortex-A520",
    0xD81: "Cortex-A720",
    0xD82: "Cortex-X4",
}

# Low nibble of `vcgencmd get_throttled`: conditions present *now* (bits 16..19 say "since boot").
# 0x1 under-voltage, 0x2 ARM frequency capped, 0x4 currently throttled, 0x8 soft temperature limit.
_THROTTLED_NOW_MASK = 0xF
_THROTTLED_RE = re.compile(r"^\s*throttled\s*=\s*(0x[0-9a-fA-F]+|\d+)\s*$")


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def parse_cpuinfo(text: str) -> list[dict[str, str]]:
    """Splits ``/proc/cpuinfo`` text into blocks of ``key: value`` pairs.

    Args:
        text: The file's content.

    Returns:
        One dict per blank-line separated block (a processor, or the board block at the end on
        ARM), keys and values stripped; the first occurrence of a key in a block wins.
    """
    blocks: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if current:
                blocks.append(current)
                current = {}
            continue
        key, sep, value = line.partition(":")
        if sep:
            current.setdefault(key.strip(), value.strip())
    if current:
        blocks.append(current)
    return blocks


def _arm_core_name(fields: dict[str, str]) -> str | None:
    part_text = fields.get("CPU part")
    if not part_text:
        return None
    try:
        part = int(part_text, 0)
        implementer = int(fields.get("CPU implementer", "0x0"), 0)
    except ValueError:
        return None
    if implementer == 0x41 and part in ARM_CPU_PARTS:
        return f"ARM {ARM_CPU_PARTS[part]}"
    return f"CPU implementer {implementer:#x} part {part:#x}"


def cpu_model(root: str = "/") -> str | None:
    """The CPU (and on ARM boards, the board) model.

    x86 reports ``model name``. ARM kernels report the board as ``Model`` (or ``Hardware``, or the
    device tree's ``model``) and the core as ``CPU implementer``/``CPU part`` codes (their
    ``model name``, when present, is only ``ARMv7 Processor rev 3 (v7l)``); both are given:
    ``"Raspberry Pi 4 Model B Rev 1.4 (ARM Cortex-A72)"``. On the real root (``/``) with no usable
    cpuinfo, ``platform.processor()`` is the fallback.

    Args:
        root: The directory that holds ``proc/cpuinfo`` and ``sys/firmware/devicetree``.

    Returns:
        The model string, or None when nothing names it.
    """
    base = Path(root)
    text = _read_text(base / "proc" / "cpuinfo")
    merged: dict[str, str] = {}
    for block in parse_cpuinfo(text) if text else []:
        for key, value in block.items():
            merged.setdefault(key, value)
    is_arm = "CPU implementer" in merged or "CPU part" in merged
    if merged.get("model name") and not is_arm:
        return merged["model name"]
    board = merged.get("Model") or merged.get("Hardware")
    if not board:
        tree = _read_text(base / "sys" / "firmware" / "devicetree" / "base" / "model")
        board = (tree.strip("\x00\n ") or None) if tree else None
    core = _arm_core_name(merged) or merged.get("model name") or None
    if board and core:
        return f"{board} ({core})"
    if board or core:
        return board or core
    if os.path.realpath(root) == os.path.realpath("/"):
        return platform.processor() or None
    return None


def read_governor(root: str = "/") -> str | None:
    """The cpufreq scaling governor of CPU 0 (``performance``, ``ondemand`` ...).

    Args:
        root: The directory that holds ``sys/devices/system/cpu``.

    Returns:
        The governor name, or None when cpufreq is absent or unreadable.
    """
    text = _read_text(
        Path(root) / "sys" / "devices" / "system" / "cpu" / "cpu0" / "cpufreq" / "scaling_governor"
    )
    value = text.strip() if text else ""
    return value or None


def read_temperature_c(root: str = "/") -> float | None:
    """The hottest thermal zone, in degrees Celsius.

    Args:
        root: The directory that holds ``sys/class/thermal/thermal_zone*/temp`` (millidegrees).

    Returns:
        The maximum over readable zones, rounded to 3 decimals, or None when no zone reads.
    """
    pattern = os.path.join(glob.escape(str(Path(root))), "sys", "class", "thermal",
                           "thermal_zone*", "temp")
    temps: list[float] = []
    for path in sorted(glob.glob(pattern)):
        text = _read_text(Path(path))
        if text is None:
            continue
        try:
            temps.append(int(text.strip()) / 1000.0)
        except ValueError:
            continue
    return round(max(temps), 3) if temps else None


def parse_throttled(text: str) -> bool | None:
    """Reads the output of ``vcgencmd get_throttled`` (Raspberry Pi firmware).

    Args:
        text: For example ``"throttled=0x50005\\n"``.

    Returns:
        True when any "now" flag (bits 0..3: under-voltage, frequency capped, throttled, soft
        temperature limit) is set, False when none is, None when the text is not that output.
    """
    for line in text.splitlines():
        match = _THROTTLED_RE.match(line)
        if match:
            return bool(int(match.group(1), 0) & _THROTTLED_NOW_MASK)
    return None


def read_throttled(vcgencmd: str | None = "vcgencmd", timeout_s: float = 5.0) -> bool | None:
    """Asks the Raspberry Pi firmware whether the board is throttled now.

    Args:
        vcgencmd: The ``vcgencmd`` program (name on PATH or a path); None skips the check.
        timeout_s: Seconds to wait for it.

    Returns:
        See :func:`parse_throttled`; None when the program is absent, fails or times out.
    """
    if not vcgencmd:
        return None
    try:
        proc = subprocess.run(
            [vcgencmd, "get_throttled"],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if proc.returncode != 0:
        return None
    return parse_throttled(proc.stdout)


def target_facts(
    kind: str = "local", *, root: str = "/", vcgencmd: str | None = "vcgencmd"
) -> dict[str, Any]:
    """The ``target`` block of an ``edgekit.bench/1`` result, read on the machine itself.

    Args:
        kind: The target kind to report (``local``, ``ssh``, ``adb``, ``qemu``).
        root: The directory that holds ``proc`` and ``sys`` (``/`` on a real device).
        vcgencmd: The Raspberry Pi ``vcgencmd`` program; None skips the throttle check.

    Returns:
        ``{"kind", "host", "machine", "cpu", "cores", "os", "governor", "temperature_c",
        "throttled"}``; any fact that cannot be read is None.
    """
    return {
        "kind": kind,
        "host": socket.gethostname() or None,
        "machine": platform.machine() or None,
        "cpu": cpu_model(root),
        "cores": os.cpu_count(),
        "os": platform.platform() or None,
        "governor": read_governor(root),
        "temperature_c": read_temperature_c(root),
        "throttled": read_throttled(vcgencmd),
    }
