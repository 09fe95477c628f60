"""The interface every energy source implements, and the registry of the ``--energy`` kinds.

A kind is declared where it is defined: each source class in
:mod:`device_bench.energy_sources` carries an :func:`energy_source` decorator (its name, how it
takes an argument, its place in the ``auto`` order), and the board-profile estimate registers
itself in :mod:`device_bench.power_profiles`. :mod:`device_bench.energy` parses specs and runs
``auto`` from :data:`ENERGY_SOURCES` alone; nothing else lists the kinds.

Needs only the standard library (no numpy, no TensorFlow).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol, TypeVar, runtime_checkable

from device_bench.registry import Registry

__all__ = [
    "ENERGY_SOURCES",
    "Argument",
    "EnergyKind",
    "EnergyReadError",
    "EnergySource",
    "SourcePlace",
    "energy_source",
    "register_kind",
]

_NAME_RE = re.compile(r"^[a-z][a-z0-9-]*$")
_C = TypeVar("_C", bound=type)


class EnergyReadError(RuntimeError):
    """A source that was available failed to give a reading."""


@runtime_checkable
class EnergySource(Protocol):
    """A place to read energy or power from.

    Attributes:
        name: The spec that names it (``rapl``, ``hwmon:ina226``, ...).
        kind: ``"energy"`` (``read`` returns cumulative joules) or ``"power"`` (watts now).
        interval_s: Seconds between background samples.
        why_unavailable: After ``available()`` returned False, the reason in a few words.
    """

    name: str
    kind: str
    interval_s: float
    why_unavailable: str | None

    def available(self) -> bool:
        """True when the source can be read here (never raises)."""
        ...

    def read(self) -> float:
        """Joules since an arbitrary origin (``energy``) or watts now (``power``).

        Raises:
            EnergyReadError: The reading failed.
        """
        ...

    def detail(self) -> dict[str, Any]:
        """What exactly is read (files, domains, rails), for the result's ``detail``."""
        ...


class Argument(str, Enum):
    """How a kind takes the text after ``NAME:`` in its spec."""

    NONE = "none"  # ``rapl``: no argument
    OPTIONAL = "optional"  # ``hwmon`` or ``hwmon:NAME``
    REQUIRED = "required"  # ``meter:CMD``


@dataclass(frozen=True)
class SourcePlace:
    """Where sources look: a device, or a recorded tree of one in tests.

    Attributes:
        root: The directory that holds ``proc`` and ``sys`` (``/`` on a device).
        vcgencmd: The Raspberry Pi firmware tool.
    """

    root: str = "/"
    vcgencmd: str = "vcgencmd"


# (argument or None, place) -> the source (not yet checked to be available).
SourceFactory = Callable[[str | None, SourcePlace], EnergySource]
# (argument or None, place, mean latency in ms, threads) -> (energy block, what it is estimated
# from, e.g. "the Raspberry Pi 5 power profile"), or None when nothing fits this board.
Estimator = Callable[[str | None, SourcePlace, float, int | None],
                     tuple[dict[str, Any], str] | None]


@dataclass(frozen=True)
class EnergyKind:
    """One ``--energy`` kind: a source that measures, or an estimate that does not.

    Attributes:
        name: The spec's name part (``hwmon``).
        argument: Whether it takes ``:ARG``.
        metavar: The argument's name in the spec form (``NAME`` in ``hwmon[:NAME]``).
        make: Builds the source (measuring kinds).
        estimate: Builds an estimate instead (kinds that measure nothing, ``measured: false``).
        auto_rank: Place in the ``auto`` order (0 first); None: ``auto`` never tries it.
        check: Validates an argument when the spec is parsed (raises BenchInputError).

    Raises:
        ValueError: The fields contradict each other (a programming error).
    """

    name: str
    argument: Argument = Argument.NONE
    metavar: str = ""
    make: SourceFactory | None = None
    estimate: Estimator | None = None
    auto_rank: int | None = None
    check: Callable[[str], object] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME_RE.match(self.name):
            raise ValueError(f"energy kind name must be lower-case letters, digits and '-', "
                             f"got {self.name!r}")
        if (self.make is None) == (self.estimate is None):
            raise ValueError(f"energy kind {self.name!r} needs exactly one of make and estimate")
        if (self.argument is Argument.NONE) != (not self.metavar):
            raise ValueError(f"energy kind {self.name!r}: a metavar names its argument exactly "
                             "when it takes one")
        if self.auto_rank is not None and self.make is None:
            raise ValueError(f"energy kind {self.name!r}: only a measuring kind has an auto rank")

    @property
    def measured(self) -> bool:
        """True for a source that measures; False for an estimate."""
        return self.make is not None

    @property
    def form(self) -> str:
        """The spec form messages list: ``rapl``, ``hwmon[:NAME]``, ``meter:CMD``."""
        if self.argument is Argument.NONE:
            return self.name
        if self.argument is Argument.OPTIONAL:
            return f"{self.name}[:{self.metavar}]"
        return f"{self.name}:{self.metavar}"

    @property
    def order(self) -> float:
        """Listing order: the ``auto`` order, then the other sources, then the estimates."""
        if self.auto_rank is not None:
            return float(self.auto_rank)
        return 1000.0 if self.measured else 2000.0


ENERGY_SOURCES: Registry[EnergyKind] = Registry("energy source", label=lambda k: k.form)


def register_kind(kind: EnergyKind) -> EnergyKind:
    """Adds a kind to :data:`ENERGY_SOURCES` (in its listing order).

    Args:
        kind: The kind.

    Returns:
        ``kind``.

    Raises:
        ValueError: Another kind already has its name.
    """
    return ENERGY_SOURCES.register(kind.name, kind, order=kind.order)


def energy_source(name: str, *, argument: Argument = Argument.NONE, metavar: str = "",
                  auto_rank: int | None = None,
                  check_argument: bool = False) -> Callable[[_C], _C]:
    """Class decorator: registers an energy source class as the kind ``name``.

    The class needs ``from_spec(argument, place)``, a classmethod that builds it from the
    spec's argument (None when there is none) and a :class:`SourcePlace`.

    Args:
        name: The spec's name part.
        argument: Whether the spec takes ``:ARG``.
        metavar: The argument's name in the spec form.
        auto_rank: Place in the ``auto`` order; None keeps ``auto`` from trying it.
        check_argument: Building the class checks its argument without reading anything (so
            a spec is validated by building it once, e.g. ``meter:CMD`` splits ``CMD``).

    Returns:
        The decorator; it returns the class unchanged.
    """
    def register(cls: _C) -> _C:
        factory: SourceFactory = cls.from_spec  # type: ignore[attr-defined]

        def check(arg: str) -> object:
            return factory(arg, SourcePlace())

        register_kind(EnergyKind(name, argument, metavar, make=factory, auto_rank=auto_rank,
                                 check=check if check_argument else None))
        return cls

    return register
