"""What a channel search aims at: a latency, instruction or MAC budget on a named target.

A user who ships to a board wants "this model at 8 ms on a Pi 4", not "half the channels".
``ChannelPrune``'s ``target`` field (instead of ``ratio``) names the budget, in one of four
forms::

    {latency_ms: 8.0, on: "ssh://pi@pi4", stat: p50}     # absolute, measured on the target
    {latency_ratio: 0.5, on: local}                       # a share of the dense int8 model's
    {instructions_ratio: 0.5, on: "qemu-aarch64:cortex-a72"}   # guest instructions (not time)
    {macs_ratio: 0.5}                                     # counted, nothing measured

Latency is measured with device_bench on the named target (``local``, ``ssh://``, ``adb://``;
one interpreter thread unless ``threads`` says otherwise); instructions are counted on an
emulated ARM core (``qemu-aarch64[:CPU]``: deterministic, so a CI gate can rely on them, but
instructions are not time). A ratio is taken of the dense model's figure, converted to full
int8 and measured in the same search.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from edgekit.core.errors import InputError

__all__ = ["METRICS", "SearchTarget", "parse_search_target"]

# metric key -> (what is measured, whether it is a ratio of the dense model's figure)
METRICS: dict[str, tuple[str, bool]] = {
    "latency_ms": ("latency", False),
    "latency_ratio": ("latency", True),
    "instructions_ratio": ("instructions", True),
    "macs_ratio": ("macs", True),
}
LATENCY_STATS = ("p50", "p90", "p99", "mean")
_OPTIONAL = ("on", "stat", "threads")


@dataclass(frozen=True)
class SearchTarget:
    """A parsed ``target``.

    Attributes:
        key: The budget's key (``latency_ms``, ``latency_ratio``, ``instructions_ratio``,
            ``macs_ratio``).
        value: Its value (milliseconds, or a ratio in (0, 1)).
        on: The device_bench target spec the figure is measured on (None for MACs).
        stat: The latency statistic (``p50`` by default; latency only).
        threads: Interpreter threads for latency (1 by default).
    """

    key: str
    value: float
    on: str | None = None
    stat: str = "p50"
    threads: int = 1

    @property
    def measure(self) -> str:
        """``latency``, ``instructions`` or ``macs``."""
        return METRICS[self.key][0]

    @property
    def is_ratio(self) -> bool:
        """The budget is a share of the dense int8 model's figure."""
        return METRICS[self.key][1]

    @property
    def unit(self) -> str:
        """The unit of a measured figure (``ms``, ``instructions``, ``MACs``)."""
        return {"latency": "ms", "instructions": "instructions", "macs": "MACs"}[self.measure]

    def budget(self, dense: float) -> float:
        """The absolute budget, given the dense int8 model's measured figure.

        Args:
            dense: The dense model's figure in :attr:`unit`.

        Returns:
            ``value * dense`` for a ratio, else ``value``.
        """
        return self.value * dense if self.is_ratio else self.value

    def describe(self) -> str:
        """``latency_ms 8 (p50) on ssh://pi4`` — for messages and the report."""
        where = f" on {self.on}" if self.on else ""
        stat = f" ({self.stat}, {self.threads} thread{'s' if self.threads != 1 else ''})" \
            if self.measure == "latency" else ""
        return f"{self.key} {self.value:g}{stat}{where}"

    def to_dict(self) -> dict[str, Any]:
        """The target as a recipe writes it (``{key: value, on, stat, threads}``)."""
        out: dict[str, Any] = {self.key: self.value}
        if self.on is not None:
            out["on"] = self.on
        if self.measure == "latency":
            out.update(stat=self.stat, threads=self.threads)
        return out


def parse_search_target(raw: Any) -> SearchTarget:
    """Reads a ``target`` mapping.

    Args:
        raw: ``{latency_ms|latency_ratio|instructions_ratio|macs_ratio: VALUE, on: SPEC,
            stat: p50|p90|p99|mean, threads: N}`` or a :class:`SearchTarget`.

    Returns:
        The parsed target.

    Raises:
        InputError: Not a mapping, none or more than one budget key, an unknown key, a value out
            of range, ``on`` missing where the figure is measured (or given for MACs), an
            instruction count on a target that is not ``qemu-aarch64``, or a bad ``stat``.
    """
    if isinstance(raw, SearchTarget):
        return raw
    if not isinstance(raw, Mapping):
        raise InputError(f"target must be a mapping such as {{latency_ms: 8.0, on: local}}, got "
                         f"{raw!r}")
    keys = [k for k in raw if k in METRICS]
    unknown = sorted(str(k) for k in raw if k not in METRICS and k not in _OPTIONAL)
    if unknown:
        raise InputError(f"target has unknown key(s) {', '.join(map(repr, unknown))}; known: "
                         f"{', '.join([*METRICS, *_OPTIONAL])}")
    if len(keys) != 1:
        raise InputError(f"target must set exactly one of {', '.join(METRICS)}, got "
                         f"{', '.join(map(str, keys)) or 'none'}")
    key = keys[0]
    value = raw[key]
    ratio = METRICS[key][1]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value <= 0 or (ratio and value >= 1):
        expected = "a ratio in (0, 1) of the dense model's figure" if ratio else \
            "a number of milliseconds > 0"
        raise InputError(f"target.{key} must be {expected}, got {value!r}")
    measure = METRICS[key][0]
    on = raw.get("on")
    if measure == "macs":
        if on is not None:
            raise InputError(f"target.on is not used with macs_ratio (MACs are counted, not "
                             f"measured), got {on!r}")
    elif not isinstance(on, str) or not on.strip():
        raise InputError(f"target.{key} is measured on a device: set target.on to a target spec "
                         f"(local, ssh://USER@HOST, adb://SERIAL, qemu-aarch64[:CPU]), got "
                         f"{on!r}")
    if measure == "instructions" and not on.startswith("qemu-aarch64"):  # type: ignore[union-attr]
        raise InputError(f"target.instructions_ratio counts guest instructions: target.on must "
                         f"be qemu-aarch64[:CPU], got {on!r}")
    if measure == "latency" and on.startswith("qemu-aarch64"):  # type: ignore[union-attr]
        raise InputError(f"target.{key} on {on!r}: emulated time is not a board's; use "
                         "instructions_ratio for qemu-aarch64")
    stat = raw.get("stat", "p50")
    if stat not in LATENCY_STATS:
        raise InputError(f"target.stat must be one of {', '.join(LATENCY_STATS)}, got {stat!r}")
    threads = raw.get("threads", 1)
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise InputError(f"target.threads must be an integer >= 1, got {threads!r}")
    return SearchTarget(key=key, value=float(value), on=on, stat=stat, threads=threads)
