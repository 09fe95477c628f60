"""What the converters' frozen result types share: ``save()`` of their ``to_dict()`` as JSON."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from device_bench.atomicio import write_json
from device_bench.errors import BenchInputError
from edgekit.core.errors import InputError


class JsonResult:
    """Mixin for frozen result dataclasses that define ``to_dict()``."""

    def to_dict(self) -> dict[str, Any]:  # pragma: no cover - every subclass defines it
        """Returns the result as plain JSON-ready data."""
        raise NotImplementedError

    def save(self, path: str | os.PathLike[str], overwrite: bool = False) -> Path:
        """Writes :meth:`to_dict` as JSON, atomically.

        Args:
            path: Destination file.
            overwrite: Replace an existing file.

        Returns:
            The destination path.

        Raises:
            InputError: The file exists and ``overwrite`` is false, or it cannot be written.
        """
        dest = Path(path)
        if dest.exists() and not overwrite:
            raise InputError(f"{str(dest)!r} exists; pass overwrite=True to replace it")
        try:
            return write_json(dest, self.to_dict())
        except BenchInputError as e:
            raise InputError(str(e)) from e
