"""The conversion step as the pipeline, the API and the CLI run it: model -> ``.tflite`` file.

:func:`convert_to_file` calibrates when the mode needs it (a seeded draw from the training split,
or another calibration source), optionally ranks layers by quantization error and runs selective
quantization (int8 only), writes the ``.tflite`` atomically and saves the records beside it::

    X.tflite              the model
    X.calibration.json    calibration sample indices (and file names for folders), seed and the
                          model's SHA-256 (written just before the model)
    X.layers.json         the per-layer quantization ranking (debug_layers)
    X.selective.json      the selective quantization result (max_accuracy_drop)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from device_bench.atomicio import write_bytes, write_json
from edgekit.core._keras import keras

from .calibration import calibration_record_path, save_calibration_record, select_calibration
from .calibration_sources import calibration_source, model_input_specs
from .modes import ConversionConfig, convert_keras, require_int8
from .quant_debug import calibrate, quantize_calibrated
from .quant_debug import debug_layers as rank_layers
from .selective import selective_quantize

__all__ = ["CLI_INT8_OPTIONS", "convert_to_file"]

# The int8-only options as the CLI names them (the recipe names them convert.*).
CLI_INT8_OPTIONS = "--max-accuracy-drop and --debug-layers"

Log = Callable[[str], None]


class Dataset(Protocol):
    """What the conversion step reads of a dataset (``edgekit.data.Dataset`` has it).

    A structural type, so that the converters need not import the data layer above them.
    """

    name: str
    x_train: Any
    x_test: Any
    y_test: Any
    train_indices: Any  # positions of the training samples in the source (for the record)


def convert_to_file(model: keras.Model, data: Dataset, config: ConversionConfig, path: Path, *,
                    samples: int, seed: int, calibration: Any = None,
                    max_accuracy_drop: float | None = None, debug_layers: bool = False,
                    log: Log | None = None) -> dict[str, Any] | None:
    """Converts ``model`` to ``path``; calibrates first when the mode needs it.

    Calibration samples are drawn by seed from the training split, or taken from
    ``calibration`` (a file, image folder, stream or arrays: see
    ``edgekit.converters.calibration_source``); their indices (and file names, for folders) are
    saved beside the model once the conversion has succeeded (``X.calibration.json``, with the
    model's SHA-256; written just before the model).

    int8 only: ``debug_layers`` ranks the layers by their own quantization error and saves the
    ranking as ``X.layers.json``; ``max_accuracy_drop`` keeps the fewest worst layers in float
    until the held-out accuracy drop is within budget (``X.selective.json``).

    Args:
        model: The Keras model.
        data: The dataset (training split for calibration, held-out split for the budget).
        config: The conversion config.
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
    path = Path(path)
    wants_debug = debug_layers or max_accuracy_drop is not None
    if wants_debug:
        require_int8(config.mode, CLI_INT8_OPTIONS)
    if not config.mode.needs_calibration:
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
    # The record first: its checks run before anything is written, and it names the model's
    # SHA-256, so a crash between the two renames leaves a pair that is seen not to match.
    record = save_calibration_record(calibration_record_path(path), seed=seed, model=blob, **rec)
    write_bytes(path, blob)
    return {"record": record.name, "samples": rec["num_samples"], "seed": seed,
            "source": rec["source"], "selection": rec.get("selection", "seeded"), **extra}
