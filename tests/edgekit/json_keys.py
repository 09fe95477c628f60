"""The key structure of a JSON document: every key path with its JSON type, values dropped.

Used by the golden tests of ``report.json`` (``tests/edgekit/data/report_keys.json``) and of the
bench results (``tests/device_bench/data/bench_keys.json``). The structure of

- an object is an object with the same keys, in the same order, each mapped to its structure;
- an array is an array of the distinct structures of its items, in first-seen order (a list of
  entries is described by its item structures; ``[]`` for an empty array);
- a scalar is its JSON type: ``"string"``, ``"number"``, ``"boolean"`` or ``"null"``.

An object at an *opaque* path (one that another module owns: a stage's ``details``, the
recipe, the bench options) is ``"object"``: its keys are pinned by that module's own tests. An
array at an opaque path is ``"array"``: one whose length depends on the run (``slower_than``,
empty unless a ``.tflite`` ran slower than another), its items pinned by their own tests.
Paths are tuples of keys; ``"[]"`` stands for any item of an array and ``"*"`` for any key.

Run as a script to derive the golden files from a run folder::

    python tests/edgekit/json_keys.py RUN_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

Path_ = tuple[str, ...]

# Objects owned by other modules (their round-trips are tested there), and arrays whose items
# depend on the run's timings (tests/edgekit/test_report_work.py pins their keys).
REPORT_OPAQUE: tuple[Path_, ...] = (("recipe",), ("stages", "[]", "details"),
                                    ("stages", "[]", "slower_than"))
BENCH_OPAQUE: tuple[Path_, ...] = (("options",), ("energy", "detail"))
# Facts of the machine the run happened on: null where this machine cannot tell (no cpufreq, no
# thermal zone, no vcgencmd), a value elsewhere. Compared as "null or a scalar".
BENCH_MACHINE_FACTS: tuple[Path_, ...] = (
    *(("target", key) for key in ("host", "machine", "cpu", "cores", "os", "governor",
                                  "temperature_c", "throttled")),
    ("runtime", "version"), ("runtime", "threads"), ("runtime", "delegate"),
    ("latency_ms", "cv"), ("memory", "peak_rss_mb"),
)
MACHINE_FACT = "machine fact (null or a scalar)"

REPO = Path(__file__).resolve().parents[2]
REPORT_KEYS = REPO / "tests" / "edgekit" / "data" / "report_keys.json"
BENCH_KEYS = REPO / "tests" / "device_bench" / "data" / "bench_keys.json"


def _matches(path: Path_, pattern: Path_) -> bool:
    return len(path) == len(pattern) and all(p in ("*", k) for k, p in zip(path, pattern,
                                                                             strict=True))


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    raise TypeError(f"not a JSON value: {value!r}")


def key_structure(value: Any, opaque: tuple[Path_, ...] = (), path: Path_ = ()) -> Any:
    """The key structure of a JSON value (see the module docstring).

    Args:
        value: A parsed JSON document (or part of one).
        opaque: Paths whose objects are described as ``"object"``.
        path: Where ``value`` sits (for the opaque paths).

    Returns:
        The structure, itself JSON.
    """
    if isinstance(value, dict):
        if any(_matches(path, p) for p in opaque):
            return "object"
        return {k: key_structure(v, opaque, (*path, k)) for k, v in value.items()}
    if isinstance(value, list):
        if any(_matches(path, p) for p in opaque):
            return "array"
        items: list[Any] = []
        for item in value:
            s = key_structure(item, opaque, (*path, "[]"))
            if s not in items:
                items.append(s)
        return items
    return _scalar(value)


def relax(structure: Any, paths: tuple[Path_, ...], path: Path_ = ()) -> Any:
    """``structure`` with the scalar leaves at ``paths`` replaced by :data:`MACHINE_FACT`."""
    if isinstance(structure, dict):
        return {k: relax(v, paths, (*path, k)) for k, v in structure.items()}
    if isinstance(structure, list):
        out: list[Any] = []
        for item in structure:
            s = relax(item, paths, (*path, "[]"))
            if s not in out:
                out.append(s)
        return out
    if any(_matches(path, p) for p in paths) and structure != "object":
        return MACHINE_FACT
    return structure


def bench_paths_in_report(paths: tuple[Path_, ...]) -> tuple[Path_, ...]:
    """Bench-result paths as they sit inside a report (``stages[].bench.<target>.…``)."""
    return tuple(("stages", "[]", "bench", "*", *p) for p in paths)


def ordered(structure: Any) -> Any:
    """The structure with every object turned into a list of ``[key, structure]`` pairs.

    Dicts compare equal whatever their key order; these lists do not.
    """
    if isinstance(structure, dict):
        return [[k, ordered(v)] for k, v in structure.items()]
    if isinstance(structure, list):
        return [ordered(v) for v in structure]
    return structure


def _write(path: Path, structure: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(structure, indent=1) + "\n", encoding="utf-8")


def main(run_dir: str) -> None:
    """Writes the golden files from a run folder's report.json and bench/model_*.json."""
    run = Path(run_dir)
    report = json.loads((run / "report.json").read_text(encoding="utf-8"))
    opaque = REPORT_OPAQUE + bench_paths_in_report(BENCH_OPAQUE)
    _write(REPORT_KEYS, key_structure(report, opaque))
    final = next(e for e in report["stages"] if e.get("final"))
    bench = json.loads((run / "bench" / f"{Path(final['artefact']).stem}.local.json")
                       .read_text(encoding="utf-8"))
    _write(BENCH_KEYS, key_structure(bench, BENCH_OPAQUE))


if __name__ == "__main__":
    main(sys.argv[1])
