"""The energy sources: where the watts come from (used by :mod:`device_bench.energy`).

Sources (``--energy SPEC``), each a small class with ``available()`` and ``read()``:

- ``rapl``: Linux powercap RAPL counters, ``/sys/class/powercap/intel-rapl:N/energy_uj`` (Intel,
  and AMD Zen through the same ``intel_rapl`` driver). The ``package-N`` zones plus their
  ``dram`` subzones are summed (DRAM is a separate RAPL domain; ``core``/``uncore`` subzones are
  parts of the package and are not added again); ``psys`` only when there is no package zone.
  Counters wrap at ``max_energy_range_uj``. ``energy_uj`` is root-only on Linux >= 5.10
  (CVE-2020-8694): then ``auto`` warns and falls back.
- ``hwmon`` / ``hwmon:NAME``: a power-monitor chip under ``/sys/class/hwmon`` (``ina219``,
  ``ina226``, ``ina260``, ``ina3221`` ... by default; NAME picks a driver name or an ``hwmonN``):
  ``power1_input`` (uW), else ``in1_input`` (mV) x ``curr1_input`` (mA).
- ``pi5-pmic``: ``vcgencmd pmic_read_adc`` on a Raspberry Pi 5, the sum of V x A over the rails
  that report both (PMIC outputs: the 5 V USB load and conversion losses are not included).
- ``android``: the battery's ``power_now`` (uW) or ``current_now`` (uA) x ``voltage_now`` (uV)
  under ``/sys/class/power_supply``; only while it reads ``Discharging`` (on a charger the
  battery current says nothing about the device's draw). The magnitude is used: drivers disagree
  on the sign.
- ``meter:CMD``: an external command (split with ``shlex``, never run through a shell) that
  prints watts (a trailing ``mW``/``uW`` is understood), run again for every sample.

Each class registers its kind where it is defined (``@energy_source``: name, argument, place in
the ``auto`` order; see :mod:`device_bench.energy_base`). ``profile`` registers itself in
:mod:`device_bench.power_profiles`; ``auto`` and ``none`` are resolved in
:mod:`device_bench.energy`.

Needs only the standard library (no numpy, no TensorFlow).
"""

from __future__ import annotations

import math
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

from device_bench.energy_base import (
    Argument,
    EnergyReadError,
    EnergySource,
    SourcePlace,
    energy_source,
)
from device_bench.errors import BenchInputError

__all__ = [
    "INA_DRIVERS",
    "AndroidBatterySource",
    "EnergyReadError",
    "EnergySource",
    "HwmonSource",
    "MeterSource",
    "Pi5PmicSource",
    "RaplSource",
    "parse_pmic_adc",
]

INA_DRIVERS = ("ina209", "ina219", "ina220", "ina226", "ina230", "ina231", "ina233", "ina237",
               "ina238", "ina260", "ina3221")


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError as e:
        raise EnergyReadError(f"cannot read {path}: {e.strerror or e}") from e


def _read_int(path: Path) -> int:
    text = _read_text(path)
    try:
        return int(text)
    except ValueError as e:
        raise EnergyReadError(f"{path} holds {text!r}, expected an integer") from e


def _numbered(entries: list[Path]) -> list[Path]:
    return sorted(entries, key=lambda p: [int(x) if x.isdigit() else x
                                          for x in re.split(r"(\d+)", p.name)])


@energy_source("rapl", auto_rank=0)
class RaplSource:
    """Linux powercap RAPL energy counters (see the module docstring for what is summed).

    Args:
        root: The directory that holds ``sys/class/powercap``.
    """

    kind = "energy"
    interval_s = 0.5

    def __init__(self, root: str = "/") -> None:
        self.name = "rapl"
        self.root = root
        self.why_unavailable: str | None = None
        self._zones: list[tuple[str, Path, int]] = []  # (label, dir, max_energy_range_uj)
        self._last: dict[str, int] = {}
        self._total_uj = 0

    def _find_zones(self) -> list[tuple[str, Path]]:
        base = Path(self.root) / "sys" / "class" / "powercap"
        try:
            entries = list(base.iterdir())
        except OSError:
            return []
        zones: list[tuple[str, Path]] = []
        for prefix in ("intel-rapl", "intel-rapl-mmio"):  # mmio repeats package-0: fallback only
            tops = _numbered([e for e in entries if re.fullmatch(rf"{prefix}:\d+", e.name)])
            named = [(_read_name(t), t) for t in tops]
            packages = [(n, t) for n, t in named if n.startswith("package")]
            for _, top in packages:
                zones.append((f"{top.name} {_read_name(top)}", top))
                for sub in _numbered(list(top.glob(f"{top.name}:*"))):
                    if _read_name(sub) == "dram":
                        zones.append((f"{sub.name} dram", sub))
            if not packages:
                zones += [(f"{t.name} psys", t) for n, t in named if n == "psys"]
            if zones:
                return zones
        return zones

    @classmethod
    def from_spec(cls, argument: str | None, place: SourcePlace) -> RaplSource:
        """The source of ``rapl`` (no argument), under ``place.root``."""
        return cls(place.root)

    def available(self) -> bool:
        zones = self._find_zones()
        if not zones:
            self.why_unavailable = "no intel-rapl package zone under /sys/class/powercap"
            return False
        found = []
        for label, path in zones:
            energy = path / "energy_uj"
            try:
                energy.read_text()
            except PermissionError:
                self.why_unavailable = (
                    f"{energy} is not readable by this user (root-only since Linux 5.10, "
                    "CVE-2020-8694); run as root or make it readable (chmod o+r)"
                )
                return False
            except OSError as e:
                self.why_unavailable = f"cannot read {energy}: {e.strerror or e}"
                return False
            try:
                found.append((label, path, _read_int(path / "max_energy_range_uj")))
            except EnergyReadError as e:
                self.why_unavailable = str(e)
                return False
        self._zones = found
        return True

    def read(self) -> float:
        if not self._zones and not self.available():
            raise EnergyReadError(f"rapl: {self.why_unavailable}")
        for label, path, max_range in self._zones:
            raw = _read_int(path / "energy_uj")
            last = self._last.get(label)
            if last is not None:
                # The counter runs from 0 to max_energy_range_uj and starts again at 0.
                # (One energy unit, 15-61 uJ, per wrap is below what matters here.)
                self._total_uj += raw - last if raw >= last else raw + max_range - last
            self._last[label] = raw
        return self._total_uj / 1e6

    def detail(self) -> dict[str, Any]:
        return {"zones": [label for label, _, _ in self._zones],
                "scope": "CPU package(s) and DRAM; not the rest of the machine"}


def _read_name(path: Path) -> str:
    try:
        return (path / "name").read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return ""


@energy_source("hwmon", argument=Argument.OPTIONAL, metavar="NAME", auto_rank=1)
class HwmonSource:
    """A power-monitor chip (INA2xx family by default) under ``/sys/class/hwmon``.

    Args:
        root: The directory that holds ``sys/class/hwmon``.
        select: A driver name (``ina226``) or an ``hwmonN`` folder; None takes the first chip
            of the INA family.
    """

    kind = "power"
    interval_s = 0.1

    def __init__(self, root: str = "/", select: str | None = None) -> None:
        self.name = "hwmon" if select is None else f"hwmon:{select}"
        self.root = root
        self.select = select
        self.why_unavailable: str | None = None
        self._dir: Path | None = None
        self._driver = ""

    @classmethod
    def from_spec(cls, argument: str | None, place: SourcePlace) -> HwmonSource:
        """The source of ``hwmon`` or ``hwmon:NAME`` (a driver name or ``hwmonN``)."""
        return cls(place.root, argument or None)

    def available(self) -> bool:
        base = Path(self.root) / "sys" / "class" / "hwmon"
        try:
            entries = _numbered([e for e in base.iterdir() if e.name.startswith("hwmon")])
        except OSError:
            entries = []
        for entry in entries:
            # Older kernels keep the attributes one level down, in device/.
            attrs = entry if (entry / "name").exists() else entry / "device"
            driver = _read_name(attrs)
            wanted = (driver in INA_DRIVERS if self.select is None
                      else self.select in (driver, entry.name))
            if not wanted:
                continue
            has_power = os.access(attrs / "power1_input", os.R_OK)
            has_pair = all(os.access(attrs / f, os.R_OK) for f in ("in1_input", "curr1_input"))
            if has_power or has_pair:
                self._dir, self._driver = attrs, driver
                return True
        what = "an INA2xx power monitor" if self.select is None else repr(self.select)
        self.why_unavailable = f"no readable hwmon sensor {what} under /sys/class/hwmon"
        return False

    def read(self) -> float:
        if self._dir is None and not self.available():
            raise EnergyReadError(f"{self.name}: {self.why_unavailable}")
        attrs = self._dir or Path(self.root)
        if (attrs / "power1_input").exists():
            return _read_int(attrs / "power1_input") / 1e6  # uW
        return _read_int(attrs / "in1_input") * _read_int(attrs / "curr1_input") / 1e6  # mV*mA

    def detail(self) -> dict[str, Any]:
        return {"sensor": str(self._dir), "driver": self._driver}


_PMIC_LINE = re.compile(
    r"(?P<rail>[A-Za-z0-9_]+)_(?P<unit>[AV])\s+(?:current|volt)\(\d+\)=(?P<value>[-+0-9.eE]+)[AV]"
)


def parse_pmic_adc(text: str) -> dict[str, float]:
    """Watts per rail from ``vcgencmd pmic_read_adc`` output.

    Lines look like ``VDD_CORE_A current(7)=0.75012000A`` and ``VDD_CORE_V volt(15)=0.86173300V``
    (the indices of a rail's two lines differ, so rails are paired by name). Rails with only a
    voltage (``EXT5V``, ``BATT``) carry no power figure and are left out. Output separated by
    NULs instead of newlines (the firmware mailbox) parses the same.

    Args:
        text: The command's output.

    Returns:
        ``{rail: watts}`` for every rail with both a current and a voltage.
    """
    amps: dict[str, float] = {}
    volts: dict[str, float] = {}
    for match in _PMIC_LINE.finditer(text.replace("\x00", "\n")):
        try:
            value = float(match.group("value"))
        except ValueError:
            continue
        (amps if match.group("unit") == "A" else volts)[match.group("rail")] = value
    return {rail: amps[rail] * volts[rail] for rail in amps if rail in volts}


def _run(argv: list[str], timeout_s: float) -> str:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s,
                              check=False)
    except (OSError, subprocess.SubprocessError) as e:
        raise EnergyReadError(f"{shlex.join(argv)} failed: {e}") from e
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no message"])[-1]
        raise EnergyReadError(f"{shlex.join(argv)} exited {proc.returncode}: {last}")
    return proc.stdout


@energy_source("pi5-pmic", auto_rank=2)
class Pi5PmicSource:
    """Raspberry Pi 5 PMIC rails through ``vcgencmd pmic_read_adc``.

    Args:
        vcgencmd: The program (name on PATH or a path).
        timeout_s: Seconds one reading may take.
    """

    kind = "power"
    interval_s = 0.25

    def __init__(self, vcgencmd: str = "vcgencmd", timeout_s: float = 5.0) -> None:
        self.name = "pi5-pmic"
        self.vcgencmd = vcgencmd
        self.timeout_s = timeout_s
        self.why_unavailable: str | None = None
        self._rails: list[str] = []

    @classmethod
    def from_spec(cls, argument: str | None, place: SourcePlace) -> Pi5PmicSource:
        """The source of ``pi5-pmic`` (no argument), through ``place.vcgencmd``."""
        return cls(place.vcgencmd)

    def available(self) -> bool:
        if shutil.which(self.vcgencmd) is None:
            self.why_unavailable = f"{self.vcgencmd!r} is not on PATH (not a Raspberry Pi?)"
            return False
        try:
            rails = parse_pmic_adc(_run([self.vcgencmd, "pmic_read_adc"], self.timeout_s))
        except EnergyReadError as e:
            self.why_unavailable = str(e)
            return False
        if not rails:
            self.why_unavailable = "vcgencmd pmic_read_adc lists no rail (not a Pi 5?)"
            return False
        self._rails = sorted(rails)
        return True

    def read(self) -> float:
        rails = parse_pmic_adc(_run([self.vcgencmd, "pmic_read_adc"], self.timeout_s))
        if not rails:
            raise EnergyReadError("vcgencmd pmic_read_adc printed no rail with V and A")
        return sum(rails.values())

    def detail(self) -> dict[str, Any]:
        return {"rails": self._rails,
                "scope": "PMIC output rails; excludes 5 V USB loads and conversion losses"}


@energy_source("android", auto_rank=3)
class AndroidBatterySource:
    """The battery power_supply (Android phones, also Linux laptops and SBC battery boards).

    Args:
        root: The directory that holds ``sys/class/power_supply``.
    """

    kind = "power"
    interval_s = 0.1

    def __init__(self, root: str = "/") -> None:
        self.name = "android"
        self.root = root
        self.why_unavailable: str | None = None
        self._dir: Path | None = None

    def _find(self) -> Path | None:
        base = Path(self.root) / "sys" / "class" / "power_supply"
        if (base / "battery").is_dir():
            return base / "battery"
        try:
            entries = _numbered(list(base.iterdir()))
        except OSError:
            return None
        for entry in entries:
            try:
                if (entry / "type").read_text().strip() == "Battery":
                    return entry
            except OSError:
                continue
        return None

    @classmethod
    def from_spec(cls, argument: str | None, place: SourcePlace) -> AndroidBatterySource:
        """The source of ``android`` (no argument), under ``place.root``."""
        return cls(place.root)

    def available(self) -> bool:
        supply = self._find()
        if supply is None:
            self.why_unavailable = "no battery under /sys/class/power_supply"
            return False
        try:
            status = _read_text(supply / "status")
        except EnergyReadError as e:
            self.why_unavailable = str(e)
            return False
        if status != "Discharging":
            self.why_unavailable = (
                f"battery {supply.name} is {status!r}, not 'Discharging': on a charger its "
                "current is not the device's draw (unplug, or adb over Wi-Fi)"
            )
            return False
        self._dir = supply
        try:
            self.read()
        except EnergyReadError as e:
            self.why_unavailable = str(e)
            self._dir = None
            return False
        return True

    def read(self) -> float:
        if self._dir is None:
            raise EnergyReadError(f"android: {self.why_unavailable or 'not set up'}")
        status = _read_text(self._dir / "status")
        if status != "Discharging":
            raise EnergyReadError(f"battery {self._dir.name} changed to {status!r} mid-run")
        if (self._dir / "power_now").exists():
            return abs(_read_int(self._dir / "power_now")) / 1e6  # uW
        current = abs(_read_int(self._dir / "current_now"))  # uA
        return current * _read_int(self._dir / "voltage_now") / 1e12  # uV

    def detail(self) -> dict[str, Any]:
        return {"supply": str(self._dir)}


_WATTS = re.compile(r"([-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)\s*(mW|uW|µW|W)?\b")
_SCALE = {None: 1.0, "W": 1.0, "mW": 1e-3, "uW": 1e-6, "µW": 1e-6}


@energy_source("meter", argument=Argument.REQUIRED, metavar="CMD", check_argument=True)
class MeterSource:
    """An external meter: a command that prints the current power in watts.

    Args:
        command: The command line after ``meter:`` (split with ``shlex``; no shell).
        timeout_s: Seconds one reading may take.

    Raises:
        BenchInputError: The command line is empty or cannot be split.
    """

    kind = "power"
    interval_s = 0.2

    def __init__(self, command: str, timeout_s: float = 5.0) -> None:
        try:
            self.argv = shlex.split(command)
        except ValueError as e:
            raise BenchInputError(f"energy meter command {command!r} cannot be split: {e}") from e
        if not self.argv:
            raise BenchInputError("energy source 'meter:' needs a command, e.g. meter:'mymeter -w'")
        self.name = f"meter:{command}"
        self.timeout_s = timeout_s
        self.why_unavailable: str | None = None

    @classmethod
    def from_spec(cls, argument: str | None, place: SourcePlace) -> MeterSource:
        """The source of ``meter:CMD``.

        Raises:
            BenchInputError: ``CMD`` is empty or cannot be split.
        """
        return cls(argument or "")

    def available(self) -> bool:
        if shutil.which(self.argv[0]) is None:
            self.why_unavailable = f"meter program {self.argv[0]!r} not found"
            return False
        try:
            self.read()
        except EnergyReadError as e:
            self.why_unavailable = str(e)
            return False
        return True

    def read(self) -> float:
        out = _run(self.argv, self.timeout_s)
        matches = _WATTS.findall(out)
        if not matches:
            raise EnergyReadError(f"meter {shlex.join(self.argv)} printed no number: {out!r:.80}")
        number, unit = matches[-1]
        watts = float(number) * _SCALE[unit or None]
        if not math.isfinite(watts) or watts < 0:
            raise EnergyReadError(f"meter {shlex.join(self.argv)} printed {watts} W")
        return watts

    def detail(self) -> dict[str, Any]:
        return {"command": self.argv}
