"""Energy per inference: where the watts come from, and the idle/active measurement.

Sources (``--energy SPEC``): ``rapl``, ``hwmon[:NAME]``, ``pi5-pmic``, ``android`` and
``meter:CMD`` read real hardware, each a small class in :mod:`device_bench.energy_sources` (what
each reads is documented there). ``profile`` / ``profile:BOARD`` measures nothing: an estimate
from a board power profile (:mod:`device_bench.power_profiles`), ``"measured": false``.
``auto`` is the first available source in the ``auto`` order (rapl, hwmon, pi5-pmic, android);
else the profile estimate. Every kind, its argument and its ``auto`` rank are declared where it
is defined (:data:`~device_bench.energy_base.ENERGY_SOURCES`); the parser below lists none.

Measurement (:func:`measure`): sample the source while the model sits idle (the idle baseline),
then while it runs inference back to back for at least ``seconds``. Counter sources integrate
exactly (energy = counter difference); power sources by the trapezoid rule over the sample times.
``mj_per_inference`` = active energy / inferences; ``mj_per_inference_above_idle`` =
(active W - idle W) x window / inferences.

Needs only the standard library (no numpy, no TensorFlow).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from typing import Any

from device_bench import energy_sources, power_profiles
from device_bench.energy_base import (
    ENERGY_SOURCES,
    Argument,
    EnergyKind,
    EnergyReadError,
    EnergySource,
    SourcePlace,
)
from device_bench.errors import BenchInputError

# ENERGY_SPECS and AUTO_ORDER are still module attributes (see __getattr__).
__all__ = ["auto_order", "bench_energy", "check_spec", "energy_specs", "measure", "parse_spec",
           "resolve_source"]

# The kinds register when their modules are imported; these two hold every one of them.
_KIND_MODULES = (energy_sources, power_profiles)
_PSEUDO = ("auto", "none")


def energy_specs() -> tuple[str, ...]:
    """Every ``--energy`` form: ``auto``, ``none``, then each registered kind's form."""
    return (*_PSEUDO, *ENERGY_SOURCES.labels())


def auto_order() -> tuple[str, ...]:
    """The sources ``auto`` tries, first to last (their ``auto_rank``)."""
    ranked = [k for k in ENERGY_SOURCES if k.auto_rank is not None]
    return tuple(k.name for k in sorted(ranked, key=lambda k: k.auto_rank or 0))


def __getattr__(name: str) -> object:
    # Kept as names for their old users; computed from the registry.
    if name == "ENERGY_SPECS":
        return energy_specs()
    if name == "AUTO_ORDER":
        return auto_order()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def parse_spec(spec: Any) -> tuple[EnergyKind | None, str | None]:
    """Reads an ``--energy`` spec (its form, not whether the source is here).

    Args:
        spec: For example ``auto``, ``hwmon:ina226`` or ``meter:"mymeter --watts"``.

    Returns:
        (the kind, its argument or None); ``(None, None)`` for ``auto`` and ``none``.

    Raises:
        BenchInputError: Not a string, or not one of :func:`energy_specs` (the message lists
            them), or an argument its kind rejects (the kind's own message).
    """
    bad = BenchInputError(f"energy must be one of {', '.join(energy_specs())}; got {spec!r}")
    if not isinstance(spec, str):
        raise bad
    if spec in _PSEUDO:
        return None, None
    name, sep, argument = spec.partition(":")
    if name not in ENERGY_SOURCES:
        raise bad
    kind = ENERGY_SOURCES.get(name)
    if not sep:
        if kind.argument is Argument.REQUIRED:
            raise bad
        return kind, None
    if kind.argument is Argument.NONE:
        raise bad
    if kind.check is not None:
        kind.check(argument)  # raises with the kind's own message
    elif not argument:
        raise bad
    return kind, argument


def check_spec(spec: Any) -> str:
    """Validates the form of an ``--energy`` spec (not whether the source is here).

    Args:
        spec: See :func:`parse_spec`.

    Returns:
        The spec.

    Raises:
        BenchInputError: See :func:`parse_spec`.
    """
    parse_spec(spec)
    return spec


def resolve_source(spec: str, root: str = "/", vcgencmd: str = "vcgencmd"
                   ) -> tuple[EnergySource | None, list[str]]:
    """The source an ``--energy`` spec names, checked to be available.

    Args:
        spec: See :func:`energy_specs`; ``none`` and estimates (``profile``) give no source.
        root: The directory that holds ``sys`` (``/`` on a device).
        vcgencmd: The Raspberry Pi firmware tool.

    Returns:
        (source or None, warnings). ``auto`` returns None when nothing here can measure, with
        a warning for each source that exists but cannot be read (RAPL permissions).

    Raises:
        BenchInputError: A malformed spec, or a named source that is not available here (the
            message names it and says why).
    """
    kind, argument = parse_spec(spec)
    place = SourcePlace(root, vcgencmd)
    if spec == "none" or (kind is not None and kind.make is None):
        return None, []
    if kind is not None and kind.make is not None:
        source = kind.make(argument, place)
        if not source.available():
            raise BenchInputError(
                f"energy source {spec!r} is not available here: {source.why_unavailable}"
            )
        return source, []
    warnings: list[str] = []
    for name in auto_order():
        make = ENERGY_SOURCES.get(name).make
        if make is None:
            continue
        source = make(None, place)
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
    kind, argument = parse_spec(spec)
    if spec == "none":
        return None, []
    source, warnings = resolve_source(spec, root, vcgencmd)
    if source is not None:
        try:
            idle = min(3.0, seconds) if idle_seconds is None else idle_seconds
            return measure(source, work, seconds=seconds, idle_seconds=idle), warnings
        except EnergyReadError as e:
            return None, [*warnings, f"energy source {source.name} failed mid-run: {e}; "
                          "energy is null"]
    if kind is None:  # auto: the first estimate kind, on what it can find out by itself
        kind = next((k for k in ENERGY_SOURCES if k.estimate is not None), None)
    found = None
    if kind is not None and kind.estimate is not None:
        found = kind.estimate(argument, SourcePlace(root, vcgencmd), mean_latency_ms, threads)
    if found is None:
        return None, [*warnings, "no energy source here and no power profile for this board; "
                      "energy is null"]
    block, basis = found
    if spec == "auto":
        warnings.append(f"no energy source here; energy is an estimate from {basis} "
                        "(measured: false)")
    return block, warnings
