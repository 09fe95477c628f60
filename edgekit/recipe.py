"""Recipes: the whole pipeline as one YAML/JSON file (``edgekit run RECIPE.yaml``).

::

    model: demo_cnn            # a models/ name, or a path to .keras / .h5 / SavedModel
    data: digits               # "digits", an .npz with x and y, or an image folder
    train: {epochs: 30}        # only when the model is a models/ name (untrained)
    stages:                    # applied in order; each {class_name, config}
      - {class_name: Prune, config: {final_sparsity: 0.8, schedule: PolynomialDecay}}
      - {class_name: QAT, config: {}}
    convert: {mode: int8, io: int8}
    bench: {targets: [local], runs: 200}
    budgets: {max_accuracy_drop: 1.0, max_size_kb: 64, max_latency_ms: {local: 5.0},
              require_int8: true}

Unknown keys are errors that list the known ones. :meth:`Recipe.to_dict` gives the resolved
recipe (every default filled in), which the pipeline saves in the run folder.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
import os
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TypeVar

import yaml

from device_bench.runner import BenchOptions
from edgekit.compress import stage_from_dict
from edgekit.compress.training import TrainConfig
from edgekit.converters import CalibrationSpec, ConversionConfig, IOType, Mode, require_int8
from edgekit.core.checks import checked_kwargs
from edgekit.core.errors import INPUT_ERRORS, InputError
from edgekit.executor_spec import ExecutorSpec

# The bench defaults have one source: device_bench's BenchOptions (the CLI reads them too).
_BENCH = BenchOptions()

LATENCY_STATS = ("mean", "min", "p50", "p90", "p99", "max")
# Bounds on what a recipe file may expand to (YAML aliases can make a small file a huge tree,
# and every message that shows a value would then print all of it), and on a sweep's size.
MAX_RECIPE_VALUES = 100_000
MAX_RECIPE_DEPTH = 64
MAX_SWEEP_CANDIDATES = 1000
# Characters of a sweep candidate's name (its run folder; task records add about 40 more).
MAX_CANDIDATE_NAME = 80
_T = TypeVar("_T")


def _check_size(raw: Any, source: str) -> None:
    """Refuses a parsed recipe that expands past :data:`MAX_RECIPE_VALUES` or nests too deeply.

    Raises:
        InputError: Too many values (counted as expanded, aliases included) or too deep.
    """
    stack: list[tuple[Any, int]] = [(raw, 1)]
    seen = 0
    while stack:
        node, depth = stack.pop()
        seen += 1
        if seen > MAX_RECIPE_VALUES:
            raise InputError(f"{source} expands to more than {MAX_RECIPE_VALUES:,} values "
                             "(YAML aliases?); expected a recipe mapping")
        if depth > MAX_RECIPE_DEPTH:
            raise InputError(f"{source} nests deeper than {MAX_RECIPE_DEPTH} levels; expected "
                             "a recipe mapping")
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for kv in node.items() for v in kv)
        elif isinstance(node, (list, tuple, set)):
            stack.extend((v, depth + 1) for v in node)


def _build(what: str, make: Callable[[], _T]) -> _T:
    """Builds one recipe section; a value of the wrong type there is the user's error, named.

    The sections validate their values, but a list where a number belongs can still fail inside
    a comparison (TypeError): that is reported as one InputError line, not a traceback.

    Raises:
        InputError: The section's own error, or the wrong-typed value.
    """
    try:
        return make()
    except INPUT_ERRORS as e:
        if str(e).startswith(what):
            raise
        raise InputError(f"{what}: {e}") from e  # where in which file the bad value is
    except (TypeError, ValueError, KeyError, AttributeError, OverflowError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise InputError(f"{what}: a value has the wrong type or is out of range ({first})") \
            from e


@dataclass(frozen=True)
class ConvertSpec:
    """The conversion section.

    Attributes:
        mode: float32 | float16 | dynamic | int8 | int16x8.
        io: Input/output type for int8 (int8 | uint8 | float32); None = the mode's default.
        per_channel: Per-channel weight quantization (per-tensor when False).
        calibration_samples: Representative samples drawn from the training split.
        calibration_seed: Seed of that draw (the chosen indices are saved beside the model).
        float32_baseline: Also convert the float model to float32 TFLite for comparison.
        int8_baseline: When the deliverable is int8 and compression stages ran, also convert
            the uncompressed float model to int8 (``int8_dense.tflite``), so the report says
            what the compression did to the int8 model's work and latency.
        calibration: Where calibration samples come from instead of the training split: a
            ``.npy``/``.npz`` file or an image folder, or ``{source, resize, normalize}`` (see
            ``edgekit.converters.CalibrationSpec``); None = the training split.
        max_accuracy_drop: int8 only: keep the fewest worst layers in float until the held-out
            accuracy drop against the converted Keras model is at most this many points
            (selective quantization); None = plain int8.
        debug_layers: int8 only: rank the layers by their quantization error and save the
            ranking beside the model (``<model>.layers.json``).
    """

    mode: str = "int8"
    io: str | None = None
    per_channel: bool = True
    calibration_samples: int = 200
    calibration_seed: int = 0
    float32_baseline: bool = True
    int8_baseline: bool = True
    calibration: str | dict[str, Any] | None = None
    max_accuracy_drop: float | None = None
    debug_layers: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.calibration_samples, int) or self.calibration_samples < 1:
            raise InputError(
                f"calibration_samples must be an integer >= 1, got {self.calibration_samples!r}"
            )
        config = self.conversion_config()  # validates mode / io / per_channel
        if self.calibration is not None:
            spec = CalibrationSpec.from_value(self.calibration)
            object.__setattr__(self, "calibration", self.calibration
                               if isinstance(self.calibration, str) else spec.to_dict())
        drop = self.max_accuracy_drop
        if drop is not None and (isinstance(drop, bool) or not isinstance(drop, (int, float))
                                 or drop < 0):
            raise InputError(f"convert.max_accuracy_drop must be a number of points >= 0, "
                             f"got {drop!r}")
        for key in ("float32_baseline", "int8_baseline"):
            if not isinstance(getattr(self, key), bool):
                raise InputError(f"convert.{key} must be true or false, got "
                                 f"{getattr(self, key)!r}")
        if not isinstance(self.debug_layers, bool):
            raise InputError(f"convert.debug_layers must be true or false, got "
                             f"{self.debug_layers!r}")
        if drop is not None or self.debug_layers:
            require_int8(config.mode, "convert.max_accuracy_drop and convert.debug_layers")

    def conversion_config(self) -> ConversionConfig:
        """Returns the converters' ``ConversionConfig`` for this section.

        Raises:
            InputError: Unknown mode or io, or an io that the mode does not allow.
        """
        io = IOType.parse(self.io) if self.io is not None else None
        return ConversionConfig(mode=Mode.parse(self.mode), io=io, per_channel=self.per_channel)


@dataclass(frozen=True)
class BenchSpec:
    """The benchmark section (see ``device_bench.runner.BenchOptions``).

    Attributes:
        targets: Target specs (``local``, ...).
        runs: Timed runs (at least).
        warmup: Warm-up runs.
        min_seconds: Minimum timed seconds.
        windows: Measurement windows (the CV is over their medians).
        threads: Interpreter threads (None = the interpreter's default).
        energy: Energy per inference: none | auto | rapl | hwmon[:NAME] | pi5-pmic | android |
            meter:CMD | profile[:BOARD] (see ``device_bench.energy``).
        energy_seconds: Minimum energy window (after an idle baseline), seconds.
    """

    targets: tuple[str, ...] = ("local",)
    runs: int = _BENCH.runs
    warmup: int = _BENCH.warmup
    min_seconds: float = _BENCH.min_seconds
    windows: int = _BENCH.windows
    threads: int | None = _BENCH.threads
    energy: str = _BENCH.energy
    energy_seconds: float = _BENCH.energy_seconds

    def __post_init__(self) -> None:
        targets = self.targets
        if isinstance(targets, str):
            targets = (targets,)
        if not isinstance(targets, (list, tuple)) or not all(isinstance(t, str) for t in targets):
            raise InputError(f"bench.targets must be a list of target names, got {targets!r}")
        object.__setattr__(self, "targets", tuple(targets))
        self.options()  # validates the counts

    def options(self) -> BenchOptions:
        """Returns the ``BenchOptions`` of this section.

        Raises:
            BenchInputError: Invalid counts.
        """
        return BenchOptions(
            threads=self.threads, warmup=self.warmup, runs=self.runs,
            min_seconds=self.min_seconds, windows=self.windows, energy=self.energy,
            energy_seconds=self.energy_seconds,
        )


@dataclass(frozen=True)
class Budgets:
    """Limits that turn a run into pass/fail (exit 1 when one fails).

    Attributes:
        max_accuracy_drop: Max held-out accuracy loss of the final model vs float, in points.
        max_size_kb: Max size of the final model file (KiB, raw bytes / 1024).
        max_latency_ms: Max latency per target name, at ``latency_stat``.
        max_energy_mj: Max energy per inference (mJ) per target name; a target whose energy was
            not measured fails this budget.
        latency_stat: Which latency figure the limits apply to.
        require_int8: The final model must be full-integer (no float op, no float I/O).
    """

    max_accuracy_drop: float | None = None
    max_size_kb: float | None = None
    max_latency_ms: dict[str, float] = field(default_factory=dict)
    max_energy_mj: dict[str, float] = field(default_factory=dict)
    latency_stat: str = "p50"
    require_int8: bool = False

    def __post_init__(self) -> None:
        for name in ("max_accuracy_drop", "max_size_kb"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, (int, float)) or v < 0):
                raise InputError(f"budgets.{name} must be a number >= 0, got {v!r}")
        for name, unit in (("max_latency_ms", "milliseconds"), ("max_energy_mj", "millijoules")):
            limits = getattr(self, name)
            if not isinstance(limits, dict) or not all(
                isinstance(v, (int, float)) and v >= 0 for v in limits.values()
            ):
                raise InputError(
                    f"budgets.{name} must map target names to {unit} (numbers >= 0), "
                    f"got {limits!r}"
                )
        if self.latency_stat not in LATENCY_STATS:
            raise InputError(
                f"budgets.latency_stat must be one of {', '.join(LATENCY_STATS)}, "
                f"got {self.latency_stat!r}"
            )


def _check_sweep(sweep: Any, source: str) -> dict[str, list[Any]]:
    if not isinstance(sweep, dict) or not all(
        isinstance(k, str) and isinstance(v, list) and v for k, v in sweep.items()
    ):
        raise InputError(
            f"{source}: sweep must map dotted recipe paths to non-empty lists of values, "
            f"got {sweep!r}"
        )
    return {k: list(v) for k, v in sweep.items()}


def _set_path(raw: dict[str, Any], path: str, value: Any) -> None:
    """Sets ``raw[a][b][0][c] = value`` for ``path == "a.b.0.c"`` (the path must exist)."""
    node: Any = raw
    parts = path.split(".")
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise InputError(f"sweep path {path!r}: {part!r} is not an index of a "
                                 f"{len(node)}-item list")
            key: Any = int(part)
        elif isinstance(node, dict):
            if part not in node:
                raise InputError(f"sweep path {path!r}: no key {part!r}; known keys: "
                                 f"{', '.join(map(str, node))}")
            key = part
        else:
            raise InputError(f"sweep path {path!r}: {parts[i - 1]!r} holds a value, not a mapping")
        if last:
            node[key] = value
        else:
            node = node[key]


_KINDS = {list: "a list", str: "a string", int: "a number", float: "a number", bool: "a boolean"}


def _check_top_level(raw: Any, path: str) -> None:
    """Refuses a recipe file that is empty or not a mapping (before anything runs).

    Args:
        raw: The parsed YAML/JSON.
        path: The file, for the message.

    Raises:
        InputError: ``raw`` is None (an empty or comments-only file), ``{}``, or not a mapping.
    """
    keys = ", ".join(f.name for f in fields(Recipe))
    if raw is None or (isinstance(raw, dict) and not raw):
        raise InputError(f"recipe {path!r} is empty; expected a mapping of recipe keys "
                         f"({keys}), e.g. 'model: demo_cnn'")
    if not isinstance(raw, dict):
        kind = _KINDS.get(type(raw), f"a {type(raw).__name__}")
        raise InputError(f"recipe {path!r} must be a mapping of recipe keys ({keys}), "
                         f"got {kind}")


@dataclass(frozen=True)
class Recipe:
    """A whole pipeline run.

    Attributes:
        model: A ``models/`` name or a model path.
        data: ``"digits"`` or a data path.
        train: Training of a ``models/`` name (ignored for a model path).
        stages: Compression stages, in order.
        convert: Conversion.
        bench: Benchmark.
        budgets: Pass/fail limits.
        seed: Global seed (weights init, training order).
        sweep: Alternatives to try: dotted path into the recipe -> list of values (e.g.
            ``{"stages.0.config.final_sparsity": [0.5, 0.9], "convert.mode": ["int8",
            "int16x8"]}``); every combination runs as one candidate.
        unsafe_load: Trust the Python code of the recipe's model files (Lambda layers), which
            loading runs; without it such a model is refused (``edgekit.core.model_io``). Saved
            in the resolved recipe only when true.
        executor: Where a sweep's candidates run: ``local`` (default) or a Ray cluster
            (``edgekit.executor_spec``). Saved in the resolved recipe only when not local.
    """

    model: str = "demo_cnn"
    data: str = "digits"
    train: TrainConfig = field(default_factory=TrainConfig)
    stages: tuple[Any, ...] = ()
    convert: ConvertSpec = field(default_factory=ConvertSpec)
    bench: BenchSpec = field(default_factory=BenchSpec)
    budgets: Budgets = field(default_factory=Budgets)
    seed: int = 0
    sweep: dict[str, list[Any]] = field(default_factory=dict)
    unsafe_load: bool = False
    executor: ExecutorSpec = field(default_factory=ExecutorSpec)

    def __post_init__(self) -> None:
        if not isinstance(self.unsafe_load, bool):
            raise InputError(f"unsafe_load must be true or false, got {self.unsafe_load!r}")
        # A channel search's device also benchmarks the shipped model, so the report can check
        # the budget on it (edgekit.report_search).
        wanted = [t["on"] for s in self.stages
                  if isinstance(t := getattr(s, "target", None), dict) and t.get("on")]
        ratio = next((s for s in self.stages if isinstance(t := getattr(s, "target", None), dict)
                      and any(k.endswith("_ratio") for k in t)), None)
        if ratio is not None and not self.convert.int8_baseline:
            raise InputError(
                f"stage {type(ratio).__name__} target {ratio.target} is a ratio of the dense int8 "
                "model, which the report measures from convert.int8_baseline: set it to true (or "
                "give the target as latency_ms)")
        extra = [on for on in dict.fromkeys(wanted) if on not in self.bench.targets]
        if extra:
            object.__setattr__(self, "bench", replace(
                self.bench, targets=(*self.bench.targets, *extra)))

    @classmethod
    def from_dict(cls, raw: Any, source: str = "recipe") -> Recipe:
        """Builds a recipe from a mapping.

        Args:
            raw: The parsed YAML/JSON.
            source: Name of the file, for messages.

        Returns:
            The recipe.

        Raises:
            InputError: Unknown keys (known ones listed), wrong types, or invalid values.
        """
        _check_size(raw, source)
        cfg = checked_kwargs(cls, raw, source)
        if "model" in cfg and not isinstance(cfg["model"], str):
            raise InputError(f"{source}: model must be a name or a path, got {cfg['model']!r}")
        if "data" in cfg and not isinstance(cfg["data"], str):
            raise InputError(f"{source}: data must be 'digits' or a path, got {cfg['data']!r}")
        if "train" in cfg:
            cfg["train"] = _build(f"{source}: train",
                                  lambda: TrainConfig.from_dict(cfg["train"]))
        if "stages" in cfg:
            stages = cfg["stages"] or []
            if not isinstance(stages, list):
                raise InputError(f"{source}: stages must be a list of {{class_name, config}}")
            cfg["stages"] = tuple(_build(f"{source}: stages[{i}]", lambda s=s: stage_from_dict(s))
                                  for i, s in enumerate(stages))
        if "convert" in cfg:
            cfg["convert"] = _build(f"{source}: convert", lambda: ConvertSpec(
                **checked_kwargs(ConvertSpec, cfg["convert"], "convert")))
        if "bench" in cfg:
            cfg["bench"] = _build(f"{source}: bench", lambda: BenchSpec(
                **checked_kwargs(BenchSpec, cfg["bench"], "bench")))
        if "budgets" in cfg:
            b = checked_kwargs(Budgets, cfg["budgets"], "budgets")
            for key in ("max_latency_ms", "max_energy_mj"):
                if b.get(key) is None:
                    b.pop(key, None)
            cfg["budgets"] = _build(f"{source}: budgets", lambda: Budgets(**b))
        if "sweep" in cfg:
            cfg["sweep"] = _check_sweep(cfg["sweep"], source)
        if "executor" in cfg:
            cfg["executor"] = ExecutorSpec.from_value(cfg["executor"], f"{source}: executor")
        recipe = _build(source, lambda: cls(**cfg))
        if recipe.sweep:
            count = math.prod(len(v) for v in recipe.sweep.values())
            if count > MAX_SWEEP_CANDIDATES:
                raise InputError(f"{source}: the sweep makes {count:,} candidates; at most "
                                 f"{MAX_SWEEP_CANDIDATES:,} are allowed")
            recipe.candidates()  # every combination must be a valid recipe
        return recipe

    def candidates(self) -> list[tuple[str, dict[str, Any], Recipe]]:
        """Expands :attr:`sweep` into one recipe per combination (the cartesian product).

        Returns:
            ``(name, params, recipe)`` per candidate, in a stable order; a recipe without a
            sweep gives one candidate named ``"run"`` with no params.

        Raises:
            InputError: A path that names nothing in the recipe, or a combination that is not a
                valid recipe.
        """
        if not self.sweep:
            return [("run", {}, self)]
        base = self.to_dict()
        base.pop("sweep")
        paths = list(self.sweep)
        out: list[tuple[str, dict[str, Any], Recipe]] = []
        for i, values in enumerate(itertools.product(*(self.sweep[p] for p in paths))):
            params = dict(zip(paths, values, strict=True))
            raw = copy.deepcopy(base)
            for path, value in params.items():
                _set_path(raw, path, value)
            label = "-".join(f"{p.split('.')[-1]}={v}" for p, v in params.items())
            name = re.sub(r"[^A-Za-z0-9_.=-]+", "_", f"c{i}-{label}")
            if len(name) > MAX_CANDIDATE_NAME:
                # a name is a folder and part of file names (255 bytes at most on Linux): a long
                # label (a swept stage list) is cut and keeps a hash of the whole
                digest = hashlib.sha256(label.encode()).hexdigest()[:8]
                name = f"{name[:MAX_CANDIDATE_NAME - 9]}-{digest}"
            out.append((name, params, Recipe.from_dict(raw, source=f"sweep candidate {name}")))
        return out

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Recipe:
        """Reads a recipe file (``.yaml``/``.yml``/``.json``).

        Args:
            path: The file.

        Returns:
            The recipe.

        Raises:
            InputError: Missing or unparsable file, an empty file (or ``{}``: an empty recipe
                would silently run the whole default pipeline), a file that is not a mapping
                (a list, a scalar), or an invalid recipe.
        """
        p = Path(path)
        if not p.is_file():
            raise InputError(f"recipe {str(p)!r} does not exist; expected a .yaml or .json file")
        if p.suffix.lower() not in (".yaml", ".yml", ".json"):
            raise InputError(f"recipe {str(p)!r} must be .yaml, .yml or .json, got {p.suffix!r}")
        kind = p.suffix[1:].upper()
        try:
            text = p.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise InputError(f"recipe {str(p)!r} is not UTF-8 text ({e.reason} at byte "
                             f"{e.start}); expected {kind}") from None
        except OSError as e:
            raise InputError(f"recipe {str(p)!r} cannot be read: {e.strerror or e}") from e
        try:
            # safe_load: a tag such as !!python/object is refused (ConstructorError), never run.
            raw = json.loads(text) if p.suffix.lower() == ".json" else yaml.safe_load(text)
        except RecursionError:
            raise InputError(f"recipe {str(p)!r} nests too deeply to be a recipe "
                             f"({kind})") from None
        except yaml.MarkedYAMLError as e:
            mark = e.problem_mark or e.context_mark
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            what = e.problem or e.context or type(e).__name__
            raise InputError(f"recipe {str(p)!r} is not valid {kind}: {what}{where}") from None
        except (ValueError, yaml.YAMLError) as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise InputError(f"recipe {str(p)!r} is not valid {kind}: {first}") from e
        _check_top_level(raw, str(p))
        return cls.from_dict(raw, source=f"recipe {str(p)!r}")

    def to_dict(self) -> dict[str, Any]:
        """Returns the resolved recipe (defaults filled in) as plain data."""
        return {
            "model": self.model,
            "data": self.data,
            "train": self.train.to_dict(),
            "stages": [s.to_dict() for s in self.stages],
            "convert": asdict(self.convert),
            "bench": {**asdict(self.bench), "targets": list(self.bench.targets)},
            "budgets": asdict(self.budgets),
            "seed": self.seed,
            "sweep": {k: list(v) for k, v in self.sweep.items()},
            **({"unsafe_load": True} if self.unsafe_load else {}),
            **({"executor": self.executor.to_value()} if self.executor.kind != "local" else {}),
        }

    def to_yaml(self) -> str:
        """Returns the resolved recipe as YAML text."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def demo(cls) -> Recipe:
        """The embedded default: demo CNN on digits, prune 80 % -> PQAT -> full int8 -> bench.

        Returns:
            The demo recipe.
        """
        return cls.from_dict(
            {
                "model": "demo_cnn",
                "data": "digits",
                "train": {"epochs": 30},
                "stages": [
                    {"class_name": "Prune",
                     "config": {"final_sparsity": 0.8, "schedule": "PolynomialDecay"}},
                    {"class_name": "QAT", "config": {}},
                ],
                "convert": {"mode": "int8", "io": "int8"},
                "bench": {"targets": ["local"], "runs": 200},
                "budgets": {"max_accuracy_drop": 1.0, "require_int8": True},
            },
            source="demo recipe",
        )
