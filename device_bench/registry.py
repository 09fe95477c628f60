"""A registry of named plug-ins: benchmark targets, energy sources (and edgekit's own kinds).

One small generic helper, so every "which X does this name mean" lookup behaves the same: a name
that is not registered raises one line that lists the known names, a name registered twice is
a programming error, and listings come out in a stable order (``order``, then registration).

Example::

    SOURCES: Registry[EnergyKind] = Registry("energy source")
    SOURCES.register("rapl", rapl_kind, order=0)
    SOURCES.get("rapl")        # -> rapl_kind
    SOURCES.get("watts")       # BenchInputError: unknown energy source 'watts'; expected one
                               #   of: rapl

A leaf module: it imports nothing from device_bench but :mod:`device_bench.errors`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

from device_bench.errors import BenchInputError

__all__ = ["Registry"]

T = TypeVar("T")


@dataclass(frozen=True)
class _Entry(Generic[T]):
    name: str
    item: T
    order: float
    serial: int


class Registry(Generic[T]):
    """Named items of one kind, listed in a stable order.

    Args:
        what: What the items are, as messages name them (``"target"``, ``"energy source"``).
        label: How a listing shows an item (for example its spec form
            ``ssh://USER@HOST[:PORT]``); None shows its name.
        error: Builds the exception for an unknown name from its one-line message;
            :class:`~device_bench.errors.BenchInputError` unless a caller has its own type.

    Raises:
        ValueError: ``what`` is empty.
    """

    def __init__(self, what: str, *, label: Callable[[T], str] | None = None,
                 error: Callable[[str], Exception] = BenchInputError) -> None:
        if not isinstance(what, str) or not what.strip():
            raise ValueError(f"a registry needs a non-empty description, got {what!r}")
        self.what = what
        self._label = label
        self._error = error
        self._entries: dict[str, _Entry[T]] = {}
        self._serial = itertools.count()

    def register(self, name: str, item: T, *, order: float = 0.0) -> T:
        """Adds ``item`` under ``name``.

        Args:
            name: The key users type; a non-empty string without surrounding blanks.
            item: What the name stands for.
            order: Place in listings (smaller first); equal orders keep registration order.

        Returns:
            ``item``, so that it can be used as ``KIND = REGISTRY.register("x", Kind(...))``.

        Raises:
            ValueError: ``name`` is malformed, or already holds another item.
        """
        if not isinstance(name, str) or not name or name != name.strip():
            raise ValueError(f"{self.what} name must be a non-empty string without surrounding "
                             f"blanks, got {name!r}")
        old = self._entries.get(name)
        if old is not None:
            if old.item == item:  # the same declaration seen again (a module imported twice)
                return item
            raise ValueError(f"{self.what} {name!r} is registered twice: {old.item!r} and "
                             f"{item!r}")
        self._entries[name] = _Entry(name, item, float(order), next(self._serial))
        return item

    def _sorted(self) -> list[_Entry[T]]:
        return sorted(self._entries.values(), key=lambda e: (e.order, e.serial))

    def get(self, name: str) -> T:
        """The item registered under ``name``.

        Args:
            name: A registered name.

        Returns:
            The item.

        Raises:
            Exception: The ``error`` type (BenchInputError by default) with one line that
                names ``name`` and lists the known names: ``unknown target 'foo'; expected
                one of: local, ssh://USER@HOST[:PORT]``.
        """
        entry = self._entries.get(name) if isinstance(name, str) else None
        if entry is None:
            raise self.unknown(name)
        return entry.item

    def unknown(self, name: object) -> Exception:
        """The error for a name that is not registered (for callers that look up by a key
        derived from what the user typed, and want the message to show what was typed).

        Args:
            name: What the user gave.

        Returns:
            ``error("unknown WHAT 'NAME'; expected one of: A, B, C")``.
        """
        return self._error(f"unknown {self.what} {name!r}; expected one of: "
                           f"{', '.join(self.labels())}")

    def names(self) -> tuple[str, ...]:
        """The registered names, in listing order."""
        return tuple(e.name for e in self._sorted())

    def labels(self) -> tuple[str, ...]:
        """What listings show for each item (``label(item)``, else its name), in order."""
        if self._label is None:
            return self.names()
        return tuple(self._label(e.item) for e in self._sorted())

    def items(self) -> tuple[tuple[str, T], ...]:
        """``(name, item)`` pairs, in listing order."""
        return tuple((e.name, e.item) for e in self._sorted())

    def __iter__(self) -> Iterator[T]:
        return iter([e.item for e in self._sorted()])

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.what!r}, names={list(self.names())!r})"
