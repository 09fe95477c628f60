"""The Raspberry Pi boards the ``qemu-aarch64`` target emulates, with their ``/proc`` and ``/sys``.

qemu-user passes file reads to the host kernel, so an ARM program under emulation would see the
host's x86 ``/proc/cpuinfo`` and ``/sys/devices/system/cpu``; the LiteRT interpreter (its cpuinfo
library, which XNNPACK uses to pick kernels) crashes on that. qemu looks absolute paths up under
its ``-L`` prefix first, so each board gets a prefix folder with the board's own files:

* ``proc/cpuinfo``: the per-core blocks are recorded ``cat /proc/cpuinfo`` output of the real
  board on a 64-bit kernel (serial numbers zeroed); see :data:`BOARDS` for where each came from.
* ``sys/devices/system/cpu``: laid out as on the board (4 cores, one cluster), frequencies from
  the boards' published clocks.
* an empty ``sys/class/thermal``: an emulated board has no temperature (the host's must not leak).

Everything else in the prefix is a symlink into the shared arm64 sysroot.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from device_bench.errors import BenchInputError

__all__ = ["BOARDS", "DEFAULT_CPU", "Board", "board_for", "write_board_tree"]


@dataclass(frozen=True)
class Board:
    """One emulated board.

    Attributes:
        cpu: The ``qemu -cpu`` model (also the ``qemu-aarch64:CPU`` spec suffix).
        core: The core's name, as reports print it (``Cortex-A72``).
        model: The board's ``Model`` line.
        core_block: One core's ``/proc/cpuinfo`` block with ``{n}`` for the processor number.
        board_lines: The lines after the core blocks (``Revision``, ``Serial``, ``Model``).
        cores: Number of cores.
        max_khz: ``cpuinfo_max_freq`` of each core.
        min_khz: ``cpuinfo_min_freq`` of each core.
        source: Where the recorded cpuinfo text came from.
    """

    cpu: str
    core: str
    model: str
    core_block: str
    board_lines: str
    cores: int
    max_khz: int
    min_khz: int
    source: str

    def cpuinfo(self) -> str:
        """The board's whole ``/proc/cpuinfo`` text."""
        return "".join(self.core_block.format(n=i) for i in range(self.cores)) + self.board_lines


_A53_BLOCK = (
    "processor\t: {n}\nBogoMIPS\t: 38.40\nFeatures\t: fp asimd evtstrm crc32 cpuid\n"
    "CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd03\n"
    "CPU revision\t: 4\n\n"
)
_A72_BLOCK = (
    "processor\t: {n}\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\n"
    "CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\n"
    "CPU revision\t: 3\n\n"
)
_A76_BLOCK = (
    "processor\t: {n}\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 "
    "atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp\nCPU implementer\t: 0x41\n"
    "CPU architecture: 8\nCPU variant\t: 0x4\nCPU part\t: 0xd0b\nCPU revision\t: 1\n\n"
)

BOARDS: dict[str, Board] = {
    "cortex-a53": Board(
        cpu="cortex-a53",
        core="Cortex-A53",
        model="Raspberry Pi 3 Model B Plus Rev 1.3",
        core_block=_A53_BLOCK,
        board_lines=(
            "Revision\t: a020d3\nSerial\t\t: 0000000000000000\n"
            "Model\t\t: Raspberry Pi 3 Model B Plus Rev 1.3\n"
        ),
        cores=4,
        max_khz=1_400_000,
        min_khz=600_000,
        source="a Raspberry Pi 3 B+ terminal log (64-bit Raspberry Pi OS) in a public repository",
    ),
    "cortex-a72": Board(
        cpu="cortex-a72",
        core="Cortex-A72",
        model="Raspberry Pi 4 Model B Rev 1.1",
        core_block=_A72_BLOCK,
        board_lines=(
            "Revision\t: c03111\nSerial\t\t: 0000000000000000\n"
            "Model\t\t: Raspberry Pi 4 Model B Rev 1.1\n"
        ),
        cores=4,
        max_khz=1_500_000,
        min_khz=600_000,
        source="a Raspberry Pi 4 B system dump (64-bit Raspberry Pi OS, kernel 6.x) in a public "
        "repository",
    ),
    "cortex-a76": Board(
        cpu="cortex-a76",
        core="Cortex-A76",
        model="Raspberry Pi 5 Model B Rev 1.0",
        core_block=_A76_BLOCK,
        # The recorded Pi 5 capture was cut after the core blocks; these three lines follow the
        # firmware's format with the revision code of a Pi 5 8GB rev 1.0 (d04170).
        board_lines=(
            "Revision\t: d04170\nSerial\t\t: 0000000000000000\n"
            "Model\t\t: Raspberry Pi 5 Model B Rev 1.0\n"
        ),
        cores=4,
        max_khz=2_400_000,
        min_khz=1_500_000,
        source="a Raspberry Pi 5 capture (Raspberry Pi OS trixie, kernel 6.12) in a public "
        "repository",
    ),
}

DEFAULT_CPU = "cortex-a72"


def board_for(cpu: str) -> Board:
    """The emulated board of a ``qemu -cpu`` model.

    Args:
        cpu: ``cortex-a53``, ``cortex-a72`` or ``cortex-a76``.

    Returns:
        The board.

    Raises:
        BenchInputError: No board is known for ``cpu`` (the message lists the accepted ones).
    """
    if not isinstance(cpu, str) or cpu not in BOARDS:
        raise BenchInputError(
            f"unknown qemu-aarch64 CPU {cpu!r}; expected one of: {', '.join(sorted(BOARDS))}"
        )
    return BOARDS[cpu]


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="ascii")


def _sysfs_cpu_files(board: Board) -> dict[str, str]:
    last = board.cores - 1
    span = f"0-{last}"
    files = {
        "possible": span,
        "present": span,
        "online": span,
        "offline": "",
        "kernel_max": str(last),
    }
    for i in range(board.cores):
        files.update({
            f"cpu{i}/online": "1",
            f"cpu{i}/cpufreq/cpuinfo_max_freq": str(board.max_khz),
            f"cpu{i}/cpufreq/cpuinfo_min_freq": str(board.min_khz),
            f"cpu{i}/topology/core_id": str(i),
            f"cpu{i}/topology/cluster_id": "0",
            f"cpu{i}/topology/physical_package_id": "0",
            f"cpu{i}/topology/core_siblings_list": span,
            f"cpu{i}/topology/cluster_cpus_list": span,
            f"cpu{i}/topology/package_cpus_list": span,
            f"cpu{i}/topology/thread_siblings_list": str(i),
            f"cpu{i}/topology/core_cpus_list": str(i),
        })
    return files


def write_board_tree(
    dest: str | os.PathLike[str], cpu: str, sysroot: str | os.PathLike[str]
) -> Path:
    """Lays out a board's qemu ``-L`` prefix: its ``proc`` and ``sys`` files, the rest symlinked.

    Args:
        dest: The folder to create (must not exist yet, or be empty).
        cpu: The board's ``qemu -cpu`` model.
        sysroot: The arm64 sysroot whose top-level entries (``usr``, ``lib``, ``etc`` ...) the
            prefix links to (relative links, so the cache can move).

    Returns:
        ``dest`` as a Path.

    Raises:
        BenchInputError: ``cpu`` has no board.
    """
    board = board_for(cpu)
    out = Path(dest)
    out.mkdir(parents=True, exist_ok=True)
    root = Path(sysroot)
    for entry in sorted(root.iterdir()):
        if entry.name in ("proc", "sys"):
            continue
        link = out / entry.name
        if not link.exists() and not link.is_symlink():
            link.symlink_to(os.path.relpath(entry, out))
    _write(out / "proc" / "cpuinfo", board.cpuinfo())
    cpu_dir = out / "sys" / "devices" / "system" / "cpu"
    for rel, value in _sysfs_cpu_files(board).items():
        _write(cpu_dir / rel, value + "\n")
    (out / "sys" / "class" / "thermal").mkdir(parents=True, exist_ok=True)
    return out
