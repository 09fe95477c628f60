"""Energy per inference: where the watts come from, and the idle/active measurement.

Sources (``--energy SPEC``): ``rapl``, ``hwmon[:NAME]``, ``pi5-pmic``, ``android`` and
``meter:CMD`` read real hardware, each a small class in :mod:`device_bench.energy_sources` (what
each reads is documented there). ``profile`` / ``profile:BOARD`` measures nothing: an estimate
from a board power profile (:mod:`device_bench.power_profiles`), ``"measured": false``.
``auto`` is the first available of rapl, hwmon, pi5-pmic, android; else the profile estimate.

Measurement (:func:`measure`): sample the source while the model sits idle (the idle baseline),
then while it runs inference back to back for at least ``seconds``. Counter sources integrate
exactly (energy = counter difference); power sources by the trapezoid rule over the sample times.
``mj_per_inference`` = active energy / inferences; ``mj_per_inference_above_idle`` =
(active W - idle W) x window / inferences.

Needs only the standard library (no numpy, no TensorFlow).
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from device_bench import power_profiles
from device_bench.energy_sources import (
    AndroidBatterySource,
    EnergyReadError,
    EnergySource,
    HwmonSource,
    MeterSource,
    Pi5PmicSource,
    RaplSource,
)
from device_bench.errors import BenchInputError

__all__ = ["AUTO_ORDER", "ENERGY_SPECS", "bench_energy", "check_spec", "measure",
           "resolve_source"]

ENERGY_SPECS = ("auto", "none", "rapl", "hwmon[:NAME]", "pi5-pmic", "android", "meter:CMD",
                "profile[:BOARD]")
AUTO_ORDER = ("rapl", "hwmon", "pi5-pmic", "android")


def check_spec(spec: Any) -> str:
    """Validates the form of an ``--energy`` spec (not whether the source is here).

    Args:
        spec: For example ``auto``, ``hwmon:ina226`` or ``meter:"mymeter --watts"``.

    Returns:
        The spec.

    Raises:
        BenchInputError: Not a string, or not one of :data:`ENERGY_SPECS`.
    """
    if isinstance(spec, str):
        head, sep, rest = spec.partition(":")
        if (spec in ("auto", "none", "rapl", "hwmon", "pi5-pmic", "android", "profile")
                or (sep and rest and head in ("hwmon", "profile"))):
            return spec
        if head == "meter" and sep:
            MeterSource(rest)  # raises on an empty or unsplittable command
            return spec
    raise BenchInputError(f"energy must be one of {', '.join(ENERGY_SPECS)}; got {spec!r}")


def _make(name: str, root: str, vcgencmd: str) -> EnergySource:
    if name == "rapl":
        return RaplSource(root)
    if name == "hwmon" or name.startswith("hwmon:"):
        return HwmonSource(root, name.partition(":")[2] or None)
    if name == "pi5-pmic":
        return Pi5PmicSource(vcgencmd)
    if name == "android":
        return AndroidBatterySource(root)
    return MeterSource(name.partition(":")[2])


def resolve_source(spec: str, root: str = "/", vcgencmd: str = "vcgencmd"
                   ) -> tuple[EnergySource | None, list[str]]:
    """The source an ``--energy`` spec names, checked to be available.

    Args:
        spec: See :data:`ENERGY_SPECS`; ``none`` and ``profile`` give no source.
        root: The directory that holds ``sys`` (``/`` on a device).
        vcgencmd: The Raspberry Pi firmware tool.

    Returns:
        (source or None, warnings). ``auto`` returns None when nothing here can measure, with
        a warning for each source that exists but cannot be read (RAPL permissions).

    Raises:
        BenchInputError: A malformed spec, or a named source that is not available here (the
            message names it and says why).
    """
    check_spec(spec)
    if spec == "none" or spec.split(":")[0] == "profile":
        return None, []
    if spec != "auto":
        source = _make(spec, root, vcgencmd)
        if not source.available():
            raise BenchInputError(
                f"energy source {spec!r} is not available here: {source.why_unavailable}"
            )
        return source, []
    warnings: list[str] = []
    for name in AUTO_ORDER:
        source = _make(name, root, vcgencmd)
        if source.available():
            return source, warnings
        if source.why_unavailable and "not readable" in source.why_unavailable:
            warnings.append(f"energy source {name}: {source.why_unavailable}; trying the next")
    return None, warnings


class _Sampler:
    """Reads a source in a background thread, plus on demand at window boundaries."""

    def __init__(self, source: EnergySource, clock: Callable[[], float],
                 interval_s: float) -> None:
        self.source = source
        self.clock = clock
        self.interval_s = interval_s
        self.samples: list[tuple[float, float]] = []
        self.error: EnergyReadError | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self) -> int:
        """Reads once, timestamped at the middle of the read; returns the sample's index.

        A counter read that took long (the thread was preempted, another held the GIL) is
        repeated, up to 5 times, keeping the tightest: its timestamp is then within 0.5 ms of
        the moment the value was taken. Power readings (often a command) are taken once.
        """
        with self._lock:
            best: tuple[float, float, float] | None = None
            for _ in range(5 if self.source.kind == "energy" else 1):
                before = self.clock()
                value = self.source.read()
                took = self.clock() - before
                if best is None or took < best[0]:
                    best = (took, before + took / 2.0, value)
                if took <= 0.0005:
                    break
            self.samples.append((best[1], best[2]))
            return len(self.samples) - 1

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.sample()
            except EnergyReadError as e:
                self.error = e
                return

    def start(self) -> None:
        """Starts the background samples (after the first boundary sample: starting a thread
        can take milliseconds on a busy machine)."""
        if self.interval_s > 0:
            self._thread = threading.Thread(target=self._loop, name="energy-sampler",
                                            daemon=True)
            self._thread.start()

    def __enter__(self) -> _Sampler:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def energy_j(self, first: int, last: int) -> float:
        pts = self.samples[first:last + 1]
        if self.source.kind == "energy":
            return pts[-1][1] - pts[0][1]
        return sum((t1 - t0) * (p0 + p1) / 2.0 for (t0, p0), (t1, p1) in itertools.pairwise(pts))


def measure(source: EnergySource, work: Callable[[], object], *, seconds: float = 10.0,
            idle_seconds: float = 3.0, interval_s: float | None = None,
            clock: Callable[[], float] = time.perf_counter,
            sleep: Callable[[float], object] = time.sleep) -> dict[str, Any]:
    """Idle baseline, then ``work()`` back to back for at least ``seconds``; the energy block.

    Args:
        source: An available source.
        work: One inference.
        seconds: Minimum length of the active window.
        idle_seconds: Length of the idle baseline before it.
        interval_s: Seconds between background samples; None = the source's own; 0 = only at
            the window boundaries (enough for counters that do not wrap twice in a window).
        clock: Monotonic seconds (injectable for tests).
        sleep: Waits during the idle baseline (injectable for tests).

    Returns:
        ``{"source", "measured": True, "mj_per_inference", "mj_per_inference_above_idle",
        "idle_w", "active_w", "window_s", "idle_s", "inferences", "samples", "detail"}``.

    Raises:
        EnergyReadError: The source failed during the measurement.
    """
    interval = source.interval_s if interval_s is None else interval_s
    with _Sampler(source, clock, interval) as sampler:
        idle_first = sampler.sample()
        sampler.start()
        sleep(idle_seconds)
        idle_last = sampler.sample()
        active_first = sampler.sample()
        start = clock()
        count = 0
        while True:
            work()
            count += 1
            if clock() - start >= seconds:
                break
        active_last = sampler.sample()
    if sampler.error is not None:
        raise sampler.error
    times = [t for t, _ in sampler.samples]
    idle_s = times[idle_last] - times[idle_first]
    window_s = times[active_last] - times[active_first]
    idle_w = sampler.energy_j(idle_first, idle_last) / idle_s if idle_s > 0 else 0.0
    active_j = sampler.energy_j(active_first, active_last)
    active_w = active_j / window_s if window_s > 0 else 0.0
    return {
        "source": source.name,
        "measured": True,
        "mj_per_inference": round(active_j * 1e3 / count, 9),
        "mj_per_inference_above_idle": round((active_w - idle_w) * window_s * 1e3 / count, 9),
        "idle_w": round(idle_w, 6),
        "active_w": round(active_w, 6),
        "window_s": round(window_s, 6),
        "idle_s": round(idle_s, 6),
        "inferences": count,
        "samples": len(sampler.samples),
        "detail": source.detail(),
    }


def bench_energy(spec: str, work: Callable[[], object], *, seconds: float,
                 mean_latency_ms: float, threads: int | None, root: str = "/",
                 vcgencmd: str = "vcgencmd", idle_seconds: float | None = None
                 ) -> tuple[dict[str, Any] | None, list[str]]:
    """The ``energy`` block of a bench result, for ``--energy SPEC``.

    Args:
        spec: See :data:`ENERGY_SPECS`.
        work: One inference (run back to back during the active window).
        seconds: Minimum active window.
        mean_latency_ms: Measured mean latency (for a profile estimate).
        threads: Interpreter threads (for a profile estimate).
        root: The directory that holds ``proc`` and ``sys``.
        vcgencmd: The Raspberry Pi firmware tool.
        idle_seconds: Idle baseline; None = min(3, seconds).

    Returns:
        (energy block or None, warning lines). None for ``none``, when nothing can measure and
        no profile fits this board, or when the source failed mid-run (with a warning).

    Raises:
        BenchInputError: Malformed spec, unknown profile, or a named source not available.
    """
    if check_spec(spec) == "none":
        return None, []
    source, warnings = resolve_source(spec, root, vcgencmd)
    if source is not None:
        try:
            idle = min(3.0, seconds) if idle_seconds is None else idle_seconds
            return measure(source, work, seconds=seconds, idle_seconds=idle), warnings
        except EnergyReadError as e:
            return None, [*warnings, f"energy source {source.name} failed mid-run: {e}; "
                          "energy is null"]
    board = spec.partition(":")[2] if spec.startswith("profile:") else ""
    if board:
        if board not in power_profiles.PROFILES:
            raise BenchInputError(f"unknown power profile {board!r}; expected one of: "
                                  f"{', '.join(power_profiles.PROFILES)}")
        profile: power_profiles.PowerProfile | None = power_profiles.PROFILES[board]
    else:
        profile = power_profiles.detect_profile(root)
    if profile is None:
        return None, [*warnings, "no energy source here and no power profile for this board; "
                      "energy is null"]
    if spec == "auto":
        warnings.append(f"no energy source here; energy is an estimate from the {profile.board} "
                        "power profile (measured: false)")
    return power_profiles.estimate_energy(profile, mean_latency_ms, threads,
                                          os.cpu_count()), warnings
