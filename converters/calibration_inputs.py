"""The model-input side of calibration: input specs, shape/dtype checks, drawn samples.

Shared by the calibration sources (:mod:`.calibration_sources`) and the converter
(:func:`~edgekit.converters.convert_keras`): one rule for what fits a model input, and one
message when it does not (it names the input and both shapes).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from edgekit.core.checks import check_keys
from edgekit.core.errors import InputError

from .calibration import select_calibration

__all__ = [
    "CalibrationSamples",
    "CalibrationSource",
    "InputSpec",
    "Normalization",
    "fit_to_inputs",
    "model_input_specs",
]


@dataclass(frozen=True)
class InputSpec:
    """One model input: its name, per-sample shape (no batch dim; None = any) and dtype."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str = "float32"


def model_input_specs(model: Any) -> list[InputSpec]:
    """The inputs of a Keras model, in the order the converter feeds them.

    Args:
        model: A tf_keras model.

    Returns:
        One :class:`InputSpec` per input.

    Raises:
        InputError: The model has no inputs (a subclassed model that was never built).
    """
    inputs = list(getattr(model, "inputs", None) or [])
    if not inputs:
        raise InputError("the model has no defined inputs; build or call it once before converting")
    names = list(getattr(model, "input_names", None) or [])
    specs = []
    for i, tensor in enumerate(inputs):
        name = names[i] if i < len(names) else str(getattr(tensor, "name", f"input_{i}"))
        shape = tuple(None if d is None else int(d) for d in tuple(tensor.shape)[1:])
        dtype = getattr(getattr(tensor, "dtype", None), "name", "float32")
        specs.append(InputSpec(name=name.split(":")[0], shape=shape, dtype=str(dtype)))
    return specs


def _shape_text(shape: Sequence[int | None]) -> str:
    dims = ["None" if d is None else str(int(d)) for d in shape]
    return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"


def _check_one(spec: InputSpec, array: Any, source: str) -> np.ndarray:
    """One input's samples, shape- and dtype-checked, as the dtype the converter feeds."""
    try:
        data = np.asarray(array)
    except (TypeError, ValueError) as e:
        raise InputError(f"{source} for input {spec.name!r} is not an array: {e}") from e
    if data.dtype.kind not in "biuf":  # objects, strings, complex, dates: not model inputs
        raise InputError(
            f"{source} for input {spec.name!r} has dtype {data.dtype} but the model input "
            f"{spec.name!r} expects {spec.dtype} numbers"
        )
    if data.ndim < 1 or len(data) == 0:
        raise InputError(f"{source} must hold at least one sample, got shape {data.shape}")
    sample = data.shape[1:]
    fits = len(sample) == len(spec.shape) and all(
        e is None or e == s for e, s in zip(spec.shape, sample, strict=True)
    )
    if not fits:
        raise InputError(
            f"{source} has sample shape {_shape_text(sample)} but the model input "
            f"{spec.name!r} expects {_shape_text(spec.shape)}"
        )
    want = np.dtype(spec.dtype) if spec.dtype in np.sctypeDict else np.dtype(np.float32)
    if np.issubdtype(want, np.integer) and not np.issubdtype(data.dtype, np.integer):
        with np.errstate(invalid="ignore"):  # NaN and inf are not integers either
            whole = bool(np.all(np.equal(np.mod(data, 1), 0)))
        if not whole:
            raise InputError(
                f"{source} for input {spec.name!r} has dtype {data.dtype} (non-integer values) "
                f"but the model input {spec.name!r} expects {spec.dtype}"
            )
    if np.issubdtype(want, np.integer) and data.size:
        info = np.iinfo(want)
        low, high = data.min(), data.max()
        if low < info.min or high > info.max:
            raise InputError(f"{source} for input {spec.name!r} holds values {low}..{high} "
                             f"outside {spec.dtype}'s range {info.min}..{info.max}")
    with np.errstate(over="ignore"):
        out = data.astype(want, copy=False)
    if np.issubdtype(want, np.floating) and not np.isfinite(out).all():
        raise InputError(f"{source} for input {spec.name!r} contains NaN or infinite values")
    return out


def fit_to_inputs(
    specs: Sequence[InputSpec], arrays: Sequence[Any], source: str = "calibration data"
) -> list[np.ndarray]:
    """Checks one array of samples per model input against the input's shape and dtype.

    Args:
        specs: The model inputs (:func:`model_input_specs`).
        arrays: One array per input, in the same order, shape ``(N, *input_shape)``.
        source: What the arrays are, for messages.

    Returns:
        The arrays, converted to each input's dtype (float32 for float inputs).

    Raises:
        InputError: Wrong number of arrays, different sample counts, a shape or dtype that does
            not fit (the message names the input and both shapes), or non-finite values.
    """
    if len(arrays) != len(specs):
        raise InputError(
            f"{source} gives {len(arrays)} arrays but the model has {len(specs)} inputs "
            f"({', '.join(s.name for s in specs)})"
        )
    checked = [_check_one(spec, a, source) for spec, a in zip(specs, arrays, strict=True)]
    counts = {spec.name: len(a) for spec, a in zip(specs, checked, strict=True)}
    if len(set(counts.values())) > 1:
        raise InputError(f"{source} has different sample counts per input: {counts}")
    return checked


@dataclass(frozen=True)
class CalibrationSamples:
    """The samples a source gave, and how they were chosen (for the record beside the model).

    Attributes:
        arrays: One array per model input, in model-input order.
        names: The model input names, same order.
        source: Where the samples came from (path or description).
        selection: ``"seeded"`` (drawn by ``seed``) or ``"first"`` (a stream's first N).
        seed: The seed of a seeded draw, else None.
        indices: Positions of the samples in the source (sorted for seeded draws).
        files: For image folders: the chosen files, relative to the folder, in sample order.
    """

    arrays: tuple[np.ndarray, ...]
    names: tuple[str, ...]
    source: str
    selection: str
    seed: int | None
    indices: np.ndarray
    files: tuple[str, ...] = field(default=())

    def __len__(self) -> int:
        return len(self.arrays[0])

    def representative(self) -> np.ndarray | list[np.ndarray]:
        """What :func:`~edgekit.converters.convert_keras` takes: the array (one input) or list."""
        return self.arrays[0] if len(self.arrays) == 1 else list(self.arrays)


@runtime_checkable
class CalibrationSource(Protocol):
    """Anything that can give N calibration samples for a model's inputs."""

    def describe(self) -> str:
        """A short description for the calibration record (a path, or the kind of stream)."""
        ...

    def take(self, specs: Sequence[InputSpec], num_samples: int, seed: int) -> CalibrationSamples:
        """Returns up to ``num_samples`` samples fitted to ``specs`` (checked shapes/dtypes)."""
        ...


@dataclass(frozen=True)
class Normalization:
    """``x * scale + offset`` on raw values (pixels 0..255, array values as stored).

    ``{mean, std}`` is accepted too and becomes ``scale = 1/std``, ``offset = -mean/std``; both
    may be per-channel lists. The default maps 0..255 pixels to [0, 1].
    """

    scale: float | tuple[float, ...] = 1.0 / 255.0
    offset: float | tuple[float, ...] = 0.0

    @classmethod
    def from_dict(cls, raw: Any) -> Normalization:
        """Builds one from ``{scale, offset}`` or ``{mean, std}``.

        Raises:
            InputError: Unknown keys (the known ones are listed), mixed forms, or values that
                are not finite numbers (or lists of them), or a zero scale/std.
        """
        if isinstance(raw, Normalization):
            return raw
        raw = check_keys(raw, ("scale", "offset", "mean", "std"), "normalize",
                         expected="a mapping like {scale, offset} or {mean, std}")
        if {"scale", "offset"} & set(raw) and {"mean", "std"} & set(raw):
            raise InputError("normalize takes either {scale, offset} or {mean, std}, not both")

        def number(key: str, default: float) -> float | tuple[float, ...]:
            v = raw.get(key, default)
            vals = list(v) if isinstance(v, (list, tuple)) else [v]
            if not vals or not all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                   and math.isfinite(x) for x in vals):
                raise InputError(f"normalize.{key} must be a finite number or a list of them, "
                                 f"got {v!r}")
            if key in ("scale", "std") and any(x == 0 for x in vals):
                raise InputError(f"normalize.{key} must not be 0, got {v!r}")
            return tuple(float(x) for x in vals) if isinstance(v, (list, tuple)) else float(v)

        if "mean" in raw or "std" in raw:
            mean = np.asarray(number("mean", 0.0), np.float64)
            std = np.asarray(number("std", 1.0), np.float64)
            scale, offset = 1.0 / std, -mean / std
            return cls(scale=_plain_number(scale), offset=_plain_number(offset))
        return cls(scale=number("scale", 1.0 / 255.0), offset=number("offset", 0.0))

    def to_dict(self) -> dict[str, Any]:
        """``{"scale", "offset"}`` as plain numbers or lists."""
        def plain(v: Any) -> Any:
            return list(v) if isinstance(v, tuple) else v
        return {"scale": plain(self.scale), "offset": plain(self.offset)}

    def apply(self, x: np.ndarray) -> np.ndarray:
        """Returns ``x * scale + offset`` as float32 (per-channel values broadcast on the last
        axis)."""
        return (x.astype(np.float32) * np.asarray(self.scale, np.float32)
                + np.asarray(self.offset, np.float32)).astype(np.float32)


def _plain_number(a: np.ndarray) -> float | tuple[float, ...]:
    """A 0-d array as a float, a 1-d one as a tuple of floats."""
    return tuple(float(x) for x in a) if a.ndim else float(a)


def _draw(count: int, num_samples: int, seed: int) -> np.ndarray:
    """Sorted seeded indices, the rule of :func:`select_calibration`."""
    _, indices = select_calibration(np.zeros((count, 1), np.uint8), num_samples, seed)
    return indices
