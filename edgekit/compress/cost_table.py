"""Measured cost on a target: whole models, and a per-layer table cached per board.

The channel search (:mod:`~edgekit.compress.channel_search`) must know what a cut saves *on the
target*, not in MACs: a cut inside one SIMD tile saves nothing, and an odd channel count can be
slower than the unpruned one. :class:`CostMeter` measures two things with device_bench:

* **whole models** (:meth:`CostMeter.compare`): each Keras model converted to full int8 (int8
  I/O, calibrated on a seeded draw of training samples) and measured on the target; several
  models are measured round-robin over ``rounds`` rounds and the median taken, because a shared
  machine drifts (compare in one run, interleaved). Guest instructions (``qemu-aarch64``) are
  deterministic: each distinct ``.tflite`` is counted once per meter (a parent measured again
  costs nothing);
* **one layer at a given shape** (:meth:`CostMeter.layer_costs`): a model holding only that
  layer (same type and config, the input shape it has in the network, random weights: timing
  only) converted to full int8 and measured. NetAdapt's per-layer look-up tables (Yang et al.,
  arXiv 1804.03230) work this way: the search estimates a proposal as the measured parent plus
  the table's change over the layers the cut touches, so the anchor is always a measurement.

The per-layer table is cached in ``<cache>/cost-tables/<key>.json`` (``$EDGEKIT_CACHE``, else
``$XDG_CACHE_HOME/edgekit``, else ``~/.cache/edgekit``), keyed on the target spec, the measure
(latency statistic and threads, or instructions), and the runtime that measured it (interpreter,
version, delegate; qemu and sysroot for the emulator), so a second search on the same board
reuses it and an updated runtime starts a new table. ``macs`` needs no target: MACs are counted
from the Keras model (:func:`~edgekit.converters.work.keras_work`), as exactly as the
``.tflite`` would count them.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import statistics
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from device_bench.atomicio import write_json
from edgekit.compress.search_target import SearchTarget
from edgekit.converters.work import keras_work
from edgekit.core._keras import keras
from edgekit.core.errors import InputError
from edgekit.data.kws import cache_root

__all__ = ["COST_LAYERS", "CostMeter", "layer_signature"]

# Layer types that get a table entry: the ones whose work follows their channel counts. The
# others (Add, pooling, activations) are in the measured anchor and assumed unchanged by a cut.
COST_LAYERS = ("Conv1D", "Conv2D", "DepthwiseConv1D", "DepthwiseConv2D", "SeparableConv1D",
               "SeparableConv2D", "Dense")
# Config keys that do not change what a layer computes.
_IGNORED_CONFIG = ("name", "trainable", "dtype", "kernel_initializer", "bias_initializer",
                   "kernel_regularizer", "bias_regularizer", "activity_regularizer",
                   "kernel_constraint", "bias_constraint", "depthwise_initializer",
                   "pointwise_initializer", "depthwise_regularizer", "pointwise_regularizer",
                   "depthwise_constraint", "pointwise_constraint")
LATENCY_OPTIONS = {"runs": 100, "min_seconds": 0.2, "warmup": 20, "warmup_seconds": 0.05,
                   "windows": 3}
COUNT_OPTIONS = {"count_runs": 5, "count_segments": 3, "count_warmup": 5}
TABLE_VERSION = 1


def layer_signature(layer: Any) -> str | None:
    """What a layer's cost depends on, as one JSON string; None for layers without a table entry.

    Args:
        layer: A built tf_keras layer.

    Returns:
        ``{"type", "config" (without names and initializers), "input_shape"}`` as sorted JSON.
    """
    kind = type(layer).__name__
    if kind not in COST_LAYERS:
        return None
    config = {k: v for k, v in layer.get_config().items() if k not in _IGNORED_CONFIG}
    shape = list(layer.input_shape[1:]) if not isinstance(layer.input_shape, list) else None
    if shape is None:
        return None
    return json.dumps({"type": kind, "config": config, "input_shape": shape}, sort_keys=True,
                      default=str)


def _one_layer_model(signature: str) -> keras.Model:
    spec = json.loads(signature)
    layer = getattr(keras.layers, spec["type"]).from_config(spec["config"])
    inp = keras.Input(tuple(spec["input_shape"]))
    return keras.Model(inp, layer(inp))


class CostMeter:
    """Measures int8 models and single layers on one target, for one measure.

    Args:
        target: The search target (what is measured, where, at which statistic).
        calibration: Training samples to calibrate the int8 conversion of whole models.
        rounds: Round-robin rounds of a whole-model comparison (median taken).
        cache_dir: Folder of the cost tables (None: ``<cache root>/cost-tables``).
        bench_target: The device_bench target object to measure on (None: ``get_target(on)``).
        log: Called with one line per event worth showing (a table loaded, a layer measured).
        wrap: Called as ``wrap(spec, target)`` on the device_bench target made here; what it
            returns is measured on (a search pool places measurements this way:
            :meth:`~edgekit.compress.search_pool.SearchPool.measuring`).

    Raises:
        InputError: The target spec is not usable (device_bench's message).
    """

    def __init__(self, target: SearchTarget, calibration: np.ndarray, *, rounds: int = 3,
                 cache_dir: str | Path | None = None, bench_target: Any = None,
                 log: Callable[[str], None] | None = None,
                 wrap: Callable[[str, Any], Any] | None = None) -> None:
        self.target = target
        self.calibration = np.asarray(calibration, np.float32)
        self.rounds = max(1, int(rounds))
        self.cache_dir = Path(cache_dir) if cache_dir is not None else \
            cache_root() / "cost-tables"
        self.log = log or (lambda line: None)
        self.hits = 0
        self.misses = 0
        self.measurements = 0
        self.remeasured = 0  # table entries measured again on request (an impossible estimate)
        self.runtime: dict[str, Any] | None = None
        self.noisy = 0  # measurements whose window medians spread more than device_bench likes
        self._warned: set[str] = set()
        self._table: dict[str, float] = {}
        self._table_path: Path | None = None
        self._counted: dict[str, float] = {}  # sha256 of a .tflite -> its instruction count
        self._bench_target = bench_target
        if target.measure != "macs" and bench_target is None:
            from device_bench.errors import BenchInputError
            from device_bench.targets import get_target

            try:
                self._bench_target = get_target(target.on)
            except BenchInputError as e:
                raise InputError(f"target.on: {e}") from e
            if wrap is not None:
                self._bench_target = wrap(target.on, self._bench_target)
        self._tmp = tempfile.TemporaryDirectory(prefix="edgekit-costs-")

    # -- measuring one .tflite ---------------------------------------------------------------

    def _measure_file(self, path: Path) -> float:
        """One measurement; device_bench's warnings are counted (noise) or shown once."""
        relayed = io.StringIO()
        try:
            with contextlib.redirect_stderr(relayed):
                return self._measure_quietly(path)
        finally:
            for line in relayed.getvalue().splitlines():
                if "latency cv" in line:
                    self.noisy += 1
                elif line.strip() and line not in self._warned:
                    self._warned.add(line)
                    self.log(line)

    def _measure_quietly(self, path: Path) -> float:
        from device_bench.runner import BenchOptions

        if self.target.measure == "instructions":
            # guest instructions are deterministic for one file: a model measured before (the
            # parent of each step, the dense model of each confirmation) is not run again
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            if digest not in self._counted:
                self._counted[digest] = self._count_instructions(path)
            return self._counted[digest]
        self.measurements += 1
        result = self._bench_target.bench(
            str(path), BenchOptions(threads=self.target.threads, **LATENCY_OPTIONS))
        if self.runtime is None:
            runtime = result.get("runtime", {})
            self.runtime = {k: runtime.get(k) for k in ("interpreter", "version", "delegate")}
            self.runtime["cpu"] = result.get("target", {}).get("cpu")
        return float(result["latency_ms"][self.target.stat])

    def _count_instructions(self, path: Path) -> float:
        """Guest instructions per inference of one ``.tflite`` (qemu; one run of the file)."""
        from device_bench.runner import BenchOptions

        self.measurements += 1
        arm = self._bench_target.check(str(path), BenchOptions(threads=1))
        value = arm.get("instructions_per_inference")
        if value is None:
            raise InputError(f"target {self.target.on!r} counted no instructions for "
                             f"{path.name}: {arm.get('instructions_note')}")
        if self.runtime is None:
            self.runtime = {"qemu": arm.get("qemu"), "cpu": arm.get("qemu_cpu"),
                            "sysroot": arm.get("sysroot")}
        return float(value)

    def _convert(self, model: keras.Model, name: str, calibration: np.ndarray) -> Path:
        from edgekit.converters.modes import ConversionConfig, convert_keras

        blob = convert_keras(model, ConversionConfig(mode="int8", io="int8"), calibration)
        path = Path(self._tmp.name) / f"{name}.tflite"
        path.write_bytes(blob)
        return path

    # -- whole models ------------------------------------------------------------------------

    def compare(self, models: Mapping[str, keras.Model]) -> dict[str, float]:
        """The figure of each model, measured round-robin (median of :attr:`rounds` rounds).

        Args:
            models: Name -> Keras model (converted to full int8 here).

        Returns:
            Name -> figure (ms, instructions, or MACs for ``macs``).

        Raises:
            InputError: A model cannot be converted or measured on the target.
        """
        if self.target.measure == "macs":
            return {name: float(keras_work(m)["macs"]) for name, m in models.items()}
        paths = {name: self._convert(m, f"model-{i}", self.calibration)
                 for i, (name, m) in enumerate(models.items())}
        rounds = 1 if self.target.measure == "instructions" else self.rounds
        seen: dict[str, list[float]] = {name: [] for name in paths}
        for _ in range(rounds):
            for name, path in paths.items():
                seen[name].append(self._measure_file(path))
        self._open_table()
        return {name: statistics.median(v) for name, v in seen.items()}

    # -- the per-layer table -----------------------------------------------------------------

    def table_key(self) -> dict[str, Any]:
        """What the cached table is keyed on (known once one model has been measured)."""
        return {"version": TABLE_VERSION, "on": self.target.on, "measure": self.target.measure,
                "stat": self.target.stat if self.target.measure == "latency" else None,
                "threads": self.target.threads if self.target.measure == "latency" else 1,
                "runtime": self.runtime}

    def _open_table(self) -> None:
        if self._table_path is not None or self.target.measure == "macs":
            return
        key = json.dumps(self.table_key(), sort_keys=True, default=str)
        digest = hashlib.sha256(key.encode()).hexdigest()[:20]
        self._table_path = self.cache_dir / f"{digest}.json"
        if self._table_path.is_file():
            try:
                saved = json.loads(self._table_path.read_text(encoding="utf-8"))
                if saved.get("key") == json.loads(key):
                    self._table = {k: float(v) for k, v in saved.get("entries", {}).items()}
                    self.log(f"cost table {self._table_path} ({len(self._table)} entries)")
            except (OSError, ValueError, TypeError, AttributeError):
                self._table = {}  # a damaged table is rebuilt, never trusted

    @property
    def table_path(self) -> Path | None:
        """The cached table's file (None before the first measurement, and for MACs)."""
        return self._table_path

    def _save_table(self) -> None:
        if self._table_path is None:
            return
        self._table_path.parent.mkdir(parents=True, exist_ok=True)
        write_json(self._table_path, {"key": self.table_key(), "entries": self._table})

    def layer_costs(self, signatures: list[str], again: Iterable[str] = ()
                    ) -> dict[str, float]:
        """The table's cost of each layer signature, measuring (and caching) the missing ones.

        Args:
            signatures: :func:`layer_signature` strings.
            again: Signatures to measure again even if the table has them (the new figure
                replaces the cached one): entries that gave an impossible estimate.

        Returns:
            Signature -> cost (ms or instructions; MACs of the layer for ``macs``).

        Raises:
            InputError: A layer model cannot be built, converted or measured.
        """
        out: dict[str, float] = {}
        if self.target.measure == "macs":
            for sig in signatures:
                out[sig] = float(keras_work(_one_layer_model(sig))["macs"])
            return out
        if self._table_path is None:
            raise InputError("the cost table is keyed on the runtime: measure a whole model "
                             "(CostMeter.compare) before asking for layer costs")
        redo = {s for s in again if s in self._table} & set(signatures)
        missing = [s for s in dict.fromkeys(signatures) if s not in self._table or s in redo]
        self.hits += len(set(signatures) - set(missing))
        for i, sig in enumerate(missing):
            model = _one_layer_model(sig)
            rng = np.random.default_rng(i)
            calibration = rng.standard_normal((8, *model.input_shape[1:])).astype(np.float32)
            path = self._convert(model, f"layer-{self.misses + self.remeasured}", calibration)
            if sig in redo:
                self.remeasured += 1
            else:
                self.misses += 1
            self._table[sig] = self._measure_file(path)
        if missing:
            self._save_table()
            self.log(f"measured {len(missing)} layer shape(s) on {self.target.on}"
                     f"{f' ({len(redo)} again)' if redo else ''}; table has {len(self._table)}")
        return {s: self._table[s] for s in signatures}

    def close(self) -> None:
        """Removes the temporary ``.tflite`` files."""
        self._tmp.cleanup()
