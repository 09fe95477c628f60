"""Board power profiles: the idle and full-load watts of common boards, for an energy *estimate*.

Used only when no energy source can measure (see :mod:`device_bench.energy`); every result built
from a profile says ``"measured": false``. Each figure is whole-board power at the supply (USB
meter or wall meter, no peripherals), from the public measurement named beside it; boards vary by
a few tenths of a watt with revision, firmware and cooling, so an estimate is an order of
magnitude, not a measurement.

The board is found from the device tree's ``model`` (``/proc/device-tree/model``, the same file as
``/sys/firmware/devicetree/base/model``), else the ``Model`` line of ``/proc/cpuinfo`` (Raspberry
Pi kernels), else, on x86, laptop or desktop from ``/sys/class/power_supply`` (a ``Battery``
supply) and ``/sys/class/dmi/id/chassis_type``. Everything is read under ``root`` so tests can
point at a recorded tree. Needs nothing beyond the standard library.

The estimate is the ``--energy profile[:BOARD]`` kind; it registers itself here
(:data:`PROFILE_KIND`, see :mod:`device_bench.energy_base`), and ``auto`` falls back to it.
"""

from __future__ import annotations

import os
import platform
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from device_bench.energy_base import Argument, EnergyKind, SourcePlace, register_kind
from device_bench.errors import BenchInputError

__all__ = ["PROFILES", "PROFILE_KIND", "PowerProfile", "detect_profile", "estimate_energy",
           "estimate_from_profile", "read_board_model"]


@dataclass(frozen=True)
class PowerProfile:
    """Idle and full-load power of one board.

    Attributes:
        key: Short name used in ``source: "profile:<key>"``.
        board: Human name.
        idle_w: Board power at idle (W).
        load_w: Board power with every core busy (W).
        cores: CPU cores the load figure loads; None = the machine's own core count (x86).
        source: Where the figures come from.
    """

    key: str
    board: str
    idle_w: float
    load_w: float
    cores: int | None
    source: str

    def active_w(self, threads: int, machine_cores: int | None) -> float:
        """Estimated board power with ``threads`` cores busy.

        Linear between idle and full load in the share of cores in use: a CPU-bound inference
        on 1 of 4 cores draws about a quarter of the idle-to-load step.

        Args:
            threads: Cores the interpreter keeps busy (>= 1).
            machine_cores: The machine's core count, used when the profile has none.

        Returns:
            Watts.
        """
        cores = self.cores or machine_cores or 1
        share = min(max(threads, 1), cores) / cores
        return self.idle_w + (self.load_w - self.idle_w) * share


# Sources, in the order the profiles cite them:
# [pidramble] Jeff Geerling, "Power Consumption Benchmarks", pidramble.com/wiki/benchmarks/
#   power-consumption: headless, no USB devices, idle 5 min after boot vs `stress --cpu 4`
#   (method: github.com/geerlingguy/raspberry-pi-dramble/issues/180).
# [cnx-zero2] cnx-software.com/2021/12/09/raspberry-pi-zero-2-w-power-consumption (Otii Arc).
# [andrejacobs] andrejacobs.org/electronics/raspberry-pi-zero-2-w-temperature-and-power-consumption
#   (Zero 2 W under stress draws ~270 mA / 1.4 W more than a Zero W).
# [iiab-4050] github.com/iiab/iiab/issues/4050 (Pi 5 idle ~0.65 A at 5 V on a USB tester).
# [sbc-21] github.com/geerlingguy/sbc-reviews/issues/21 (Pi 5: 7.9 W running Geekbench).
# [techfetch] thetechfetch.blogspot.com/2013/09/how-much-power-does-your-pc-need.html (typical
#   desktop ~50 W idle, rarely above 100 W at load, integrated graphics).
# [bitstream] bitstreamofconsciousness.blogspot.com/2008/08/notes-on-my-own-power-use.html
#   (laptop in use 25-30 W at the wall).
PROFILES: dict[str, PowerProfile] = {
    p.key: p
    for p in (
        PowerProfile("rpi5", "Raspberry Pi 5", 3.3, 7.9, 4,
                     "idle ~0.65 A x 5 V [iiab/iiab#4050]; load 7.9 W Geekbench multi-core "
                     "[geerlingguy/sbc-reviews#21]"),
        PowerProfile("rpi4b", "Raspberry Pi 4 Model B", 2.7, 6.4, 4,
                     "idle 540 mA (2.7 W), stress --cpu 4 1280 mA (6.4 W) [pidramble]"),
        PowerProfile("rpi3bplus", "Raspberry Pi 3 Model B+", 1.9, 5.1, 4,
                     "idle 350 mA (1.9 W), max CPU load 980 mA (5.1 W) [pidramble]"),
        PowerProfile("rpi3b", "Raspberry Pi 3 Model B", 1.4, 3.7, 4,
                     "idle 260 mA (1.4 W), max CPU load 730 mA (3.7 W) [pidramble]"),
        PowerProfile("rpizero2w", "Raspberry Pi Zero 2 W", 0.6, 2.6, 4,
                     "idle 120 mA x 5 V (0.6 W) [cnx-software 2021-12-09]; load = Pi Zero max "
                     "1.2 W [pidramble] + 1.4 W [andrejacobs]"),
        PowerProfile("x86-laptop", "x86 laptop (generic)", 10.0, 30.0, None,
                     "order of magnitude only: laptop in use 25-30 W at the wall [bitstream]; "
                     "idle taken as a third of that"),
        PowerProfile("x86-desktop", "x86 desktop (generic)", 50.0, 100.0, None,
                     "order of magnitude only: ~50 W idle, ~100 W CPU load, integrated "
                     "graphics [techfetch]"),
    )
}

# Device-tree / cpuinfo model strings, most specific first ("3 Model B Plus" before "3 Model B").
_MODEL_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"Raspberry Pi 5\b"), "rpi5"),
    (re.compile(r"Raspberry Pi Compute Module 5\b"), "rpi5"),
    (re.compile(r"Raspberry Pi 4 Model B\b"), "rpi4b"),
    (re.compile(r"Raspberry Pi 3 Model B Plus\b"), "rpi3bplus"),
    (re.compile(r"Raspberry Pi 3 Model B\b"), "rpi3b"),
    (re.compile(r"Raspberry Pi Zero 2\b"), "rpizero2w"),
)

# SMBIOS chassis types (DMTF DSP0134 7.4.1) that are portable machines.
_PORTABLE_CHASSIS = {8, 9, 10, 11, 14, 30, 31, 32}


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def read_board_model(root: str = "/") -> str | None:
    """The board's model string (device tree, else the ``Model`` line of cpuinfo).

    Args:
        root: The directory that holds ``proc`` and ``sys``.

    Returns:
        For example ``"Raspberry Pi 4 Model B Rev 1.4"``, or None.
    """
    base = Path(root)
    for rel in ("proc/device-tree/model", "sys/firmware/devicetree/base/model"):
        text = _read(base / rel)
        if text and text.strip("\x00\n "):
            return text.strip("\x00\n ")
    cpuinfo = _read(base / "proc" / "cpuinfo") or ""
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "Model" and value.strip():
            return value.strip()
    return None


def _is_x86(root: str) -> bool:
    cpuinfo = _read(Path(root) / "proc" / "cpuinfo") or ""
    if "vendor_id" in cpuinfo and ("GenuineIntel" in cpuinfo or "AuthenticAMD" in cpuinfo):
        return True
    if not cpuinfo and os.path.realpath(root) == os.path.realpath("/"):
        return platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")
    return False


def _is_portable(root: str) -> bool:
    base = Path(root) / "sys" / "class"
    supplies = base / "power_supply"
    try:
        entries = sorted(supplies.iterdir())
    except OSError:
        entries = []
    for entry in entries:
        if (_read(entry / "type") or "").strip() == "Battery":
            return True
    chassis = (_read(base / "dmi" / "id" / "chassis_type") or "").strip()
    return chassis.isdigit() and int(chassis) in _PORTABLE_CHASSIS


def detect_profile(root: str = "/") -> PowerProfile | None:
    """The power profile of this board, or None when no profile fits.

    Args:
        root: The directory that holds ``proc`` and ``sys``.

    Returns:
        A Raspberry Pi profile when the model string names one; on x86 the generic laptop or
        desktop profile; None otherwise (unknown ARM boards get no guess).
    """
    model = read_board_model(root)
    if model:
        for pattern, key in _MODEL_PATTERNS:
            if pattern.search(model):
                return PROFILES[key]
    if _is_x86(root):
        return PROFILES["x86-laptop" if _is_portable(root) else "x86-desktop"]
    return None


def estimate_energy(profile: PowerProfile, mean_latency_ms: float, threads: int | None,
                    machine_cores: int | None) -> dict[str, Any]:
    """The energy block estimated from a board profile and the measured latency.

    W x ms = mJ: ``mj_per_inference`` = estimated active W x mean latency in ms.

    Args:
        profile: The board's idle/load watts.
        mean_latency_ms: Mean inference latency measured on this board.
        threads: Interpreter threads (None, the interpreter's default, is taken as 1).
        machine_cores: This machine's core count.

    Returns:
        The energy block with ``"measured": False`` and ``source: "profile:<key>"``.
    """
    busy = threads or 1
    active_w = profile.active_w(busy, machine_cores)
    return {
        "source": f"profile:{profile.key}",
        "measured": False,
        "mj_per_inference": round(active_w * mean_latency_ms, 9),
        "mj_per_inference_above_idle": round((active_w - profile.idle_w) * mean_latency_ms, 9),
        "idle_w": profile.idle_w,
        "active_w": round(active_w, 6),
        "detail": {
            "board": profile.board,
            "basis": f"estimate: profile watts with {busy} of "
                     f"{profile.cores or machine_cores} cores busy x mean latency "
                     f"{mean_latency_ms:.6g} ms",
            "profile_source": profile.source,
        },
    }


def estimate_from_profile(board: str | None, place: SourcePlace, mean_latency_ms: float,
                          threads: int | None) -> tuple[dict[str, Any], str] | None:
    """The ``profile[:BOARD]`` estimate: a named profile, else the one this board matches.

    Args:
        board: A key of :data:`PROFILES`; None detects the board under ``place.root``.
        place: Where to look for the board's model.
        mean_latency_ms: Mean inference latency measured on this board.
        threads: Interpreter threads.

    Returns:
        (the energy block, ``"the <board> power profile"``), or None when no profile fits.

    Raises:
        BenchInputError: ``board`` names no profile (the message lists them).
    """
    if board:
        if board not in PROFILES:
            raise BenchInputError(f"unknown power profile {board!r}; expected one of: "
                                  f"{', '.join(PROFILES)}")
        profile: PowerProfile | None = PROFILES[board]
    else:
        profile = detect_profile(place.root)
    if profile is None:
        return None
    block = estimate_energy(profile, mean_latency_ms, threads, os.cpu_count())
    return block, f"the {profile.board} power profile"


PROFILE_KIND = register_kind(EnergyKind("profile", Argument.OPTIONAL, "BOARD",
                                        estimate=estimate_from_profile))
