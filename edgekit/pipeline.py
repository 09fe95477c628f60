"""The whole job: model + data -> compress -> convert -> verify -> bench -> report.

Stages hand each other files in the run folder (``.keras``/``.h5``, ``.tflite``, JSON), and every
file is written atomically, so a failed run never leaves a half-written artefact::

    OUT/recipe.yaml                    resolved recipe
    OUT/float.keras                    trained (or loaded) float model
    OUT/<stage>.keras|.h5              one per compression stage (QAT models are .h5)
    OUT/float32.tflite                 float baseline (convert.float32_baseline)
    OUT/model_<mode>.tflite            the deliverable
    OUT/model_<mode>.calibration.json  calibration sample indices and seed
    OUT/bench/<model>.<target>.json    edgekit.bench/1 results
    OUT/report.json, OUT/report.md     edgekit.report/1
"""

from __future__ import annotations

import gzip
import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from device_bench.atomicio import write_bytes, write_json, write_text
from edgekit._keras import keras, load_model, save_model
from edgekit.compress import kernel_sparsity
from edgekit.data import Dataset, load_data
from edgekit.errors import InputError
from edgekit.recipe import Recipe
from edgekit.stage_cache import StageCache, file_sha256, fingerprint, place
from edgekit.training import accuracy, fit

Log = Callable[[str], None]


def _stderr_log(msg: str) -> None:
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
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
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
    return {"bytes": len(data), "gzip_bytes": len(gzip.compress(data, compresslevel=9, mtime=0))}


def overall_sparsity(model: keras.Model) -> float | None:
    """Share of zeros over all Conv/Dense kernels together (parameter-weighted)."""
    zeros = total = 0
    from edgekit.compress.base import kernel_of

    for layer in model.layers:
        k = kernel_of(layer)
        if k is not None:
            zeros += int(np.sum(k == 0.0))
            total += k.size
    return round(zeros / total, 6) if total else None


def convert_to_file(model: keras.Model, data: Dataset, config: Any, path: Path, *,
                    samples: int, seed: int, calibration: Any = None,
                    max_accuracy_drop: float | None = None, debug_layers: bool = False,
                    log: Log | None = None) -> dict[str, Any] | None:
    """Converts ``model`` to ``path``; calibrates first when the mode needs it.

    Calibration samples are drawn by seed from the training split, or taken from
    ``calibration`` (a file, image folder, stream or arrays: see
    ``edgekit.converters.calibration_source``); their indices (and file names, for folders) are
    saved beside the model once the conversion has succeeded (``X.calibration.json``).

    int8 only: ``debug_layers`` ranks the layers by their own quantization error and saves the
    ranking as ``X.layers.json``; ``max_accuracy_drop`` keeps the fewest worst layers in float
    until the held-out accuracy drop is within budget (``X.selective.json``).

    Args:
        model: The Keras model.
        data: The dataset (training split for calibration, held-out split for the budget).
        config: A ``ConversionConfig``.
        path: The ``.tflite`` to write (atomically).
        samples: Calibration samples to draw.
        seed: Seed of the draw.
        calibration: Another calibration source; None = the training split.
        max_accuracy_drop: Selective quantization budget in points; None = plain int8.
        debug_layers: Rank and save per-layer quantization errors.
        log: Progress sink for the selective search.

    Returns:
        ``{"record": file name, "samples", "seed", "source", "selection"}``, plus
        ``"quant_debug"`` (the ranking, with its ``"record"`` file) and ``"selective"`` when
        asked for; None for a mode without calibration.

    Raises:
        InputError: Calibration data that does not fit, a model the converter rejects, or
            debugging / selective quantization asked of a mode other than int8 or a QAT model.
    """
    from edgekit.converters import (
        calibrate,
        calibration_record_path,
        calibration_source,
        convert_keras,
        model_input_specs,
        quantize_calibrated,
        save_calibration_record,
        select_calibration,
        selective_quantize,
    )
    from edgekit.converters import debug_layers as rank_layers

    wants_debug = debug_layers or max_accuracy_drop is not None
    if not config.mode.needs_calibration:
        if wants_debug:
            raise InputError(f"--max-accuracy-drop and --debug-layers need mode int8, got mode "
                             f"{config.mode.value}")
        write_bytes(path, convert_keras(model, config))
        return None
    if calibration is None:
        representative, indices = select_calibration(data.x_train, num_samples=samples,
                                                     seed=seed)
        rec: dict[str, Any] = {
            "indices": data.train_indices[indices], "num_samples": len(indices),
            "source": f"{data.name} training split (indices into the source)"}
    else:
        taken = calibration_source(calibration).take(model_input_specs(model), samples, seed)
        representative = taken
        rec = {"indices": taken.indices, "num_samples": len(taken), "source": taken.source,
               "selection": taken.selection, "files": taken.files, "inputs": taken.names}
    extra: dict[str, Any] = {}
    if not wants_debug:
        blob = convert_keras(model, config, representative=representative)
    else:
        calibrated = calibrate(model, config, representative)
        ranking = rank_layers(model, config, representative, calibrated=calibrated)
        if debug_layers:
            layers_path = write_json(path.with_name(f"{path.stem}.layers.json"),
                                     ranking.to_dict())
            extra["quant_debug"] = {"record": layers_path.name, **ranking.to_dict()}
        if max_accuracy_drop is None:
            blob = quantize_calibrated(calibrated, config)
        else:
            blob, result, _ = selective_quantize(
                model, config, representative, data.x_test, data.y_test, max_accuracy_drop,
                ranking=ranking, calibrated=calibrated, log=log)
            sel_path = write_json(path.with_name(f"{path.stem}.selective.json"), result.to_dict())
            extra["selective"] = {"record": sel_path.name, **result.to_dict()}
    write_bytes(path, blob)
    record = save_calibration_record(calibration_record_path(path), seed=seed, **rec)
    return {"record": record.name, "samples": rec["num_samples"], "seed": seed,
            "source": rec["source"], "selection": rec.get("selection", "seeded"), **extra}


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


def _check_classes(model: keras.Model, data: Dataset) -> None:
    """Refuses a model whose output is not one score per class of ``data``.

    Raises:
        InputError: Several outputs, an output that is not (batch, classes), or fewer classes.
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
    if n is not None and n < data.num_classes:
        raise InputError(
            f"model {model.name!r} has {n} outputs but data {data.name!r} has "
            f"{data.num_classes} classes"
        )


class Pipeline:
    """Runs a :class:`Recipe` into a run folder and returns the report.

    Args:
        recipe: What to run.
        out: The run folder.
        log: Progress sink (stderr by default).
        resume: Reuse stages finished by an earlier run in ``out`` (same fingerprint).
        cache: A shared stage cache (sweeps); default: ``out``'s own ``stages.json``.
    """

    def __init__(self, recipe: Recipe, out: str | os.PathLike[str], log: Log | None = None,
                 resume: bool = False, cache: StageCache | None = None):
        if recipe.sweep:
            raise InputError("this recipe has a sweep; run it with edgekit.sweep.run_sweep")
        self.recipe = recipe
        self.out = check_out_dir(out)
        self.log = log or _stderr_log
        self.entries: list[dict[str, Any]] = []
        self.resume = resume
        self.cache = cache
        self._fp = ""

    def _model_fingerprint(self, needs_training: bool) -> str:
        r = self.recipe
        source: dict[str, Any] = {"model": r.model, "data": r.data, "seed": r.seed}
        if needs_training:
            source["train"] = r.train.to_dict()
        else:
            source["model_sha256"] = file_sha256(r.model)
        return fingerprint("", source)

    def _reuse(self, fp: str, dest: Path) -> tuple[keras.Model, dict[str, Any]] | None:
        """Loads a finished stage from the cache into ``dest``, or None."""
        hit = self.cache.lookup(fp) if self.cache is not None else None
        if hit is None:
            return None
        path = place(hit["path"], dest)
        entry = {**hit["entry"], "reused": os.path.relpath(hit["path"], self.out)}
        self.entries.append(entry)
        self.log(f"{entry['name']}: reused finished stage ({entry['reused']})")
        return load_model(path), entry

    # -- stages ---------------------------------------------------------------------------
    def resolve_inputs(self) -> tuple[keras.Model, Dataset, bool]:
        """Loads or builds the model and loads the data; writes nothing (bad input fails here).

        Returns:
            (model, data, needs_training).
        """
        from edgekit.models.registry import Task, build_model, is_model_name, model_info

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
            data = load_data(r.data, input_shape=model_input_shape(model))
            trained = False
        _check_classes(model, data)
        if r.convert.calibration is not None:
            # Open it now, so a missing or misshapen file fails before hours of training.
            from edgekit.converters import calibration_source, model_input_specs

            calibration_source(r.convert.calibration).take(model_input_specs(model), 1, 0)
        return model, data, trained

    def _float_model(self, model: keras.Model, data: Dataset, needs_training: bool
                     ) -> keras.Model:
        r = self.recipe
        t0 = time.perf_counter()
        self._fp = self._model_fingerprint(needs_training)
        reused = self._reuse(self._fp, self.out / "float.keras")
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
        path = save_model(model, self.out / "float.keras")
        entry = self._add_keras_entry("float", "float", path, model, data, details, t0)
        self._record(path, entry)
        return model

    def _record(self, path: Path, entry: dict[str, Any]) -> None:
        if self.cache is not None:
            self.cache.record(self._fp, path, entry)

    def _add_keras_entry(
        self, name: str, kind: str, path: Path, model: keras.Model, data: Dataset,
        details: dict[str, Any], t0: float,
    ) -> dict[str, Any]:
        acc = accuracy(model, data.x_test, data.y_test)
        entry = {
            "name": name,
            "kind": kind,
            "artefact": path.name,
            "accuracy": round(acc, 6),
            **file_sizes(path),
            "params": int(model.count_params()),
            "sparsity": overall_sparsity(model),
            "layer_sparsity": kernel_sparsity(model),
            "details": details,
            "seconds": round(time.perf_counter() - t0, 2),
        }
        self.entries.append(entry)
        self.log(f"{name}: held-out accuracy {acc:.2%}, sparsity {entry['sparsity']}")
        return entry

    def _compress(self, model: keras.Model, data: Dataset) -> list[tuple[str, keras.Model]]:
        """Applies the recipe's stages in order.

        Returns:
            ``(stage name, model)`` after float and after every stage, in order.
        """
        models = [("float", model)]
        seen: dict[str, int] = {}
        for stage in self.recipe.stages:
            t0 = time.perf_counter()
            base = stage.class_name.lower()
            seen[base] = seen.get(base, 0) + 1
            name = base if seen[base] == 1 else f"{base}{seen[base]}"
            self._fp = fingerprint(self._fp, stage.to_dict())
            suffix = stage.artefact_suffix
            reused = self._reuse(self._fp, self.out / f"{name}{suffix}")
            if reused is not None:
                model = reused[0]
                models.append((name, model))
                continue
            self.log(f"stage {name}: {stage.to_dict()['config']}")
            # A teacher named "float" (Distill, or a stage's distill field) is the float model.
            from edgekit.compress.distill import bind_teacher

            result = bind_teacher(stage, self.out / "float.keras").apply(model, data)
            path = save_model(result.model, self.out / f"{name}{suffix}")
            # Stages hand on files: reload what was saved so the next stage starts from it.
            model = load_model(path)
            details = {"config": stage.to_dict(), **result.details}
            entry = self._add_keras_entry(name, stage.class_name, path, model, data, details, t0)
            self._record(path, entry)
            models.append((name, model))
        return models

    def _conversion_source(self, models: list[tuple[str, keras.Model]], mode: Any
                           ) -> tuple[str, keras.Model]:
        """The stage whose model the deliverable is converted from.

        The last stage, except that a QAT model's learned ranges are int8 ranges: other modes
        convert the last model before QAT (and the log says so).
        """
        from edgekit.converters import Mode

        kinds = {e["name"]: e.get("kind") for e in self.entries}
        if mode == Mode.INT8:
            return models[-1]
        for name, model in reversed(models):
            if kinds.get(name) != "QAT":
                if name != models[-1][0]:
                    self.log(f"mode {mode.value}: converting {name!r} (QAT ranges are int8-only)")
                return name, model
        return models[0]

    def _convert(self, model: keras.Model, data: Dataset, name: str, config: Any,
                 source: str) -> tuple[Path, dict[str, Any]]:
        from edgekit.converters import (
            Mode,
            inspect_tflite,
            is_qat_model,
            verify_tflite,
            weight_sparsity,
        )

        t0 = time.perf_counter()
        spec = self.recipe.convert
        path = self.out / f"{name}.tflite"
        self.log(f"convert {source} -> {path.name} ({config.mode.value})")
        options: dict[str, Any] = {}
        skipped = None
        if config.mode == Mode.INT8 and (spec.max_accuracy_drop is not None or spec.debug_layers):
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
        entry = {
            "name": name,
            "kind": "tflite",
            "artefact": path.name,
            "source": source,
            "conversion": config.to_dict(),
            "accuracy": verification.accuracy,
            "bytes": inspection.bytes,
            "gzip_bytes": inspection.gzip_bytes,
            "calibration": calibration,
            "verification": verification.to_dict(),
            "inspection": inspection.to_dict(),
            "weight_sparsity": weight_sparsity(path),
            **({"quant_debug": quant_debug} if quant_debug else {}),
            **({"selective": selective} if selective else {}),
            "bench": {},
            "seconds": round(time.perf_counter() - t0, 2),
        }
        self.entries.append(entry)
        self.log(f"{name}: held-out accuracy {verification.accuracy:.2%}, "
                 f"top-1 agreement with Keras {verification.top1_agreement:.2%}, "
                 f"{inspection.bytes} bytes")
        return path, entry

    def _bench(self, path: Path, entry: dict[str, Any]) -> None:
        from device_bench.targets import get_target

        spec = self.recipe.bench
        options = spec.options()
        for target_spec in spec.targets:
            target = get_target(target_spec)
            self.log(f"bench {path.name} on {target_spec} ({options.runs} runs)")
            result = target.bench(str(path), options)
            safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", target_spec)
            write_json(self.out / "bench" / f"{path.stem}.{safe}.json", result)
            entry["bench"][target_spec] = result
            lat = result["latency_ms"]
            self.log(f"{path.name} on {target_spec}: p50 {lat['p50']:.3f} ms, "
                     f"p90 {lat['p90']:.3f} ms, cv {lat['cv']}")
            energy = result.get("energy")
            if energy:
                self.log(f"{path.name} on {target_spec}: {energy['mj_per_inference']:.4g} mJ/"
                         f"inference ({'measured' if energy['measured'] else 'estimate'}, "
                         f"{energy['source']})")

    # -- run --------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Runs every stage and writes report.json and report.md.

        Returns:
            The report (``edgekit.report/1``).

        Raises:
            InputError: Bad model, data or recipe values.
        """
        from edgekit.converters import ConversionConfig, Mode
        from edgekit.report import build_report, render_markdown

        t0 = time.perf_counter()
        r = self.recipe
        model, data, needs_training = self.resolve_inputs()
        prepare_out_dir(self.out)
        if self.cache is None:
            self.cache = StageCache(self.out, resume=self.resume)
        write_text(self.out / "recipe.yaml", r.to_yaml())
        float_model = self._float_model(model, data, needs_training)
        models = self._compress(float_model, data)
        config = r.convert.conversion_config()
        source, final_model = self._conversion_source(models, config.mode)
        if r.convert.float32_baseline and config.mode != Mode.FLOAT32:
            path, entry = self._convert(float_model, data, "float32",
                                        ConversionConfig(mode=Mode.FLOAT32), "float")
            self._bench(path, entry)
        path, entry = self._convert(final_model, data, f"model_{config.mode.value}", config,
                                    source)
        entry["final"] = True
        self._bench(path, entry)
        report = build_report(r, data, self.entries, seconds=time.perf_counter() - t0)
        write_json(self.out / "report.json", report)
        write_text(self.out / "report.md", render_markdown(report))
        from edgekit.report_html import write_html

        write_html(self.out / "report.html", report)
        self.log(f"report: {self.out / 'report.md'}")
        return report


def run_pipeline(recipe: Recipe, out: str | os.PathLike[str], log: Log | None = None,
                 resume: bool = False) -> dict[str, Any]:
    """Runs ``recipe`` into ``out`` (see :class:`Pipeline`).

    Args:
        recipe: What to run.
        out: The run folder.
        log: Progress sink (stderr by default).
        resume: Reuse the stages an earlier run in ``out`` finished.

    Returns:
        The report dict.
    """
    return Pipeline(recipe, out, log=log, resume=resume).run()
