"""The driver's view of a sweep while it runs: one row per candidate, figures as they arrive.

Each candidate is ``queued`` (waiting for its turn or for a shared stage another candidate is
computing), ``running`` (which phase, on which node), ``done`` (held-out accuracy, size, p50 on
the first bench target) or ``failed`` (the phase and one line of why). On a terminal the table
is redrawn in place (at most a few times a second); elsewhere (a log file, CI) every change is
one plain line, so the log reads as a history.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

from device_bench.interrupts import raise_if_interrupted

__all__ = ["SweepProgress", "figures_of"]

STATES = ("queued", "running", "done", "failed")
REDRAW_S = 0.25


def figures_of(report: dict[str, Any], target: str | None) -> str:
    """A finished candidate's figures in a few words.

    Args:
        report: Its ``edgekit.report/1`` dict.
        target: The bench target whose p50 to show (None: none).

    Returns:
        For example ``"97.22 %  10.4 KiB  p50 0.051 ms"``.
    """
    final = report.get("final") or {}
    acc, size = final.get("accuracy"), final.get("bytes")
    parts = ["—" if acc is None else f"{100 * acc:.2f} %",
             "—" if size is None else f"{size / 1024:.1f} KiB"]
    if target is not None:
        entry = next((e for e in report.get("stages", [])
                      if e.get("kind") == "tflite" and e.get("final")), {})
        p50 = ((entry.get("bench") or {}).get(target) or {}).get("latency_ms", {}).get("p50")
        parts.append("p50 —" if p50 is None else f"p50 {p50:.3f} ms")
    return "  ".join(parts)


@dataclass
class _Row:
    state: str = "queued"
    node: str = ""
    phase: str = ""
    note: str = ""
    attempt: int = 1


class SweepProgress:
    """The live table of a sweep's candidates.

    Args:
        names: The candidates, in sweep order.
        target: The bench target whose p50 the table shows (None: none).
        stream: Where to write (stderr by default).
        live: Redraw a table in place (default: when ``stream`` is a terminal); otherwise one
            line per change.
        sink: Where plain lines go (a sweep's log); default: ``stream``, after ``edgekit: ``.
    """

    def __init__(self, names: list[str], target: str | None, stream: TextIO | None = None,
                 live: bool | None = None, sink: Callable[[str], None] | None = None) -> None:
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty() if live is None else live
        self.rows = {name: _Row() for name in names}
        self.target = target
        self.sink = sink
        self._drawn = 0
        self._last = 0.0

    def update(self, name: str, state: str, *, node: str | None = None,
               phase: str | None = None, report: dict[str, Any] | None = None,
               error: str | None = None, attempt: int | None = None, note: str | None = None
               ) -> None:
        """Records a candidate's new state (a plain line or a redraw when anything changed).

        Args:
            name: The candidate.
            state: One of ``queued``, ``running``, ``done``, ``failed``.
            node: Where it runs.
            phase: Which phase runs.
            report: Its report (``done``): the row shows its figures.
            error: Why it failed (``failed``).
            attempt: The attempt of the running phase (2 and up: a retry after a lost worker).
            note: Free text for the row (``queued``: what it waits for).
        """
        if state not in STATES:
            raise ValueError(f"state must be one of {STATES}, got {state!r}")
        row = self.rows[name]
        new = _Row(state, node if node is not None else row.node,
                   phase if phase is not None else ("" if state != "running" else row.phase),
                   note if note is not None else "", attempt or row.attempt)
        if report is not None:
            new.note = figures_of(report, self.target)
        elif error is not None:
            new.note = error
        if new == row:
            return
        self.rows[name] = new
        if self.live:
            self.redraw(force=state in ("done", "failed"))
        else:
            self._line(name, new)

    def _counts(self) -> str:
        done = sum(r.state == "done" for r in self.rows.values())
        failed = sum(r.state == "failed" for r in self.rows.values())
        return f"{done + failed}/{len(self.rows)}" + (f", {failed} failed" if failed else "")

    def _describe(self, row: _Row) -> str:
        if row.state == "running":
            retry = f" (attempt {row.attempt})" if row.attempt > 1 else ""
            return f"running {row.phase} on {row.node}{retry}"
        if row.state == "queued":
            return "queued" + (f" ({row.note})" if row.note else "")
        return f"{row.state}: {row.note}" if row.note else row.state

    def _line(self, name: str, row: _Row) -> None:
        text = f"[{self._counts()}] {name}: {self._describe(row)}"
        if self.sink is not None:
            self.sink(text)
            return
        raise_if_interrupted()  # a progress line is a safe point (device_bench.interrupts)
        print(f"edgekit: {text}", file=self.stream, flush=True)

    def table(self) -> list[str]:
        """The table's lines (header first)."""
        width = max(len(n) for n in self.rows) if self.rows else 9
        lines = [f"{'candidate':<{width}}  {'state':<8}  {'node':<15}  detail"]
        for name, row in self.rows.items():
            detail = (f"{row.phase}{f' (attempt {row.attempt})' if row.attempt > 1 else ''}"
                      if row.state == "running" else row.note)
            lines.append(f"{name:<{width}}  {row.state:<8}  {row.node:<15}  {detail}")
        lines.append(f"{self._counts()} finished")
        return lines

    def redraw(self, force: bool = False) -> None:
        """Draws the table again in place (live mode), at most every :data:`REDRAW_S`."""
        if not self.live or (not force and time.monotonic() - self._last < REDRAW_S):
            return
        raise_if_interrupted()
        up = f"\x1b[{self._drawn}F" if self._drawn else ""
        lines = self.table()
        self.stream.write(up + "".join(f"\x1b[2K{line}\n" for line in lines))
        self.stream.flush()
        self._drawn = len(lines)
        self._last = time.monotonic()

    def close(self) -> None:
        """Leaves the final table on screen (live mode)."""
        if self.live:
            self.redraw(force=True)
