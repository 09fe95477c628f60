"""Reads the text TFLite's ``benchmark_model`` prints, and maps it onto ``edgekit.bench/1``.

``benchmark_model`` (tensorflow/lite/tools/benchmark) logs, one per line, with an optional
``INFO: `` (or logcat) prefix, all times in microseconds::

    count=1 curr=3512391                                   <- the warm-up runs
    count=50 first= curr= min= max= avg= std= [p5= median= p95=]   <- the timed runs
    Inference timings in us: Init: 17187, First inference: 3512391, Warmup (avg): ...,
        Inference (avg): ...                               (one line)
    Peak memory footprint (MB): init=... overall=...       (older tools, e.g. TF 2.4)
    Memory footprint delta from the start of the tool (MB): init=... overall=...  (e.g. TF 2.8+)
    Overall peak memory footprint (MB) via periodic monitoring: ...
                                       (with --report_peak_memory_footprint=true)

The two ``init=/overall=`` lines are *deltas* of the process's memory since the tool started
(``overall_mem_usage = memory after inference - memory before init``), not a peak RSS, so they are
kept apart in ``benchmark_model.memory_delta_mb``; only the periodic-monitoring line is an absolute
peak and becomes ``memory.peak_rss_mb``. A figure the text does not carry is None, never derived:
``p50`` comes from ``median=`` when the line has it, ``p90``/``p99``/``cv`` stay None.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

from device_bench.child_output import last_line
from device_bench.errors import BenchInputError

__all__ = ["SCHEMA", "BenchmarkModelOutput", "parse_output", "to_bench_result"]

SCHEMA = "edgekit.bench/1"
INTERPRETER = "benchmark_model"

_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_SUMMARY_RE = re.compile(
    rf"Inference timings in us: Init: (?P<init>{_NUM}), First inference: (?P<first>{_NUM}), "
    rf"Warmup \(avg\): (?P<warmup>{_NUM}), Inference \(avg\): (?P<avg>{_NUM})"
)
_COUNT_RE = re.compile(r"(?:^|[\s:])count=\d")
_PAIR_RE = re.compile(rf"\b([a-z0-9]+)=({_NUM})")
_DELTA_RE = re.compile(
    rf"(?:Peak memory footprint|Memory footprint delta from the start of the tool) \(MB\): "
    rf"init=(?P<init>{_NUM}) overall=(?P<overall>{_NUM})"
)
_PEAK_RE = re.compile(rf"Overall peak memory footprint \(MB\) via periodic monitoring: ({_NUM})")
_THREADS_RE = re.compile(r"(?:#threads used for CPU inference|Num threads): \[(-?\d+)\]")
_GRAPH_RE = re.compile(r"Graph: \[(.*)\]\s*$")
_XNNPACK_FLAG_RE = re.compile(r"Use xnnpack: \[([01])\]")
_SIZE_RE = re.compile(rf"The input model file size \(MB\): ({_NUM})")
# Lines of the op-profiling tables that also carry count=: not the run statistics.
_PROFILE_PREFIXES = ("Timings (microseconds):", "Memory (bytes):")


@dataclass(frozen=True)
class BenchmarkModelOutput:
    """What one ``benchmark_model`` run printed (times in microseconds, memory in MB).

    Attributes:
        init_us: ``Init:`` of the summary line (interpreter construction and allocation).
        first_us: ``First inference:``.
        warmup_avg_us: ``Warmup (avg):``.
        inference_avg_us: ``Inference (avg):``, the mean of the timed runs.
        runs: ``count=`` of the timed runs' statistics line; None when that line is absent.
        warmup_runs: ``count=`` of the warm-up line; None when absent.
        min_us: ``min=`` of the timed runs.
        max_us: ``max=``.
        std_us: ``std=``.
        median_us: ``median=`` (newer tools only).
        p5_us: ``p5=`` (newer tools only).
        p95_us: ``p95=`` (newer tools only).
        memory_init_delta_mb: ``init=`` of the memory-footprint line (a delta, see module doc).
        memory_overall_delta_mb: ``overall=`` of that line.
        peak_memory_mb: The periodic-monitoring peak (``--report_peak_memory_footprint=true``).
        threads: ``#threads used for CPU inference`` or ``Num threads``.
        graph: The ``Graph:`` path as the tool saw it.
        delegate: ``xnnpack``, ``gpu``, ``nnapi``, ``hexagon``, ``none`` (XNNPACK turned off), or
            None when the text does not say.
        model_file_mb: ``The input model file size (MB)``.
    """

    init_us: float | None
    first_us: float | None
    warmup_avg_us: float | None
    inference_avg_us: float
    runs: int | None = None
    warmup_runs: int | None = None
    min_us: float | None = None
    max_us: float | None = None
    std_us: float | None = None
    median_us: float | None = None
    p5_us: float | None = None
    p95_us: float | None = None
    memory_init_delta_mb: float | None = None
    memory_overall_delta_mb: float | None = None
    peak_memory_mb: float | None = None
    threads: int | None = None
    graph: str | None = None
    delegate: str | None = None
    model_file_mb: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict."""
        return dataclasses.asdict(self)


def _stats_lines(lines: list[str]) -> list[str]:
    return [
        line for line in lines
        if _COUNT_RE.search(line) and not any(p in line for p in _PROFILE_PREFIXES)
    ]


def _pairs(line: str) -> dict[str, float]:
    return {key: float(value) for key, value in _PAIR_RE.findall(line)}


def _delegate(text: str) -> str | None:
    flag = _XNNPACK_FLAG_RE.search(text)
    if "delegate for GPU" in text or "GPU delegate created" in text:
        return "gpu"
    if "delegate for NNAPI" in text or "NNAPI delegate created" in text:
        return "nnapi"
    if "Hexagon delegate" in text:
        return "hexagon"
    if "XNNPACK delegate" in text or (flag is not None and flag.group(1) == "1"):
        return "xnnpack"
    if flag is not None:
        return "none"
    return None


def parse_output(text: str) -> BenchmarkModelOutput:
    """Parses the output of one ``benchmark_model`` run.

    Accepts the text as printed (with or without ``INFO:``/logcat prefixes, ``\\r\\n`` line ends,
    the command line or op-profiling tables around it).

    Args:
        text: stdout and stderr of the tool, together.

    Returns:
        The figures it printed.

    Raises:
        BenchInputError: ``text`` is not a string, has no ``Inference timings in us:`` line (the
            run failed or this is not benchmark_model output; the message quotes the last line),
            or holds several runs.
    """
    if not isinstance(text, str):
        raise BenchInputError(
            f"benchmark_model output must be text (str), got {type(text).__name__}"
        )
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    found = [(i, m) for i, line in enumerate(lines) if (m := _SUMMARY_RE.search(line))]
    if not found:
        last = last_line(text) or "(empty)"
        raise BenchInputError(
            "benchmark_model output has no 'Inference timings in us:' line; expected the text "
            f"a finished benchmark_model run prints (its last line: {last!r})"
        )
    if len(found) > 1:
        raise BenchInputError(
            f"benchmark_model output holds {len(found)} runs ('Inference timings in us:' "
            "lines); expected the output of one run"
        )
    summary_at, summary = found[0]
    stats = _stats_lines(lines[:summary_at])
    timed = _pairs(stats[-1]) if stats else {}
    warm = _pairs(stats[-2]) if len(stats) >= 2 else {}
    delta = _DELTA_RE.search(text)
    peak = _PEAK_RE.search(text)
    threads = _THREADS_RE.findall(text)
    graph = next((m.group(1) for line in lines if (m := _GRAPH_RE.search(line))), None)
    size = _SIZE_RE.search(text)

    def num(key: str) -> float | None:
        return timed.get(key)

    count = timed.get("count")
    warm_count = warm.get("count")
    return BenchmarkModelOutput(
        init_us=float(summary.group("init")),
        first_us=float(summary.group("first")),
        warmup_avg_us=float(summary.group("warmup")),
        inference_avg_us=float(summary.group("avg")),
        runs=int(count) if count is not None else None,
        warmup_runs=int(warm_count) if warm_count is not None else None,
        min_us=num("min"),
        max_us=num("max"),
        std_us=num("std"),
        median_us=num("median"),
        p5_us=num("p5"),
        p95_us=num("p95"),
        memory_init_delta_mb=float(delta.group("init")) if delta else None,
        memory_overall_delta_mb=float(delta.group("overall")) if delta else None,
        peak_memory_mb=float(peak.group(1)) if peak else None,
        threads=int(threads[-1]) if threads and int(threads[-1]) > 0 else None,
        graph=graph,
        delegate=_delegate(text),
        model_file_mb=float(size.group(1)) if size else None,
    )


def _ms(us: float | None) -> float | None:
    return None if us is None else round(us / 1000.0, 6)


def _null_target(kind: str) -> dict[str, Any]:
    return {
        "kind": kind, "host": None, "machine": None, "cpu": None, "cores": None, "os": None,
        "governor": None, "temperature_c": None, "throttled": None,
    }


def _null_model(path: str | None) -> dict[str, Any]:
    return {"path": path, "sha256": None, "bytes": None, "gzip_bytes": None}


def to_bench_result(
    parsed: BenchmarkModelOutput,
    *,
    model: dict[str, Any] | None = None,
    target: dict[str, Any] | None = None,
    kind: str = "adb",
    version: str | None = None,
) -> dict[str, Any]:
    """The ``edgekit.bench/1`` result a ``benchmark_model`` run amounts to.

    Args:
        parsed: From :func:`parse_output`.
        model: The ``model`` block (see ``runner.model_facts``); None gives one with only the
            ``Graph:`` path and null facts.
        target: The ``target`` block; None gives one with only ``kind`` set.
        kind: ``target.kind`` when ``target`` is None.
        version: The tool's version, when the caller knows it (the tool does not print it).

    Returns:
        The result dict: every ``edgekit.bench/1`` key, plus ``benchmark_model`` (all the parsed
        figures, microseconds and MB as printed, and the memory deltas in MB).
    """
    latency = {
        "init": _ms(parsed.init_us),
        "first": _ms(parsed.first_us),
        "mean": _ms(parsed.inference_avg_us),
        "std": _ms(parsed.std_us),
        "min": _ms(parsed.min_us),
        "p50": _ms(parsed.median_us),
        "p90": None,
        "p99": None,
        "max": _ms(parsed.max_us),
        "cv": None,
    }
    extra = parsed.to_dict()
    extra["memory_delta_mb"] = {
        "init": parsed.memory_init_delta_mb,
        "overall": parsed.memory_overall_delta_mb,
    }
    return {
        "schema": SCHEMA,
        "model": dict(model) if model is not None else _null_model(parsed.graph),
        "target": dict(target) if target is not None else _null_target(kind),
        "runtime": {
            "interpreter": INTERPRETER,
            "version": version,
            "threads": parsed.threads,
            "delegate": parsed.delegate,
        },
        "runs": parsed.runs,
        "warmup": parsed.warmup_runs,
        "emulated": False,
        "latency_ms": latency,
        "memory": {"peak_rss_mb": parsed.peak_memory_mb},
        "energy": None,
        "benchmark_model": extra,
    }
