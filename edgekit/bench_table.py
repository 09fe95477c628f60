"""One model on several targets: run each in turn, keep the failures, print one comparison table.

``edgekit bench MODEL --target local,ssh://pi@raspberrypi`` runs here. A target that fails (the
board is unreachable, the remote run crashed, a named energy source is missing there) becomes a
row marked FAILED with its one-line reason; the other targets still run.

The JSON of several targets (``--json OUT``) is one object keyed by target spec, in the order
given::

    {"schema": "edgekit.bench-comparison/1",
     "model": "model_int8.tflite",
     "targets": {"local": {"ok": true, "error": null, "result": {...edgekit.bench/1...}},
                 "ssh://pi@raspberrypi": {"ok": false, "error": "...", "result": null}}}

(one target alone keeps writing the plain ``edgekit.bench/1`` dict).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from device_bench.errors import BenchInputError, TargetError
from device_bench.result import BenchResult
from edgekit.core.errors import InputError

__all__ = [
    "COMPARISON_SCHEMA",
    "TargetOutcome",
    "comparison_dict",
    "format_table",
    "outcomes_from_dict",
    "parse_targets",
    "run_targets",
]

COMPARISON_SCHEMA = "edgekit.bench-comparison/1"
_DEVICE_WIDTH = 34


@dataclass(frozen=True)
class TargetOutcome:
    """What one target gave.

    Attributes:
        target: The target spec as given.
        result: The ``edgekit.bench/1`` dict, or None when the target failed.
        error: The one-line reason it failed, or None.
    """

    target: str
    result: dict[str, Any] | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when the target produced a result."""
        return self.result is not None

    @property
    def bench(self) -> BenchResult | None:
        """:attr:`result` as a :class:`~device_bench.result.BenchResult` (None: it failed).

        Raises:
            BenchInputError: The result is not an ``edgekit.bench/1`` result.
        """
        return None if self.result is None else BenchResult.from_dict(self.result,
                                                                      f"result of {self.target}")

    def to_dict(self) -> dict[str, Any]:
        """``{"ok", "error", "result"}`` (the target is the key it is stored under)."""
        return {"ok": self.ok, "error": self.error, "result": self.result}


def parse_targets(target: str | Sequence[str]) -> list[str]:
    """Target specs from ``--target``: a comma-separated string or a list (fire gives either).

    Args:
        target: ``"local"``, ``"local,qemu-aarch64"``, ``["local", "ssh://pi@host"]`` or fire's
            unparsed ``"[local,qemu-aarch64]"``.

    Returns:
        The specs in order, whitespace stripped.

    Raises:
        InputError: No spec, a spec that is not a string, or the same spec twice.
    """
    if isinstance(target, str):
        items: list[Any] = target.strip().removeprefix("[").removesuffix("]").split(",")
    elif isinstance(target, (list, tuple)):
        items = list(target)
    else:
        raise InputError(f"--target must be a target spec or a list of them, got {target!r}")
    specs: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise InputError(f"--target entries must be target specs (strings), got {item!r}")
        spec = item.strip().strip("'\"")
        if spec:
            specs.append(spec)
    if not specs:
        raise InputError(f"--target names no target, got {target!r}; expected e.g. local")
    seen = sorted({s for s in specs if specs.count(s) > 1})
    if seen:
        raise InputError(f"--target names {', '.join(map(repr, seen))} more than once")
    return specs


def _one_line(err: BaseException) -> str:
    return " ".join(line.strip() for line in str(err).splitlines() if line.strip())


def run_targets(model: str | os.PathLike[str], specs: Sequence[str], options: Any,
                log: Callable[[str], None] | None = None) -> list[TargetOutcome]:
    """Benchmarks ``model`` on each target in turn.

    Every spec is parsed before anything runs, so a typo fails at once. A target whose run
    raises ``TargetError`` or ``BenchInputError`` becomes a failed outcome; the others go on.

    Args:
        model: The ``.tflite`` file.
        specs: Target specs (see ``device_bench.targets.get_target``).
        options: ``device_bench.runner.BenchOptions``.
        log: Called with a line before each target runs.

    Returns:
        One outcome per spec, in order.

    Raises:
        BenchInputError: A spec names no known target (before any target runs).
    """
    from device_bench.targets import get_target

    targets = [(spec, get_target(spec)) for spec in specs]
    outcomes = []
    for spec, target in targets:
        if log is not None:
            log(f"bench {os.fspath(model)} on {spec}")
        try:
            result = target.bench(os.fspath(model), options)
            BenchResult.from_dict(result, f"result of {spec}")  # a malformed one fails the target
            outcomes.append(TargetOutcome(spec, result=result))
        except (TargetError, BenchInputError) as e:
            outcomes.append(TargetOutcome(spec, error=_one_line(e) or type(e).__name__))
    return outcomes


def comparison_dict(model: str | os.PathLike[str], outcomes: Sequence[TargetOutcome]
                    ) -> dict[str, Any]:
    """The ``edgekit.bench-comparison/1`` JSON object (see the module docstring).

    Args:
        model: The ``.tflite`` file.
        outcomes: From :func:`run_targets`.

    Returns:
        The JSON-ready dict.
    """
    return {
        "schema": COMPARISON_SCHEMA,
        "model": os.fspath(model),
        "targets": {o.target: o.to_dict() for o in outcomes},
    }


def _num(value: Any, fmt: str = "{:.3f}") -> str:
    return "-" if value is None else fmt.format(value)


def _ms(value: float | None) -> str:
    """Milliseconds: 3 decimals from 1 ms up, 4 significant digits below (0.000634)."""
    if value is None:
        return "-"
    return f"{value:.3f}" if abs(value) >= 1 else f"{value:.4g}"


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _row(target: str, r: BenchResult) -> list[str]:
    lat, tgt, rt, energy = r.latency_ms, r.target, r.runtime, r.energy
    notes = []
    if r.emulated:
        notes.append("emulated: timings are not the board's")
    if energy is None:
        mj = "-"
    elif energy.measured:
        mj = _num(energy.mj_per_inference, "{:.4g}")
    else:
        mj = "~" + _num(energy.mj_per_inference, "{:.3g}")
        notes.append(f"energy estimated ({energy.source})")
    return [
        target,
        _clip(str(tgt.cpu or tgt.machine or "-"), _DEVICE_WIDTH),
        f"{rt.interpreter or '-'} {rt.version or ''}".strip(),
        str(rt.threads or "default"),
        _ms(lat.p50), _ms(lat.p90), _ms(lat.p99),
        "-" if lat.cv is None else f"{100 * lat.cv:.1f}%",
        _num(lat.init, "{:.1f}"),
        _num(r.memory.peak_rss_mb, "{:.1f}"),
        mj,
        "; ".join(notes),
    ]


HEADER = ["target", "device", "interpreter", "threads", "p50 ms", "p90 ms", "p99 ms", "cv",
          "init ms", "peak RSS MB", "mJ/inference", "notes"]
_LEFT = {0, 1, 2, 11}  # text columns; the rest are numbers, right-aligned


def format_table(outcomes: Sequence[TargetOutcome]) -> str:
    """A fixed-width comparison table, one row per target.

    A failed target's row says ``FAILED`` and its reason instead of figures. An estimated energy
    is shown as ``~N`` and named in the notes; an emulated target says so in the notes.

    Args:
        outcomes: From :func:`run_targets`.

    Returns:
        The table (no trailing newline).

    Raises:
        BenchInputError: A result that is not an ``edgekit.bench/1`` result.
    """
    rows = [None if (bench := o.bench) is None else _row(o.target, bench) for o in outcomes]
    measured = [r for r in rows if r is not None]
    widths = [max([len(h)] + [len(r[i]) for r in measured]) for i, h in enumerate(HEADER)]
    widths[0] = max([widths[0]] + [len(o.target) for o in outcomes])
    widths[-1] = len(HEADER[-1])  # the last column runs free

    def fmt(cells: list[str]) -> str:
        parts = [c.ljust(w) if i in _LEFT else c.rjust(w)
                 for i, (c, w) in enumerate(zip(cells, widths, strict=True))]
        return "  ".join([*parts[:-1], cells[-1]]).rstrip()

    lines = [fmt(HEADER), "  ".join("-" * w for w in widths)]
    for o, row in zip(outcomes, rows, strict=True):
        if row is not None:
            lines.append(fmt(row))
        else:
            lines.append(f"{o.target.ljust(widths[0])}  FAILED: {o.error or 'no reason given'}")
    return "\n".join(lines)


def outcomes_from_dict(comparison: dict[str, Any]) -> list[TargetOutcome]:
    """The outcomes back from an ``edgekit.bench-comparison/1`` object.

    Args:
        comparison: From :func:`comparison_dict` (or its JSON file).

    Returns:
        One outcome per target, in the stored order.

    Raises:
        InputError: Not a comparison object.
    """
    if not isinstance(comparison, dict) or comparison.get("schema") != COMPARISON_SCHEMA:
        raise InputError(f"expected an {COMPARISON_SCHEMA} object, got "
                         f"{type(comparison).__name__} with schema "
                         f"{comparison.get('schema') if isinstance(comparison, dict) else None!r}")
    return [TargetOutcome(spec, entry.get("result"), entry.get("error"))
            for spec, entry in comparison["targets"].items()]
