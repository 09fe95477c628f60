"""The whole job: model + data -> compress -> convert -> verify -> bench -> report.

Stages hand each other files in the run folder (``.keras``/``.h5``, ``.tflite``, JSON), and every
file is written atomically, so a failed run never leaves a half-written artefact::

    OUT/recipe.yaml                    resolved recipe
    OUT/float.keras                    trained (or loaded) float model
    OUT/<stage>.keras|.h5              one per compression stage (QAT models are .h5)
    OUT/float32.tflite                 float baseline (convert.float32_baseline)
    OUT/int8_dense.tflite              the float model in int8, when stages ran (int8_baseline)
    OUT/model_<mode>.tflite            the deliverable
    OUT/model_<mode>.calibration.json  calibration sample indices and seed
    OUT/bench/<model>.<target>.json    edgekit.bench/1 results
    OUT/report.json, OUT/report.md     edgekit.report/1
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from device_bench.atomicio import write_json, write_text
from device_bench.interrupts import raise_if_interrupted
from device_bench.result import BenchResult
from device_bench.sizes import sizes
from device_bench.targets import get_target
from edgekit.compress import kernel_sparsity
from edgekit.compress.base import kernel_of
from edgekit.compress.training import accuracy, fit
from edgekit.converters import (
    ConversionConfig,
    Mode,
    calibration_source,
    convert_to_file,
    inspect_tflite,
    is_qat_model,
    keras_work,
    model_input_specs,
    verify_tflite,
    weight_sparsity,
)
from edgekit.core._keras import keras
from edgekit.core.checks import check_labels
from edgekit.core.errors import InputError
from edgekit.core.model_io import load_model, save_model, unsafe_load_scope
from edgekit.data import Dataset, load_data
from edgekit.models.registry import Task, build_model, is_model_name, model_info
from edgekit.recipe import Recipe
from edgekit.report import build_report, render_markdown
from edgekit.report_html import write_html
from edgekit.report_types import Entry, KerasEntry, Report, TfliteEntry
from edgekit.run_plan import PlannedConversion, PlannedStage, RunPlan, plan_run
from edgekit.stage_cache import StageCache, place
from edgekit.stage_runner import run_stage

Log = Callable[[str], None]


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _stderr_log(msg: str) -> None:
    raise_if_interrupted()  # a progress line is a safe point (device_bench.interrupts)
    print(f"edgekit: {msg}", file=sys.stderr, flush=True)


def check_out_dir(out: str | os.PathLike[str]) -> Path:
    """Checks, without creating anything, that ``out`` can become a writable run folder.

    Args:
        out: The folder (it may not exist yet).

    Returns:
        It as a Path.

    Raises:
        InputError: It is a file, or neither it nor its nearest existing parent is writable.
    """
    p = Path(out)
    if p.exists() and not p.is_dir():
        raise InputError(f"output folder {str(p)!r} is a file; expected a folder")
    probe = p
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise InputError(f"output folder {str(p)!r} cannot be created: {str(probe)!r} is a "
                         "file; expected a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise InputError(f"output folder {str(p)!r} is not writable ({str(probe)!r} is not)")
    return p


def prepare_out_dir(out: str | os.PathLike[str]) -> Path:
    """Creates the run folder after :func:`check_out_dir`.

    Args:
        out: The folder.

    Returns:
        It as a Path.

    Raises:
        InputError: It cannot be created or written.
    """
    p = check_out_dir(out)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"output folder {str(p)!r} cannot be created: {e.strerror or e}") from e
    return p


def file_sizes(path: str | os.PathLike[str]) -> dict[str, int]:
    """Raw and gzip (level 9) size of a file or a folder's files.

    Args:
        path: File or folder.

    Returns:
        ``{"bytes": ..., "gzip_bytes": ...}``.
    """
    p = Path(path)
    files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file())
    data = b"".join(f.read_bytes() for f in files)
    return sizes(data)


def overall_sparsity(model: keras.Model) -> float | None:
    """Share of zeros over all Conv/Dense kernels together (parameter-weighted)."""
    zeros = total = 0
    for layer in model.layers:
        k = kernel_of(layer)
        if k is not None:
            zeros += int(np.sum(k == 0.0))
            total += k.size
    return round(zeros / total, 6) if total else None


def model_input_shape(model: keras.Model) -> tuple[int | None, ...]:
    """Sample shape of a single-input model (no batch dim).

    Raises:
        InputError: The model has several inputs.
    """
    shape = model.input_shape
    if isinstance(shape, list):
        if len(shape) != 1:
            raise InputError(
                f"model {model.name!r} has {len(shape)} inputs; the pipeline handles one input"
            )
        shape = shape[0]
    return tuple(shape[1:])


def model_classes(model: keras.Model) -> int | None:
    """The classes of a classifier: the width of its one ``(batch, classes)`` output.

    Args:
        model: The Keras model.

    Returns:
        The output width when the model has a single 2-D output wider than 1; None otherwise
        (several outputs, a single score, an image-shaped output: no labels to check against).
    """
    out = model.output_shape
    if not isinstance(out, tuple) or len(out) != 2 or out[-1] is None or int(out[-1]) < 2:
        return None
    return int(out[-1])


def _check_classes(model: keras.Model, data: Dataset) -> None:
    """Refuses a model whose output is not one score per class of ``data``.

    Raises:
        InputError: Several outputs, an output that is not (batch, classes), labels outside
            the model's classes, or fewer classes than the data has.
    """
    out = model.output_shape
    if not isinstance(out, tuple):
        raise InputError(
            f"model {model.name!r} has {len(out)} outputs; the pipeline scores classifiers with "
            "one (batch, classes) output"
        )
    if len(out) != 2:
        raise InputError(
            f"model {model.name!r} outputs shape {list(out)}; the pipeline scores classifiers "
            "whose output is (batch, classes)"
        )
    n = out[-1]
    if n is not None:
        check_labels(np.concatenate([data.y_train, data.y_test]), int(n), data.name)
    if n is not None and n < data.num_classes:
        raise InputError(
            f"model {model.name!r} has {n} outputs but data {data.name!r} has "
            f"{data.num_classes} classes"
        )


def _trusting(method: Callable[..., Any]) -> Callable[..., Any]:
    """Runs a :class:`Pipeline` method in ``unsafe_load_scope(recipe.unsafe_load)``: the
    recipe's model, its teacher and its stage files load trusting their Python code only when
    the recipe says ``unsafe_load: true`` (or the caller's own scope does)."""
    @functools.wraps(method)
    def wrapper(self: Pipeline, *args: Any, **kwargs: Any) -> Any:
        with unsafe_load_scope(self.recipe.unsafe_load):
            return method(self, *args, **kwargs)

    return wrapper


class Pipeline:
    """Runs a :class:`Recipe` into a run folder and returns the report.

    Args:
        recipe: What to run.
        out: The run folder.
        log: Progress sink (stderr by default).
        resume: Reuse stages finished by an earlier run in ``out`` (same fingerprint).
        cache: A shared stage cache (sweeps); default: ``out``'s own ``stages/`` records.
    """

    def __init__(self, recipe: Recipe, out: str | os.PathLike[str], log: Log | None = None,
                 resume: bool = False, cache: StageCache | None = None):
        if recipe.sweep:
            raise InputError("this recipe has a sweep; run it with edgekit.sweep.run_sweep")
        self.recipe = recipe
        self.out = check_out_dir(out)
        self.log = log or _stderr_log
        self.entries: list[Entry] = []
        self.resume = resume
        self.cache = cache
        self.plan: RunPlan | None = None

    def _reuse(self, fp: str, dest: Path) -> tuple[keras.Model, KerasEntry] | None:
        """Loads a finished stage from the cache into ``dest``, or None."""
        hit = self.cache.lookup_entry(fp) if self.cache is not None else None
        if hit is None:
            return None
        cached, finished = hit
        path = place(cached, dest)
        model = load_model(path)
        # A record written before the work was counted: count it from the saved model.
        macs = finished.macs if finished.macs is not None else keras_work(model)["macs"]
        entry = replace(finished, reused=os.path.relpath(cached, self.out), macs=macs)
        self.entries.append(entry)
        self.log(f"{entry.name}: reused finished stage ({entry.reused})")
        return model, entry

    # -- stages ---------------------------------------------------------------------------
    @_trusting
    def resolve_inputs(self) -> tuple[keras.Model, Dataset, bool]:
        """Loads or builds the model and loads the data; writes nothing (bad input fails here).

        Returns:
            (model, data, needs_training).
        """
        r = self.recipe
        keras.utils.set_random_seed(r.seed)
        if is_model_name(r.model):
            task = model_info(r.model).task
            if task is not Task.CLASSIFICATION:
                raise InputError(
                    f"model {r.model!r} is a {task.value} model; the pipeline trains and scores "
                    "classifiers (pick one listed by `edgekit models` as classification)"
                )
            data = load_data(r.data)
            model = build_model(r.model, input_shape=data.sample_shape,
                                num_classes=data.num_classes)
            trained = True
        else:
            model = load_model(r.model)
            data = load_data(r.data, input_shape=model_input_shape(model),
                             num_classes=model_classes(model))
            trained = False
        _check_classes(model, data)
        if r.convert.calibration is not None:
            # Open it now, so a missing or misshapen file fails before hours of training.
            calibration_source(r.convert.calibration).take(model_input_specs(model), 1, 0)
        return model, data, trained

    def _float_model(self, planned: PlannedStage, model: keras.Model, data: Dataset,
                     needs_training: bool) -> keras.Model:
        r = self.recipe
        t0 = time.perf_counter()
        reused = self._reuse(planned.fingerprint, self.out / planned.artefact)
        if reused is not None:
            return reused[0]
        if needs_training:
            self.log(f"train {r.model} on {data.name} ({r.train.epochs} epochs, "
                     f"{len(data.x_train)} samples)")
            history = fit(
                model, data.x_train, data.y_train, epochs=r.train.epochs,
                learning_rate=r.train.learning_rate, batch_size=r.train.batch_size,
                augment_shift=r.train.augment_shift, seed=r.train.seed, desc="train",
            )
            details: dict[str, Any] = {"source": "trained", "model": r.model,
                                       "train": r.train.to_dict(), "history": history}
        else:
            details = {"source": "loaded", "model": str(r.model)}
        path = save_model(model, self.out / planned.artefact)
        entry = self._add_keras_entry(planned.name, planned.kind, path, model, data, details, t0)
        self._record(planned, path, entry)
        return model

    def _record(self, planned: PlannedStage, path: Path, entry: KerasEntry) -> None:
        if self.cache is not None:
            self.cache.record(planned.fingerprint, path, entry)

    def _add_keras_entry(
        self, name: str, kind: str, path: Path, model: keras.Model, data: Dataset,
        details: dict[str, Any], t0: float,
    ) -> KerasEntry:
        acc = accuracy(model, data.x_test, data.y_test)
        work = keras_work(model)
        entry = KerasEntry(
            name=name,
            kind=kind,
            artefact=path.name,
            accuracy=round(acc, 6),
            **file_sizes(path),
            params=work["params"],
            macs=work["macs"],
            sparsity=overall_sparsity(model),
            layer_sparsity=kernel_sparsity(model),
            details=details,
            seconds=round(time.perf_counter() - t0, 2),
        )
        self.entries.append(entry)
        self.log(f"{name}: held-out accuracy {acc:.2%}, sparsity {entry.sparsity}, "
                 f"{work['macs']:,} MACs")
        return entry

    def _compress(self, plan: RunPlan, model: keras.Model, data: Dataset
                  ) -> dict[str, keras.Model]:
        """Runs the plan's compression stages in order (each reused when the cache has it).

        Returns:
            Stage name -> model, for float and every stage.
        """
        models = {plan.stages[0].name: model}
        float_file = self.out / plan.stages[0].artefact
        for planned in plan.stages[1:]:
            t0 = time.perf_counter()
            reused = self._reuse(planned.fingerprint, self.out / planned.artefact)
            if reused is not None:
                model = models[planned.name] = reused[0]
                continue
            self.log(f"stage {planned.name}: {planned.stage.to_dict()['config']}")
            steps = self.out / f".{planned.name}.steps"  # a stage's mid-way checkpoints
            if not self.resume:
                shutil.rmtree(steps, ignore_errors=True)
            done = run_stage(planned.stage, model, data, self.out / planned.artefact, float_file,
                             checkpoints=steps)
            model = models[planned.name] = done.model
            details = {"config": planned.stage.to_dict(), **done.details}
            entry = self._add_keras_entry(planned.name, planned.kind, done.path, model, data,
                                          details, t0)
            self._record(planned, done.path, entry)
        return models

    def _convert(self, model: keras.Model, data: Dataset, planned: PlannedConversion,
                 config: ConversionConfig) -> tuple[Path, TfliteEntry]:
        """Converts, verifies and inspects one ``.tflite``; its entry has no bench results yet.

        Returns:
            (the ``.tflite``, its entry; not added to the report's entries).
        """
        t0 = time.perf_counter()
        spec = self.recipe.convert
        name, source = planned.name, planned.source
        path = self.out / planned.artefact
        self.log(f"convert {source} -> {path.name} ({config.mode.value})")
        options: dict[str, Any] = {}
        skipped = None
        if planned.final and config.mode == Mode.INT8 and (spec.max_accuracy_drop is not None
                                                          or spec.debug_layers):
            if is_qat_model(model):
                skipped = (f"per-layer debugging / selective quantization skipped: {source!r} is "
                           "a QAT model (it converts with its learned ranges)")
                self.log(f"{name}: {skipped}")
            else:
                options = {"max_accuracy_drop": spec.max_accuracy_drop,
                           "debug_layers": spec.debug_layers, "log": self.log}
        calibration = convert_to_file(model, data, config, path,
                                      samples=spec.calibration_samples,
                                      seed=spec.calibration_seed,
                                      calibration=spec.calibration, **options)
        quant_debug = calibration.pop("quant_debug", None) if calibration else None
        selective = calibration.pop("selective", None) if calibration else None
        if skipped:
            selective = {"skipped": skipped}
        self.log(f"verify {path.name} on {len(data.x_test)} held-out samples")
        verification = verify_tflite(path, data.x_test, data.y_test, reference=model)
        inspection = inspect_tflite(path)
        # The converters' results as JSON, read into the report's types (one check of the keys).
        entry = TfliteEntry.from_dict({
            "name": name,
            "kind": "tflite",
            "artefact": path.name,
            "source": source,
            "conversion": config.to_dict(),
            "accuracy": verification.accuracy,
            "bytes": inspection.bytes,
            "gzip_bytes": inspection.gzip_bytes,
            "macs": inspection.macs,
            "params": inspection.params,
            "calibration": calibration,
            "verification": verification.to_dict(),
            "inspection": inspection.to_dict(),
            "weight_sparsity": weight_sparsity(path),
            **({"quant_debug": quant_debug} if quant_debug else {}),
            **({"selective": selective} if selective else {}),
            "seconds": round(time.perf_counter() - t0, 2),
        }, f"{name} entry")
        self.log(f"{name}: held-out accuracy {verification.accuracy:.2%}, "
                 f"top-1 agreement with Keras {verification.top1_agreement:.2%}, "
                 f"{inspection.bytes} bytes, {inspection.macs:,} MACs")
        return path, entry

    def _bench(self, path: Path, targets: Sequence[str] | None = None
               ) -> dict[str, BenchResult]:
        """Benchmarks ``path`` on ``targets`` (default: every recipe target); writes each result
        to ``bench/``.

        Returns:
            The results by target spec, in the order given.
        """
        spec = self.recipe.bench
        options = spec.options()
        results: dict[str, BenchResult] = {}
        for target_spec in spec.targets if targets is None else targets:
            target = get_target(target_spec)
            self.log(f"bench {path.name} on {target_spec} ({options.runs} runs)")
            result = BenchResult.from_dict(target.bench(str(path), options),
                                           f"bench result of {target_spec}")
            safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", target_spec)
            write_json(self.out / "bench" / f"{path.stem}.{safe}.json", result.to_dict())
            results[target_spec] = result
            lat = result.latency_ms
            self.log(f"{path.name} on {target_spec}: p50 {_ms(lat.p50)} ms, "
                     f"p90 {_ms(lat.p90)} ms, cv {lat.cv}")
            energy = result.energy
            if energy is not None:
                self.log(f"{path.name} on {target_spec}: {energy.mj_per_inference:.4g} mJ/"
                         f"inference ({'measured' if energy.measured else 'estimate'}, "
                         f"{energy.source})")
        return results

    # -- run --------------------------------------------------------------------------------
    # A run is build (stages + conversions) -> bench -> finish (report). ``run`` does all three
    # here; a cluster executor (edgekit.executor_ray) runs them as separate tasks, so that a
    # benchmark holds only its board, not the CPUs a candidate trains on.
    @_trusting
    def build(self) -> BuiltRun:
        """Runs every stage and conversion (verified, inspected), but no benchmark.

        Returns:
            What :meth:`bench` and :meth:`finish` need (picklable).

        Raises:
            InputError: Bad model, data or recipe values.
        """
        t0 = time.perf_counter()
        r = self.recipe
        model, data, needs_training = self.resolve_inputs()
        plan = self.plan = plan_run(r)
        prepare_out_dir(self.out)
        if self.cache is None:
            self.cache = StageCache(self.out, resume=self.resume)
        write_text(self.out / "recipe.yaml", r.to_yaml())
        float_model = self._float_model(plan.stages[0], model, data, needs_training)
        models = self._compress(plan, float_model, data)
        for note in plan.notes:
            self.log(note)
        config = r.convert.conversion_config()
        for planned in plan.conversions:
            # The dense int8 baseline converts like the deliverable (same io, per-channel).
            same = planned.final or planned.mode == config.mode.value
            conversion = config if same else ConversionConfig(mode=Mode(planned.mode))
            _, entry = self._convert(models[planned.source], data, planned, conversion)
            self.entries.append(replace(entry, final=planned.final))
        return BuiltRun(tuple(self.entries), data.describe(), time.perf_counter() - t0)

    def bench(self, built: BuiltRun, targets: Sequence[str] | None = None
              ) -> dict[str, dict[str, BenchResult]]:
        """Benchmarks every ``.tflite`` of a built run (results written to ``bench/``).

        Args:
            built: What :meth:`build` returned.
            targets: Target specs (default: the recipe's).

        Returns:
            Target spec -> ``.tflite`` entry name -> result.
        """
        targets = list(self.recipe.bench.targets if targets is None else targets)
        results: dict[str, dict[str, BenchResult]] = {t: {} for t in targets}
        for entry in built.tflite:
            for target_spec, result in self._bench(self.out / entry.artefact, targets).items():
                results[target_spec][entry.name] = result
        return results

    def finish(self, built: BuiltRun, bench: Mapping[str, Mapping[str, BenchResult]],
               seconds: float) -> Report:
        """Writes report.json, report.md and report.html of a built and benchmarked run.

        Args:
            built: What :meth:`build` returned.
            bench: What :meth:`bench` returned (for every recipe target).
            seconds: The run's wall time.

        Returns:
            The report.
        """
        entries = [replace(e, bench={t: bench[t][e.name] for t in self.recipe.bench.targets
                                     if e.name in bench.get(t, {})})
                   if isinstance(e, TfliteEntry) else e for e in built.entries]
        report = build_report(self.recipe, _Described(built.data), entries, seconds=seconds)
        write_json(self.out / "report.json", report.to_dict())
        write_text(self.out / "report.md", render_markdown(report))
        write_html(self.out / "report.html", report)
        self.log(f"report: {self.out / 'report.md'}")
        return report

    def run(self) -> Report:
        """Runs every stage and writes report.json, report.md and report.html.

        Returns:
            The report (``edgekit.report/1``; ``to_dict()`` is report.json).

        Raises:
            InputError: Bad model, data or recipe values.
        """
        t0 = time.perf_counter()
        built = self.build()
        return self.finish(built, self.bench(built), time.perf_counter() - t0)


@dataclass(frozen=True)
class BuiltRun:
    """A run built up to its benchmarks (what :meth:`Pipeline.build` hands on).

    Attributes:
        entries: The stage entries, then the ``.tflite`` entries (no bench results yet; the
            deliverable flagged ``final``).
        data: The data set's description (``Dataset.describe()``), as the report holds it.
        seconds: Wall time of the build.
    """

    entries: tuple[Entry, ...]
    data: dict[str, Any]
    seconds: float

    @property
    def tflite(self) -> tuple[TfliteEntry, ...]:
        """The ``.tflite`` entries, in order."""
        return tuple(e for e in self.entries if isinstance(e, TfliteEntry))


@dataclass(frozen=True)
class _Described:
    """A data set's saved description where the report asks a data set for it."""

    info: dict[str, Any]

    def describe(self) -> dict[str, Any]:
        return dict(self.info)


def run_pipeline(recipe: Recipe, out: str | os.PathLike[str], log: Log | None = None,
                 resume: bool = False) -> dict[str, Any]:
    """Runs ``recipe`` into ``out`` (see :class:`Pipeline`).

    Args:
        recipe: What to run.
        out: The run folder.
        log: Progress sink (stderr by default).
        resume: Reuse the stages an earlier run in ``out`` finished.

    Returns:
        The report dict (``edgekit.report/1``, as report.json holds it).
    """
    return Pipeline(recipe, out, log=log, resume=resume).run().to_dict()
