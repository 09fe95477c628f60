"""The interface every benchmark target implements (local, ssh, adb, qemu)."""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

from device_bench.runner import BenchOptions

__all__ = ["Target"]


@runtime_checkable
class Target(Protocol):
    """A place a model can be benchmarked.

    Attributes:
        kind: The ``target.kind`` its results report: ``local``, ``ssh``, ``adb`` or ``qemu``.
    """

    kind: str

    def bench(self, model_path: str, options: BenchOptions) -> dict[str, Any]:
        """Benchmarks a model on the target.

        Args:
            model_path: The ``.tflite`` file on this (host) machine.
            options: How to measure.

        Returns:
            The ``edgekit.bench/1`` result dict.

        Raises:
            BenchInputError: The model or an option is unusable.
            TargetError: The target could not run the benchmark.
        """
        ...


def parse_spec_query(query: str, known: Sequence[str],
                     bad: Callable[[str], Exception]) -> dict[str, str]:
    """The ``?key=value&...`` options of a target spec (``ssh://``, ``adb://``).

    Args:
        query: The text after ``?`` (may be empty).
        known: The option names the target accepts.
        bad: Builds the error for a reason (it names the spec and the expected form).

    Returns:
        ``{key: value}``.

    Raises:
        Exception: ``bad(why)`` for a malformed query, an unknown option, or an option given
            twice or without a value.
    """
    try:
        parsed = urllib.parse.parse_qs(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError as e:
        raise bad(f"malformed query {query!r}") from e
    unknown = sorted(set(parsed) - set(known))
    if unknown:
        raise bad(f"unknown option(s) {', '.join(map(repr, unknown))} "
                  f"(known: {', '.join(known)})")
    if any(len(values) != 1 or not values[0] for values in parsed.values()):
        raise bad("each option must be given once, with a value")
    return {key: values[0] for key, values in parsed.items()}
