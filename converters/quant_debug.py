"""Per-layer quantization error of an int8 model, ranked worst first.

This is the mechanism behind ``tf.lite.experimental.QuantizationDebugger``, run with our own
statistics: the model is calibrated once (``converter._experimental_calibrate_only``), then
quantized by TensorFlow's MLIR quantizer with ``enable_numeric_verify``. That debug model computes
every op twice from the same (quantized) input, once in int8 and once in float, and a
``NumericVerify`` op after each quantized op outputs ``dequantized(int8) - float``. Running it
on calibration samples gives, per op output tensor:

* ``snr_db``: ``10*log10(sum(float^2) / sum(diff^2))`` over the whole tensor;
* ``channel_snr_db``: the median over output channels (last axis) of the same ratio per channel.
  A single per-tensor activation scale stretched by one huge channel wipes out the others; the
  whole-tensor SNR hides that (the huge channel dominates both sums), the channel median shows it;
* ``rmse_over_scale``: RMS error in units of the tensor's quantization step (about 0.29 is pure
  rounding noise; the TF debugger tutorial ranks by it);
* the float range, the scale and zero point, and the largest error.

Those local figures say how badly an op's output is represented, not whose fault it is: an op
downstream of a broken one sees a collapsed input and shows a low SNR too, or saturates its
calibrated output range and shows a large error in steps. The ranking therefore uses a second,
isolated measurement per op: the calibrated model is quantized with **only that op** in int8
(every other op denylisted, i.e. float) and run on the same samples; ``alone_snr_db`` is the SNR
of its outputs against the all-float version (same I/O quantization). Ops are ranked by
``alone_snr_db``, lowest first, ties broken by ``min(snr_db, channel_snr_db)``. A weight outlier
shows up as the op itself; an activation range stretched by one channel shows up on the op that
writes the tensor and on the ops that read it (all of them must stay float to repair it, which
the selective search finds by taking the next-ranked ones).

The same calibrated model quantized with ``denylisted_nodes`` keeps chosen ops in float
(:func:`quantize_calibrated`): see :mod:`edgekit.converters.selective`.

The MLIR quantizer entry point (``tensorflow.lite.python.convert.mlir_quantize``) is TensorFlow
internal API, the one QuantizationDebugger itself calls; it is imported in one place,
:func:`_mlir_quantize`, which says so when a TensorFlow version lacks it.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from edgekit.core._keras import tf
from edgekit.core._native import quiet_native_stderr
from edgekit.core.errors import InputError

from .calibration_sources import model_input_specs
from .flatbuffer import _load, _op_name, _quant, _text
from .modes import (
    ConversionConfig,
    IOType,
    _representative_arrays,
    build_converter,
    is_qat_model,
    require_int8,
    run_converter,
)
from .result import JsonResult
from .verify import _dequantize, _quantize

__all__ = [
    "QUANT_DEBUG_SCHEMA",
    "QuantDebugResult",
    "calibrate",
    "debug_layers",
    "format_quant_debug",
    "quantize_calibrated",
]

QUANT_DEBUG_SCHEMA = "edgekit.quant_debug/1"
_NUMERIC_VERIFY = "CUSTOM:NumericVerify"
_DEFAULT_MAX_SAMPLES = 100


def _check_debuggable(model: Any, config: ConversionConfig) -> None:
    if not isinstance(config, ConversionConfig):
        raise InputError(f"config must be a ConversionConfig, got {type(config).__name__}")
    require_int8(config.mode)
    if is_qat_model(model):
        raise InputError(
            "per-layer quantization debugging and selective quantization need a float model: a "
            "QAT model converts with its learned ranges and is never calibrated (debug the model "
            "from before the QAT stage)"
        )


def _mlir_quantize() -> Any:
    """TensorFlow's MLIR quantizer (what the converter and QuantizationDebugger call)."""
    try:
        module = importlib.import_module("tensorflow.lite.python.convert")
        return module.mlir_quantize
    except (ImportError, AttributeError) as e:  # pragma: no cover - depends on the TF build
        raise InputError(
            "per-layer debugging needs tensorflow.lite.python.convert.mlir_quantize, which this "
            "TensorFlow does not have (tested with TensorFlow 2.21)"
        ) from e


def calibrate(model: Any, config: ConversionConfig, representative: Any, *,
              verbose: bool = False) -> bytes:
    """Converts ``model`` to a float TFLite model that carries calibrated activation ranges.

    Args:
        model: A float tf_keras model (not QAT).
        config: An ``int8`` config (its I/O type and per-channel choice apply later).
        representative: Calibration samples, as :func:`~edgekit.converters.convert_keras` takes.
        verbose: Keep the converter's native logging.

    Returns:
        The calibrated (not yet quantized) flatbuffer.

    Raises:
        InputError: Not int8, a QAT model, calibration data that does not fit, or a converter
            failure.
    """
    _check_debuggable(model, config)
    if representative is None:
        raise InputError("per-layer debugging needs calibration data (representative samples)")
    converter = build_converter(model, config, representative)
    converter._experimental_calibrate_only = True
    return run_converter(converter, config, verbose=verbose)


def quantize_calibrated(calibrated: bytes, config: ConversionConfig,
                        denylisted_nodes: Sequence[str] = (), *, numeric_verify: bool = False,
                        verbose: bool = False) -> bytes:
    """Quantizes a :func:`calibrate` output; ``denylisted_nodes`` stay in float.

    With no denylist this is the model :func:`~edgekit.converters.convert_keras` makes (same
    quantizer, same I/O type and per-channel choice).

    Args:
        calibrated: From :func:`calibrate`.
        config: The int8 config (I/O type, per-channel).
        denylisted_nodes: Output tensor names (in the calibrated model) of ops to keep in float;
            a QUANTIZE/DEQUANTIZE pair is put around each.
        numeric_verify: Build the debug model (float shadow ops + ``NumericVerify``).
        verbose: Keep the quantizer's native logging.

    Returns:
        The quantized flatbuffer.

    Raises:
        InputError: The quantizer failed (its first message line is included).
    """
    io = {IOType.INT8: tf.int8, IOType.UINT8: tf.uint8, IOType.FLOAT32: tf.float32}.get(
        config.io)  # type: ignore[arg-type]
    if io is None:
        raise InputError(f"int8 quantization takes io int8, uint8 or float32, got {config.io}")
    quantize = _mlir_quantize()
    try:
        with quiet_native_stderr(not verbose):
            out = quantize(
                calibrated,
                disable_per_channel=not config.per_channel,
                fully_quantize=False,
                input_data_type=io,
                output_data_type=io,
                enable_numeric_verify=numeric_verify,
                denylisted_nodes=list(denylisted_nodes) or None,
            )
    except Exception as e:  # the quantizer raises ConverterError/RuntimeError with long text
        first = next((ln.strip() for ln in str(e).splitlines() if ln.strip()), type(e).__name__)
        raise InputError(f"the calibrated model could not be quantized: {first[:300]}") from e
    return bytes(out)


def _tensor_names(blob: bytes) -> list[str]:
    """Names of the main subgraph's tensors, by index."""
    sub = _load(blob).model.subgraphs[0]
    return [_text(t.name) for t in sub.tensors or []]


def _producers(blob: bytes) -> dict[str, dict[str, Any]]:
    """Output tensor name -> {"op", "inputs": [input tensor names]} for the main subgraph."""
    parsed = _load(blob)
    sub = parsed.model.subgraphs[0]
    tensors = sub.tensors or []
    found: dict[str, dict[str, Any]] = {}
    for op in sub.operators or []:
        name = _op_name(parsed.model, op.opcodeIndex)
        ins = [_text(tensors[i].name) for i in (op.inputs if op.inputs is not None else [])
               if i >= 0]
        for o in op.outputs if op.outputs is not None else []:
            found[_text(tensors[o].name)] = {"op": name, "inputs": ins}
    return found


@dataclass(frozen=True)
class _Verify:
    """One NumericVerify op of the debug model."""

    quant: int  # index of the quantized tensor
    ref: int  # index of the float reference tensor
    diff: int  # index of the NumericVerify output (dequantized - float)
    name: str  # the op output's name in the calibrated model
    scale: float | None
    zero_point: int | None


def _verify_ops(debug: bytes, calibrated_names: set[str]) -> list[_Verify]:
    parsed = _load(debug)
    sub = parsed.model.subgraphs[0]
    tensors = sub.tensors or []
    found = []
    for op in sub.operators or []:
        if _op_name(parsed.model, op.opcodeIndex) != _NUMERIC_VERIFY:
            continue
        q, f = int(op.inputs[0]), int(op.inputs[1])
        q_name, f_name = _text(tensors[q].name), _text(tensors[f].name)
        # The quantizer renames one of the pair (a "1" suffix on either side); the original name
        # is the one the calibrated model has.
        name = q_name if q_name in calibrated_names else f_name
        scale, zero_point = _quant(tensors[q])
        if isinstance(scale, list):
            scale, zero_point = scale[0], zero_point[0]
        found.append(_Verify(q, f, int(op.outputs[0]), name, scale, zero_point))
    if not found:
        raise InputError("the debug model has no NumericVerify ops: nothing in it was quantized")
    return found


def _layer_of(name: str, producer: dict[str, Any] | None, layer_names: set[str]) -> str | None:
    """The Keras layer an op output belongs to, from the scoped tensor names."""
    candidates = [name, *(producer["inputs"][1:] if producer else [])]
    for text in candidates:
        for part in text.split(";"):
            for component in reversed(part.split("/")[:-1] or part.split("/")):
                if component in layer_names:
                    return component
    return None


def _feed(interpreter: Any, arrays: Sequence[np.ndarray], names: Sequence[str], i: int) -> None:
    """Sets sample ``i`` of every input (quantized to the input dtype)."""
    details = interpreter.get_input_details()
    for k, detail in enumerate(details):
        match = [j for j, n in enumerate(names)
                 if f"_{n}:" in detail["name"] or detail["name"] == n]
        j = match[0] if len(match) == 1 else k
        interpreter.set_tensor(detail["index"], _quantize(arrays[j][i : i + 1], detail))


def _snr(signal: float, noise: float) -> float:
    if noise <= 0.0:
        return math.inf
    if signal <= 0.0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


def _outputs(blob: bytes, arrays: Sequence[np.ndarray], names: Sequence[str], count: int,
             verbose: bool) -> np.ndarray:
    """All outputs of ``blob`` (dequantized, flattened, concatenated) for the first ``count``
    samples: shape ``(count, total output size)``."""
    with quiet_native_stderr(not verbose):
        interpreter = Interpreter(model_content=blob)
        interpreter.allocate_tensors()
    rows = []
    for i in range(count):
        _feed(interpreter, arrays, names, i)
        interpreter.invoke()
        rows.append(np.concatenate([
            _dequantize(interpreter.get_tensor(d["index"]), d).reshape(-1)
            for d in interpreter.get_output_details()]))
    return np.stack(rows).astype(np.float64)


def _isolated_snr(calibrated: bytes, config: ConversionConfig, ops: Sequence[str],
                  arrays: Sequence[np.ndarray], names: Sequence[str], count: int,
                  verbose: bool) -> list[float]:
    """Per op: output SNR of the model with only that op in int8, against all ops in float."""
    reference = _outputs(quantize_calibrated(calibrated, config, ops, verbose=verbose), arrays,
                         names, count, verbose)
    signal = float(np.sum(reference**2))
    found = []
    for op in ops:
        others = [o for o in ops if o != op]
        out = _outputs(quantize_calibrated(calibrated, config, others, verbose=verbose), arrays,
                       names, count, verbose)
        found.append(_snr(signal, float(np.sum((out - reference) ** 2))))
    return found


def _json_db(v: float) -> float | None:
    """A dB figure for JSON: rounded; +inf (no error at all) becomes None."""
    if math.isinf(v) and v > 0:
        return None
    return round(max(v, -999.0), 3)


@dataclass(frozen=True)
class QuantDebugResult(JsonResult):
    """Per-layer quantization error, ranked worst first (see the module docs for the metrics
    and the ranking).

    Attributes:
        samples: Samples the debug model ran on.
        layers: One row per quantized op output: ``{"rank", "tensor", "op", "layer", "shape",
            "scale", "zero_point", "alone_snr_db", "snr_db", "channel_snr_db", "rmse",
            "rmse_over_scale", "max_abs_error", "float_min", "float_max"}``; a None SNR means no
            error at all.
    """

    samples: int
    layers: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """``{"schema", "samples", "ranking", "layers"}`` as plain JSON data."""
        return {
            "schema": QUANT_DEBUG_SCHEMA,
            "samples": self.samples,
            "ranking": "alone_snr_db lowest first, then min(snr_db, channel_snr_db)",
            "layers": [dict(r) for r in self.layers],
        }

    def worst(self, k: int) -> list[str]:
        """Output tensor names of the ``k`` worst-ranked ops (a denylist for selective quant)."""
        return [r["tensor"] for r in self.layers[:k]]


def debug_layers(model: Any, config: ConversionConfig, representative: Any, *,
                 calibrated: bytes | None = None, max_samples: int = _DEFAULT_MAX_SAMPLES,
                 verbose: bool = False) -> QuantDebugResult:
    """Measures every quantized op's error on calibration samples and ranks the ops.

    Costs one debug-model run plus, for the ranking, one quantization and run per op (the
    calibrated model is reused: nothing is calibrated twice).

    Args:
        model: The float tf_keras model (single or multi-input).
        config: The int8 config.
        representative: Calibration samples (the first ``max_samples`` are run).
        calibrated: A :func:`calibrate` output of the same model and samples, to reuse.
        max_samples: At most this many samples are run through each model.
        verbose: Keep native logging.

    Returns:
        The ranked per-layer errors.

    Raises:
        InputError: Not int8, a QAT model, data that does not fit, or a quantizer failure.
    """
    _check_debuggable(model, config)
    arrays = _representative_arrays(model, representative)
    names = [s.name for s in model_input_specs(model)]
    count = min(len(arrays[0]), max(1, int(max_samples)))
    if calibrated is None:
        calibrated = calibrate(model, config, arrays if len(arrays) > 1 else arrays[0],
                               verbose=verbose)
    debug = quantize_calibrated(calibrated, config, numeric_verify=True, verbose=verbose)
    verify = _verify_ops(debug, set(_tensor_names(calibrated)))
    producers = _producers(calibrated)
    layer_names = {layer.name for layer in getattr(model, "layers", [])}
    # Every tensor read below is an input or the output of a NumericVerify op, which no delegate
    # takes, so the interpreter materialises them without experimental_preserve_all_tensors.
    with quiet_native_stderr(not verbose):
        interpreter = Interpreter(model_content=debug)
        interpreter.allocate_tensors()
    stats: list[dict[str, Any]] = [
        {"sig": 0.0, "noise": 0.0, "count": 0, "max": 0.0, "lo": math.inf, "hi": -math.inf,
         "sig_c": None, "noise_c": None, "shape": None} for _ in verify
    ]
    for i in range(count):
        _feed(interpreter, arrays, names, i)
        interpreter.invoke()
        for v, s in zip(verify, stats, strict=True):
            ref = interpreter.get_tensor(v.ref).astype(np.float64)
            diff = interpreter.get_tensor(v.diff).astype(np.float64)
            axes = tuple(range(ref.ndim - 1))
            sig_c, noise_c = np.sum(ref**2, axis=axes), np.sum(diff**2, axis=axes)
            s["sig_c"] = sig_c if s["sig_c"] is None else s["sig_c"] + sig_c
            s["noise_c"] = noise_c if s["noise_c"] is None else s["noise_c"] + noise_c
            s["sig"] += float(sig_c.sum())
            s["noise"] += float(noise_c.sum())
            s["count"] += diff.size
            s["max"] = max(s["max"], float(np.abs(diff).max(initial=0.0)))
            s["lo"] = min(s["lo"], float(ref.min(initial=math.inf)))
            s["hi"] = max(s["hi"], float(ref.max(initial=-math.inf)))
            s["shape"] = [int(d) for d in ref.shape]
    alone = _isolated_snr(calibrated, config, [v.name for v in verify], arrays, names, count,
                          verbose)
    rows = []
    for v, s, alone_snr in zip(verify, stats, alone, strict=True):
        snr = _snr(s["sig"], s["noise"])
        per_channel = [_snr(a, b) for a, b in zip(np.atleast_1d(s["sig_c"]),
                                                  np.atleast_1d(s["noise_c"]), strict=True)
                       if a > 0 or b > 0]
        channel = float(np.median(per_channel)) if per_channel else math.inf
        rmse = math.sqrt(s["noise"] / s["count"]) if s["count"] else 0.0
        producer = producers.get(v.name)
        rows.append({
            "tensor": v.name,
            "op": producer["op"] if producer else None,
            "layer": _layer_of(v.name, producer, layer_names),
            "shape": s["shape"],
            "scale": v.scale,
            "zero_point": v.zero_point,
            "_key": (alone_snr, min(snr, channel)),
            "alone_snr_db": _json_db(alone_snr),
            "snr_db": _json_db(snr),
            "channel_snr_db": _json_db(channel),
            "rmse": rmse,
            "rmse_over_scale": rmse / v.scale if v.scale else None,
            "max_abs_error": s["max"],
            "float_min": s["lo"],
            "float_max": s["hi"],
        })
    rows.sort(key=lambda r: r["_key"])
    for rank, row in enumerate(rows, start=1):
        row.pop("_key")
        row["rank"] = rank
    ordered = [{"rank": r.pop("rank"), **r} for r in rows]
    return QuantDebugResult(samples=count, layers=ordered)


def _fmt_db(v: float | None) -> str:
    return "  inf" if v is None else f"{v:6.1f}"


def format_quant_debug(result: QuantDebugResult | dict[str, Any], top: int = 10) -> str:
    """The ranked table as text (worst ``top`` rows).

    Args:
        result: From :func:`debug_layers`, or its ``to_dict()``.
        top: Rows to show.

    Returns:
        Multi-line text (no trailing newline).
    """
    if not isinstance(result, QuantDebugResult):
        result = QuantDebugResult(samples=int(result["samples"]), layers=list(result["layers"]))
    lines = [f"per-layer quantization error ({result.samples} samples, worst first; alone: "
             "model output with only this op in int8)",
             f"  {'#':>3} {'alone dB':>8} {'SNR dB':>7} {'chan dB':>7} {'rmse/scale':>10}  "
             f"{'op':<18} layer / tensor"]
    for r in result.layers[:top]:
        ratio = "-" if r["rmse_over_scale"] is None else f"{r['rmse_over_scale']:.3f}"
        where = r["layer"] or r["tensor"]
        lines.append(f"  {r['rank']:>3} {_fmt_db(r['alone_snr_db']):>8} "
                     f"{_fmt_db(r['snr_db']):>7} {_fmt_db(r['channel_snr_db']):>7} {ratio:>10}  "
                     f"{r['op']!s:<18} {where}")
    if len(result.layers) > top:
        lines.append(f"  ... {len(result.layers) - top} more in the JSON")
    return "\n".join(lines)

