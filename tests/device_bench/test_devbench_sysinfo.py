"""device_bench.sysinfo on fake /proc and /sys trees laid out like real boards."""

from __future__ import annotations

import os
import platform
import socket
import stat
from pathlib import Path

import pytest

from device_bench.sysinfo import (
    cpu_model,
    parse_cpuinfo,
    parse_throttled,
    read_governor,
    read_temperature_c,
    read_throttled,
    target_facts,
)

_PI4_CORE_64 = """processor\t: {n}
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm crc32 cpuid
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x0
CPU part\t: 0xd08
CPU revision\t: 3
"""
# /proc/cpuinfo of a Raspberry Pi 4 on 64-bit Raspberry Pi OS.
PI4_CPUINFO_64 = "\n".join(_PI4_CORE_64.format(n=n) for n in range(4)) + """
Revision\t: c03114
Serial\t\t: 10000000a1b2c3d4
Model\t\t: Raspberry Pi 4 Model B Rev 1.4
"""

_PI4_CORE_32 = """processor\t: {n}
model name\t: ARMv7 Processor rev 3 (v7l)
BogoMIPS\t: 108.00
Features\t: half thumb fastmult vfp edsp neon vfpv3 tls vfpv4 idiva idivt vfpd32 lpae evtstrm crc32
CPU implementer\t: 0x41
CPU architecture: 7
CPU variant\t: 0x0
CPU part\t: 0xd08
CPU revision\t: 3
"""
# The same board on 32-bit Raspberry Pi OS: "model name" only names the instruction set.
PI4_CPUINFO_32 = "\n".join(_PI4_CORE_32.format(n=n) for n in range(4)) + """
Hardware\t: BCM2835
Revision\t: c03111
Serial\t\t: 100000002f1f5b5d
Model\t\t: Raspberry Pi 4 Model B Rev 1.1
"""

X86_CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
cpu family\t: 6
model\t\t: 142
model name\t: Intel(R) Core(TM) i7-8565U CPU @ 1.80GHz
stepping\t: 12

processor\t: 1
vendor_id\t: GenuineIntel
model name\t: Intel(R) Core(TM) i7-8565U CPU @ 1.80GHz
"""


def _write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture()
def pi4_root(tmp_path: Path) -> Path:
    """A directory laid out like a Raspberry Pi 4's /proc and /sys."""
    _write(tmp_path, "proc/cpuinfo", PI4_CPUINFO_64)
    _write(tmp_path, "sys/class/thermal/thermal_zone0/temp", "48312\n")
    _write(tmp_path, "sys/devices/system/cpu/cpu0/cpufreq/scaling_governor", "ondemand\n")
    return tmp_path


def test_target_facts_on_a_pi4_tree(pi4_root: Path) -> None:
    facts = target_facts("local", root=str(pi4_root), vcgencmd=None)
    assert facts == {
        "kind": "local",
        "host": socket.gethostname(),
        "machine": platform.machine(),
        "cpu": "Raspberry Pi 4 Model B Rev 1.4 (ARM Cortex-A72)",
        "cores": os.cpu_count(),
        "os": platform.platform(),
        "governor": "ondemand",
        "temperature_c": 48.312,
        "throttled": None,
    }


def test_target_facts_on_a_missing_tree(tmp_path: Path) -> None:
    facts = target_facts("ssh", root=str(tmp_path / "nothing"), vcgencmd=None)
    assert facts["kind"] == "ssh"
    assert facts["cpu"] is None
    assert facts["governor"] is None
    assert facts["temperature_c"] is None
    assert facts["throttled"] is None
    assert list(facts) == ["kind", "host", "machine", "cpu", "cores", "os", "governor",
                           "temperature_c", "throttled"]


def test_cpu_model_pi4_32bit_prefers_board_and_core(tmp_path: Path) -> None:
    _write(tmp_path, "proc/cpuinfo", PI4_CPUINFO_32)
    assert cpu_model(str(tmp_path)) == "Raspberry Pi 4 Model B Rev 1.1 (ARM Cortex-A72)"


def test_cpu_model_x86(tmp_path: Path) -> None:
    _write(tmp_path, "proc/cpuinfo", X86_CPUINFO)
    assert cpu_model(str(tmp_path)) == "Intel(R) Core(TM) i7-8565U CPU @ 1.80GHz"


def test_cpu_model_arm_board_from_device_tree(tmp_path: Path) -> None:
    # Many ARM boards print no Model line; the device tree names the board (NUL-terminated).
    core = _PI4_CORE_64.format(n=0).replace("0xd08", "0xd03")
    _write(tmp_path, "proc/cpuinfo", core)
    _write(tmp_path, "sys/firmware/devicetree/base/model", "Radxa ROCK Pi S\x00")
    assert cpu_model(str(tmp_path)) == "Radxa ROCK Pi S (ARM Cortex-A53)"


def test_cpu_model_unknown_arm_part_is_reported_not_guessed(tmp_path: Path) -> None:
    text = _PI4_CORE_64.format(n=0).replace("0x41", "0x51").replace("0xd08", "0x802")
    _write(tmp_path, "proc/cpuinfo", text)
    assert cpu_model(str(tmp_path)) == "CPU implementer 0x51 part 0x802"


def test_parse_cpuinfo_blocks() -> None:
    blocks = parse_cpuinfo(PI4_CPUINFO_64)
    assert len(blocks) == 5
    assert blocks[0]["CPU part"] == "0xd08"
    assert blocks[-1]["Model"] == "Raspberry Pi 4 Model B Rev 1.4"


def test_temperature_is_the_hottest_readable_zone(tmp_path: Path) -> None:
    _write(tmp_path, "sys/class/thermal/thermal_zone0/temp", "41000\n")
    _write(tmp_path, "sys/class/thermal/thermal_zone1/temp", "55250\n")
    _write(tmp_path, "sys/class/thermal/thermal_zone2/temp", "not a number\n")
    (tmp_path / "sys/class/thermal/thermal_zone3").mkdir()  # zone with no temp file
    assert read_temperature_c(str(tmp_path)) == 55.25


def test_governor_empty_file_is_none(tmp_path: Path) -> None:
    _write(tmp_path, "sys/devices/system/cpu/cpu0/cpufreq/scaling_governor", "\n")
    assert read_governor(str(tmp_path)) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("throttled=0x0\n", False),
        ("throttled=0x50005\n", True),  # under-voltage + throttled now (and since boot)
        ("throttled=0x50000\n", False),  # only "has occurred since boot" flags
        ("throttled=0x2", True),  # ARM frequency capped now
        ("throttled=0x8", True),  # soft temperature limit now
        ("error=1 error_msg=\"Command not registered\"\n", None),
        ("", None),
    ],
)
def test_parse_throttled(text: str, expected: bool | None) -> None:
    assert parse_throttled(text) is expected


def _fake_program(path: Path, body: str) -> str:
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_read_throttled_runs_vcgencmd(tmp_path: Path) -> None:
    ok = _fake_program(tmp_path / "vcgencmd",
                       '[ "$1" = get_throttled ] && echo throttled=0x50005')
    assert read_throttled(ok) is True
    idle = _fake_program(tmp_path / "vcgencmd_idle", "echo throttled=0x0")
    assert read_throttled(idle) is False
    failing = _fake_program(tmp_path / "vcgencmd_fail", "echo oops >&2; exit 1")
    assert read_throttled(failing) is None
    assert read_throttled(str(tmp_path / "absent")) is None
    assert read_throttled(None) is None
    facts = target_facts(root=str(tmp_path), vcgencmd=ok)
    assert facts["throttled"] is True
