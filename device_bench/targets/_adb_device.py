"""What the adb target reads about an Android device: its core lists and its facts.

Kept apart from :mod:`device_bench.targets.adb` (which re-exports all of it): pure parsing, no adb
calls. :data:`FACTS_SCRIPT` runs in the device's shell; :func:`parse_device_facts` reads its output.
"""

from __future__ import annotations

import re
from typing import Any

from device_bench.errors import BenchInputError

__all__ = ["FACTS_SCRIPT", "cores_mask", "parse_cores", "parse_device_facts"]

_MAX_CORES = 64
# What the target reads about the phone, one key=value a line. A fixed script (no variable part).
FACTS_SCRIPT = (
    'echo "model=$(getprop ro.product.model 2>/dev/null)"; '
    'echo "manufacturer=$(getprop ro.product.manufacturer 2>/dev/null)"; '
    'echo "platform=$(getprop ro.board.platform 2>/dev/null)"; '
    'echo "release=$(getprop ro.build.version.release 2>/dev/null)"; '
    'echo "sdk=$(getprop ro.build.version.sdk 2>/dev/null)"; '
    'echo "machine=$(uname -m 2>/dev/null)"; '
    'echo "possible=$(cat /sys/devices/system/cpu/possible 2>/dev/null)"; '
    "for c in /sys/devices/system/cpu/cpu[0-9]*; do "
    'echo "governor${c##*/cpu}=$(cat "$c/cpufreq/scaling_governor" 2>/dev/null)"; done'
)


def parse_cores(text: str) -> tuple[int, ...]:
    """Reads a core list such as ``4-7`` or ``0,2,4-5`` (the kernel's cpulist form).

    Args:
        text: Comma-separated core numbers and ``A-B`` ranges.

    Returns:
        The cores, sorted, without duplicates.

    Raises:
        BenchInputError: The text is not such a list, or names a core above 63.
    """
    bad = BenchInputError(
        f"cores must be a core list such as '4-7' or '0,2,4-5' (cores 0..{_MAX_CORES - 1}), "
        f"got {text!r}"
    )
    if not isinstance(text, str) or not text.strip():
        raise bad
    cores: set[int] = set()
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not match:
            raise bad
        low = int(match.group(1))
        high = int(match.group(2)) if match.group(2) is not None else low
        if high < low or high >= _MAX_CORES:
            raise bad
        cores.update(range(low, high + 1))
    return tuple(sorted(cores))


def cores_mask(cores: tuple[int, ...] | list[int]) -> str:
    """The ``taskset`` affinity mask of a core list, in hex without ``0x`` (``(4, 5, 6, 7)`` ->
    ``"f0"``).

    Args:
        cores: Core numbers (0..63).

    Returns:
        The mask.

    Raises:
        BenchInputError: The list is empty or a core is out of range.
    """
    if not cores or any(
        isinstance(c, bool) or not isinstance(c, int) or not 0 <= c < _MAX_CORES for c in cores
    ):
        raise BenchInputError(f"cores must be a non-empty list of cores 0..63, got {cores!r}")
    return format(sum(1 << c for c in set(cores)), "x")


def _count_cpulist(text: str) -> int | None:
    try:
        return len(parse_cores(text))
    except BenchInputError:
        return None


def parse_device_facts(text: str, *, serial: str | None = None,
                       cores: tuple[int, ...] | None = None) -> dict[str, Any]:
    """The ``target`` block from the output of :data:`FACTS_SCRIPT`.

    Args:
        text: The script's output (``key=value`` lines).
        serial: The adb serial, reported as ``host``.
        cores: The pinned cores; the governor is that of the first one (else of cpu0).

    Returns:
        ``{"kind": "adb", "host", "machine", "cpu", "cores", "os", "governor",
        "temperature_c": None, "throttled": None}``; what the phone did not tell is None.
    """
    facts: dict[str, str] = {}
    for line in text.replace("\r", "").splitlines():
        key, sep, value = line.partition("=")
        if sep and value.strip():
            facts.setdefault(key.strip(), value.strip())
    device = " ".join(v for v in (facts.get("manufacturer"), facts.get("model")) if v)
    platform = facts.get("platform")
    cpu = f"{device} ({platform})" if device and platform else (device or platform or None)
    release, sdk = facts.get("release"), facts.get("sdk")
    os_name = None
    if release:
        os_name = f"Android {release}" + (f" (API {sdk})" if sdk else "")
    first = cores[0] if cores else 0
    return {
        "kind": "adb",
        "host": serial,
        "machine": facts.get("machine"),
        "cpu": cpu,
        "cores": _count_cpulist(facts["possible"]) if "possible" in facts else None,
        "os": os_name,
        "governor": facts.get(f"governor{first}"),
        "temperature_c": None,
        "throttled": None,
    }
