"""The Python API: one function per CLI command, returning results instead of printing.

::

    import edgekit
    outcome = edgekit.run("recipe.yaml", "runs/r1", junit="budgets.xml")
    outcome.passed, outcome.report["final"]["accuracy"]
    result = edgekit.convert("model.keras", data="digits", out="m.tflite")
    edgekit.compare("runs/r1", "runs/r2")

Errors are :class:`edgekit.core.errors.InputError` (bad input) and friends; budgets that fail
do not raise here (``outcome.passed`` is False), the CLI turns them into exit code 1.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from edgekit.core.errors import InputError
from edgekit.recipe import Recipe

if TYPE_CHECKING:
    from edgekit.report_types import Report

PathLike = str | os.PathLike[str]
_R = TypeVar("_R")


@dataclass(frozen=True)
class RunOutcome:
    """What :func:`run` produced.

    Attributes:
        out: The run (or sweep) folder.
        report: The run's ``edgekit.report/1`` dict (a sweep: its most accurate front
            candidate's); :attr:`typed_report` is the same as a ``Report``.
        sweep: The ``edgekit.sweep/1`` dict when the recipe had a sweep, else None.
        reports: Every candidate's report by name (one entry, "run", without a sweep).
        junit: The JUnit file written, if any.
    """

    out: Path
    report: dict[str, Any]
    sweep: dict[str, Any] | None = None
    reports: dict[str, dict[str, Any]] = field(default_factory=dict)
    junit: Path | None = None

    @cached_property
    def typed_report(self) -> Report:
        """:attr:`report` as a :class:`~edgekit.report_types.Report` (read once)."""
        from edgekit.report_types import Report

        return Report.from_dict(self.report)

    @property
    def passed(self) -> bool:
        """True when every budget of every candidate held."""
        return bool(self.sweep["passed"]) if self.sweep else self.typed_report.passed

    @property
    def failed_budgets(self) -> list[str]:
        """Names of the failed budgets (``candidate: budget`` in a sweep)."""
        if self.sweep is None:
            return list(self.typed_report.failed_budgets)
        return [f"{c['name']}: {b}" for c in self.sweep["candidates"] for b in c["failed_budgets"]]


def _trusting(fn: Callable[..., _R]) -> Callable[..., _R]:
    """Runs ``fn`` inside ``unsafe_load_scope(unsafe_load)``: its model loads (the teacher's and
    the stage files' too) trust Python code only when the caller passed ``unsafe_load=True``."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> _R:
        from edgekit.core.model_io import unsafe_load_scope

        with unsafe_load_scope(bool(kwargs.get("unsafe_load", False))):
            return fn(*args, **kwargs)

    return wrapper


def _as_recipe(recipe: Recipe | PathLike | dict[str, Any]) -> Recipe:
    if isinstance(recipe, Recipe):
        return recipe
    if isinstance(recipe, dict):
        return Recipe.from_dict(recipe)
    return Recipe.load(recipe)


def run(recipe: Recipe | PathLike | dict[str, Any], out: PathLike = "runs/run", *,
        resume: bool = False, junit: PathLike | None = None, log: Any = None,
        unsafe_load: bool = False, executor: str | None = None) -> RunOutcome:
    """Runs a recipe (a sweep when it has one) and writes its reports.

    Args:
        recipe: A :class:`Recipe`, a recipe file, or a recipe mapping.
        out: The run folder.
        resume: Reuse the stages an earlier run in ``out`` finished.
        junit: Also write JUnit XML with one test case per budget (per candidate in a sweep).
        log: Progress sink (stderr by default).
        unsafe_load: Trust the Python code (Lambda layers) of the recipe's model files, as the
            recipe's own ``unsafe_load: true`` does (see ``edgekit.core.model_io``).
        executor: ``local``, ``ray`` or ``ray:HOST:PORT``: where a sweep's candidates run,
            over the recipe's ``executor`` (``edgekit.executor_spec``).

    Returns:
        The :class:`RunOutcome`.

    Raises:
        InputError: Bad recipe, model, data or output folder, or another run is using ``out``.
    """
    from edgekit.junit import budget_testcases, write_junit
    from edgekit.pipeline import check_out_dir, run_pipeline
    from edgekit.run_lock import run_folder_lock
    from edgekit.sweep import best_candidate, run_sweep, search_pool_scope

    r = _as_recipe(recipe)
    if unsafe_load and not r.unsafe_load:
        r = dataclasses.replace(r, unsafe_load=True)
    if executor is not None:
        from edgekit.executor_spec import ExecutorSpec

        r = dataclasses.replace(r, executor=ExecutorSpec.from_cli(executor, r.executor))
    if junit is not None:
        check_out_dir(Path(junit).parent)
    out_path = check_out_dir(out)
    # One run per folder: a second one is refused at once (edgekit.run_lock).
    with run_folder_lock(out_path):
        if r.sweep:
            sweep, reports = run_sweep(r, out_path, log=log, resume=resume)
            outcome = RunOutcome(out_path, reports[best_candidate(sweep)["name"]], sweep,
                                 reports)
            suites = [(name, budget_testcases(rep, name)) for name, rep in reports.items()]
        else:
            with search_pool_scope(r, log):
                report = run_pipeline(r, out_path, log=log, resume=resume)
            outcome = RunOutcome(out_path, report, None, {"run": report})
            suites = [("run", budget_testcases(report, "run"))]
    if junit is not None:
        path = write_junit(junit, suites)
        outcome = RunOutcome(outcome.out, outcome.report, outcome.sweep, outcome.reports, path)
    return outcome


def plan(recipe: Recipe | PathLike | dict[str, Any]) -> dict[str, Any]:
    """What a run of ``recipe`` would do, without running anything (no TensorFlow either).

    Args:
        recipe: A :class:`Recipe`, a recipe file, or a recipe mapping.

    Returns:
        ``{"candidates": {name: plan}, "shared": {fingerprint: [candidates]}}``: each
        candidate's stages with their fingerprints and artefacts, its conversions, and the
        stages that several candidates share (a sweep computes those once).

    Raises:
        InputError: Bad recipe, or a model path that does not exist.
    """
    from edgekit.run_plan import plan_sweep, shared_stages

    plans = plan_sweep(_as_recipe(recipe))
    return {"candidates": {name: p.to_dict() for name, p in plans.items()},
            "shared": shared_stages(plans)}


def demo(out: PathLike = "runs/demo", *, junit: PathLike | None = None) -> RunOutcome:
    """The embedded default: demo CNN on digits -> prune 80 % -> PQAT -> int8 -> bench -> report.

    Args:
        out: The run folder.
        junit: Optional JUnit XML of the budgets.

    Returns:
        The :class:`RunOutcome`.
    """
    return run(Recipe.demo(), out, junit=junit)


@_trusting
def compress(model: PathLike, *, out: PathLike, data: str = "digits",
             prune: float | None = None, qat: bool = False, epochs: int | None = None,
             teacher: PathLike | None = None, temperature: float = 4.0,
             distill_alpha: float = 0.9, lowrank: float | None = None,
             channels: float | None = None, importance: str = "l1", scope: str = "layer",
             round_to: int | None = None, target: dict[str, Any] | None = None,
             log: Any = print, unsafe_load: bool = False) -> dict[str, Any]:
    """Channel-prunes, factorizes, prunes, distils and/or quantization-aware-trains a model file.

    Stages run in the order channel pruning -> low-rank -> prune -> QAT. With ``teacher``,
    every stage fine-tunes with the distillation loss against it; with a teacher and no other
    stage, the model itself is distilled from the teacher (a Distill stage).

    Args:
        model: A .keras / .h5 / SavedModel path (Keras 3 files are bridged).
        out: Output model (.keras or .h5; .h5 required with ``qat``).
        data: "digits", an .npz with x and y, or an image folder.
        prune: Final sparsity in [0, 1); None skips pruning.
        qat: Quantization-aware training (prune-preserving when the model is sparse).
        epochs: Fine-tuning epochs of each stage (None: each stage's default).
        teacher: A model file whose outputs guide the fine-tunes (knowledge distillation).
        temperature: Distillation temperature T.
        distill_alpha: Weight of the soft (KL) term; 1 - alpha weighs the labels.
        lowrank: Energy share in (0, 1] kept by an SVD factorization of Dense / 1x1 Conv2D
            kernels (None: no factorization).
        channels: Share of channels to remove in [0, 1) (a ChannelPrune stage; None: none).
        importance: ChannelPrune's criterion (``l1``, ``taylor``, ... see
            edgekit.compress.importance).
        scope: ChannelPrune's ``layer`` or ``global`` cut.
        round_to: ChannelPrune's channel rounding (None: the stage's default).
        target: A budget for ChannelPrune's channel search instead of ``channels``
            (``{latency_ms, on, stat}``, ``{latency_ratio, on}``, ``{instructions_ratio, on}``
            or ``{macs_ratio}``; see edgekit.compress.search_target).
        log: Progress sink.
        unsafe_load: Trust the Python code (Lambda layers) of ``model`` and ``teacher`` and of
            the stage files they become (see ``edgekit.core.model_io``).

    Returns:
        ``{"out", "float_accuracy", "stages": [{"stage", "accuracy", "details"}]}``.

    Raises:
        InputError: Nothing to do, a bad output suffix, or bad model / data / folder.
        CheckFailed: The channel search could not meet ``target`` (nothing is written).
    """
    from edgekit.compress import QAT, ChannelPrune, Distill, LowRank, Prune, get_stage
    from edgekit.compress.training import accuracy
    from edgekit.core.model_io import load_model
    from edgekit.data import load_data
    from edgekit.pipeline import check_out_dir, model_classes, model_input_shape
    from edgekit.stage_runner import run_stage

    out_path = Path(out)
    if channels is not None and target is not None:
        raise InputError("give channels=RATIO or a target (--target-...), not both")
    if prune is None and not qat and teacher is None and lowrank is None and channels is None \
            and target is None:
        raise InputError("nothing to do: give channels=RATIO, prune=SPARSITY, qat=True, "
                         "lowrank=ENERGY and/or teacher=MODEL")
    if teacher is not None and not Path(teacher).exists():
        raise InputError(f"--teacher {str(teacher)!r} does not exist; expected a model file")
    if qat and out_path.suffix != ".h5":
        raise InputError(f"--out {str(out)!r}: a QAT model must be saved as .h5 (tf_keras cannot "
                         "reload QAT models from .keras)")
    if out_path.suffix not in (".keras", ".h5"):
        raise InputError(f"--out {str(out)!r} must end in .keras or .h5")
    check_out_dir(out_path.parent)
    extra: dict[str, Any] = {} if epochs is None else {"epochs": int(epochs)}
    distill = None
    if teacher is not None:
        distill = {"teacher": str(teacher), "temperature": float(temperature),
                   "alpha": float(distill_alpha)}
    # Built before anything loads, so a bad option fails at once and writes nothing.
    stages: list[Any] = []
    if channels is not None or target is not None:
        options = {"importance": importance, "scope": scope, "distill": distill, **extra,
                   **({"ratio": channels} if target is None else {"target": target})}
        if round_to is not None:
            options["round_to"] = round_to
        stages.append(ChannelPrune.from_config(options))
    if lowrank is not None:
        stages.append(LowRank(energy=float(lowrank), distill=distill, **extra))
    if prune is not None:
        stages.append(Prune(final_sparsity=float(prune), distill=distill, **extra))
    if qat:
        stages.append(QAT(distill=distill, **extra))
    if not stages:
        stages.append(Distill(teacher=str(teacher), temperature=float(temperature),
                              alpha=float(distill_alpha), **extra))
    m = load_model(model)
    ds = load_data(data, input_shape=model_input_shape(m), num_classes=model_classes(m))
    result: dict[str, Any] = {"out": out_path,
                              "float_accuracy": accuracy(m, ds.x_test, ds.y_test), "stages": []}
    log(f"float accuracy {100 * result['float_accuracy']:.2f} %")
    # The stages hand each other files, as in a recipe run: the intermediate ones in a
    # private folder beside OUT (removed at the end), the last one at OUT itself.
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".edgekit-compress-", dir=out_path.parent) as tmp:
        for i, stage in enumerate(stages):
            last = i == len(stages) - 1
            suffix = get_stage(stage.class_name).artefact_suffix
            dest = out_path if last else Path(tmp) / f"{i}-{stage.class_name.lower()}{suffix}"
            done = run_stage(stage, m, ds, dest, float_model=model)
            m = done.model
            acc = accuracy(m, ds.x_test, ds.y_test)
            result["stages"].append({"stage": stage.to_dict(), "accuracy": acc,
                                     "details": done.details})
            work = done.details.get("work")
            cut = (f", MACs {work['before']['macs']:,} -> {work['after']['macs']:,}"
                   if work else "")
            log(f"{stage.class_name}: held-out accuracy {100 * acc:.2f} %{cut}")
    return result


@_trusting
def convert(model: PathLike, *, out: PathLike, data: str = "digits", mode: str = "int8",
            io: str | None = None, samples: int = 200, seed: int = 0,
            per_channel: bool = True, calibration: Any = None,
            max_accuracy_drop: float | None = None, debug_layers: bool = False,
            log: Any = None, unsafe_load: bool = False) -> dict[str, Any]:
    """Converts a Keras model file to TFLite and verifies it on the held-out split.

    Args:
        model: A .keras / .h5 / SavedModel path.
        out: Output .tflite path (the calibration record goes beside it).
        data: Calibration (unless ``calibration`` is given) and verification data.
        mode: int8 | int16x8 | float16 | dynamic | float32.
        io: int8 | uint8 | float32 (int8 mode), int16 (int16x8); None: the mode's default.
        samples: Calibration samples drawn from the training split (or from ``calibration``).
        seed: Seed of that draw (streams take their first ``samples`` instead).
        per_channel: Per-channel weight quantization.
        calibration: Another calibration source: a .npy/.npz file or image folder path, a
            ``{source, resize, normalize}`` mapping, arrays, a ``tf.data.Dataset`` or a
            generator (see ``edgekit.converters.calibration_source``).
        max_accuracy_drop: int8: keep the fewest worst layers in float until the held-out
            accuracy drop against the Keras model is at most this many points.
        debug_layers: int8: rank the layers by quantization error (saved as ``X.layers.json``).
        log: Progress sink of the selective search (None: quiet).
        unsafe_load: Trust the Python code (Lambda layers) of ``model``: without it such a
            model is refused (see ``edgekit.core.model_io``).

    Returns:
        ``{"out", "calibration_record" (or None), "verification" (VerificationResult),
        "quant_debug" (ranking dict or None), "selective" (dict or None)}``.

    Raises:
        InputError: Bad arguments (``calibration`` for a mode that does not calibrate
            included), model, data, calibration source or folder; a model the converter
            rejects.
    """
    from edgekit.converters import (
        ConversionConfig,
        IOType,
        Mode,
        convert_to_file,
        require_int8,
        verify_tflite,
    )
    from edgekit.core.model_io import load_model
    from edgekit.data import load_data
    from edgekit.pipeline import check_out_dir, model_classes, model_input_shape

    if not str(out).endswith(".tflite"):
        raise InputError(f"--out must be a path ending in .tflite, got {str(out)!r}")
    check_out_dir(Path(out).parent)
    config = ConversionConfig(mode=Mode.parse(mode), io=IOType.parse(io) if io else None,
                              per_channel=per_channel)
    if max_accuracy_drop is not None or debug_layers:
        require_int8(config.mode, "--max-accuracy-drop and --debug-layers")
    if calibration is not None and not config.mode.needs_calibration:  # else silently unused
        raise InputError(f"--calibration is used only by the modes that calibrate (int8, "
                         f"int16x8); --mode {config.mode.value} does not")
    m = load_model(model)
    ds = load_data(data, input_shape=model_input_shape(m), num_classes=model_classes(m))
    calibration_info = convert_to_file(m, ds, config, Path(out), samples=samples, seed=seed,
                                       calibration=calibration,
                                       max_accuracy_drop=max_accuracy_drop,
                                       debug_layers=debug_layers, log=log)
    info = calibration_info or {}
    record = None if calibration_info is None else Path(out).parent / info["record"]
    return {"out": Path(out), "calibration_record": record,
            "verification": verify_tflite(out, ds.x_test, ds.y_test, reference=m),
            "quant_debug": info.get("quant_debug"), "selective": info.get("selective")}


def kws_data(out: PathLike, *, wav_dir: PathLike | None = None, seed: int = 0,
             takes: int | None = None, test_takes: int | None = None) -> dict[str, Any]:
    """Makes (or takes from the cache) the keyword-spotting set and writes it as one ``.npz``.

    Args:
        out: The ``.npz`` to write (``x``, ``y`` and the speaker split, see
            :func:`edgekit.data.kws.save_npz`).
        wav_dir: Also write every clip as a WAV file under this folder (made again, not cached).
        seed: Seed of every draw.
        takes: Takes per training speaker (default: the generator's).
        test_takes: Takes per held-out speaker (default: the generator's).

    Returns:
        ``{"out", "cache", "cached", "train_samples", "test_samples", "class_names", "seconds"}``.

    Raises:
        InputError: espeak-ng is missing, a bad setting, or ``out`` cannot be written.
    """
    import dataclasses
    import time

    from device_bench.atomicio import check_parent
    from edgekit.data.kws import CLASS_NAMES, KwsSettings, load_arrays, save_npz

    if not str(out).endswith(".npz"):
        raise InputError(f"--out {str(out)!r}: expected a file name ending in .npz")
    check_parent(out)
    changes = {k: v for k, v in {"seed": seed, "takes": takes, "test_takes": test_takes}.items()
               if v is not None}
    settings = dataclasses.replace(KwsSettings(), **changes)
    t0 = time.perf_counter()
    arrays, cache, cached = load_arrays(settings, wav_dir=wav_dir)
    save_npz(arrays, out)
    return {"out": str(out), "cache": str(cache), "cached": cached,
            "train_samples": len(arrays.y_train), "test_samples": len(arrays.y_test),
            "class_names": list(CLASS_NAMES), "seconds": time.perf_counter() - t0}


def inspect(model: PathLike) -> dict[str, Any]:
    """Inspects a .tflite: ops, dtypes, I/O quantization, size raw/gzip, weight sparsity, and
    whether the model meets XNNPACK's sparse-inference rules.

    Args:
        model: The .tflite file.

    Returns:
        ``{"inspection": InspectionResult, "weight_sparsity": [...],
        "xnnpack_sparse": SparseCheck}`` (the last: does XNNPACK's sparse inference apply).

    Raises:
        InputError: Missing file or not a TFLite flatbuffer.
    """
    from edgekit.converters import check_xnnpack_sparse, inspect_tflite, weight_sparsity

    return {"inspection": inspect_tflite(model), "weight_sparsity": weight_sparsity(model),
            "xnnpack_sparse": check_xnnpack_sparse(model)}


def bench(model: PathLike, *, target: str | list[str] | tuple[str, ...] = "local",
          **options: Any) -> dict[str, Any]:
    """Benchmarks a .tflite on one target, or on several in turn.

    Args:
        model: The .tflite file.
        target: A target spec (``local``, ``ssh://USER@HOST[:PORT]``, ``adb://SERIAL``,
            ``qemu-aarch64[:CPU]``), or several: a list, or one comma-separated string.
        **options: ``device_bench.runner.BenchOptions`` fields (threads, warmup, runs, energy,
            energy_seconds, ...).

    Returns:
        One target given as a plain spec: its ``edgekit.bench/1`` result. Several (a list or a
        comma-separated string): the ``edgekit.bench-comparison/1`` object
        ``{"schema", "model", "targets": {spec: {"ok", "error", "result"}}}``, where a target
        that failed keeps ``ok: false`` and its one-line reason (see ``edgekit.bench_table``).

    Raises:
        InputError: Missing model or an empty/duplicated target list. BenchInputError: bad
        options or target spec. TargetError: the one target given could not run.
    """
    from device_bench.runner import BenchOptions
    from device_bench.targets import get_target
    from edgekit.bench_table import comparison_dict, parse_targets, run_targets

    if not Path(model).is_file():
        raise InputError(f"model {str(model)!r} does not exist; expected a .tflite file")
    bench_options = BenchOptions(**options)
    specs = parse_targets(target)
    if isinstance(target, str) and len(specs) == 1:
        return get_target(specs[0]).bench(str(model), bench_options)
    return comparison_dict(model, run_targets(model, specs, bench_options))


def compare(run_a: PathLike, run_b: PathLike) -> dict[str, Any]:
    """What changed between two runs (accuracy, size, latency, ops, budgets).

    Args:
        run_a: A run folder or its report.json (before).
        run_b: The same for after.

    Returns:
        The comparison dict of :func:`edgekit.comparison.compare_reports`.

    Raises:
        InputError: A path that is not an edgekit run.
    """
    from edgekit.comparison import compare_reports, load_run

    return compare_reports(load_run(run_a), load_run(run_b))
