"""The channel search's budget, checked on the model that ships.

A ``ChannelPrune`` stage with a ``target`` searched until its model met the budget on the
device (:mod:`edgekit.compress.channel_search`). Fine-tuning, QAT and the int8 converter come
after it, so the promise is kept only if the **shipped** int8 model meets the budget too,
measured on the same device in this run. The recipe benchmarks on the search's device
(:class:`edgekit.recipe.Recipe` adds it to ``bench.targets``), and :func:`search_budgets` turns
every searched stage into one budget row of the report (``channel_target[<stage>]``): a miss
fails the run (exit 1) and the row says by how much.

Figures: latency at the target's statistic; guest instructions per inference (``qemu-aarch64``;
instructions, not time); MACs counted from the ``.tflite``. A ratio budget is taken of the dense
int8 model (``int8_dense.tflite``, benchmarked in the same run).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from edgekit.report_types import BudgetResult, Entry, KerasEntry, TfliteEntry

__all__ = ["search_budgets"]

DENSE = "int8_dense"


def _figure(entry: TfliteEntry | None, target: dict[str, Any]) -> float | None:
    """The entry's figure in the target's measure (None when it was not measured)."""
    if entry is None:
        return None
    if "macs_ratio" in target:
        return None if entry.macs is None else float(entry.macs)
    result = entry.bench.get(target.get("on", ""))
    if result is None:
        return None
    if "instructions_ratio" in target:
        arm = result.arm
        value = None if arm is None else arm.instructions_per_inference
        return None if value is None else float(value)
    return result.latency_ms.stat(target.get("stat", "p50"))


def search_budgets(entries: Sequence[Entry]) -> tuple[BudgetResult, ...]:
    """One budget per searched ChannelPrune stage, checked on the final ``.tflite``.

    Args:
        entries: The run's entries (stages, then the ``.tflite`` files).

    Returns:
        ``channel_target[<stage>]`` rows: limit (the absolute budget: ms, instructions or MACs;
        a ratio times the dense int8 model's figure in this run), value (the final model's),
        passed. A figure that was not measured is None and fails.
    """
    tflites = [e for e in entries if isinstance(e, TfliteEntry)]
    final = next((e for e in reversed(tflites) if e.final), None)
    dense = next((e for e in tflites if e.name == DENSE), None)
    out: list[BudgetResult] = []
    for entry in entries:
        if not isinstance(entry, KerasEntry) or entry.kind != "ChannelPrune":
            continue
        search = (entry.details or {}).get("search")
        if not isinstance(search, dict) or not isinstance(search.get("target"), dict):
            continue
        target = search["target"]
        key = next(k for k in ("latency_ms", "latency_ratio", "instructions_ratio",
                               "macs_ratio") if k in target)
        unit = "MACs" if key == "macs_ratio" else "instructions" \
            if key == "instructions_ratio" else f"ms ({target.get('stat', 'p50')})"
        where = f" on {target['on']}" if target.get("on") else ""
        if key == "latency_ms":
            limit: float | None = float(target[key])
        else:
            base = _figure(dense, target)
            limit = None if base is None else float(target[key]) * base
        value = _figure(final, target)
        out.append(BudgetResult(
            name=f"channel_target[{entry.name}]", limit=limit, value=value,
            unit=f"{unit}{where}",
            passed=value is not None and limit is not None and value <= limit))
    return tuple(out)


def search_series(entries: Sequence[Entry]) -> list[dict[str, Any]]:
    """The latency (or instructions, MACs) and accuracy of every step of each channel search.

    Args:
        entries: The run's entries.

    Returns:
        One ``{"stage", "unit", "budget", "dense", "points": [(figure, accuracy %, label)]}``
        per searched ChannelPrune stage; a step's accuracy is its proposal's score on the
        share of the training split the search held out (the test split is never read).
    """
    out = []
    for entry in entries:
        if not isinstance(entry, KerasEntry) or entry.kind != "ChannelPrune":
            continue
        search = (entry.details or {}).get("search")
        if not isinstance(search, dict) or not search.get("steps"):
            continue
        points = [(float(s["measured"]), 100.0 * float(s["validation_accuracy"]),
                   f"{s['step']}: {s['group']} {s['channels'][0]}->{s['channels'][1]}")
                  for s in search["steps"] if s.get("validation_accuracy") is not None]
        out.append({"stage": entry.name, "unit": search.get("unit", ""),
                    "budget": search.get("budget"), "dense": search.get("dense_figure"),
                    "target": search.get("target"), "points": points})
    return out
