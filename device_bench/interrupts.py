"""Ctrl-C and SIGTERM as one clean path: an exception that unwinds, then one line and 128+N.

Python turns SIGINT into ``KeyboardInterrupt``, but SIGTERM (what CI runners, ``timeout``,
systemd and ``kill`` send) kills the process outright by default: no ``finally`` runs, so a temp
file beside an artefact (``device_bench.atomicio``) would stay behind. Inside
:func:`interrupts_as_exceptions` both signals raise :class:`Interrupted` in the main thread
instead, so every ``finally`` / ``except BaseException`` clean-up runs (temp files removed,
child processes killed by ``subprocess``, the output-folder lock released) and the command line
ends with :func:`interrupt_message` and :attr:`Interrupted.exit_code` (130 for SIGINT, 143 for
SIGTERM, the shell's convention).

``Interrupted`` subclasses ``KeyboardInterrupt``, so code that already treats Ctrl-C specially
(``subprocess`` gives its child a moment to exit) does the same for SIGTERM, and it is not an
``Exception``: ``except Exception`` blocks never swallow it. A second signal within
:data:`GRACE_S` of the first is ignored, so a hurried second Ctrl-C cannot cut the clean-up
short; one after that raises again (SIGKILL still stops everything).

An exception raised by a signal handler can still be lost: the handler runs wherever the main
thread is, and C extensions (TensorFlow's ``nest`` helpers, reached while converting) sometimes
turn it into a ``SystemError`` they report and ignore. So the signal is also remembered, and
:func:`raise_if_interrupted` raises it again at the safe points: before an atomic write commits
its file (``device_bench.atomicio``) and before a progress line. An interrupted run therefore
never goes on to write another artefact, even when its first exception was swallowed.

Used by ``edgekit``'s and ``python -m device_bench``'s entry points. Standard library only
(layer 0: ``device_bench.atomicio`` calls it); no edgekit imports here.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from collections.abc import Iterator
from types import FrameType
from typing import Any

__all__ = ["GRACE_S", "HANDLED_SIGNALS", "Interrupted", "exit_code_of", "interrupt_message",
           "interrupts_as_exceptions", "pending_signal", "raise_if_interrupted"]

# The signals turned into Interrupted (SIGHUP, a closed terminal, keeps Python's default).
HANDLED_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM)
# Seconds after a signal during which another one is ignored (the clean-up is running).
GRACE_S = 2.0


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived: the run stops, cleaning up as it unwinds.

    Args:
        signum: The signal's number.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = int(signum)

    @property
    def signal_name(self) -> str:
        """``"SIGINT"``, ``"SIGTERM"``, ... (or ``"signal N"`` for an unnamed number)."""
        return _name(self.signum)

    @property
    def exit_code(self) -> int:
        """128 + the signal number: 130 for SIGINT, 143 for SIGTERM."""
        return 128 + self.signum

    def __str__(self) -> str:
        return f"interrupted ({self.signal_name})"


def _name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def exit_code_of(err: KeyboardInterrupt) -> int:
    """The exit code for an interrupt: 128 + its signal (a plain KeyboardInterrupt: SIGINT).

    Args:
        err: The ``Interrupted`` or ``KeyboardInterrupt`` caught.

    Returns:
        130 for SIGINT (or a plain ``KeyboardInterrupt`` with no signal seen), 143 for SIGTERM.
    """
    return 128 + _signum_of(err)


def _signum_of(err: KeyboardInterrupt) -> int:
    """The signal behind ``err``: its own, the one that arrived, else SIGINT (plain Ctrl-C)."""
    if isinstance(err, Interrupted):
        return err.signum
    pending = pending_signal()
    return pending if pending is not None else int(signal.SIGINT)


def interrupt_message(err: KeyboardInterrupt, prog: str, hint: str = "") -> str:
    """The one line a command prints when it was interrupted.

    Args:
        err: The ``Interrupted`` or ``KeyboardInterrupt`` caught.
        prog: The program name (``edgekit``, ``device_bench``).
        hint: What the user can do next, appended after ``"; "`` (empty: nothing).

    Returns:
        E.g. ``"edgekit: interrupted (SIGTERM); nothing half-written"``.
    """
    name = _name(_signum_of(err))
    return f"{prog}: interrupted ({name}); nothing half-written" + (f"; {hint}" if hint else "")


class _Handler:
    """The installed handler: raises, remembers the signal, ignores repeats within GRACE_S."""

    def __init__(self) -> None:
        self.first: int | None = None
        self.at = 0.0

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        now = time.monotonic()
        if self.first is not None and now - self.at < GRACE_S:
            return  # already unwinding: let the clean-up finish
        if self.first is None:
            self.first = signum
        self.at = now
        raise Interrupted(self.first)


# The handler of the innermost interrupts_as_exceptions block (main thread), if any.
_active: list[_Handler] = []


def pending_signal() -> int | None:
    """The signal that interrupted this command, once one has arrived (None before).

    Returns:
        Its number, or None (no signal yet, or no :func:`interrupts_as_exceptions` block).
    """
    return _active[-1].first if _active else None


def raise_if_interrupted() -> None:
    """Raises :class:`Interrupted` again when a signal arrived and its exception was lost.

    A safe point: call it before committing an artefact or printing progress. Inside an
    ``except`` block that is handling an interrupt already (the clean-up), it does nothing.

    Raises:
        Interrupted: A signal arrived (see :func:`pending_signal`).
    """
    signum = pending_signal()
    if signum is None or isinstance(sys.exc_info()[1], KeyboardInterrupt):
        return
    raise Interrupted(signum)


@contextlib.contextmanager
def interrupts_as_exceptions() -> Iterator[None]:
    """Inside, SIGINT and SIGTERM raise :class:`Interrupted`; the old handlers come back after.

    Signal handlers can only be set from the main thread: elsewhere this does nothing (the
    signals keep whatever handling the process has). After the block :func:`pending_signal`
    no longer reports its signal.

    Yields:
        Nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    handler = _Handler()
    previous: dict[signal.Signals, Any] = {}
    _active.append(handler)
    try:
        for sig in HANDLED_SIGNALS:
            previous[sig] = signal.signal(sig, handler)
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old if old is not None else signal.SIG_DFL)
        _active.remove(handler)
