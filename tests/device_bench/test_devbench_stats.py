"""device_bench.stats against hand-computed values."""

from __future__ import annotations

import math

import pytest

from device_bench.errors import BenchInputError
from device_bench.stats import (
    CV_WARN_THRESHOLD,
    coefficient_of_variation,
    is_noisy,
    latency_stats,
    median,
    ns_to_ms,
    percentile,
)

KEYS = ["mean", "std", "min", "p50", "p90", "p99", "max", "cv"]


def test_latency_stats_one_to_ten() -> None:
    # 1..10: mean 5.5; population variance 8.25; linear percentiles at index q/100 * 9.
    stats = latency_stats([float(v) for v in range(1, 11)], [2.0, 4.0])
    assert list(stats) == KEYS
    assert stats["mean"] == 5.5
    assert stats["std"] == round(math.sqrt(8.25), 6) == 2.872281
    assert stats["min"] == 1.0
    assert stats["max"] == 10.0
    assert stats["p50"] == 5.5  # index 4.5 -> between 5 and 6
    assert stats["p90"] == 9.1  # index 8.1 -> 9 + 0.1
    assert stats["p99"] == 9.91  # index 8.91 -> 9 + 0.91
    # window medians 2 and 4: mean 3, population std 1.
    assert stats["cv"] == round(1 / 3, 6) == 0.333333


def test_latency_stats_unsorted_and_repeated() -> None:
    stats = latency_stats([3.0, 1.0, 2.0, 2.0], [2.0, 2.0, 2.0])
    assert stats["p50"] == 2.0
    assert stats["mean"] == 2.0
    assert stats["std"] == round(math.sqrt(0.5), 6)
    assert stats["p90"] == 2.7  # sorted 1,2,2,3; index 2.7 -> 2 + 0.7
    assert stats["cv"] == 0.0


def test_latency_stats_single_sample_and_window() -> None:
    stats = latency_stats([0.25], [0.25])
    assert {k: stats[k] for k in KEYS if k != "cv"} == {
        "mean": 0.25, "std": 0.0, "min": 0.25, "p50": 0.25, "p90": 0.25, "p99": 0.25, "max": 0.25,
    }
    assert stats["cv"] is None


def test_latency_stats_rounds_to_six_decimals() -> None:
    stats = latency_stats([1 / 3, 1 / 3], [1 / 3, 1 / 3])
    assert stats["mean"] == 0.333333


@pytest.mark.parametrize("samples", [[], [1.0, float("nan")], [float("inf")]])
def test_latency_stats_rejects_bad_samples(samples: list[float]) -> None:
    with pytest.raises(BenchInputError, match="samples_ms"):
        latency_stats(samples, [1.0, 1.0])


def test_percentile_and_median() -> None:
    assert percentile([10.0, 20.0, 30.0, 40.0], 25) == 17.5
    assert percentile([10.0, 20.0], 0) == 10.0
    assert percentile([10.0, 20.0], 100) == 20.0
    assert median([4.0, 1.0, 3.0]) == 3.0
    with pytest.raises(BenchInputError, match=r"q must be in \[0, 100\], got 101"):
        percentile([1.0], 101)
    with pytest.raises(BenchInputError, match="at least one value"):
        median([])


def test_coefficient_of_variation() -> None:
    assert coefficient_of_variation([1.0]) is None
    assert coefficient_of_variation([]) is None
    assert coefficient_of_variation([0.0, 0.0]) is None  # undefined, not a guess
    assert coefficient_of_variation([1.0, 3.0]) == 0.5  # mean 2, std 1
    assert coefficient_of_variation([5.0, 5.0, 5.0]) == 0.0


def test_is_noisy_threshold() -> None:
    assert CV_WARN_THRESHOLD == 0.05
    assert not is_noisy(None)
    assert not is_noisy(0.05)
    assert is_noisy(0.0501)
    assert is_noisy(0.2, threshold=0.1)


def test_ns_to_ms() -> None:
    assert ns_to_ms([1_000_000, 1_500, 0]) == [1.0, 0.0015, 0.0]
