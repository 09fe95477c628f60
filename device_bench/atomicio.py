"""Atomic file output: write to a temp file in the destination folder, then rename.

A reader never sees a half-written file, and an interrupted run leaves the old file (or none):
the temp file is removed on any exception, ``KeyboardInterrupt`` and the CLIs' SIGTERM included.
The temp file is made private (``mkstemp``: 0600); before the rename it gets the mode a plain
``open()`` would have given it under the process's umask (:func:`default_file_mode`), so
artefacts stay readable by whoever the user's umask lets read them (0644 under 022).
Kept dependency-free so the device-side runner can use it too.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from device_bench.errors import BenchInputError
from device_bench.interrupts import raise_if_interrupted

_UMASK_LOCK = threading.Lock()
_umask: int | None = None


def _read_umask() -> int:
    """The process umask, read without changing it where the OS tells (Linux /proc)."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    # Elsewhere the only way is to set it and put it back: done once, under a lock.
    current = os.umask(0o022)
    os.umask(current)
    return current


def process_umask() -> int:
    """The umask of this process, read once (thread-safe) and remembered.

    Returns:
        The umask bits, e.g. ``0o022``.
    """
    global _umask
    with _UMASK_LOCK:
        if _umask is None:
            _umask = _read_umask()
        return _umask


def default_file_mode(directory: bool = False) -> int:
    """The mode ``open()`` (or ``mkdir``) would give a new file (folder) under the umask.

    Args:
        directory: The mode of a folder (0777 less the umask) instead of a file (0666 less it).

    Returns:
        The permission bits, e.g. ``0o644`` for a file under umask 022.
    """
    return (0o777 if directory else 0o666) & ~process_umask()


def check_parent(dest: str | os.PathLike[str]) -> None:
    """Creates ``dest``'s folder when missing and checks it can be written.

    Call it before long work whose result goes to ``dest``, so a bad path fails first.

    Args:
        dest: The file that will be written.

    Raises:
        BenchInputError: The folder cannot be created or is not writable, or ``dest`` is a
            folder.
    """
    dest = Path(dest)
    if dest.is_dir():
        raise BenchInputError(f"output {str(dest)!r} is a folder; expected a file path")
    parent = dest.parent if str(dest.parent) else Path(".")
    blocker = next((q for q in (parent, *parent.parents) if q.exists()), None)
    if blocker is not None and not blocker.is_dir():
        where = "" if blocker == parent else f" cannot be created: {str(blocker)!r}"
        raise BenchInputError(f"output folder {str(parent)!r}{where} is a file; expected a folder")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise BenchInputError(
            f"output folder {str(parent)!r} cannot be created: {e.strerror or e}"
        ) from e
    if not os.access(parent, os.W_OK):
        raise BenchInputError(f"output folder {str(parent)!r} is not writable")


@contextlib.contextmanager
def atomic_target(dest: str | os.PathLike[str]) -> Iterator[str]:
    """Yields a temp path beside ``dest``; on success renames it onto ``dest``.

    The temp name keeps ``dest``'s suffix (Keras picks the format from it). Before the rename
    it gets :func:`default_file_mode` (whoever wrote it, and however), so the artefact has the
    mode the user's umask gives; on any exception (an interrupt included) it is removed, and
    after a SIGINT/SIGTERM nothing is committed (``device_bench.interrupts``).

    Args:
        dest: Final path of the file.

    Yields:
        The temporary path to write to.

    Raises:
        BenchInputError: The destination folder is missing and cannot be made, or is unwritable;
            or the disk is full (ENOSPC / EDQUOT, from whatever wrote the temp file): the old
            file, if any, is left as it was.
    """
    dest = Path(dest)
    check_parent(dest)
    tmp = ""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=f".tmp{dest.suffix}",
                                   dir=dest.parent)
        os.close(fd)
        yield tmp
        raise_if_interrupted()  # a signal whose exception a C extension swallowed: no commit
        os.chmod(tmp, default_file_mode(directory=os.path.isdir(tmp)))
        os.replace(tmp, dest)
    except BaseException as e:
        if tmp:
            _remove(tmp)
        if _disk_full(e):
            raise BenchInputError(f"cannot write {str(dest)!r}: no space left on device "
                                  "(ENOSPC); nothing was changed") from e
        raise


def _disk_full(error: BaseException) -> bool:
    """True for a full disk or quota: an OSError's errno, or a library's wrapped message."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return isinstance(error, Exception) and "No space left on device" in str(error)


def _remove(path: str) -> None:
    """Removes a temp file (or a folder a writer made in its place); quiet when it is gone."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def write_bytes(dest: str | os.PathLike[str], data: bytes) -> Path:
    """Writes ``data`` to ``dest`` atomically.

    Args:
        dest: Final path.
        data: Content.

    Returns:
        ``dest`` as a Path.

    Raises:
        BenchInputError: The destination folder cannot be written.
    """
    with atomic_target(dest) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return Path(dest)


def write_text(dest: str | os.PathLike[str], text: str) -> Path:
    """Writes UTF-8 ``text`` to ``dest`` atomically (see :func:`write_bytes`)."""
    return write_bytes(dest, text.encode("utf-8"))


def write_json(dest: str | os.PathLike[str], obj: Any) -> Path:
    """Writes ``obj`` as indented JSON to ``dest`` atomically (see :func:`write_bytes`)."""
    return write_text(dest, json.dumps(obj, indent=2, sort_keys=False) + "\n")
