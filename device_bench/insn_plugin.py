"""Compiles the ``insn_count`` TCG plugin (``qemu_plugin/insn_count.c``) for the installed qemu.

The plugin counts the guest instructions executed between two marker system calls (see
:mod:`device_bench.insn_probe`). It is built on the user's machine, into the sysroot cache, against
the ``qemu-plugin.h`` of the installed QEMU (GPL-2.0-or-later, so no binary is shipped): from
``EDGEKIT_QEMU_PLUGIN_H``, the system include folders, or the Debian source package of the
installed qemu. It needs no other library (no glib).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from device_bench.errors import TargetError
from device_bench.qemu_host import (
    QemuInfo,
    apt_options,
    debian_sources,
    default_cache_dir,
    file_lock,
    note,
    run_step,
)

__all__ = ["PLUGIN_SOURCE", "PluginBuild", "ensure_plugin"]

PLUGIN_SOURCE = Path(__file__).resolve().parent / "qemu_plugin" / "insn_count.c"
_PLUGIN_NAME = "libinsn_count.so"


@dataclass(frozen=True)
class PluginBuild:
    """The instruction-counting plugin, or why there is none.

    Attributes:
        path: The compiled ``libinsn_count.so``; None when it cannot be built.
        reason: Why not (None when ``path`` is set).
    """

    path: Path | None
    reason: str | None


def _deb_source_of(path: str) -> tuple[str, str] | None:
    """(source package, source version) of the Debian package that owns ``path``."""
    try:
        owner = subprocess.run(["dpkg-query", "-S", os.path.realpath(path)], capture_output=True,
                               text=True, timeout=30, check=False)
        if owner.returncode != 0:
            return None
        package = owner.stdout.split(":", 1)[0].strip()
        info = subprocess.run(["dpkg-query", "-W", "-f=${source:Package} ${source:Version}",
                               package], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    parts = info.stdout.split()
    return (parts[0], parts[1]) if info.returncode == 0 and len(parts) == 2 else None


def _fetch_plugin_header(qemu: QemuInfo, dest: Path) -> Path:
    """Extracts ``qemu-plugin.h`` from the Debian source of the installed qemu into ``dest``."""
    source = _deb_source_of(qemu.path)
    if source is None:
        raise TargetError(f"{qemu.path} is not from a Debian package, so its source (for "
                          "qemu-plugin.h) cannot be fetched; set EDGEKIT_QEMU_PLUGIN_H to the "
                          f"header of QEMU {qemu.version}")
    name, version = source
    with tempfile.TemporaryDirectory(prefix="edgekit-qemu-src-") as tmp:
        work = Path(tmp)
        opts = apt_options(work / "apt", debian_sources("deb-src", None), arch=None)
        run_step("apt-get update (Debian source lists)", ["apt-get", *opts, "update"])
        run_step(f"apt-get source --download-only {name}={version}",
                  ["apt-get", *opts, "source", "--download-only", f"{name}={version}"], cwd=work)
        tarballs = sorted(work.glob(f"{name}_*.orig.tar.*"))
        if not tarballs:
            raise TargetError(f"apt-get source {name}={version} gave no .orig tarball")
        with tarfile.open(tarballs[0]) as tar:
            for member in tar:
                if member.isfile() and member.name.endswith("/include/qemu/qemu-plugin.h"):
                    data = tar.extractfile(member)
                    if data is None:
                        break
                    dest.mkdir(parents=True, exist_ok=True)
                    header = dest / "qemu-plugin.h"
                    header.write_bytes(data.read())
                    return header
    raise TargetError(f"the {name} {version} source holds no include/qemu/qemu-plugin.h")


def _plugin_header(qemu: QemuInfo, cache: Path) -> Path:
    explicit = os.environ.get("EDGEKIT_QEMU_PLUGIN_H")
    if explicit:
        if not Path(explicit).is_file():
            raise TargetError(f"EDGEKIT_QEMU_PLUGIN_H={explicit!r} is not a file")
        return Path(explicit)
    for candidate in ("/usr/include/qemu-plugin.h", "/usr/include/qemu/qemu-plugin.h",
                      "/usr/local/include/qemu-plugin.h"):
        if Path(candidate).is_file():
            return Path(candidate)
    cached = cache / "plugin" / f"header-qemu{qemu.version}" / "qemu-plugin.h"
    if cached.is_file():
        return cached
    note(f"fetching qemu-plugin.h of QEMU {qemu.version} (Debian source package, one time)")
    return _fetch_plugin_header(qemu, cached.parent)


def ensure_plugin(qemu: QemuInfo, cache_dir: str | os.PathLike[str] | None = None) -> PluginBuild:
    """Compiles the guest-instruction counter for this qemu (once; cached).

    Needs the dynamic qemu-user (``-plugin``), a C compiler and ``qemu-plugin.h``: from
    ``EDGEKIT_QEMU_PLUGIN_H``, the system include folders, or the Debian source package of the
    installed qemu (fetched with ``apt-get source --download-only`` and a private deb-src list).

    Args:
        qemu: The qemu that will load it.
        cache_dir: The cache folder; None is :func:`default_cache_dir`.

    Returns:
        The plugin's path, or None and the reason it cannot be built (never raises for that).
    """
    if not qemu.plugins:
        return PluginBuild(None, f"{qemu.path} cannot load TCG plugins (no -plugin option); "
                                 "install the dynamic build: `apt-get install qemu-user`")
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        return PluginBuild(None, "no C compiler (gcc) to build the instruction-count plugin")
    if not PLUGIN_SOURCE.is_file():
        return PluginBuild(None, f"plugin source {str(PLUGIN_SOURCE)!r} is missing")
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    digest = hashlib.sha256(PLUGIN_SOURCE.read_bytes()).hexdigest()[:12]
    out = cache / "plugin" / f"qemu{qemu.version}-{digest}" / _PLUGIN_NAME
    if out.is_file():
        return PluginBuild(out, None)
    try:
        with file_lock(cache / ".plugin.lock"):
            if out.is_file():
                return PluginBuild(out, None)
            header = _plugin_header(qemu, cache)
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = out.with_name(f".{_PLUGIN_NAME}.{os.getpid()}.tmp")
            try:
                run_step("compile the instruction-count plugin",
                         [compiler, "-shared", "-fPIC", "-O2", "-Wall", "-fvisibility=hidden",
                          f"-I{header.parent}", str(PLUGIN_SOURCE), "-o", str(tmp)])
                os.replace(tmp, out)
            except BaseException:  # a failed or interrupted build leaves no half-made file
                tmp.unlink(missing_ok=True)
                raise
    except TargetError as e:
        return PluginBuild(None, str(e))
    return PluginBuild(out, None)
