"""Keras -> TFLite conversion modes.

One function, :func:`convert_keras`, turns a tf_keras model into TFLite flatbuffer bytes in one of
five modes (:class:`Mode`). ``int8`` is the mode edgekit is built around: full-integer weights and
activations, calibrated on a representative dataset, with int8 (or uint8) inputs and outputs, so the
model runs on integer-only hardware.

TensorFlow is imported inside :func:`convert_keras` only (through :mod:`edgekit.core._keras`), so
the mode/config types can be used without loading it.
"""

from __future__ import annotations

import enum
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgekit.core._keras import keras, tf
from edgekit.core._native import quiet_native_stderr
from edgekit.core.checks import check_keys
from edgekit.core.errors import InputError
from edgekit.core.tfmot_wrappers import is_qat_model

from .calibration_sources import CalibrationSamples, fit_to_inputs, model_input_specs

__all__ = [
    "INT8_ONLY", "ConversionConfig", "IOType", "Mode", "build_converter", "convert_keras",
    "is_qat_model", "require_int8", "run_converter",
]

def _parse_enum(cls: type[enum.Enum], value: Any, what: str) -> Any:
    """Returns the member of ``cls`` named by ``value`` (a member or its string value)."""
    if isinstance(value, cls):
        return value
    text = value.strip().lower() if isinstance(value, str) else value
    for member in cls:
        if member.value == text:
            return member
    allowed = ", ".join(m.value for m in cls)
    raise InputError(f"{what} must be one of {allowed}; got {value!r}")


class Mode(str, enum.Enum):
    """How weights and activations are stored in the converted model."""

    FLOAT32 = "float32"
    FLOAT16 = "float16"
    DYNAMIC = "dynamic"
    INT8 = "int8"
    INT16X8 = "int16x8"

    @classmethod
    def parse(cls, value: str | Mode) -> Mode:
        """Parses a mode name (case-insensitive).

        Args:
            value: ``"float32"``, ``"float16"``, ``"dynamic"``, ``"int8"``, ``"int16x8"`` or a Mode.

        Returns:
            The Mode.

        Raises:
            InputError: Unknown name; the message lists the allowed ones.
        """
        return _parse_enum(cls, value, "mode")

    @property
    def needs_calibration(self) -> bool:
        """Whether the mode quantizes activations (needs a representative dataset)."""
        return self in (Mode.INT8, Mode.INT16X8)


class IOType(str, enum.Enum):
    """The dtype of the converted model's input and output tensors."""

    INT8 = "int8"
    UINT8 = "uint8"
    FLOAT32 = "float32"
    INT16 = "int16"

    @classmethod
    def parse(cls, value: str | IOType) -> IOType:
        """Parses an I/O type name (case-insensitive).

        Args:
            value: ``"int8"``, ``"uint8"``, ``"float32"``, ``"int16"`` or an IOType.

        Returns:
            The IOType.

        Raises:
            InputError: Unknown name; the message lists the allowed ones.
        """
        return _parse_enum(cls, value, "io")


# The I/O types each mode accepts; the first one is the default.
_IO_FOR_MODE: dict[Mode, tuple[IOType, ...]] = {
    Mode.FLOAT32: (IOType.FLOAT32,),
    Mode.FLOAT16: (IOType.FLOAT32,),
    Mode.DYNAMIC: (IOType.FLOAT32,),
    Mode.INT8: (IOType.INT8, IOType.UINT8, IOType.FLOAT32),
    Mode.INT16X8: (IOType.FLOAT32, IOType.INT16),
}


@dataclass(frozen=True)
class ConversionConfig:
    """What :func:`convert_keras` produces.

    Attributes:
        mode: The conversion mode.
        io: Input/output dtype. ``None`` picks the mode's default: int8 for ``int8``, float32
            otherwise. int8/uint8 I/O need ``int8`` mode; int16 I/O needs ``int16x8`` mode.
        per_channel: Per-channel weight scales (recommended); ``False`` uses one scale per tensor.
    """

    mode: Mode = Mode.INT8
    io: IOType | None = None
    per_channel: bool = True

    def __post_init__(self) -> None:
        mode = Mode.parse(self.mode)
        io = _IO_FOR_MODE[mode][0] if self.io is None else IOType.parse(self.io)
        if io not in _IO_FOR_MODE[mode]:
            allowed = ", ".join(t.value for t in _IO_FOR_MODE[mode])
            hint = {
                IOType.INT8: "int8/uint8 I/O needs mode int8",
                IOType.UINT8: "int8/uint8 I/O needs mode int8",
                IOType.INT16: "int16 I/O needs mode int16x8",
            }.get(io, "")
            raise InputError(
                f"io {io.value!r} is not valid with mode {mode.value!r} ({hint}); "
                f"mode {mode.value} allows io {allowed}"
            )
        if not isinstance(self.per_channel, bool):
            raise InputError(f"per_channel must be true or false, got {self.per_channel!r}")
        object.__setattr__(self, "mode", mode)
        object.__setattr__(self, "io", io)

    def to_dict(self) -> dict[str, Any]:
        """Returns ``{"mode", "io", "per_channel"}`` with plain string values."""
        io = self.io.value if self.io is not None else None
        return {"mode": self.mode.value, "io": io, "per_channel": self.per_channel}

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> ConversionConfig:
        """Builds a config from :meth:`to_dict`'s output (or a recipe's ``convert:`` section).

        Args:
            config: Mapping with any of ``mode``, ``io``, ``per_channel``.

        Returns:
            The validated config.

        Raises:
            InputError: Unknown keys (the message lists the known ones) or invalid values.
        """
        config = check_keys(config, ("mode", "io", "per_channel"), "conversion config")
        return cls(
            mode=config.get("mode", Mode.INT8),
            io=config.get("io"),
            per_channel=config.get("per_channel", True),
        )


# What needs mode int8: both work on the calibrated int8 model (per-layer error, float fallback).
INT8_ONLY = "per-layer quantization debugging and selective quantization"


def require_int8(mode: Mode, what: str = INT8_ONLY) -> None:
    """The int8-only rule, in one place: debugging and selective quantization need mode int8.

    Args:
        mode: The conversion mode asked for.
        what: The options that need int8, as the caller's user named them (CLI flags, recipe
            keys).

    Raises:
        InputError: ``mode`` is not int8 (the message names ``what`` and the mode).
    """
    if Mode.parse(mode) is not Mode.INT8:
        raise InputError(f"{what} need mode int8, got mode {Mode.parse(mode).value}")


def _representative_arrays(model: Any, representative: Any) -> list[np.ndarray]:
    """Calibration samples as one checked array per model input (model-input order).

    ``representative`` is an array (single-input model), a mapping by input name (``x`` names
    the only input), a list/tuple with one array per input (multi-input models), or the
    :class:`~edgekit.converters.calibration_sources.CalibrationSamples` a source gave.
    """
    specs = model_input_specs(model)
    if isinstance(representative, CalibrationSamples):
        arrays = list(representative.arrays)
    elif isinstance(representative, Mapping):
        arrays = []
        for spec in specs:
            key = spec.name if spec.name in representative else "x"
            if key not in representative or (key == "x" and len(specs) != 1):
                raise InputError(
                    f"calibration data has no array for model input {spec.name!r}; found "
                    f"{sorted(representative)}"
                )
            arrays.append(representative[key])
    elif len(specs) > 1:
        if not isinstance(representative, (list, tuple)) or len(representative) != len(specs):
            raise InputError(
                f"the model has {len(specs)} inputs ({', '.join(s.name for s in specs)}); give "
                "calibration data as a list with one array per input or a mapping by input name"
            )
        arrays = list(representative)
    else:
        try:
            arrays = [np.asarray(representative, dtype=np.float32)
                      if not isinstance(representative, np.ndarray) else representative]
        except (TypeError, ValueError) as e:
            raise InputError(f"calibration data must be a numeric array: {e}") from e
    return fit_to_inputs(specs, arrays, "calibration data")


def _first_line(e: BaseException) -> str:
    """The most telling line of a converter error (its first 'error:' line, else the first)."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    for ln in lines:
        if "error:" in ln:
            return ln.split("error:", 1)[1].strip()[:300]
    return lines[0][:300] if lines else type(e).__name__


def build_converter(model: keras.Model, config: ConversionConfig,
                    representative: Any = None) -> Any:
    """The ``tf.lite.TFLiteConverter`` :func:`convert_keras` runs, set up but not run.

    Args:
        model: A tf_keras model.
        config: Mode, I/O type and per-channel choice.
        representative: Calibration samples (see :func:`convert_keras`).

    Returns:
        The configured converter.

    Raises:
        InputError: Calibration data missing, not fitting the model inputs, or non-finite.
    """
    if not isinstance(config, ConversionConfig):
        raise InputError(f"config must be a ConversionConfig, got {type(config).__name__}")
    mode, qat = config.mode, is_qat_model(model)
    arrays: list[np.ndarray] | None = None
    if mode.needs_calibration:
        if representative is None and not (mode is Mode.INT8 and qat):
            raise InputError(
                f"mode {mode.value} needs calibration data (a representative dataset of model "
                "inputs); pass representative samples, e.g. from select_calibration()"
            )
        if representative is not None:
            arrays = _representative_arrays(model, representative)

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    io_dtype = {IOType.INT8: tf.int8, IOType.UINT8: tf.uint8, IOType.FLOAT32: tf.float32,
                IOType.INT16: tf.int16}[config.io]  # type: ignore[index]
    if mode is not Mode.FLOAT32:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode is Mode.FLOAT16:
        converter.target_spec.supported_types = [tf.float16]
    if mode.needs_calibration:
        if arrays is not None:
            samples = arrays

            def gen() -> Iterator[list[np.ndarray]]:
                # One sample per step (batch size 1), every input in model-input order.
                for i in range(len(samples[0])):
                    yield [a[i : i + 1] for a in samples]

            converter.representative_dataset = gen
        ops = (
            tf.lite.OpsSet.TFLITE_BUILTINS_INT8
            if mode is Mode.INT8
            else tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
        )
        # A QAT model without calibration data must not name TFLITE_BUILTINS_INT8: the converter's
        # up-front check then demands a representative dataset although the fake-quant ranges make
        # it unnecessary (tensorflow/tensorflow#38285). The result is full-integer all the same.
        if arrays is not None or mode is not Mode.INT8:
            converter.target_spec.supported_ops = [ops]
        converter.inference_input_type = io_dtype
        converter.inference_output_type = io_dtype
    if not config.per_channel:
        converter._experimental_disable_per_channel = True
    return converter


def run_converter(converter: Any, config: ConversionConfig, *, verbose: bool = False) -> bytes:
    """Runs a converter from :func:`build_converter`, turning its failures into InputError.

    Args:
        converter: The configured converter.
        config: Its config (for the message).
        verbose: Keep the converter's native logging on stderr.

    Returns:
        What ``converter.convert()`` returned, as bytes.

    Raises:
        InputError: The converter rejected the model (its first error line is in the message).
    """
    try:
        with warnings.catch_warnings(), quiet_native_stderr(not verbose):
            warnings.filterwarnings("ignore", message="Statistics for quantized inputs")
            warnings.filterwarnings("ignore", category=UserWarning, module="tensorflow")
            result = converter.convert()
    except Exception as e:  # ConverterError, ValueError, RuntimeError from the MLIR converter
        raise InputError(
            f"the model could not be converted in mode {config.mode.value} "
            f"(io {config.io.value}): {_first_line(e)}"  # type: ignore[union-attr]
        ) from e
    return bytes(result)


def convert_keras(
    model: keras.Model,
    config: ConversionConfig,
    representative: Any = None,
    *,
    verbose: bool = False,
) -> bytes:
    """Converts a tf_keras model to a TFLite flatbuffer.

    ``int8`` mode is full-integer quantization: ``Optimize.DEFAULT``, activation ranges calibrated
    on ``representative`` (each sample fed with batch size 1, as float32), ops restricted to
    ``TFLITE_BUILTINS_INT8`` and I/O of ``config.io``. A QAT model (tfmot ``quantize_apply``)
    converts with its learned ranges; for such a model ``representative`` may be omitted.
    ``int16x8`` uses 16-bit activations and 8-bit weights; ``float16`` stores float16 weights;
    ``dynamic`` stores int8 weights with float activations; ``float32`` converts unchanged.

    Args:
        model: A tf_keras model (plain, QAT, or pruned with the pruning wrappers stripped).
        config: Mode, I/O type and per-channel choice.
        representative: Calibration samples, needed by ``int8`` and ``int16x8`` (except ``int8``
            for QAT models), ignored by the other modes: an array ``(N, *input_shape)`` for a
            single-input model; for several inputs a list with one array per input (model-input
            order) or a mapping by input name; or the ``CalibrationSamples`` of a
            :class:`~edgekit.converters.calibration_sources.CalibrationSource`.
        verbose: Keep the converter's native logging on stderr (silenced by default).

    Returns:
        The ``.tflite`` flatbuffer bytes.

    Raises:
        InputError: Calibration data missing, of the wrong shape or dtype or non-finite (the
            message names the input and both shapes), or the converter rejected the model (the
            message has the converter's first error line).
    """
    converter = build_converter(model, config, representative)
    return run_converter(converter, config, verbose=verbose)
