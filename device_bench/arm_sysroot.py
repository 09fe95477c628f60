"""Builds and caches the arm64 sysroot the ``qemu-aarch64`` target runs its guest Python in.

No chroot, no debootstrap, no root: Debian's arm64 ``.deb`` files of Python 3.11 and libstdc++
are fetched with the host's ``apt-get`` (``-o APT::Architecture=arm64`` and private state, list
and cache folders, so the host's apt is untouched), unpacked with ``dpkg-deb -x``, and the host's
pip installs PyPI's aarch64 wheels of numpy and ai-edge-litert into it
(``--target --only-binary=:all: --platform manylinux_*_aarch64``). qemu-user then runs
``SYSROOT/usr/bin/python3.11`` with a board prefix (``-L``, see :mod:`device_bench.arm_boards`).

Cache: ``$XDG_CACHE_HOME/edgekit/arm-sysroot/<key>`` (else ``~/.cache/edgekit/...``), where the
key names the versions of Python, numpy, ai-edge-litert and qemu. A build goes into a temporary
folder beside it and is renamed into place when complete (``manifest.json`` is its last file), and
a file lock keeps two processes from building the same key at once. The guest-instruction plugin
is compiled by :mod:`device_bench.insn_plugin`; what both use (finding qemu, build steps, the
lock, the private apt state) is in :mod:`device_bench.qemu_host`, below both.

``python -m device_bench.arm_sysroot [--install-host-tools] [--cache-dir DIR]`` builds it ahead.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from device_bench.arm_boards import BOARDS, write_board_tree
from device_bench.errors import BenchInputError, TargetError
from device_bench.insn_plugin import ensure_plugin

# Re-exported: they lived here before moving below this module and insn_plugin.
from device_bench.qemu_host import (
    DEBIAN_KEYRING,
    QemuInfo,
    apt_options,
    debian_sources,
    default_cache_dir,
    file_lock,
    find_qemu,
    note,
    run_step,
)

__all__ = [
    "ArmSysroot",
    "QemuInfo",
    "SysrootVersions",
    "apt_options",
    "debian_sources",
    "default_cache_dir",
    "ensure_sysroot",
    "file_lock",
    "find_qemu",
    "install_host_tools",
    "main",
    "note",
    "run_step",
]

# Bump when the build recipe changes, so that old caches are not reused.
RECIPE = 1
GUEST_PYTHON = "3.11"  # Debian 12's python3.11; the wheels must be cp311.
# apt resolves their dependencies (libc6, libssl3, zlib1g ... about 40 packages, 16 MB).
GUEST_DEBS = ("python3.11-minimal", "libpython3.11-stdlib", "libstdc++6")
WHEEL_PLATFORMS = (
    "manylinux_2_17_aarch64",
    "manylinux2014_aarch64",
    "manylinux_2_27_aarch64",
    "manylinux_2_28_aarch64",
)
# Used when the host has no copy installed (the versions setup.py pins).
FALLBACK_NUMPY = "2.4.6"
FALLBACK_LITERT = "2.3.0"


def _host_version(dist: str, fallback: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return fallback


@dataclass(frozen=True)
class SysrootVersions:
    """What a sysroot holds; its cache key.

    Attributes:
        python: The guest Python (``3.11``: Debian 12's).
        numpy: numpy wheel version.
        litert: ai-edge-litert wheel version.
        qemu: The qemu version the sysroot was checked with.
    """

    python: str
    numpy: str
    litert: str
    qemu: str

    @classmethod
    def for_host(cls, qemu: QemuInfo) -> SysrootVersions:
        """The versions the host has installed (so the guest runs the same interpreter release).

        Args:
            qemu: The qemu that will run the guest.

        Returns:
            numpy and ai-edge-litert as installed on this host (else setup.py's pins).
        """
        return cls(
            python=GUEST_PYTHON,
            numpy=_host_version("numpy", FALLBACK_NUMPY),
            litert=_host_version("ai-edge-litert", FALLBACK_LITERT),
            qemu=qemu.version,
        )

    def key(self) -> str:
        """The cache folder name, for example ``py3.11-numpy2.4.6-litert2.3.0-qemu7.2.22-r1``."""
        raw = f"py{self.python}-numpy{self.numpy}-litert{self.litert}-qemu{self.qemu}-r{RECIPE}"
        return re.sub(r"[^A-Za-z0-9._-]", "_", raw)


@dataclass(frozen=True)
class ArmSysroot:
    """A built sysroot in the cache.

    Attributes:
        path: The cache entry (``.../arm-sysroot/<key>``).
        key: Its key.
        manifest: The build's record (versions, packages, wheels, build time).
    """

    path: Path
    key: str
    manifest: dict

    @property
    def root(self) -> Path:
        """The unpacked Debian files (``usr/``, ``lib/``, ``etc/``)."""
        return self.path / "root"

    @property
    def site(self) -> Path:
        """The aarch64 wheels (numpy, ai_edge_litert ...), for the guest's ``PYTHONPATH``."""
        return self.path / "site"

    @property
    def python(self) -> Path:
        """The guest Python executable (an aarch64 ELF file)."""
        return self.root / "usr" / "bin" / f"python{GUEST_PYTHON}"

    def prefix(self, cpu: str) -> Path:
        """The qemu ``-L`` prefix of a board (its /proc and /sys; the rest links to root).

        Args:
            cpu: The ``qemu -cpu`` model.

        Returns:
            The prefix folder.

        Raises:
            BenchInputError: No board is known for ``cpu``.
        """
        if cpu not in BOARDS:
            raise BenchInputError(
                f"unknown qemu-aarch64 CPU {cpu!r}; expected one of: {', '.join(sorted(BOARDS))}"
            )
        return self.path / "boards" / cpu


def _fetch_debs(work: Path) -> list[Path]:
    if not Path(DEBIAN_KEYRING).is_file():
        raise TargetError(f"ARM sysroot needs Debian's archive keyring {DEBIAN_KEYRING} "
                          "(`apt-get install debian-archive-keyring`)")
    opts = apt_options(work / "apt", debian_sources("deb", "arm64"), arch="arm64")
    run_step("apt-get update (Debian arm64 package lists)", ["apt-get", *opts, "update"])
    run_step("apt-get install --download-only (arm64 .debs)",
              ["apt-get", *opts, "install", "--download-only", *GUEST_DEBS])
    debs = sorted((work / "apt" / "cache" / "archives").glob("*.deb"))
    if not debs:
        raise TargetError("ARM sysroot step 'apt-get install --download-only' fetched no .deb")
    return debs


def _relink_absolute(root: Path) -> None:
    """Points absolute symlinks back into ``root`` (else they would resolve on the x86 host)."""
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            link = Path(dirpath) / name
            if not link.is_symlink():
                continue
            target = os.readlink(link)
            if os.path.isabs(target):
                link.unlink()
                link.symlink_to(os.path.relpath(root / target.lstrip("/"), link.parent))


def _unpack(debs: list[Path], root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for deb in debs:
        run_step(f"dpkg-deb -x {deb.name}", ["dpkg-deb", "-x", str(deb), str(root)])
    _relink_absolute(root)
    # Empty files shadow the host's: its x86 ld.so.cache / ld.so.preload must not reach the guest.
    for name in ("ld.so.cache", "ld.so.preload"):
        (root / "etc" / name).write_bytes(b"")


def _pip_wheels(site: Path, versions: SysrootVersions) -> None:
    argv = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
            "--no-compile", "--target", str(site), "--only-binary=:all:",
            "--python-version", versions.python, "--implementation", "cp",
            "--abi", "cp" + versions.python.replace(".", "")]
    for platform_tag in WHEEL_PLATFORMS:
        argv += ["--platform", platform_tag]
    argv += [f"numpy=={versions.numpy}", f"ai-edge-litert=={versions.litert}"]
    run_step(f"pip install aarch64 wheels (numpy=={versions.numpy}, "
              f"ai-edge-litert=={versions.litert})", argv)


def _precompile(build: Path, final: Path) -> bool:
    """Writes the guest's bytecode ahead (the guest never writes any), when this is Python 3.11.

    The .pyc format is the same for every 3.11 release, so the host compiles the stdlib and the
    wheels in seconds where the emulated guest would take a minute. On another host Python the
    guest simply compiles at each start (slower, the same results).
    """
    if f"{sys.version_info.major}.{sys.version_info.minor}" != GUEST_PYTHON:
        return False
    argv = [sys.executable, "-m", "compileall", "-q", "-j", "0", "-s", str(build),
            "-p", str(final), str(build / "root" / "usr" / "lib" / f"python{GUEST_PYTHON}"),
            str(build / "site")]
    # Best effort: a few test files in the stdlib do not compile, which is fine.
    subprocess.run(argv, capture_output=True, text=True, timeout=900, check=False)
    return True


def _wheel_versions(site: Path) -> dict[str, str]:
    found = {}
    for info in sorted(site.glob("*.dist-info")):
        name, _, version = info.name[: -len(".dist-info")].rpartition("-")
        found[name] = version
    return found


def _load(entry: Path, key: str) -> ArmSysroot | None:
    try:
        manifest = json.loads((entry / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return ArmSysroot(path=entry, key=key, manifest=manifest)


def ensure_sysroot(
    versions: SysrootVersions, cache_dir: str | os.PathLike[str] | None = None
) -> ArmSysroot:
    """The cached sysroot for ``versions``, built first when missing.

    Args:
        versions: What it must hold (its cache key).
        cache_dir: The cache folder; None is :func:`default_cache_dir`.

    Returns:
        The sysroot (an existing entry is returned as is, not rebuilt).

    Raises:
        TargetError: A build step failed (the message names the step: apt-get update, the .deb
            download, dpkg-deb, pip), or another process held the build lock too long.
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = versions.key()
    entry = cache / key
    found = _load(entry, key)
    if found is not None:
        return found
    with file_lock(cache / f".{key}.lock"):
        found = _load(entry, key)  # built by another process while this one waited
        if found is not None:
            return found
        for stale in cache.glob(f".build-{key}-*"):
            shutil.rmtree(stale, ignore_errors=True)
        if entry.exists():  # an entry without a manifest is an interrupted old layout
            shutil.rmtree(entry)
        note(f"building the arm64 sysroot {key} (one time) in {cache}")
        start = time.monotonic()
        tmp = Path(tempfile.mkdtemp(prefix=f".build-{key}-", dir=cache))
        try:
            debs = _fetch_debs(tmp)
            _unpack(debs, tmp / "root")
            _pip_wheels(tmp / "site", versions)
            precompiled = _precompile(tmp, entry)
            for cpu in sorted(BOARDS):
                write_board_tree(tmp / "boards" / cpu, cpu, tmp / "root")
            shutil.rmtree(tmp / "apt")
            manifest = {
                "key": key,
                "versions": asdict(versions),
                "debs": [d.name for d in debs],
                "wheels": _wheel_versions(tmp / "site"),
                "boards": sorted(BOARDS),
                "precompiled": precompiled,
                "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "build_seconds": round(time.monotonic() - start, 1),
            }
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n",
                                               encoding="utf-8")
            tmp.chmod(0o755)  # mkdtemp made it private; the entry is as readable as its files
            os.rename(tmp, entry)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        note(f"arm64 sysroot ready in {manifest['build_seconds']:g} s: {entry}")
        return ArmSysroot(path=entry, key=key, manifest=manifest)


# ----------------------------------------------------------------------------- host set-up


HOST_PACKAGES = ("qemu-user", "gcc", "libc6-dev")


def install_host_tools(packages: Sequence[str] = HOST_PACKAGES) -> None:
    """Installs qemu-user and a C compiler with the host's apt-get (root only).

    Args:
        packages: The Debian packages.

    Raises:
        TargetError: Not root, no apt-get, or the install failed.
    """
    if os.geteuid() != 0:
        raise TargetError(f"installing {' '.join(packages)} needs root; run "
                          f"`sudo apt-get install {' '.join(packages)}`")
    run_step("apt-get update (host)", ["apt-get", "-o", "DPkg::Lock::Timeout=600", "update"])
    run_step(f"apt-get install {' '.join(packages)}",
              ["apt-get", "-o", "DPkg::Lock::Timeout=600", "install", "-y",
               "--no-install-recommends", *packages])


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m device_bench.arm_sysroot``: builds the sysroot and plugin ahead of use.

    Args:
        argv: Arguments without the program name.

    Returns:
        0 ok, 1 a build step failed.
    """
    p = argparse.ArgumentParser(prog="python -m device_bench.arm_sysroot",
                                description=__doc__.splitlines()[0])
    p.add_argument("--cache-dir", default=None, help=f"default {default_cache_dir()}")
    p.add_argument("--install-host-tools", action="store_true",
                   help=f"apt-get install {' '.join(HOST_PACKAGES)} first (root)")
    p.add_argument("--qemu", default=None, help="qemu-user executable")
    args = p.parse_args(argv)
    try:
        if args.install_host_tools:
            install_host_tools()
        qemu = find_qemu(args.qemu)
        sysroot = ensure_sysroot(SysrootVersions.for_host(qemu), args.cache_dir)
        plugin = ensure_plugin(qemu, args.cache_dir)
    except TargetError as e:
        print(f"device_bench: error: {e}", file=sys.stderr)
        return 1
    print(f"sysroot {sysroot.path}")
    print(f"plugin  {plugin.path or 'unavailable: ' + str(plugin.reason)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
