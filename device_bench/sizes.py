"""The one definition of a file's compressed size, used by every size figure edgekit reports.

A model's "gzip size" is what it costs to ship over the air: gzip level 9 with a zero
timestamp, so the same bytes always give the same figure. device_bench (on the device), the
converters' inspection, the pruning stage and the pipeline report all count it here.
"""

from __future__ import annotations

import gzip

__all__ = ["GZIP_LEVEL", "gzip_size", "sizes"]

GZIP_LEVEL = 9


def gzip_size(data: bytes) -> int:
    """Bytes of ``data`` after gzip (level :data:`GZIP_LEVEL`, mtime 0).

    Args:
        data: The raw bytes.

    Returns:
        The compressed length.
    """
    return len(gzip.compress(data, compresslevel=GZIP_LEVEL, mtime=0))


def sizes(data: bytes) -> dict[str, int]:
    """Raw and gzip size of ``data``.

    Args:
        data: The raw bytes.

    Returns:
        ``{"bytes": ..., "gzip_bytes": ...}``.
    """
    return {"bytes": len(data), "gzip_bytes": gzip_size(data)}
