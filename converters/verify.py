"""Does the converted model still compute what the Keras model computed?

:func:`run_tflite` feeds float samples through the LiteRT interpreter one at a time, quantizing
inputs and dequantizing outputs with the model's own scale/zero-point, so an int8 model is
compared on the same scale as the float model. :func:`verify_tflite` adds accuracy against labels
and agreement against the Keras model (top-1 agreement, absolute error, signal-to-noise ratio).

This module needs only numpy and ``ai_edge_litert`` (the Keras model is only called, never
imported here).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from ai_edge_litert.interpreter import Interpreter
from tqdm import tqdm

from edgekit.core._keras import keras
from edgekit.core.checks import check_labels
from edgekit.core.errors import InputError

from .result import JsonResult

__all__ = ["VerificationResult", "run_tflite", "verify_tflite"]

# Batches at least this long show a progress bar (on a terminal).
_PROGRESS_MIN_SAMPLES = 500


def _shape_text(shape: Any) -> str:
    dims = ["None" if d is None or int(d) < 0 else str(int(d)) for d in shape]
    return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"


def _make_interpreter(model: str | os.PathLike[str] | bytes) -> Any:
    """Builds a LiteRT interpreter from a path or bytes; InputError when that fails."""
    if isinstance(model, (bytes, bytearray, memoryview)):
        name, kwargs = "<bytes>", {"model_content": bytes(model)}
        head = bytes(model[:8])
    else:
        p = Path(model)
        name, kwargs = str(p), {"model_path": str(p)}
        if not p.is_file():
            raise InputError(f"model {name!r} does not exist; expected a .tflite file")
        with open(p, "rb") as f:
            head = f.read(8)
    if head[4:8] != b"TFL3":
        raise InputError(
            f"model {name!r} is not a TFLite flatbuffer (expected file identifier TFL3)"
        )
    try:
        interpreter = Interpreter(**kwargs)
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as e:
        raise InputError(f"model {name!r} cannot be loaded by the interpreter: {e}") from e
    return interpreter


def _quantize(x: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    """Float samples -> the input tensor's dtype, with its scale/zero-point when quantized."""
    dtype = np.dtype(detail["dtype"])
    scale, zero_point = detail["quantization"]
    if np.issubdtype(dtype, np.integer) and scale:
        info = np.iinfo(dtype)
        q = np.round(x / np.float32(scale) + zero_point)
        return np.clip(q, info.min, info.max).astype(dtype)
    return x.astype(dtype)


def _dequantize(y: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    """Output tensor values -> float32, with its scale/zero-point when quantized."""
    scale, zero_point = detail["quantization"]
    if np.issubdtype(np.dtype(detail["dtype"]), np.integer) and scale:
        return ((y.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)).astype(
            np.float32
        )
    return y.astype(np.float32)


def run_tflite(
    model: str | os.PathLike[str] | bytes, x: np.ndarray, *, progress: bool | None = None
) -> np.ndarray:
    """Runs float samples through a single-input, single-output TFLite model, batch size 1.

    Float inputs are quantized to the input tensor's int8/uint8/int16 type with its scale and zero
    point; outputs are dequantized to float32.

    Args:
        model: Path of the ``.tflite`` file, or its bytes.
        x: Float samples, shape ``(N, *input_shape)``.
        progress: Show a progress bar; None shows one for long batches on a terminal.

    Returns:
        The outputs, shape ``(N, *output_shape)``, float32.

    Raises:
        InputError: The model is missing, not a TFLite model, has several inputs or outputs, or
            ``x`` does not fit its input shape.
    """
    interpreter = _make_interpreter(model)
    ins, outs = interpreter.get_input_details(), interpreter.get_output_details()
    if len(ins) != 1 or len(outs) != 1:
        raise InputError(
            f"run_tflite supports single-input, single-output models; this model has "
            f"{len(ins)} inputs and {len(outs)} outputs"
        )
    try:
        data = np.asarray(x, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise InputError(f"data must be a numeric array: {e}") from e
    if data.ndim < 1 or len(data) == 0:
        raise InputError(f"data must hold at least one sample, got shape {data.shape}")
    detail = ins[0]
    signature = [int(d) for d in detail.get("shape_signature", detail["shape"])][1:]
    sample = data.shape[1:]
    fits = len(sample) == len(signature) and all(
        e < 0 or e == s for e, s in zip(signature, sample, strict=True)
    )
    if not fits:
        raise InputError(
            f"data has sample shape {_shape_text(sample)} but the model input "
            f"{detail['name']!r} expects {_shape_text(signature)}"
        )
    if list(detail["shape"]) != [1, *sample]:  # dynamic dims or a fixed batch other than 1
        try:
            interpreter.resize_tensor_input(detail["index"], [1, *sample])
            interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise InputError(
                f"model input {detail['name']!r} cannot take batch size 1 with sample shape "
                f"{_shape_text(sample)}: {e}"
            ) from e
        detail, out_detail = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    else:
        out_detail = outs[0]
    disable = (len(data) < _PROGRESS_MIN_SAMPLES or None) if progress is None else not progress
    results = []
    for sample_x in tqdm(data, desc="tflite", unit="sample", leave=False, disable=disable):
        interpreter.set_tensor(detail["index"], _quantize(sample_x[None, ...], detail))
        interpreter.invoke()
        results.append(_dequantize(interpreter.get_tensor(out_detail["index"]), out_detail))
    return np.concatenate(results, axis=0)


@dataclass(frozen=True)
class VerificationResult(JsonResult):
    """How a ``.tflite`` model does on held-out data and against its Keras reference.

    Attributes:
        samples: Number of samples compared.
        accuracy: Top-1 accuracy of the TFLite model against the labels (None without labels).
        reference_accuracy: Top-1 accuracy of the Keras reference (None without labels or
            reference).
        top1_agreement: Fraction of samples where the TFLite and Keras argmax agree (None without
            a reference, or for outputs with a single value per sample).
        max_abs_error: Largest absolute output difference from the reference.
        mean_abs_error: Mean absolute output difference from the reference.
        snr_db: ``10*log10(sum(ref^2) / sum((ref - out)^2))``; None when the outputs are identical
            (see ``identical``) or there is no reference.
        identical: The outputs equal the reference exactly.
    """

    samples: int
    accuracy: float | None = None
    reference_accuracy: float | None = None
    top1_agreement: float | None = None
    max_abs_error: float | None = None
    mean_abs_error: float | None = None
    snr_db: float | None = None
    identical: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Returns the fields as plain JSON-ready values."""
        return {
            "samples": self.samples,
            "accuracy": self.accuracy,
            "reference_accuracy": self.reference_accuracy,
            "top1_agreement": self.top1_agreement,
            "max_abs_error": self.max_abs_error,
            "mean_abs_error": self.mean_abs_error,
            "snr_db": self.snr_db,
            "identical": self.identical,
        }


def _labels(y: Any, n: int) -> np.ndarray:
    """Integer class labels from integer labels or one-hot rows; InputError when unusable."""
    labels = np.asarray(y)
    if labels.ndim == 2 and labels.shape[1] > 1:  # one-hot
        labels = labels.argmax(axis=1)
    elif labels.ndim == 2 and labels.shape[1] == 1:  # a column of ids
        labels = labels[:, 0]
    if labels.ndim != 1 or len(labels) != n:
        raise InputError(
            f"labels must be {n} integer class ids (one per sample), got shape {np.shape(y)}"
        )
    if not np.issubdtype(labels.dtype, np.integer):
        if not np.all(np.equal(np.mod(labels, 1), 0)):
            raise InputError(f"labels must be integer class ids, got dtype {labels.dtype}")
        labels = labels.astype(np.int64)
    return labels


def _top1(out: np.ndarray) -> np.ndarray | None:
    flat = out.reshape(len(out), -1)
    return flat.argmax(axis=1) if flat.shape[1] > 1 else None


def verify_tflite(
    tflite: str | os.PathLike[str] | bytes,
    x: np.ndarray,
    y: np.ndarray | None = None,
    reference: keras.Model | None = None,
) -> VerificationResult:
    """Measures a ``.tflite`` model's accuracy and its agreement with the Keras model.

    Both outputs are compared as produced (logits vs dequantized logits, or probabilities vs
    dequantized probabilities).

    Args:
        tflite: Path of the ``.tflite`` file, or its bytes (single input, single output).
        x: Float samples, shape ``(N, *input_shape)``.
        y: Integer class labels (or one-hot rows), length N; None skips accuracy.
        reference: The Keras model the ``.tflite`` came from; None skips the agreement figures.

    Returns:
        The verification figures, as plain floats.

    Raises:
        InputError: Unusable model, data or labels (see :func:`run_tflite`), or a label outside
            the model's classes.
    """
    out = run_tflite(tflite, x)
    n = len(out)
    labels = _labels(y, n) if y is not None else None
    pred = _top1(out)
    accuracy = None
    if labels is not None and pred is not None:
        # A label the model has no class for would count as a silent miss: refuse it.
        check_labels(labels, out.reshape(n, -1).shape[1], "y")
        accuracy = float(np.mean(pred == labels))
    fields: dict[str, Any] = {"samples": n, "accuracy": accuracy}
    if reference is not None:
        ref = np.asarray(reference.predict(np.asarray(x, np.float32), verbose=0), np.float32)
        if ref.shape != out.shape:
            raise InputError(
                f"the reference model's output shape {ref.shape[1:]} differs from the TFLite "
                f"model's {out.shape[1:]}; is it the model the .tflite was converted from?"
            )
        ref_pred = _top1(ref)
        err = np.abs(ref.astype(np.float64) - out.astype(np.float64))
        noise = float(np.sum(err**2))
        signal = float(np.sum(ref.astype(np.float64) ** 2))
        fields.update(
            reference_accuracy=(
                float(np.mean(ref_pred == labels))
                if labels is not None and ref_pred is not None else None
            ),
            top1_agreement=(
                float(np.mean(ref_pred == pred)) if pred is not None and ref_pred is not None
                else None
            ),
            max_abs_error=float(err.max()),
            mean_abs_error=float(err.mean()),
            identical=noise == 0.0,
            # None when identical, or for an all-zero reference (no signal to speak of).
            snr_db=10.0 * math.log10(signal / noise) if noise > 0 and signal > 0 else None,
        )
    return VerificationResult(**fields)
