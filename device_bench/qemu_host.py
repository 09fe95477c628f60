"""qemu-user on this host, and the build helpers the ARM sysroot and the TCG plugin share.

:mod:`device_bench.arm_sysroot` (the arm64 sysroot) and :mod:`device_bench.insn_plugin` (the
instruction-count plugin) both find qemu-user, run build steps, take a file lock on the cache and
fetch from Debian with a private apt state; those pieces live here, below both, so neither
module has to import the other. Needs only the standard library.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from device_bench.errors import TargetError

__all__ = [
    "DEBIAN_KEYRING",
    "DEBIAN_MIRROR",
    "DEBIAN_SECURITY",
    "DEBIAN_SUITE",
    "LOCK_TIMEOUT_S",
    "QemuInfo",
    "apt_options",
    "debian_sources",
    "default_cache_dir",
    "file_lock",
    "find_qemu",
    "note",
    "run_step",
]

DEBIAN_SUITE = "bookworm"
DEBIAN_MIRROR = os.environ.get("EDGEKIT_DEBIAN_MIRROR", "http://deb.debian.org/debian")
DEBIAN_SECURITY = os.environ.get(
    "EDGEKIT_DEBIAN_SECURITY_MIRROR", "http://deb.debian.org/debian-security"
)
DEBIAN_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
LOCK_TIMEOUT_S = 1800.0


def note(message: str) -> None:
    """Prints a ``device_bench: ...`` progress line on stderr."""
    print(f"device_bench: {message}", file=sys.stderr, flush=True)


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/edgekit/arm-sysroot``, else ``~/.cache/edgekit/arm-sysroot``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "edgekit" / "arm-sysroot"


@dataclass(frozen=True)
class QemuInfo:
    """The qemu-user binary that runs the guest.

    Attributes:
        path: The ``qemu-aarch64`` (or ``qemu-aarch64-static``) executable.
        version: Its version, for example ``7.2.22``.
        plugins: True when it accepts ``-plugin`` (the dynamic build; Debian's static one does not).
    """

    path: str
    version: str
    plugins: bool


def find_qemu(qemu: str | None = None) -> QemuInfo:
    """Finds qemu-user for aarch64 guests, preferring the dynamic build (it loads plugins).

    Args:
        qemu: An explicit executable (name on PATH or path); None tries ``qemu-aarch64``, then
            ``qemu-aarch64-static``.

    Returns:
        Its path, version and plugin support.

    Raises:
        TargetError: No usable qemu-user is installed (the message says how to install it).
    """
    names = [qemu] if qemu else ["qemu-aarch64", "qemu-aarch64-static"]
    for name in names:
        path = shutil.which(name)
        if not path:
            continue
        try:
            ver = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30,
                                 check=False)
            helptext = subprocess.run([path, "-h"], capture_output=True, text=True, timeout=30,
                                      check=False)
        except (OSError, subprocess.SubprocessError) as e:
            raise TargetError(f"cannot run {path!r}: {e}") from e
        match = re.search(r"version\s+(\d+\.\d+(?:\.\d+)?)", ver.stdout)
        if not match:
            raise TargetError(f"{path!r} --version printed no qemu version: {ver.stdout.strip()!r}")
        return QemuInfo(path=path, version=match.group(1),
                        plugins="-plugin" in helptext.stdout + helptext.stderr)
    wanted = qemu or "qemu-aarch64"
    raise TargetError(
        f"{wanted} not found; install qemu-user (`apt-get install qemu-user`) or run "
        "`python -m device_bench.arm_sysroot --install-host-tools`"
    )


def run_step(step: str, argv: Sequence[str], *, cwd: Path | None = None,
              timeout: float = 900.0) -> subprocess.CompletedProcess[str]:
    try:
        proc = subprocess.run(list(argv), cwd=cwd, capture_output=True, text=True,
                              timeout=timeout, check=False,
                              env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    except FileNotFoundError as e:
        raise TargetError(f"ARM sysroot step '{step}' needs {argv[0]!r}, which is not "
                          "installed (a Debian or Ubuntu host has it)") from e
    except subprocess.TimeoutExpired as e:
        raise TargetError(f"ARM sysroot step '{step}' timed out after {timeout:g} s") from e
    if proc.returncode != 0:
        lines = [ln.strip() for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
        errors = [ln for ln in lines if ln.startswith(("E:", "ERROR", "error"))]
        detail = (errors or lines or ["no output"])[-1]
        raise TargetError(
            f"ARM sysroot step '{step}' failed (exit {proc.returncode}): {detail}"
        )
    return proc


def apt_options(state: Path, sources: str, *, arch: str | None) -> list[str]:
    """apt-get options that use only private folders (the host's apt state is not touched)."""
    for sub in ("lists/partial", "cache/archives/partial", "etc/parts", "etc/prefs"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    (state / "status").touch()
    (state / "etc" / "sources.list").write_text(sources, encoding="utf-8")
    opts = [
        f"-oDir::State={state}",
        f"-oDir::State::Lists={state / 'lists'}",
        f"-oDir::State::status={state / 'status'}",
        f"-oDir::Cache={state / 'cache'}",
        f"-oDir::Etc::SourceList={state / 'etc' / 'sources.list'}",
        f"-oDir::Etc::SourceParts={state / 'etc' / 'parts'}",
        f"-oDir::Etc::Preferences={state / 'etc' / 'prefs' / 'none'}",
        f"-oDir::Etc::PreferencesParts={state / 'etc' / 'prefs'}",
        "-oDebug::NoLocking=1",
        "-oAPT::Get::Assume-Yes=1",
        "-oAPT::Install-Recommends=0",
    ]
    if arch:
        opts += [f"-oAPT::Architecture={arch}", f"-oAPT::Architectures={arch}"]
    if os.geteuid() == 0:
        # apt drops to the _apt user for downloads, which cannot write into a private cache.
        opts.append("-oAPT::Sandbox::User=root")
    return opts


def debian_sources(kind: str, arch: str | None) -> str:
    opts = f"signed-by={DEBIAN_KEYRING}" + (f" arch={arch}" if arch else "")
    return "".join(
        f"{kind} [{opts}] {uri} {suite} main\n"
        for uri, suite in [(DEBIAN_MIRROR, DEBIAN_SUITE),
                           (DEBIAN_MIRROR, f"{DEBIAN_SUITE}-updates"),
                           (DEBIAN_SECURITY, f"{DEBIAN_SUITE}-security")]
    )


@contextlib.contextmanager
def file_lock(path: Path, timeout_s: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """An exclusive ``flock`` on ``path`` (created), waited for up to ``timeout_s``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TargetError(
                        f"waited {timeout_s:g} s for another build to release {str(path)!r}"
                    ) from None
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
