"""Packs what a remote target needs: the device_bench package, the model and the input file.

A board needs only Python 3, numpy and a TFLite interpreter. The host sends it this very copy of
the ``device_bench`` package (its ``.py`` files, nothing else: no caches, no edgekit), and the
board runs ``python3 -m device_bench`` with ``PYTHONPATH`` set to the folder it was unpacked into.
:func:`timeout_wrapped` bounds such a remote command on the remote side too.
"""

from __future__ import annotations

import io
import os
import shutil
import tarfile
import time
from collections.abc import Collection, Mapping
from pathlib import Path

from device_bench.errors import BenchInputError

__all__ = ["PACKAGE", "build_tar", "copy_package", "package_files", "timeout_wrapped"]

PACKAGE = "device_bench"
# The folder of this very package (device_bench/), whichever copy is running.
_PACKAGE_DIR = Path(__file__).resolve().parent
# Runs "$@" under the remote `timeout` when there is one (coreutils, busybox, toybox), so a run
# the host gives up on also stops over there. A fixed script: every variable part arrives as a
# positional argument, which the caller quotes (shlex.join) like any other. Not `exec`: a command
# killed by a signal must come back as the shell's exit status 128+N (137 for SIGKILL). Exec'd,
# GNU timeout re-raises the child's signal on itself, and ssh then reports its own 255.
_TIMEOUT_SCRIPT = (
    't=$1; shift; if command -v timeout >/dev/null 2>&1; '
    'then timeout -k 5 "$t" "$@"; else "$@"; fi; exit $?'
)


def timeout_wrapped(seconds: float, argv: list[str]) -> list[str]:
    """``argv`` as a remote command that the remote ``timeout`` stops after ``seconds``.

    Args:
        seconds: The limit; the command gets SIGTERM then, and SIGKILL 5 s later.
        argv: The command.

    Returns:
        ``["sh", "-c", SCRIPT, "sh", SECONDS, *argv]``: exit 124 when it timed out, 137 when it
        was killed (it ignored SIGTERM, or the kernel's out-of-memory killer took it), else the
        command's own status; where there is no ``timeout`` the command runs unbounded.
    """
    return ["sh", "-c", _TIMEOUT_SCRIPT, "sh", f"{seconds:g}", *argv]


def package_files(package_dir: str | os.PathLike[str] | None = None) -> list[tuple[str, Path]]:
    """The package's source files, as (name inside the payload, file on this machine).

    Args:
        package_dir: The ``device_bench`` folder; None is the one this module was loaded from.

    Returns:
        ``("device_bench/...py", path)`` pairs, sorted, without ``__pycache__``.

    Raises:
        BenchInputError: The folder holds no ``__main__.py`` (not a runnable package).
    """
    root = Path(package_dir) if package_dir is not None else _PACKAGE_DIR
    if not (root / "__main__.py").is_file():
        raise BenchInputError(
            f"{str(root)!r} is not the device_bench package; expected a folder with __main__.py"
        )
    files = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if "__pycache__" in rel.parts:
            continue
        files.append((f"{PACKAGE}/{rel.as_posix()}", path))
    return files


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mtime: float,
               mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    info.mtime = int(mtime)
    tar.addfile(info, io.BytesIO(data))


def build_tar(extra: Mapping[str, str | os.PathLike[str]] | None = None, *,
              package: bool = True, executable: Collection[str] = ()) -> bytes:
    """An uncompressed tar of the package plus extra files, ready to pipe into ``tar -x``.

    Args:
        extra: Name inside the tar (one path component, no ``/``) -> file on this machine; for
            example ``{"model.tflite": "/home/me/model.tflite"}``.
        package: Whether the ``device_bench`` package goes in (as ``device_bench/...``).
        executable: Names in ``extra`` to unpack with mode 0755 (the others get 0644).

    Returns:
        The tar archive's bytes.

    Raises:
        BenchInputError: An extra name is not a plain file name, or its file cannot be read.
    """
    now = time.time()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, path in package_files() if package else []:
            _add_bytes(tar, name, path.read_bytes(), now)
        for name, src in (extra or {}).items():
            if not name or "/" in name or name in (".", "..") or name == PACKAGE:
                raise BenchInputError(
                    f"payload file name {name!r} must be a plain file name (no '/'), "
                    f"other than {PACKAGE!r}"
                )
            try:
                data = Path(src).read_bytes()
            except OSError as e:
                raise BenchInputError(
                    f"file {os.fspath(src)!r} cannot be read: {e.strerror or e}"
                ) from e
            _add_bytes(tar, name, data, now, 0o755 if name in executable else 0o644)
    return buf.getvalue()


def copy_package(dest_dir: str | os.PathLike[str]) -> Path:
    """Copies the package's source files into ``dest_dir/device_bench`` (for ``adb push``).

    Args:
        dest_dir: An existing folder.

    Returns:
        The ``dest_dir/device_bench`` folder.

    Raises:
        BenchInputError: ``dest_dir`` is not a folder.
    """
    dest = Path(dest_dir)
    if not dest.is_dir():
        raise BenchInputError(f"payload folder {str(dest)!r} is not a folder")
    for name, path in package_files():
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    return dest / PACKAGE
