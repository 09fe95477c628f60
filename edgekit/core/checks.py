"""Validation helpers every config reader in edgekit shares.

:func:`checked_kwargs` is the unknown-key check for a frozen-dataclass config (recipe sections,
stage configs); :func:`check_keys` the same for a plain mapping. Both raise
:class:`~edgekit.core.errors.InputError` (CLI exit 2) with the message format of
:mod:`device_bench.config_keys`, the one source of the rule.

:func:`check_labels` is the one rule for labels meeting a model: every label must be a class of
the model (``[0, classes)``). The data loader (``edgekit.data.load_data(num_classes=...)``),
the pipeline's model/data check and ``converters.verify_tflite`` all call it, so ``convert``,
``compress`` and ``run`` refuse label 57 for a 10-class model the same way.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from device_bench.config_keys import check_keys as _check_keys
from device_bench.config_keys import dataclass_keys
from edgekit.core.errors import InputError

__all__ = ["check_keys", "check_labels", "checked_kwargs"]


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


def check_labels(labels: Any, num_classes: int, source: str) -> None:
    """Checks that every label is a class of a model with ``num_classes`` outputs.

    Args:
        labels: Integer class ids (any shape; one-hot rows must be turned into ids first).
        num_classes: The model's classes (its output width).
        source: The data the labels came from, as the user named it (a path, ``digits``...).

    Raises:
        InputError: A label outside ``[0, num_classes)``; the message names ``source``, the
            range and the offending labels (the smallest and largest, and how many).
    """
    values = np.asarray(labels).reshape(-1)
    if values.size == 0 or num_classes < 1:
        return
    bad = values[(values < 0) | (values >= num_classes)]
    if bad.size == 0:
        return
    found = np.unique(bad)
    shown = ", ".join(str(int(v)) if float(v).is_integer() else str(v) for v in found[:3])
    if found.size > 3:
        shown += f", ... ({found.size} distinct labels out of range)"
    raise InputError(
        f"labels of {source!r} must be in [0, {num_classes}) for a model with {num_classes} "
        f"classes, got {shown}"
    )
