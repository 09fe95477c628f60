"""Calibration samples for full-integer conversion, chosen by a seed and recorded.

The representative dataset decides the activation ranges of an int8 model, so it is part of the
model's provenance: the samples are picked by a seeded generator and their indices are saved beside
the model (``model_int8.tflite`` -> ``model_int8.calibration.json``), as mlcommons/tiny's
``model_converter.py`` does. Re-running with the same data and seed picks the same samples.
"""

from __future__ import annotations

import hashlib
import json
import numbers
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from device_bench.atomicio import write_json
from device_bench.errors import BenchInputError
from edgekit.core.errors import InputError

__all__ = [
    "CALIBRATION_SCHEMA",
    "calibration_record_path",
    "load_calibration_record",
    "save_calibration_record",
    "select_calibration",
]

CALIBRATION_SCHEMA = "edgekit.calibration/1"


def _check_int(value: Any, name: str, minimum: int) -> int:
    """Returns ``value`` as an int, or raises InputError naming ``name`` and the rule."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InputError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if int(value) < minimum:
        raise InputError(f"{name} must be >= {minimum}, got {int(value)}")
    return int(value)


def select_calibration(
    x: np.ndarray, num_samples: int = 200, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Picks distinct calibration samples from ``x`` with a seeded generator.

    ``min(num_samples, len(x))`` indices are drawn without replacement by
    ``np.random.default_rng(seed).choice`` and sorted, so the result depends only on ``len(x)``,
    ``num_samples`` and ``seed``.

    Args:
        x: Candidate inputs, shape ``(N, ...)`` (the training split, normally).
        num_samples: How many samples to pick (>= 1); clipped to ``len(x)``.
        seed: Seed of the generator (>= 0).

    Returns:
        ``(samples, indices)``: the chosen samples as float32 (in index order) and their sorted
        indices into ``x`` as int64.

    Raises:
        InputError: ``x`` is empty or not an array of samples, or ``num_samples``/``seed`` invalid.
    """
    num_samples = _check_int(num_samples, "num_samples", 1)
    seed = _check_int(seed, "seed", 0)
    try:
        data = np.asarray(x)
    except (TypeError, ValueError) as e:
        raise InputError(f"calibration candidates must be an array: {e}") from e
    if data.ndim < 1 or len(data) == 0:
        raise InputError(
            f"calibration candidates must hold at least one sample, got shape {data.shape}"
        )
    count = min(num_samples, len(data))
    rng = np.random.default_rng(seed)
    indices = np.sort(rng.choice(len(data), size=count, replace=False)).astype(np.int64)
    try:
        samples = data[indices].astype(np.float32)
    except (TypeError, ValueError) as e:
        raise InputError(f"calibration samples must be numeric, got dtype {data.dtype}") from e
    return samples, indices


def calibration_record_path(model_path: str | os.PathLike[str]) -> Path:
    """Where the calibration record of a model lives: ``X.tflite`` -> ``X.calibration.json``.

    Args:
        model_path: Path of the converted model.

    Returns:
        The record path beside it.
    """
    p = Path(model_path)
    return p.with_name(f"{p.stem}.calibration.json")


def save_calibration_record(
    path: str | os.PathLike[str],
    *,
    indices: Sequence[int] | np.ndarray,
    seed: int,
    num_samples: int,
    source: str,
    selection: str = "seeded",
    files: Sequence[str] | None = None,
    inputs: Sequence[str] | None = None,
    model: bytes | None = None,
) -> Path:
    """Writes the calibration record as JSON, atomically.

    With ``model`` (the ``.tflite`` bytes it calibrated) the record holds their SHA-256, so that
    :func:`load_calibration_record` can tell a record from the model beside it (the two files are
    renamed one after the other: a crash between them leaves a pair that does not match).

    Args:
        path: Destination, normally :func:`calibration_record_path` of the model.
        indices: The chosen indices (from :func:`select_calibration`).
        seed: The seed they were chosen with.
        num_samples: The number of samples requested.
        source: Where the candidates came from (dataset name or path, and split).
        selection: ``"seeded"`` (drawn by seed) or ``"first"`` (a stream's first N samples; the
            record then says so and ``seed`` only repeats what was asked for).
        files: For image folders, the chosen files (relative to the folder), in sample order.
        inputs: For multi-input models, the input names the arrays were fed to, in order.
        model: The converted model's bytes; None = no ``model_sha256`` in the record.

    Returns:
        The destination path.

    Raises:
        InputError: Invalid fields, or the destination folder cannot be written.
    """
    if selection not in ("seeded", "first"):
        raise InputError(f"selection must be 'seeded' or 'first', got {selection!r}")
    seed = _check_int(seed, "seed", 0)
    num_samples = _check_int(num_samples, "num_samples", 1)
    if not isinstance(source, str) or not source:
        raise InputError(f"source must be a non-empty string, got {source!r}")
    idx = np.asarray(indices)
    if idx.ndim != 1 or (idx.size and not np.issubdtype(idx.dtype, np.integer)):
        raise InputError(f"indices must be a 1-D sequence of integers, got shape {idx.shape}")
    record = {
        "schema": CALIBRATION_SCHEMA,
        "source": source,
        "seed": seed,
        "num_samples": num_samples,
        "indices": [int(i) for i in idx],
    }
    if selection != "seeded":
        record["selection"] = selection
    if files:
        record["files"] = [str(f) for f in files]
    if inputs and len(inputs) > 1:
        record["inputs"] = [str(n) for n in inputs]
    if model is not None:
        record["model_sha256"] = hashlib.sha256(model).hexdigest()
    try:
        return write_json(path, record)
    except BenchInputError as e:
        raise InputError(str(e)) from e


def load_calibration_record(path: str | os.PathLike[str],
                            model: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Reads a record written by :func:`save_calibration_record`.

    Args:
        path: The record file.
        model: The ``.tflite`` the record should belong to; None = not checked. A record
            without ``model_sha256`` (written before edgekit recorded it) is not checked.

    Returns:
        The record: ``{"schema", "source", "seed", "num_samples", "indices"}``, plus
        ``"selection"``, ``"files"``, ``"inputs"`` and ``"model_sha256"`` when it has them.

    Raises:
        InputError: Missing or unreadable file, not an ``edgekit.calibration/1`` record, or a
            record whose ``model_sha256`` is not that of ``model``.
    """
    p = Path(path)
    try:
        record = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise InputError(f"calibration record {str(p)!r} does not exist") from e
    except (OSError, ValueError) as e:
        raise InputError(f"calibration record {str(p)!r} is not readable JSON: {e}") from e
    if not isinstance(record, dict) or record.get("schema") != CALIBRATION_SCHEMA:
        raise InputError(
            f"calibration record {str(p)!r} is not an {CALIBRATION_SCHEMA} record "
            f"(schema {record.get('schema') if isinstance(record, dict) else None!r})"
        )
    missing = [k for k in ("source", "seed", "num_samples", "indices") if k not in record]
    if missing:
        raise InputError(f"calibration record {str(p)!r} lacks {', '.join(missing)}")
    if model is not None and "model_sha256" in record:
        try:
            digest = hashlib.sha256(Path(model).read_bytes()).hexdigest()
        except OSError as e:
            raise InputError(f"model {str(model)!r} is not readable: {e}") from e
        if digest != record["model_sha256"]:
            raise InputError(
                f"calibration record {str(p)!r} belongs to another model than {str(model)!r} "
                f"(model_sha256 {record['model_sha256'][:12]}..., the file's {digest[:12]}...)")
    return record
