"""Atomic file output: write to a temp file in the destination folder, then rename.

A reader never sees a half-written file, and an interrupted run leaves the old file (or none).
Kept dependency-free so the device-side runner can use it too.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from device_bench.errors import BenchInputError


def check_parent(dest: str | os.PathLike[str]) -> None:
    """Creates ``dest``'s folder when missing and checks it can be written.

    Call it before long work whose result goes to ``dest``, so a bad path fails first.

    Args:
        dest: The file that will be written.

    Raises:
        BenchInputError: The folder cannot be created or is not writable.
    """
    dest = Path(dest)
    parent = dest.parent if str(dest.parent) else Path(".")
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

    The temp name keeps ``dest``'s suffix (Keras picks the format from it).

    Args:
        dest: Final path of the file.

    Yields:
        The temporary path to write to.

    Raises:
        BenchInputError: The destination folder is missing and cannot be made, or is unwritable.
    """
    dest = Path(dest)
    check_parent(dest)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=f".tmp{dest.suffix}",
                               dir=dest.parent)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


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
