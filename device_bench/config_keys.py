"""The one unknown-key check for every mapping a user writes (recipes, stage configs, options).

A mapping with a key nobody reads is a typo that would otherwise be ignored silently, so every
config reader calls :func:`check_keys`; the message always names where the mapping came from and
lists the known keys::

    unknown key(s) ['epoch'] in train; known keys: epochs, learning_rate, batch_size

It lives in device_bench (which imports nothing of edgekit and runs on the device) so that both
device_bench's options and edgekit's recipes use the same rule; each passes its own error type.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = ["check_keys", "dataclass_keys"]


def check_keys(config: Any, known: Iterable[str], where: str,
               error: Callable[[str], Exception] = ValueError,
               expected: str | None = None) -> dict[str, Any]:
    """Checks that ``config`` is a mapping whose keys are all in ``known``.

    Args:
        config: The user's mapping (None counts as empty).
        known: The accepted keys, in the order the message lists them.
        where: Where the mapping came from ("train", "Prune config", "layers.exclude"...).
        error: The exception type to raise (``InputError``, ``BenchInputError``...).
        expected: What a valid value looks like, for the not-a-mapping message (default: "a
            mapping of" the known keys).

    Returns:
        A plain-dict copy of ``config``.

    Raises:
        Exception: ``error(message)`` when ``config`` is not a mapping or has unknown keys.
    """
    known = list(known)
    if config is None:
        return {}
    if not isinstance(config, Mapping):
        want = expected or f"a mapping of {', '.join(known)}"
        raise error(f"{where} must be {want}, got {config!r}")
    unknown = sorted(str(k) for k in set(config) - set(known))
    if unknown:
        raise error(f"unknown key(s) {unknown} in {where}; known keys: {', '.join(known)}")
    return dict(config)


def dataclass_keys(cls: type) -> list[str]:
    """The init field names of dataclass ``cls`` (not ClassVars), in declaration order."""
    return [f.name for f in dataclasses.fields(cls) if f.init]
