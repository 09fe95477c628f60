"""Latency statistics: pure functions over lists of milliseconds.

Per-run figures (mean, std, min, percentiles, max) are over every timed run. The repeatability
figure ``cv`` is the coefficient of variation of the *window medians*: the run is split into
windows, each window's median is one estimate of the latency, and ``cv`` says how much those
estimates disagree. Standard deviations are population ones (``ddof=0``); percentiles use numpy's
linear interpolation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from device_bench.errors import BenchInputError

__all__ = [
    "CV_WARN_THRESHOLD",
    "DECIMALS",
    "coefficient_of_variation",
    "is_noisy",
    "latency_stats",
    "median",
    "ns_to_ms",
    "percentile",
]

# Above this cv the figures are flagged as noisy (on stderr, not in the JSON).
CV_WARN_THRESHOLD = 0.05
# Figures are rounded to this many decimals (1 ns in milliseconds).
DECIMALS = 6


def _as_array(values: Sequence[float], what: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if arr.size == 0:
        raise BenchInputError(f"{what} must hold at least one value, got none")
    if not np.all(np.isfinite(arr)):
        raise BenchInputError(f"{what} must be finite numbers, got {arr[~np.isfinite(arr)][:3]}")
    return arr


def _round(value: float) -> float:
    return round(float(value), DECIMALS)


def ns_to_ms(samples_ns: Sequence[int]) -> list[float]:
    """Converts integer nanosecond timings to float milliseconds.

    Args:
        samples_ns: Timings from ``time.perf_counter_ns`` differences.

    Returns:
        The same timings in milliseconds.
    """
    return [int(ns) / 1e6 for ns in samples_ns]


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile with numpy's linear interpolation.

    Args:
        values: At least one finite number.
        q: Percentile in [0, 100].

    Returns:
        The percentile as a float.

    Raises:
        BenchInputError: ``values`` is empty or not finite, or ``q`` is outside [0, 100].
    """
    if not 0.0 <= q <= 100.0:
        raise BenchInputError(f"q must be in [0, 100], got {q}")
    return float(np.percentile(_as_array(values, "values"), q, method="linear"))


def median(values: Sequence[float]) -> float:
    """The median (the 50th percentile, linear interpolation).

    Args:
        values: At least one finite number.

    Returns:
        The median as a float.

    Raises:
        BenchInputError: ``values`` is empty or not finite.
    """
    return percentile(values, 50.0)


def coefficient_of_variation(values: Sequence[float]) -> float | None:
    """Population standard deviation over mean.

    Args:
        values: Finite numbers (typically window medians).

    Returns:
        ``std / mean``, or None with fewer than 2 values or a mean of 0 (undefined).

    Raises:
        BenchInputError: ``values`` holds a non-finite number.
    """
    if len(values) < 2:
        return None
    arr = _as_array(values, "values")
    mean = float(arr.mean())
    if mean == 0.0:
        return None
    return float(arr.std(ddof=0)) / abs(mean)


def latency_stats(
    samples_ms: Sequence[float], window_medians_ms: Sequence[float]
) -> dict[str, float | None]:
    """The ``latency_ms`` figures of a bench result (all but ``init`` and ``first``).

    Args:
        samples_ms: Every timed run, in milliseconds.
        window_medians_ms: The median of each measurement window, in milliseconds.

    Returns:
        ``{"mean", "std", "min", "p50", "p90", "p99", "max", "cv"}``: per-run figures over
        ``samples_ms`` (population std), rounded to 6 decimals; ``cv`` = std / mean of
        ``window_medians_ms``, None with fewer than 2 windows.

    Raises:
        BenchInputError: ``samples_ms`` is empty, or either sequence holds a non-finite number.
    """
    arr = _as_array(samples_ms, "samples_ms")
    p50, p90, p99 = np.percentile(arr, [50.0, 90.0, 99.0], method="linear")
    cv = coefficient_of_variation(window_medians_ms)
    return {
        "mean": _round(arr.mean()),
        "std": _round(arr.std(ddof=0)),
        "min": _round(arr.min()),
        "p50": _round(p50),
        "p90": _round(p90),
        "p99": _round(p99),
        "max": _round(arr.max()),
        "cv": None if cv is None else _round(cv),
    }


def is_noisy(cv: float | None, threshold: float = CV_WARN_THRESHOLD) -> bool:
    """Tells whether a cv is above the noise threshold (None, unknown, is not noisy).

    Args:
        cv: A coefficient of variation, or None.
        threshold: The limit; default :data:`CV_WARN_THRESHOLD`.

    Returns:
        True when ``cv`` is a number above ``threshold``.
    """
    return cv is not None and not math.isnan(cv) and cv > threshold
