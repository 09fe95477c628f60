"""The device-side benchmark: one model, one process, an ``edgekit.bench/1`` result.

The measurement, in order:

1. ``init``: construct the interpreter and allocate its tensors.
2. ``first``: one inference timed on its own (cold caches, lazy kernel preparation).
3. Warm-up: at least ``warmup`` inferences *and* at least ``warmup_seconds`` of them, not kept.
4. ``windows`` measurement windows; each runs until it has at least ``ceil(runs / windows)``
   inferences *and* has lasted ``min_seconds / windows``. Every ``invoke()`` is timed alone with
   ``time.perf_counter_ns``; the input is set (the same one each time) outside the timed part.

Needs only numpy and a TFLite interpreter: no TensorFlow, no edgekit.
"""

from __future__ import annotations

import array
import dataclasses
import hashlib
import math
import numbers
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from device_bench import energy as energy_mod
from device_bench import sysinfo
from device_bench.array_limits import check_array_sizes, numpy_file_kind
from device_bench.errors import BenchInputError, TargetError
from device_bench.interpreter import LoadedInterpreter, load_interpreter, quantize_input
from device_bench.result import (
    BenchResult,
    Energy,
    Latency,
    Memory,
    ModelFacts,
    RuntimeInfo,
    TargetFacts,
)
from device_bench.sizes import gzip_size
from device_bench.stats import CV_WARN_THRESHOLD, is_noisy, latency_stats, median
from device_bench.tflite_check import probe_in_child

__all__ = ["SCHEMA", "BenchOptions", "make_inputs", "model_facts", "run_benchmark"]

SCHEMA = "edgekit.bench/1"


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise BenchInputError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise BenchInputError(f"{name} must be >= {minimum}, got {value}")


def _check_seconds(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise BenchInputError(f"{name} must be a number of seconds >= 0, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise BenchInputError(f"{name} must be a finite number of seconds >= 0, got {value}")


@dataclass(frozen=True)
class BenchOptions:
    """How to measure.

    Attributes:
        threads: Interpreter threads; None keeps the interpreter's default.
        warmup: Minimum warm-up inferences (not timed into the result).
        warmup_seconds: Minimum warm-up duration; warm-up ends when both minimums are met.
        runs: Minimum timed inferences in total (split evenly over the windows).
        min_seconds: Minimum total measurement time (split evenly over the windows).
        windows: Measurement windows; the cv of their medians is the repeatability figure.
        seed: Seed of the random input (when ``input_path`` is None).
        xnnpack: False runs the built-in kernels without the XNNPACK delegate.
        input_path: ``.npy`` / ``.npz`` file of model inputs; None uses seeded random data,
            uniform over the full integer range for int8/uint8/int16 inputs, uniform [0, 1) for
            float inputs, and zeros for other types (indices must stay in range).
        energy: Energy source after the latency windows: ``none``, ``auto`` or a source spec
            (``rapl``, ``hwmon[:NAME]``, ``pi5-pmic``, ``android``, ``meter:CMD``,
            ``profile[:BOARD]``); see :mod:`device_bench.energy`.
        energy_seconds: Minimum active window of the energy measurement (after an idle
            baseline of min(3, energy_seconds) s).

    Raises:
        BenchInputError: A value is out of range; the message names the argument.
    """

    threads: int | None = None
    warmup: int = 20
    warmup_seconds: float = 0.2
    runs: int = 200
    min_seconds: float = 1.0
    windows: int = 5
    seed: int = 0
    xnnpack: bool = True
    input_path: str | None = None
    energy: str = "none"
    energy_seconds: float = 10.0

    def __post_init__(self) -> None:
        if self.threads is not None:
            _check_int("threads", self.threads, 1)
        _check_int("warmup", self.warmup, 0)
        _check_seconds("warmup_seconds", self.warmup_seconds)
        _check_int("windows", self.windows, 1)
        _check_int("runs", self.runs, 1)
        if self.runs < self.windows:
            raise BenchInputError(
                f"runs must be >= windows ({self.windows}), got {self.runs}"
            )
        _check_seconds("min_seconds", self.min_seconds)
        _check_int("seed", self.seed, 0)
        if not isinstance(self.xnnpack, bool):
            raise BenchInputError(f"xnnpack must be true or false, got {self.xnnpack!r}")
        if self.input_path is not None:
            if not isinstance(self.input_path, (str, os.PathLike)):
                raise BenchInputError(
                    "input_path must be a path to an .npy/.npz file or None, "
                    f"got {self.input_path!r}"
                )
            # Kept as a str so that the options compare equal after a to_dict/from_dict trip.
            object.__setattr__(self, "input_path", os.fspath(self.input_path))
        energy_mod.check_spec(self.energy)
        _check_seconds("energy_seconds", self.energy_seconds)
        if self.energy_seconds <= 0:
            raise BenchInputError(f"energy_seconds must be > 0, got {self.energy_seconds}")

    def to_dict(self) -> dict[str, Any]:
        """The options as a JSON-ready dict (the inverse of :meth:`from_dict`)."""
        return dataclasses.asdict(self)

    def to_argv(self) -> list[str]:
        """The options as ``python -m device_bench`` arguments (only those not at default).

        Returns:
            An argument list, for example ``["--runs", "20", "--no-xnnpack"]``.
        """
        defaults = BenchOptions()
        argv: list[str] = []
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value == getattr(defaults, field.name):
                continue
            if field.name == "xnnpack":
                argv.append("--no-xnnpack")
            elif field.name == "input_path":
                argv += ["--input", os.fspath(value)]
            elif field.name == "energy":
                argv += ["--energy", value]
            else:
                argv += ["--" + field.name.replace("_", "-"), repr(value)]
        return argv

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> BenchOptions:
        """Builds options from a dict such as :meth:`to_dict` returns.

        Args:
            config: Any subset of the field names; missing ones take their defaults.

        Returns:
            The options.

        Raises:
            BenchInputError: ``config`` is not a dict, has an unknown key (the message lists the
                known ones), or a value is out of range.
        """
        if not isinstance(config, dict):
            raise BenchInputError(f"bench options must be a mapping, got {type(config).__name__}")
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(config) - set(known))
        if unknown:
            raise BenchInputError(
                f"unknown bench option(s) {', '.join(map(repr, unknown))}; "
                f"expected any of: {', '.join(known)}"
            )
        return cls(**config)


def model_facts(model_path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``model`` block of a bench result.

    Args:
        model_path: The ``.tflite`` file.

    Returns:
        ``{"path", "sha256", "bytes", "gzip_bytes"}`` (gzip at level 9 of the file's bytes).

    Raises:
        BenchInputError: The file cannot be read.
    """
    try:
        data = Path(model_path).read_bytes()
    except OSError as e:
        raise BenchInputError(
            f"model {os.fspath(model_path)!r} cannot be read: {e.strerror or e}"
        ) from e
    return {
        "path": os.fspath(model_path),
        "sha256": hashlib.sha256(data).hexdigest(),
        "bytes": len(data),
        "gzip_bytes": gzip_size(data),
    }


def _random_input(detail: dict[str, Any], rng: np.random.Generator) -> np.ndarray:
    shape = tuple(int(d) for d in detail["shape"])
    dtype = np.dtype(detail["dtype"])
    if dtype.type in (np.int8, np.uint8, np.int16):
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
    if dtype.kind == "f":
        return rng.random(shape).astype(dtype)
    return np.zeros(shape, dtype=dtype)


def _fit_input(array: np.ndarray, detail: dict[str, Any], source: str) -> np.ndarray:
    """One sample of ``array`` shaped and typed for the input tensor ``detail``."""
    shape = tuple(int(d) for d in detail["shape"])
    arr = np.asarray(array)
    if arr.shape == shape:
        sample = arr
    elif (
        shape and arr.ndim == len(shape) and arr.shape[1:] == shape[1:] and arr.shape[0] >= shape[0]
    ):
        sample = arr[: shape[0]]
    elif arr.shape == shape[1:] and shape and shape[0] == 1:
        sample = arr[np.newaxis]
    else:
        raise BenchInputError(
            f"input {source} has shape {list(arr.shape)}; the model input "
            f"{detail.get('name')!r} needs {list(shape)} (or a batch of (N, *{list(shape[1:])}))"
        )
    if sample.dtype.kind == "f" and not np.isfinite(sample).all():
        raise BenchInputError(f"input {source} holds NaN or Inf values; expected finite numbers")
    dtype = np.dtype(detail["dtype"])
    if sample.dtype == dtype:
        return np.ascontiguousarray(sample)
    if sample.dtype.kind not in "fiub":
        raise BenchInputError(f"input {source} has dtype {sample.dtype}; expected numbers")
    return np.ascontiguousarray(quantize_input(sample, detail))


def _load_input_file(path: str) -> dict[str, np.ndarray] | np.ndarray:
    p = Path(path)
    if not p.is_file():
        raise BenchInputError(f"input file {path!r} does not exist; expected an .npy or .npz file")
    try:
        if numpy_file_kind(p) is None:
            raise BenchInputError(f"input file {path!r} is not a readable .npy/.npz file: "
                                  "expected a NumPy .npy file or a zip of them (.npz)")
        too_big = check_array_sizes(p)
        if too_big:
            raise BenchInputError(f"input file {path!r} is refused: {too_big}")
        # allow_pickle=False: an object array (a pickle) is refused, never unpickled.
        loaded = np.load(p, allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            return loaded
        with loaded:  # members are read here: a damaged one fails here too
            return {key: loaded[key] for key in loaded.files}
    except BenchInputError:
        raise
    except Exception as e:  # OSError, ValueError, EOFError, BadZipFile, SyntaxError ...
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise BenchInputError(f"input file {path!r} is not a readable .npy/.npz file: "
                              f"{first}") from e


def make_inputs(interpreter: Any, options: BenchOptions) -> list[np.ndarray]:
    """The data to feed each input tensor, from ``options.input_path`` or seeded random.

    An ``.npy`` feeds a single-input model. An ``.npz`` feeds each input by tensor name, else by
    order; a single-input model also takes the key ``x`` or a lone array. An array of the input's
    dtype is used as is; float data is quantized for integer inputs. A batch ``(N, ...)`` gives
    its first sample.

    Args:
        interpreter: An allocated TFLite interpreter.
        options: Where the data comes from and the seed.

    Returns:
        One array per input tensor, in ``get_input_details()`` order.

    Raises:
        BenchInputError: The file is missing or unreadable, or does not fit the model's inputs.
    """
    details = interpreter.get_input_details()
    if options.input_path is None:
        rng = np.random.default_rng(options.seed)
        return [_random_input(d, rng) for d in details]
    source = os.fspath(options.input_path)
    loaded = _load_input_file(source)
    if isinstance(loaded, np.ndarray):
        if len(details) != 1:
            raise BenchInputError(
                f"input file {source!r} holds one array but the model has {len(details)} "
                "inputs; pass an .npz with one array per input name"
            )
        return [_fit_input(loaded, details[0], repr(source))]
    names = [d["name"] for d in details]
    if all(n in loaded for n in names):
        arrays = [loaded[n] for n in names]
        labels = [f"{source!r}[{n!r}]" for n in names]
    elif len(details) == 1 and "x" in loaded:
        arrays, labels = [loaded["x"]], [f"{source!r}['x']"]
    elif len(loaded) == len(details):
        keys = list(loaded)
        arrays = [loaded[k] for k in keys]
        labels = [f"{source!r}[{k!r}]" for k in keys]
    else:
        raise BenchInputError(
            f"input file {source!r} holds arrays {sorted(loaded)}; expected one per model input "
            f"({', '.join(names)}), or 'x' for a single-input model"
        )
    return [_fit_input(a, d, lbl) for a, d, lbl in zip(arrays, details, labels, strict=True)]


def _peak_rss_mb(status_path: str = "/proc/self/status") -> float | None:
    """Peak resident memory of this process in MB (MiB), or None where it cannot be read.

    Linux: ``VmHWM`` of ``/proc/self/status``, the high-water mark of this program's own address
    space. ``getrusage().ru_maxrss`` is the fallback elsewhere; on Linux it is not used first
    because it survives ``fork`` + ``exec``: a benchmark started from a process holding
    TensorFlow would report TensorFlow's memory as its own.
    """
    try:
        with open(status_path, encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024.0, 3)  # kB
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource
    except ImportError:  # Windows has no resource module.
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    kib = peak / 1024.0 if sys.platform == "darwin" else float(peak)
    return round(kib / 1024.0, 3)


def _invoke_timed(interp: Any, feeds: list[tuple[int, np.ndarray]]) -> int:
    for index, value in feeds:
        interp.set_tensor(index, value)
    start = time.perf_counter_ns()
    interp.invoke()
    return time.perf_counter_ns() - start


def _measure(
    loaded: LoadedInterpreter, options: BenchOptions, feeds: list[tuple[int, np.ndarray]]
) -> tuple[int, int, float | None, list[array.array[int]]]:
    """Runs first, warm-up and windows.

    Returns:
        (first_ns, warm-up count, peak RSS in MB after warm-up, per-window timings in ns).
    """
    interp = loaded.interpreter
    first_ns = _invoke_timed(interp, feeds)

    warm_count = 0
    warm_ns = int(options.warmup_seconds * 1e9)
    warm_start = time.perf_counter_ns()
    while warm_count < options.warmup or time.perf_counter_ns() - warm_start < warm_ns:
        _invoke_timed(interp, feeds)
        warm_count += 1
    # The model's memory is all allocated by now (tensors, delegate, first run); reading the peak
    # here keeps the timing buffers below (millions of samples for a sub-microsecond model) out.
    peak_rss_mb = _peak_rss_mb()

    per_window = math.ceil(options.runs / options.windows)
    window_ns = int(options.min_seconds / options.windows * 1e9)
    windows: list[array.array[int]] = []
    for _ in range(options.windows):
        samples: array.array[int] = array.array("q")
        start = time.perf_counter_ns()
        while len(samples) < per_window or time.perf_counter_ns() - start < window_ns:
            samples.append(_invoke_timed(interp, feeds))
        windows.append(samples)
    return first_ns, warm_count, peak_rss_mb, windows


def _warn(message: str) -> None:
    print(f"device_bench: warning: {message}", file=sys.stderr, flush=True)


def _energy(options: BenchOptions, loaded: LoadedInterpreter, feeds: list[tuple[int, np.ndarray]],
            mean_ms: float, target_kind: str, model_path: str) -> dict[str, Any] | None:
    """The ``energy`` block (after the latency windows), warnings on stderr; see energy.py."""
    if options.energy == "none":
        return None
    if target_kind == "qemu":
        _warn("energy is not measured under emulation (the host's watts say nothing about the "
              "board); energy is null")
        return None
    try:
        result, warnings = energy_mod.bench_energy(
            options.energy, lambda: _invoke_timed(loaded.interpreter, feeds),
            seconds=options.energy_seconds, mean_latency_ms=mean_ms, threads=loaded.threads)
    except BenchInputError:
        raise
    except (RuntimeError, ValueError) as e:  # the interpreter failed during the energy window
        raise TargetError(f"{loaded.name} failed to run model {model_path!r}: {e}") from e
    for line in warnings:
        _warn(line)
    return result


def _first_run(model_path: str | os.PathLike[str], options: BenchOptions) -> None:
    """Loads the model and runs one inference, as :func:`run_benchmark` will (the probe)."""
    loaded = load_interpreter(model_path, threads=options.threads, xnnpack=options.xnnpack)
    interp = loaded.interpreter
    inputs = make_inputs(interp, options)
    for detail, value in zip(interp.get_input_details(), inputs, strict=True):
        interp.set_tensor(detail["index"], value)
    interp.invoke()
    for detail in interp.get_output_details():
        interp.get_tensor(detail["index"])


def run_benchmark(
    model_path: str | os.PathLike[str],
    options: BenchOptions | None = None,
    *,
    target_kind: str = "local",
) -> dict[str, Any]:
    """Measures one model in this process and returns the ``edgekit.bench/1`` result.

    Writes one warning line to stderr (not into the result) when the cv of the window medians is
    above 0.05, when the firmware reports the CPU throttled, and for each energy fallback. With
    ``options.energy`` other than ``none`` the energy measurement (idle baseline, then
    ``energy_seconds`` of back-to-back inference) follows the latency windows.
    ``memory.peak_rss_mb`` is the process's peak resident memory (``VmHWM`` on Linux, else
    ``ru_maxrss``) read after the warm-up, so it covers the interpreter, the model and its
    runs, but not the buffers that hold the timings.

    Args:
        model_path: The ``.tflite`` file.
        options: How to measure; None uses :class:`BenchOptions` defaults.
        target_kind: The ``target.kind`` to report.

    Returns:
        The result dict (``BenchResult.to_dict()``): every key of the ``edgekit.bench/1``
        schema, plus ``options`` (the options used) and ``window_medians_ms``.

    Raises:
        BenchInputError: The model or the input file is missing or unusable, or the model is
            malformed: refused by :func:`device_bench.tflite_check.check_tflite`, or it crashed
            the interpreter in the probe run (:func:`device_bench.tflite_check.probe_in_child`).
        TargetError: The interpreter failed while running the model.
    """
    options = options if options is not None else BenchOptions()
    if not isinstance(options, BenchOptions):
        raise BenchInputError(f"options must be BenchOptions or None, got {type(options).__name__}")
    # The check of the model comes first (in load_interpreter); a crash it cannot foresee is
    # contained in a forked child that loads the model and runs it once (tflite_check).
    probe_in_child(lambda: _first_run(model_path, options), os.fspath(model_path))
    loaded = load_interpreter(model_path, threads=options.threads, xnnpack=options.xnnpack)
    model = model_facts(model_path)
    interp = loaded.interpreter
    inputs = make_inputs(interp, options)
    feeds = [(d["index"], a) for d, a in zip(interp.get_input_details(), inputs, strict=True)]
    try:
        first_ns, warm_count, peak_rss_mb, windows = _measure(loaded, options, feeds)
    except (RuntimeError, ValueError) as e:
        raise TargetError(f"{loaded.name} failed to run model {model['path']!r}: {e}") from e

    per_window_ms = [np.frombuffer(window, dtype=np.int64) / 1e6 for window in windows]
    samples_ms = np.concatenate(per_window_ms)
    window_medians = [median(window) for window in per_window_ms]
    latency: dict[str, Any] = {
        "init": round(loaded.init_ms, 6),
        "first": round(first_ns / 1e6, 6),
        **latency_stats(samples_ms, window_medians),
    }
    if is_noisy(latency["cv"]):
        print(
            f"device_bench: warning: latency cv {latency['cv']:.3f} across {options.windows} "
            f"windows is above {CV_WARN_THRESHOLD}; the figures are noisy (check the governor, "
            "temperature and background load, or raise --min-seconds)",
            file=sys.stderr,
            flush=True,
        )
    target = sysinfo.target_facts(target_kind)
    if target["throttled"]:
        _warn("the firmware reports the CPU throttled or under-voltage now (vcgencmd "
              "get_throttled); the latency and energy figures are not the board's best")
    energy = _energy(options, loaded, feeds, latency["mean"], target_kind, model["path"])
    result = BenchResult(
        schema=SCHEMA,
        model=ModelFacts(**model),
        target=TargetFacts(**target),
        runtime=RuntimeInfo(interpreter=loaded.name, version=loaded.version,
                            threads=loaded.threads, delegate=loaded.delegate),
        runs=int(samples_ms.size),
        warmup=warm_count,
        emulated=target_kind == "qemu",
        latency_ms=Latency(**latency),
        memory=Memory(peak_rss_mb=peak_rss_mb),
        energy=None if energy is None else Energy.from_dict(energy, "energy"),
        options=options.to_dict(),
        window_medians_ms=tuple(round(m, 6) for m in window_medians),
    )
    return result.to_dict()
