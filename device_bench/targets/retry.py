"""The one retry rule of the remote targets (ssh, adb): retry transient faults only, with backoff.

A transport raises :class:`TransientError` for a fault that may pass by itself and after which
the step can safely run again: the connection was refused, reset or timed out while connecting
(nothing ran on the device yet), an adb device was offline, or the connection dropped during a
step that can be repeated (make temp dir, push, pull, clean-up). Everything else is a plain
:class:`~device_bench.errors.TargetError` and is never retried: authentication refused, a changed
or unknown host key, an unauthorized adb device, a failed command, a full disk, a step that
outlived its time limit, and a connection that dropped while the benchmark itself ran (the board
may still be running it; a second run would overlap the first and skew its timings).

:class:`RetryPolicy` makes ``tries`` attempts (default 3) and waits ``backoff_s`` before the
second (default 1 s), doubling each time (1 s, 2 s). With each attempt bounded by its step's time
limit, one step takes at most ``tries * limit + backoff_s * (2 ** (tries - 1) - 1)`` seconds
(:meth:`RetryPolicy.bound_s`); ``tries`` is capped at :data:`MAX_TRIES` and ``backoff_s`` at
:data:`MAX_BACKOFF_S`, so no setting makes a run wait without end.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from device_bench.errors import BenchInputError, TargetError

__all__ = [
    "DEFAULT_BACKOFF_S",
    "DEFAULT_TRIES",
    "MAX_BACKOFF_S",
    "MAX_TRIES",
    "NotConnected",
    "Refused",
    "RetryPolicy",
    "TransientError",
]

DEFAULT_TRIES = 3
DEFAULT_BACKOFF_S = 1.0
MAX_TRIES = 10
MAX_BACKOFF_S = 60.0

T = TypeVar("T")


class TransientError(TargetError):
    """A transport fault that may pass by itself, after which the step may run again."""


class NotConnected(TransientError):
    """A transient fault before anything ran on the device (refused, connect timeout, offline)."""


class Refused(TargetError):
    """The device turned this side away for good before anything ran (authentication, host key,
    adb authorization): never retried."""


@dataclass(frozen=True)
class RetryPolicy:
    """How often a remote step is tried again after a :class:`TransientError`.

    Attributes:
        tries: Attempts in all (1 means no retry), 1..MAX_TRIES.
        backoff_s: Seconds before the second attempt, doubled before each further one;
            0..MAX_BACKOFF_S.
    """

    tries: int = DEFAULT_TRIES
    backoff_s: float = DEFAULT_BACKOFF_S

    @classmethod
    def checked(cls, tries: Any, backoff_s: Any) -> RetryPolicy:
        """A policy from user-given values, checked.

        Args:
            tries: Attempts in all.
            backoff_s: The first wait in seconds.

        Returns:
            The policy.

        Raises:
            BenchInputError: A value is not a number in its range (the message names it).
        """
        if isinstance(tries, bool) or not isinstance(tries, int) or not 1 <= tries <= MAX_TRIES:
            raise BenchInputError(f"tries must be an integer in 1..{MAX_TRIES}, got {tries!r}")
        if (isinstance(backoff_s, bool) or not isinstance(backoff_s, (int, float))
                or not 0 <= backoff_s <= MAX_BACKOFF_S):
            raise BenchInputError(
                f"backoff_s must be a number of seconds in 0..{MAX_BACKOFF_S:g}, got {backoff_s!r}")
        return cls(tries, float(backoff_s))

    def delays(self) -> list[float]:
        """The waits between attempts: ``backoff_s``, twice that, ... (``tries - 1`` of them)."""
        return [self.backoff_s * 2 ** i for i in range(self.tries - 1)]

    def bound_s(self, attempt_s: float) -> float:
        """The longest one step can take when each attempt is bounded by ``attempt_s`` seconds.

        Args:
            attempt_s: The step's time limit per attempt.

        Returns:
            ``tries * attempt_s + sum(delays())``.
        """
        return self.tries * attempt_s + sum(self.delays())

    def call(self, attempt: Callable[[], T], *,
             sleep: Callable[[float], None] = time.sleep) -> T:
        """Runs ``attempt`` until it returns, retrying only after a :class:`TransientError`.

        Args:
            attempt: One try of the step; raises TransientError for a fault worth retrying.
            sleep: How to wait between tries.

        Returns:
            What the first successful attempt returned.

        Raises:
            TransientError: Every attempt failed transiently: the last one's error (same class),
                its message with ``; gave up after N tries in S s`` appended.
            Exception: Whatever else ``attempt`` raised, at once (never retried).
        """
        start = time.monotonic()
        delays = self.delays()
        for number in range(1, self.tries + 1):
            try:
                return attempt()
            except TransientError as e:
                if number == self.tries:
                    tries = f"{self.tries} tries" if self.tries > 1 else "1 try"
                    raise type(e)(
                        f"{e}; gave up after {tries} in {time.monotonic() - start:.1f} s") from e
                sleep(delays[number - 1])
        raise AssertionError("unreachable")  # pragma: no cover
