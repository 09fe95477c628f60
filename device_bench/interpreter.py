"""Loads a TFLite model into whichever interpreter the device has, and moves data in and out.

The device side has only numpy and one TFLite interpreter. The loader tries, in order:
``ai_edge_litert`` (LiteRT), ``tflite_runtime`` (the older standalone wheel), and only then
``tensorflow.lite`` (TensorFlow is imported in that last branch and nowhere else).

:func:`quantize_input`, :func:`dequantize_output` and :func:`run_batch` are also what the host-side
verification uses to compare a ``.tflite`` with its Keras model, so they follow TFLite's own
arithmetic, in float32 like its reference kernels: ``q = round(x / scale) + zero_point`` (half away
from zero, like ``std::round``), clipped to the integer type, and ``x = (q - zero_point) * scale``.

Every model is checked by :func:`device_bench.tflite_check.check_tflite` before the interpreter
sees it: a malformed model is refused with one line instead of crashing this process.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from device_bench.errors import BenchInputError
from device_bench.tflite_check import check_tflite

__all__ = [
    "INTERPRETER_NAMES",
    "LoadedInterpreter",
    "dequantize_output",
    "load_interpreter",
    "quantize_input",
    "run_batch",
]

# (reported name, module to import, distribution name for the version) in order of preference.
_BACKENDS: tuple[tuple[str, str, str], ...] = (
    ("ai_edge_litert", "ai_edge_litert.interpreter", "ai-edge-litert"),
    ("tflite_runtime", "tflite_runtime.interpreter", "tflite-runtime"),
    ("tensorflow.lite", "tensorflow", "tensorflow"),
)
INTERPRETER_NAMES: tuple[str, ...] = tuple(name for name, _, _ in _BACKENDS)

_INSTALL_HINT = (
    "no TFLite interpreter found; install one with `pip install ai-edge-litert` "
    "(or tflite-runtime, or tensorflow)"
)

# Integer tensor types that carry a scale/zero-point and are converted to and from float.
_QUANTIZED_DTYPES = (np.int8, np.uint8, np.int16)


@dataclass(frozen=True)
class LoadedInterpreter:
    """A TFLite interpreter with its tensors allocated, and how it was made.

    Attributes:
        interpreter: The interpreter object (LiteRT, tflite_runtime or tf.lite API).
        name: Which package it came from: one of :data:`INTERPRETER_NAMES`.
        version: That package's version string, or None when it cannot be read.
        threads: The thread count asked for (None: the interpreter's default).
        delegate: ``"xnnpack"`` when the default delegates (XNNPACK on CPU) are enabled, else
            ``"none"``.
        init_ms: Milliseconds to construct the interpreter and allocate its tensors.
    """

    interpreter: Any
    name: str
    version: str | None
    threads: int | None
    delegate: str
    init_ms: float


def _first_line(err: BaseException) -> str:
    """First non-empty line of an exception message (the interpreter's are multi-line)."""
    for line in str(err).splitlines():
        if line.strip():
            return line.strip()
    return type(err).__name__


def _package_version(module: Any, dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        version = getattr(module, "__version__", None)
        return str(version) if version else None


def _import_backend() -> tuple[str, Any, Any, str | None]:
    """Finds the first importable interpreter.

    Returns:
        (name, Interpreter class, OpResolverType enum or None, version).

    Raises:
        BenchInputError: No interpreter package is installed.
    """
    for name, module_name, dist in _BACKENDS:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        if name == "tensorflow.lite":
            cls = module.lite.Interpreter
            resolver = getattr(module.lite.experimental, "OpResolverType", None)
            top = module
        else:
            cls = module.Interpreter
            resolver = getattr(module, "OpResolverType", None)  # absent before TFLite 2.5
            top = importlib.import_module(module_name.split(".")[0])
        return name, cls, resolver, _package_version(top, dist)
    raise BenchInputError(_INSTALL_HINT)


def load_interpreter(
    model: str | os.PathLike[str] | bytes,
    *,
    threads: int | None = None,
    xnnpack: bool = True,
) -> LoadedInterpreter:
    """Builds an interpreter for a model and allocates its tensors.

    Args:
        model: Path of a ``.tflite`` file, or the flatbuffer bytes themselves.
        threads: CPU threads for the interpreter; None keeps the interpreter's default.
        xnnpack: False builds the interpreter with the built-in kernels only
            (``BUILTIN_WITHOUT_DEFAULT_DELEGATES``), so XNNPACK is not applied.

    Returns:
        The allocated interpreter with its provenance and construction time.

    Raises:
        BenchInputError: ``threads`` is below 1, the file is missing or not a TFLite flatbuffer,
            its indices are out of range or would crash the interpreter
            (:func:`device_bench.tflite_check.check_tflite`), the model cannot be prepared (for
            example an op this interpreter lacks), or no interpreter package is installed.
    """
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)
                                or threads < 1):
        raise BenchInputError(f"threads must be None or an integer >= 1, got {threads!r}")
    if isinstance(model, (bytes, bytearray, memoryview)):
        label = "<bytes>"
        data = bytes(model)
        source: dict[str, Any] = {"model_content": data}
    else:
        path = Path(model)
        label = str(path)
        if not path.exists():
            raise BenchInputError(f"model {label!r} does not exist; expected a .tflite file")
        if not path.is_file():
            raise BenchInputError(f"model {label!r} is not a file; expected a .tflite file")
        if path.stat().st_size == 0:
            raise BenchInputError(f"model {label!r} is empty; expected a .tflite file")
        try:
            data = path.read_bytes()
        except OSError as e:
            raise BenchInputError(f"model {label!r} cannot be read: {e.strerror or e}") from e
        source = {"model_path": str(path)}
    # The interpreter verifies the flatbuffer's structure but not its indices: a malformed model
    # can end this process (SIGSEGV, abort). Refuse it first (device_bench.tflite_check).
    check_tflite(data, label)

    name, cls, resolver, version = _import_backend()
    kwargs: dict[str, Any] = dict(source)
    if threads is not None:
        kwargs["num_threads"] = threads
    if not xnnpack:
        if resolver is None:
            raise BenchInputError(
                f"{name} {version or ''} cannot run without XNNPACK (no OpResolverType); "
                "upgrade it (`pip install -U ai-edge-litert`) or drop --no-xnnpack"
            )
        kwargs["experimental_op_resolver_type"] = resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES

    start = time.perf_counter_ns()
    try:
        with warnings.catch_warnings():
            # tf.lite.Interpreter warns that it is deprecated: we only reach it as a last resort.
            warnings.filterwarnings("ignore", message=r"\s*Warning: tf\.lite\.Interpreter")
            interpreter = cls(**kwargs)
    except (ValueError, RuntimeError) as e:
        raise BenchInputError(
            f"model {label!r} is not a valid TFLite flatbuffer: {_first_line(e)}"
        ) from e
    try:
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as e:
        raise BenchInputError(
            f"model {label!r} cannot be prepared by {name}: {_first_line(e)}"
        ) from e
    init_ms = (time.perf_counter_ns() - start) / 1e6
    return LoadedInterpreter(
        interpreter=interpreter,
        name=name,
        version=version,
        threads=threads,
        delegate="xnnpack" if xnnpack else "none",
        init_ms=init_ms,
    )


def _quant_params(detail: dict[str, Any], ndim: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Scale and zero point of a tensor, shaped to broadcast over an array of ``ndim`` dims.

    Returns None when the tensor carries no quantization (scale 0 or absent).
    """
    params = detail.get("quantization_parameters") or {}
    scales = np.asarray(params.get("scales", []), dtype=np.float32).reshape(-1)
    zeros = np.asarray(params.get("zero_points", []), dtype=np.float32).reshape(-1)
    if scales.size == 0:
        scale, zero = detail.get("quantization", (0.0, 0))
        scales = np.asarray([scale], dtype=np.float32)
        zeros = np.asarray([zero], dtype=np.float32)
    if zeros.size == 0:
        zeros = np.zeros_like(scales)
    if scales.size == 1:
        if scales[0] == 0.0:
            return None
        return scales.reshape(()), zeros.reshape(())
    # Per-axis quantization: broadcast along the quantized dimension.
    axis = int(params.get("quantized_dimension", 0))
    if axis >= ndim:
        raise BenchInputError(
            f"tensor {detail.get('name')!r} is quantized per axis {axis}, "
            f"but the array has only {ndim} dimensions"
        )
    shape = [1] * ndim
    shape[axis] = scales.size
    zeros = np.broadcast_to(zeros, scales.shape)
    return scales.reshape(shape), zeros.reshape(shape)


def _round_half_away(v: np.ndarray) -> np.ndarray:
    """Rounds like C's ``std::round`` (what TFLite's quantize kernels use)."""
    return np.sign(v) * np.floor(np.abs(v) + 0.5)


def quantize_input(x: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    """Converts float data to an input tensor's dtype with its scale and zero point.

    Args:
        x: The data, float (or already integer) of any shape that broadcasts with the tensor's
            quantization.
        detail: The tensor's entry from ``interpreter.get_input_details()``.

    Returns:
        For int8/uint8/int16 tensors with a scale: ``clip(round(x / scale) + zero_point)`` in the
        tensor's dtype. For float tensors, ``x`` cast to the tensor's float dtype. For other
        tensors (no scale, int32, bool ...), ``x`` cast to the tensor's dtype.

    Raises:
        BenchInputError: ``x`` holds NaN or infinity for a quantized tensor, or per-axis
            quantization does not fit ``x``'s dimensions.
    """
    dtype = np.dtype(detail["dtype"])
    arr = np.asarray(x)
    if dtype.kind == "f" or dtype.type not in _QUANTIZED_DTYPES:
        return arr.astype(dtype, copy=False)
    params = _quant_params(detail, arr.ndim)
    if params is None:
        return arr.astype(dtype, copy=False)
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise BenchInputError(
            f"input for tensor {detail.get('name')!r} holds NaN or infinity; cannot quantize"
        )
    scale, zero = params
    info = np.iinfo(dtype)
    q = _round_half_away(arr.astype(np.float32) / scale) + zero
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize_output(y: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    """Converts an output tensor's values back to float with its scale and zero point.

    Args:
        y: Values read from the tensor.
        detail: The tensor's entry from ``interpreter.get_output_details()``.

    Returns:
        For int8/uint8/int16 tensors with a scale: ``(y - zero_point) * scale`` as float32.
        Float tensors come back as float32; other tensors (no scale, int32, bool ...) unchanged.
    """
    arr = np.asarray(y)
    dtype = np.dtype(detail["dtype"])
    if dtype.kind == "f":
        return arr.astype(np.float32, copy=False)
    if dtype.type not in _QUANTIZED_DTYPES:
        return arr
    params = _quant_params(detail, arr.ndim)
    if params is None:
        return arr
    scale, zero = params
    return ((arr.astype(np.float32) - zero) * scale).astype(np.float32)


def run_batch(loaded: LoadedInterpreter, x: np.ndarray) -> np.ndarray:
    """Runs a float batch through a single-input, single-output model, one sample at a time.

    Args:
        loaded: From :func:`load_interpreter`; the model's input has batch dimension 1.
        x: Float batch of shape ``(N, *input_shape[1:])``.

    Returns:
        float32 outputs of shape ``(N, *output_shape[1:])``, dequantized (an output whose
        first dimension is not 1 keeps its whole shape: ``(N, *output_shape)``).

    Raises:
        BenchInputError: The model does not have exactly one input and one output, its batch
            dimension is not 1, or ``x``'s sample shape differs from the model's input.
    """
    interp = loaded.interpreter
    inputs = interp.get_input_details()
    outputs = interp.get_output_details()
    if len(inputs) != 1 or len(outputs) != 1:
        raise BenchInputError(
            "run_batch needs a model with exactly 1 input and 1 output, "
            f"got {len(inputs)} inputs and {len(outputs)} outputs"
        )
    in_detail, out_detail = inputs[0], outputs[0]
    in_shape = tuple(int(d) for d in in_detail["shape"])
    if not in_shape or in_shape[0] != 1:
        raise BenchInputError(
            f"run_batch needs a model with batch dimension 1, got input shape {list(in_shape)}"
        )
    arr = np.asarray(x)
    if arr.ndim != len(in_shape) or tuple(arr.shape[1:]) != in_shape[1:]:
        raise BenchInputError(
            f"input batch of shape {list(arr.shape)} does not match the model input "
            f"{list(in_shape)}; expected (N, {', '.join(str(d) for d in in_shape[1:])})"
        )
    out_shape = tuple(int(d) for d in out_detail["shape"])
    # An output with a leading batch dimension of 1 loses it; any other output is kept whole.
    batched = bool(out_shape) and out_shape[0] == 1
    sample_shape = out_shape[1:] if batched else out_shape
    result = np.empty((arr.shape[0], *sample_shape), dtype=np.float32)
    q = quantize_input(arr, in_detail)
    for i in range(arr.shape[0]):
        interp.set_tensor(in_detail["index"], q[i : i + 1])
        interp.invoke()
        y = dequantize_output(interp.get_tensor(out_detail["index"]), out_detail)
        result[i] = y[0] if batched else y
    return result
