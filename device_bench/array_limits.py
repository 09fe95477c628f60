"""How much memory a ``.npy`` / ``.npz`` file would take, read from its headers before loading it.

An ``.npz`` is a zip, and zip members are compressed: a 10 MB file of zeros can declare 10 GB
of arrays (a *zip bomb*), and ``np.load`` would try to allocate all of it before anything else
could say no. :func:`check_array_sizes` reads only each member's ``.npy`` header (magic, shape,
dtype: a few hundred bytes, decompressed as a stream) and refuses the file when the arrays it
declares add up to more than :data:`MAX_ARRAY_BYTES` (half of this machine's memory, at most
16 GiB). Used by every loader of users' array files (``--data``, ``--calibration``,
``python -m device_bench --input``), with :func:`numpy_file_kind`, their magic-bytes check.

Standard library and numpy only (layer 0): device_bench runs on boards.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import numpy as np

__all__ = ["MAX_ARRAY_BYTES", "check_array_sizes", "declared_arrays", "numpy_file_kind"]


def _memory_bytes() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 8 * 2**30


# The most a file's arrays may declare in all, in bytes.
MAX_ARRAY_BYTES = min(16 * 2**30, _memory_bytes() // 2)


def numpy_file_kind(path: str | os.PathLike[str]) -> str | None:
    """``"npy"`` or ``"npz"`` from a file's magic bytes, else None (read before ``np.load``, which
    would call any other file a pickle and suggest ``allow_pickle``).

    Raises:
        OSError: The file cannot be read.
    """
    with open(path, "rb") as f:
        head = f.read(6)
    if head == b"\x93NUMPY":
        return "npy"
    return "npz" if head[:4] in (b"PK\x03\x04", b"PK\x05\x06") else None


def _header(stream: IO[bytes]) -> tuple[tuple[int, ...], np.dtype]:
    version = np.lib.format.read_magic(stream)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) \
        else np.lib.format.read_array_header_2_0
    shape, _, dtype = read(stream, max_header_size=10_000)
    return tuple(int(n) for n in shape), np.dtype(dtype)


def declared_arrays(path: str | os.PathLike[str]) -> Iterator[tuple[str, tuple[int, ...],
                                                                     np.dtype]]:
    """The name, shape and dtype each array of a ``.npy`` or ``.npz`` declares (no data read).

    Args:
        path: The file.

    Yields:
        ``(name, shape, dtype)``; a ``.npy`` has the one name ``""``.

    Raises:
        ValueError: A header that is not a NumPy array header (numpy's message).
        OSError, zipfile.BadZipFile: The file cannot be read.
    """
    p = Path(path)
    if numpy_file_kind(p) == "npy":
        with open(p, "rb") as f:
            yield ("", *_header(f))
        return
    with zipfile.ZipFile(p) as z:
        for info in z.infolist():
            if info.filename.endswith(".npy"):
                with z.open(info) as member:
                    yield (info.filename[:-4], *_header(member))


def check_array_sizes(path: str | os.PathLike[str], limit: int | None = None) -> str | None:
    """Why a file's arrays are too big to load, or None when they fit.

    Args:
        path: A ``.npy`` or ``.npz`` file (its magic bytes already checked by the caller).
        limit: Bytes the arrays may declare in all (None: :data:`MAX_ARRAY_BYTES`).

    Returns:
        None, or one clause for the caller's error line, e.g. ``"its arrays declare 64.0 GiB
        (x: (1000000, 128, 128, 1) float32), more than the 11.7 GiB one file may hold
        (...)"``. A header numpy cannot read is left to ``np.load``'s own error.
    """
    limit = MAX_ARRAY_BYTES if limit is None else int(limit)
    total, largest = 0, None
    try:
        for name, shape, dtype in declared_arrays(path):
            size = int(np.prod(shape, dtype=object)) * dtype.itemsize
            total += size
            if largest is None or size > largest[0]:
                largest = (size, name, shape, dtype)
    except (ValueError, OSError, zipfile.BadZipFile, EOFError, SyntaxError, TypeError):
        return None  # not our question: np.load reports a damaged file in its own words
    if total <= limit or largest is None:
        return None
    _, name, shape, dtype = largest
    label = f"{name}: " if name else ""
    return (f"its arrays declare {total / 2**30:.1f} GiB ({label}{shape} {dtype}), more than "
            f"the {limit / 2**30:.1f} GiB one file may hold (half of this machine's memory, at "
            "most 16 GiB)")
