"""Validation helpers every config reader in edgekit shares.

:func:`checked_kwargs` is the unknown-key check for a frozen-dataclass config (recipe sections,
stage configs); :func:`check_keys` the same for a plain mapping. Both raise
:class:`~edgekit.core.errors.InputError` (CLI exit 2) with the message format of
:mod:`device_bench.config_keys`, the one source of the rule.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from device_bench.config_keys import check_keys as _check_keys
from device_bench.config_keys import dataclass_keys
from edgekit.core.errors import InputError

__all__ = ["check_keys", "checked_kwargs"]


def check_keys(config: Any, known: Iterable[str], where: str,
               expected: str | None = None) -> dict[str, Any]:
    """Checks that ``config`` is a mapping of ``known`` keys only.

    Args:
        config: The user's mapping (None = empty).
        known: The accepted keys.
        where: Where the mapping came from, for the message.
        expected: What a valid value looks like (for the not-a-mapping message).

    Returns:
        A plain-dict copy of ``config``.

    Raises:
        InputError: Not a mapping, or unknown keys (all known keys are listed).
    """
    return _check_keys(config, known, where, InputError, expected)


def checked_kwargs(cls: type, config: Any, where: str) -> dict[str, Any]:
    """Validates that ``config`` only names fields of dataclass ``cls``.

    Args:
        cls: The dataclass.
        config: The user's mapping (None = empty).
        where: Where the mapping came from, for the message.

    Returns:
        The mapping as a dict.

    Raises:
        InputError: ``config`` is not a mapping or has unknown keys (all known keys are listed).
    """
    return check_keys(config, dataclass_keys(cls), where)
