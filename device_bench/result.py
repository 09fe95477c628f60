"""The ``edgekit.bench/1`` result as frozen types: :class:`BenchResult` and its blocks.

``BenchResult.to_dict()`` is the JSON every target returns and ``python -m device_bench --json``
writes (same keys, same order, same nulls); ``BenchResult.from_dict()`` reads any of them back.
A figure that could not be measured is None (``null``), never a guess::

    schema, model, target, runtime, runs, warmup, emulated, latency_ms, memory, energy,
    [options, window_medians_ms]      the Python runner (local, ssh, adb without the tool, qemu)
    [benchmark_model]                 adb with TFLite's benchmark_model tool (its raw figures)
    [arm]                             qemu-aarch64: the ARM output check and instruction count

Targets keep returning the dict (the wire format between a board and the host); readers on the
host parse it with :meth:`BenchResult.from_dict`. The fields are documented in
``docs/schemas/bench.md``. Standard library only: device_bench runs on boards.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from device_bench.benchmark_model_output import BenchmarkModelOutput
from device_bench.errors import BenchInputError
from device_bench.json_record import OMIT_NONE, JsonRecord, parse_fields

__all__ = [
    "LATENCY_STATS",
    "SCHEMA",
    "ArmCheck",
    "BenchResult",
    "BenchmarkModelFigures",
    "Energy",
    "Latency",
    "Memory",
    "ModelFacts",
    "RuntimeInfo",
    "TargetFacts",
]

SCHEMA = "edgekit.bench/1"
LATENCY_STATS = ("init", "first", "mean", "std", "min", "p50", "p90", "p99", "max", "cv")


class _BenchRecord(JsonRecord):
    error = BenchInputError


@dataclass(frozen=True, kw_only=True)
class ModelFacts(_BenchRecord):
    """The ``model`` block: the file that was measured.

    Attributes:
        path: The ``.tflite`` as given on the host (None: only the tool knew it).
        sha256: SHA-256 of its bytes (None when the host did not read the file).
        bytes: Its size.
        gzip_bytes: Its size after gzip level 9 (mtime 0).
    """

    what = "bench result model"

    path: str | None
    sha256: str | None
    bytes: int | None
    gzip_bytes: int | None


@dataclass(frozen=True, kw_only=True)
class TargetFacts(_BenchRecord):
    """The ``target`` block: the machine the model ran on; a fact it cannot tell is None.

    Attributes:
        kind: ``local``, ``ssh``, ``adb`` or ``qemu``.
        host: Host name (ssh: the host given; adb: the serial).
        machine: CPU architecture (``x86_64``, ``aarch64``).
        cpu: CPU model (qemu: the emulated core and the qemu version).
        cores: Logical CPUs.
        os: Operating system (``Linux-6.1-...``, ``Android 14 (API 34)``).
        governor: cpufreq governor of the (first pinned) core.
        temperature_c: SoC temperature in °C when the run started.
        throttled: The firmware reports throttling or under-voltage now (Raspberry Pi).
    """

    what = "bench result target"

    kind: str
    host: str | None
    machine: str | None
    cpu: str | None
    cores: int | None
    os: str | None
    governor: str | None
    temperature_c: float | None
    throttled: bool | None


@dataclass(frozen=True, kw_only=True)
class RuntimeInfo(_BenchRecord):
    """The ``runtime`` block: what ran the model.

    Attributes:
        interpreter: ``ai_edge_litert``, ``tflite_runtime``, ``tensorflow`` or
            ``benchmark_model``.
        version: Its version (None: the tool does not print one).
        threads: Interpreter threads; None is the interpreter's default.
        delegate: ``xnnpack``, ``gpu``, ``nnapi``, ``hexagon``, ``none``; None when unknown.
    """

    what = "bench result runtime"

    interpreter: str
    version: str | None
    threads: int | None
    delegate: str | None


@dataclass(frozen=True, kw_only=True)
class Latency(_BenchRecord):
    """The ``latency_ms`` block, in milliseconds.

    ``init`` builds the interpreter and allocates its tensors; ``first`` is the first inference
    alone. The others are per-run statistics over every timed run, except ``cv``: the coefficient
    of variation of the window medians (the repeatability figure; None with one window).

    Attributes:
        init: Interpreter construction + allocation.
        first: The first inference.
        mean: Mean of the timed runs.
        std: Population standard deviation of the timed runs.
        min: Fastest run.
        p50: Median.
        p90: 90th percentile.
        p99: 99th percentile.
        max: Slowest run.
        cv: std / mean of the window medians.
    """

    what = "bench result latency_ms"

    init: float | None
    first: float | None
    mean: float | None
    std: float | None
    min: float | None
    p50: float | None
    p90: float | None
    p99: float | None
    max: float | None
    cv: float | None

    def stat(self, name: str) -> float | None:
        """One statistic by name (a budget's ``latency_stat``).

        Args:
            name: One of :data:`LATENCY_STATS`.

        Returns:
            Its value (None: not measured).

        Raises:
            BenchInputError: An unknown name (the message lists the known ones).
        """
        if name not in LATENCY_STATS:
            raise BenchInputError(f"latency statistic must be one of {', '.join(LATENCY_STATS)}, "
                                  f"got {name!r}")
        value: float | None = getattr(self, name)
        return value


@dataclass(frozen=True, kw_only=True)
class Memory(_BenchRecord):
    """The ``memory`` block.

    Attributes:
        peak_rss_mb: Peak resident memory of the benchmark process in MiB after the warm-up
            (None: not readable, or emulated: qemu's own is ``arm.emulator_peak_rss_mb``).
    """

    what = "bench result memory"

    peak_rss_mb: float | None


@dataclass(frozen=True, kw_only=True)
class Energy(_BenchRecord):
    """The ``energy`` block (the result holds None when energy was not asked for or not found).

    A measured block (``measured: true``) adds the window it measured; an estimate from a board
    power profile (``measured: false``, ``source: "profile:<board>"``) does not.

    Attributes:
        source: The energy source (``rapl``, ``hwmon:ina226``, ``pi5-pmic``, ``android``,
            ``meter:...``, ``profile:<board>``).
        measured: False for an estimate.
        mj_per_inference: Energy per inference in mJ (active watts x time).
        mj_per_inference_above_idle: The same above the idle baseline.
        idle_w: Idle power in W.
        active_w: Power during the inference window in W.
        window_s: Length of the active window in s (measured only).
        idle_s: Length of the idle baseline in s (measured only).
        inferences: Inferences run in the window (measured only).
        samples: Power readings taken (measured only).
        detail: What exactly was read (files, rails) or the estimate's basis; source-specific.
    """

    what = "bench result energy"

    source: str
    measured: bool
    mj_per_inference: float | None
    mj_per_inference_above_idle: float | None
    idle_w: float | None
    active_w: float | None
    window_s: float | None = field(default=None, metadata=OMIT_NONE)
    idle_s: float | None = field(default=None, metadata=OMIT_NONE)
    inferences: int | None = field(default=None, metadata=OMIT_NONE)
    samples: int | None = field(default=None, metadata=OMIT_NONE)
    detail: Mapping[str, Any] | None = field(default=None, metadata=OMIT_NONE)


@dataclass(frozen=True, kw_only=True)
class ArmCheck(_BenchRecord):
    """The ``arm`` block of a qemu-aarch64 result: does the model compute the same on ARM?

    Attributes:
        qemu: qemu-user version.
        qemu_cpu: The emulated core (``cortex-a72``).
        board: The board it stands for (``Raspberry Pi 4 Model B (emulated)``).
        sysroot: Key of the aarch64 sysroot (Python, numpy, LiteRT versions).
        outputs_match_host: The guest's raw outputs equal the host's byte for byte (None: no
            host reference).
        max_abs_diff: Largest element difference, in the outputs' own units (quantization steps
            for integer outputs); None without a reference or when shapes differ.
        integer_outputs: Every output tensor is an integer tensor.
        instructions_per_inference: Guest instructions per inference (median of the segments);
            None when not counted (``instructions_note`` says why).
        instructions_per_segment: The figure of each counted segment.
        instruction_runs: Inferences counted in all.
        instruction_threads: Guest threads seen while counting.
        instructions_note: Why the count is missing or may include other work.
        emulator_peak_rss_mb: Peak RSS of the emulated benchmark process (qemu included), MiB.
    """

    what = "bench result arm"

    qemu: str | None
    qemu_cpu: str
    board: str
    sysroot: str | None
    outputs_match_host: bool | None
    max_abs_diff: float | None
    integer_outputs: bool | None
    instructions_per_inference: int | None
    instructions_per_segment: tuple[int, ...] | None
    instruction_runs: int | None
    instruction_threads: int | None
    instructions_note: str | None
    emulator_peak_rss_mb: float | None = None


@dataclass(frozen=True, kw_only=True)
class BenchmarkModelFigures(_BenchRecord):
    """The ``benchmark_model`` block of an adb result measured with TFLite's C++ tool.

    Its JSON is every field of the parsed output (microseconds and MB as printed) followed by
    ``memory_delta_mb: {"init", "overall"}`` (the tool's memory deltas, not a peak).

    Attributes:
        output: The parsed tool output.
    """

    what = "bench result benchmark_model"

    output: BenchmarkModelOutput

    def to_dict(self) -> dict[str, Any]:
        """The block: the output's fields, then ``memory_delta_mb``."""
        out = self.output.to_dict()
        out["memory_delta_mb"] = {"init": self.output.memory_init_delta_mb,
                                  "overall": self.output.memory_overall_delta_mb}
        return out

    @classmethod
    def from_dict(cls, data: Any, where: str | None = None) -> BenchmarkModelFigures:
        """Reads the block back (see :meth:`to_dict`).

        Args:
            data: The JSON object.
            where: Its path, for messages.

        Returns:
            The figures.

        Raises:
            BenchInputError: Not a mapping, unknown keys, wrong types, or a ``memory_delta_mb``
                that disagrees with the ``memory_*_delta_mb`` figures.
        """
        where = where or cls.what
        if not isinstance(data, Mapping) or "memory_delta_mb" not in data:
            raise BenchInputError(f"{where} must be a mapping of benchmark_model figures with "
                                  f"memory_delta_mb, got {type(data).__name__}")
        rest = {k: v for k, v in data.items() if k != "memory_delta_mb"}
        output = BenchmarkModelOutput(**parse_fields(BenchmarkModelOutput, rest, where,
                                                     BenchInputError))
        figures = cls(output=output)
        expected = figures.to_dict()["memory_delta_mb"]
        if data["memory_delta_mb"] != expected:
            raise BenchInputError(f"{where}.memory_delta_mb must be {expected} (the "
                                  f"memory_*_delta_mb figures), got {data['memory_delta_mb']!r}")
        return figures


@dataclass(frozen=True, kw_only=True)
class BenchResult(_BenchRecord):
    """One model measured on one target (``edgekit.bench/1``).

    Attributes:
        schema: ``edgekit.bench/1``.
        model: The file measured.
        target: The machine.
        runtime: The interpreter.
        runs: Timed inferences (None: the tool did not print the count).
        warmup: Warm-up inferences, not timed into the figures.
        emulated: True under qemu: the timings are the emulator's, not a board's.
        latency_ms: The latency figures.
        memory: The memory figure.
        energy: The energy figures; None when not asked for or nothing could measure.
        options: The ``BenchOptions`` used (``BenchOptions.to_dict()``; the Python runner only).
        window_medians_ms: Median of each measurement window (the Python runner only).
        benchmark_model: The raw figures of TFLite's benchmark_model (adb with the tool only).
        arm: The ARM output check and instruction count (qemu-aarch64 only).
    """

    what = "bench result"
    schema_id = SCHEMA

    schema: str = SCHEMA
    model: ModelFacts
    target: TargetFacts
    runtime: RuntimeInfo
    runs: int | None
    warmup: int | None
    emulated: bool
    latency_ms: Latency
    memory: Memory
    energy: Energy | None
    options: Mapping[str, Any] | None = field(default=None, metadata=OMIT_NONE)
    window_medians_ms: tuple[float, ...] | None = field(default=None, metadata=OMIT_NONE)
    benchmark_model: BenchmarkModelFigures | None = field(default=None, metadata=OMIT_NONE)
    arm: ArmCheck | None = field(default=None, metadata=OMIT_NONE)
