"""Where representative (calibration) samples come from, and how they are drawn.

A :class:`CalibrationSource` hands :func:`~edgekit.converters.convert_keras` one float array per
model input, checked against the model's input shapes and dtypes. Four kinds exist:

* :class:`ArraySource`: arrays in memory, or from a ``.npy`` (single-input models) or ``.npz``
  file (one array per model input, named after the input; ``x`` for a single-input model).
* :class:`ImageFolderSource`: a folder of images (any depth, e.g. one sub-folder per class),
  decoded, resized to the model's input height and width, and normalised as the recipe declares.
* :class:`StreamSource`: a ``tf.data.Dataset``, a generator (or generator function) or any
  iterable (Python API only).

Arrays and folders are drawn by seed, as :func:`~edgekit.converters.select_calibration` draws
from the training split, and the chosen indices (and, for folders, the file names) are saved
beside the model. A stream cannot be drawn from reproducibly without reading all of it, so a
stream gives its **first** N samples, and the record says so (``"selection": "first"``).

A recipe names a source as ``convert.calibration``: a path, or
``{source: PATH, resize: true | [H, W] | false, normalize: {scale, offset} | {mean, std}}``
(see :class:`CalibrationSpec`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from device_bench.array_limits import check_array_sizes, numpy_file_kind
from edgekit.core._keras import tf
from edgekit.core.checks import check_keys
from edgekit.core.errors import InputError

from .calibration_inputs import (
    CalibrationSamples,
    CalibrationSource,
    InputSpec,
    Normalization,
    _draw,
    _shape_text,
    fit_to_inputs,
    model_input_specs,
)

__all__ = [
    "ArraySource",
    "CalibrationSamples",
    "CalibrationSource",
    "CalibrationSpec",
    "ImageFolderSource",
    "InputSpec",
    "Normalization",
    "StreamSource",
    "calibration_source",
    "fit_to_inputs",
    "model_input_specs",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


class ArraySource:
    """Samples from arrays: one array (single-input model), a mapping by input name (``x`` also
    names the only input), or a sequence in model-input order.

    uint8 arrays are scaled to [0, 1], as ``--data`` ``.npz`` files are, unless ``normalize`` is
    given; other arrays are used as stored (then normalised, when given).

    Args:
        data: The arrays (all with the same number of samples).
        name: Description for the record (the file path for files).
        normalize: Optional :class:`Normalization` (or its dict).
    """

    def __init__(self, data: np.ndarray | Mapping[str, Any] | Sequence[Any], *,
                 name: str = "arrays", normalize: Normalization | Mapping[str, Any] | None = None):
        if not isinstance(data, (np.ndarray, Mapping, list, tuple)):
            raise InputError(f"calibration arrays must be an array, a mapping or a list, got "
                             f"{type(data).__name__}")
        self.data = data
        self.name = name
        self.normalize = None if normalize is None else Normalization.from_dict(normalize)

    def describe(self) -> str:
        """The name given (a path for files)."""
        return self.name

    def _per_input(self, specs: Sequence[InputSpec]) -> list[Any]:
        data, names = self.data, [s.name for s in specs]
        if isinstance(data, Mapping):
            found = []
            for spec in specs:
                if spec.name in data:
                    found.append(data[spec.name])
                elif len(specs) == 1 and "x" in data:
                    found.append(data["x"])
                else:
                    raise InputError(
                        f"calibration data {self.name!r} has no array for model input "
                        f"{spec.name!r}; found {sorted(data)} (name arrays after the inputs "
                        f"{names}{', or x' if len(specs) == 1 else ''})"
                    )
            return found
        if isinstance(data, np.ndarray):
            if len(specs) != 1:
                raise InputError(
                    f"calibration data {self.name!r} is one array but the model has {len(specs)} "
                    f"inputs ({', '.join(names)}); give one array per input, named after it"
                )
            return [data]
        return list(data)

    def take(self, specs: Sequence[InputSpec], num_samples: int, seed: int) -> CalibrationSamples:
        """Draws ``num_samples`` rows (the same rows of every input) by ``seed``.

        Raises:
            InputError: Arrays missing for an input, or not fitting it.
        """
        arrays = [np.asarray(a) for a in self._per_input(specs)]
        lengths = {len(a) if a.ndim else 0 for a in arrays}
        if len(lengths) != 1 or 0 in lengths:
            raise InputError(f"calibration data {self.name!r} must hold the same, non-zero number "
                             f"of samples for every input; got {sorted(lengths)}")
        indices = _draw(lengths.pop(), num_samples, seed)
        chosen = []
        for a in arrays:
            a = a[indices]
            if self.normalize is not None:
                a = self.normalize.apply(a)
            elif a.dtype == np.uint8:
                a = a.astype(np.float32) / 255.0
            chosen.append(a)
        fitted = fit_to_inputs(specs, chosen, f"calibration data {self.name!r}")
        return CalibrationSamples(tuple(fitted), tuple(s.name for s in specs), self.name,
                                  "seeded", seed, indices)


def load_array_file(path: str | os.PathLike[str]) -> np.ndarray | dict[str, np.ndarray]:
    """Reads a ``.npy`` (one array) or ``.npz`` (named arrays) without pickles.

    Raises:
        InputError: Missing or unreadable file, or another suffix.
    """
    p = Path(path)
    if p.suffix.lower() not in (".npy", ".npz"):
        raise InputError(f"calibration file {str(p)!r} must be .npy or .npz")
    if not p.is_file():
        raise InputError(f"calibration file {str(p)!r} does not exist")
    try:
        if numpy_file_kind(p) is None:
            raise InputError(f"calibration file {str(p)!r} is not a readable {p.suffix}: "
                             "expected a NumPy .npy file or a zip of them (.npz)")
        too_big = check_array_sizes(p)
        if too_big:
            raise InputError(f"calibration file {str(p)!r} is refused: {too_big}")
        # allow_pickle=False: an object array (a pickle) is refused, never unpickled.
        loaded = np.load(p, allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            return loaded
        with loaded as npz:
            return {k: npz[k] for k in npz.files}
    except InputError:
        raise
    except Exception as e:  # a damaged file raises many types: BadZipFile, EOFError, SyntaxError
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise InputError(f"calibration file {str(p)!r} is not a readable {p.suffix}: "
                         f"{first}") from e


class ImageFolderSource:
    """Samples from image files under a folder (any depth; hidden files and folders skipped).

    Files are listed in sorted relative-path order, drawn by seed, decoded, converted to the
    model's channel count, resized bilinearly and normalised.

    Args:
        path: The folder.
        resize: True: to the model input's height and width; ``(H, W)``: to that size; False:
            not at all (the images must have the model's size).
        normalize: :class:`Normalization` of 0..255 pixels; default ``scale 1/255`` ([0, 1], as
            ``--data`` image folders are loaded).
    """

    def __init__(self, path: str | os.PathLike[str], *, resize: bool | Sequence[int] = True,
                 normalize: Normalization | Mapping[str, Any] | None = None):
        self.root = Path(path)
        if not self.root.is_dir():
            raise InputError(f"calibration folder {str(self.root)!r} is not a folder")
        if not isinstance(resize, bool):
            if (not isinstance(resize, (list, tuple)) or len(resize) != 2
                    or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0
                               for d in resize)):
                raise InputError(f"resize must be true, false or [height, width], got {resize!r}")
            resize = (int(resize[0]), int(resize[1]))
        self.resize = resize
        self.normalize = Normalization.from_dict(normalize) if normalize else Normalization()
        self.files = sorted(
            f.relative_to(self.root).as_posix() for f in self.root.rglob("*")
            if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES
            and not any(part.startswith(".") for part in f.relative_to(self.root).parts)
        )
        if not self.files:
            raise InputError(f"calibration folder {str(self.root)!r} has no images "
                             f"({', '.join(IMAGE_SUFFIXES)})")

    def describe(self) -> str:
        """The folder path."""
        return str(self.root)

    def take(self, specs: Sequence[InputSpec], num_samples: int, seed: int) -> CalibrationSamples:
        """Draws, decodes, resizes and normalises ``num_samples`` images.

        Raises:
            InputError: A model that is not single-input (H, W, C), an unknown size with
                ``resize: true``, an undecodable image, or images that do not fit.
        """
        if len(specs) != 1 or len(specs[0].shape) != 3:
            shapes = ", ".join(f"{s.name} {_shape_text(s.shape)}" for s in specs)
            raise InputError(f"calibration folder {str(self.root)!r} needs a model with one "
                             f"(height, width, channels) input; this model has {shapes}")
        spec = specs[0]
        height, width, channels = spec.shape
        size: tuple[int, int] | None = None
        if self.resize is True:
            if height is None or width is None:
                raise InputError(f"model input {spec.name!r} has no fixed size "
                                 f"{_shape_text(spec.shape)}; set calibration resize: [H, W]")
            size = (height, width)
        elif self.resize is not False:
            size = self.resize  # type: ignore[assignment]
        indices = _draw(len(self.files), num_samples, seed)
        images = []
        for i in indices:
            f = self.root / self.files[i]
            try:
                img = tf.io.decode_image(f.read_bytes(), channels=int(channels or 3),
                                         expand_animations=False)
            except Exception as e:  # tf raises InvalidArgumentError with a long message
                raise InputError(f"image {str(f)!r} could not be decoded") from e
            img = tf.cast(img, tf.float32)
            if size is not None and tuple(img.shape[:2]) != size:
                img = tf.image.resize(img, size, method="bilinear")
            images.append(img.numpy())
        shapes = {im.shape for im in images}
        if len(shapes) > 1:
            raise InputError(f"calibration folder {str(self.root)!r} holds images of different "
                             f"sizes {sorted(shapes)}; set calibration resize: true")
        batch = self.normalize.apply(np.stack(images))
        fitted = fit_to_inputs(specs, [batch], f"calibration folder {str(self.root)!r}")
        return CalibrationSamples(tuple(fitted), (spec.name,), str(self.root), "seeded", seed,
                                  indices, tuple(self.files[i] for i in indices))


class StreamSource:
    """The first N samples of a ``tf.data.Dataset``, a generator (function) or an iterable.

    An element may be one array (single-input models), a tuple/list in model-input order, a
    mapping by input name, or an ``(inputs, labels)`` pair (labels are dropped); arrays with one
    more dimension than the input are batches and are split. A stream is read once and only as
    far as needed.

    Args:
        stream: The dataset, generator, generator function or iterable.
        name: Description for the record.
    """

    def __init__(self, stream: Any, *, name: str | None = None):
        if isinstance(stream, (str, bytes, np.ndarray, Mapping)):
            raise InputError(f"a stream source needs a dataset, generator or iterable, got "
                             f"{type(stream).__name__}")
        if not (callable(stream) or isinstance(stream, Iterable)):
            raise InputError(f"calibration stream must be iterable or a generator function, got "
                             f"{type(stream).__name__}")
        self.stream = stream
        self.name = name or f"{type(stream).__name__} stream (first N elements)"

    def describe(self) -> str:
        """The description given, or the stream's type."""
        return self.name

    def _iterate(self) -> Iterator[Any]:
        stream = self.stream
        if hasattr(stream, "as_numpy_iterator"):  # tf.data.Dataset
            return iter(stream.as_numpy_iterator())
        if callable(stream) and not isinstance(stream, Iterable):
            stream = stream()
        return iter(stream)

    def _split(self, element: Any, specs: Sequence[InputSpec]) -> list[np.ndarray]:
        names = [s.name for s in specs]
        if isinstance(element, Mapping):
            if len(specs) == 1 and names[0] not in element and "x" in element:
                return [np.asarray(element["x"])]
            missing = [n for n in names if n not in element]
            if missing:
                raise InputError(f"{self.name}: element has no value for model input(s) "
                                 f"{missing}; found {sorted(element)}")
            return [np.asarray(element[n]) for n in names]
        if isinstance(element, (tuple, list)):
            if len(specs) == 1:
                return self._split(element[0], specs)
            if len(element) == len(specs):
                return [np.asarray(e) for e in element]
            if len(element) == 2 and isinstance(element[0], (tuple, list, Mapping)):
                return self._split(element[0], specs)  # (inputs, labels)
            raise InputError(f"{self.name}: element has {len(element)} parts but the model has "
                             f"{len(specs)} inputs ({', '.join(names)})")
        if len(specs) != 1:
            raise InputError(f"{self.name}: element is one array but the model has {len(specs)} "
                             f"inputs ({', '.join(names)}); yield a tuple or a mapping")
        return [np.asarray(element)]

    def take(self, specs: Sequence[InputSpec], num_samples: int, seed: int) -> CalibrationSamples:
        """Reads samples until ``num_samples`` are collected or the stream ends.

        ``seed`` is not used (a stream gives its first N samples).

        Raises:
            InputError: An empty stream, or elements that do not fit the model inputs.
        """
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
            raise InputError(f"num_samples must be an integer >= 1, got {num_samples!r}")
        parts: list[list[np.ndarray]] = [[] for _ in specs]
        count = 0
        for element in self._iterate():
            arrays = self._split(element, specs)
            batched = [a if a.ndim == len(s.shape) + 1 else a[None, ...]
                       for a, s in zip(arrays, specs, strict=True)]
            n = min(len(b) for b in batched)
            take = min(n, num_samples - count)
            for store, b in zip(parts, batched, strict=True):
                store.append(b[:take])
            count += take
            if count >= num_samples:
                break
        if count == 0:
            raise InputError(f"{self.name} gave no samples")
        fitted = fit_to_inputs(specs, [np.concatenate(p, axis=0) for p in parts],
                               f"calibration data from {self.name}")
        return CalibrationSamples(tuple(fitted), tuple(s.name for s in specs), self.name,
                                  "first", None, np.arange(count, dtype=np.int64))


@dataclass(frozen=True)
class CalibrationSpec:
    """A recipe's ``convert.calibration``: a path plus how to read it.

    Attributes:
        source: A ``.npy``/``.npz`` file or an image folder.
        resize: Image folders: true (model size), ``[H, W]``, or false.
        normalize: ``{scale, offset}`` or ``{mean, std}``, or None (the source's default).
    """

    source: str
    resize: bool | tuple[int, int] = True
    normalize: dict[str, Any] | None = None

    @classmethod
    def from_value(cls, raw: Any, where: str = "convert.calibration") -> CalibrationSpec:
        """Parses a path string or a ``{source, resize, normalize}`` mapping.

        ``where`` names the recipe field in error messages (``Distill.unlabeled`` reads samples
        the same way).

        Raises:
            InputError: Unknown keys (listed with the known ones), a missing source, or invalid
                resize / normalize values. Whether the path exists is checked when it is opened.
        """
        if isinstance(raw, CalibrationSpec):
            return raw
        if isinstance(raw, (str, os.PathLike)):
            raw = {"source": os.fspath(raw)}
        raw = check_keys(raw, ("source", "resize", "normalize"), where,
                         expected="a path or a mapping with source, resize, normalize")
        source = raw.get("source")
        if not isinstance(source, str) or not source:
            raise InputError(f"{where}.source must be a path, got {source!r}")
        resize = raw.get("resize", True)
        if not isinstance(resize, bool):
            if (not isinstance(resize, (list, tuple)) or len(resize) != 2 or not all(
                    isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in resize)):
                raise InputError(f"{where}.resize must be true, false or "
                                 f"[height, width], got {resize!r}")
            resize = (int(resize[0]), int(resize[1]))
        normalize = raw.get("normalize")
        if normalize is not None:
            Normalization.from_dict(normalize)  # validates
            normalize = dict(normalize)
        return cls(source=source, resize=resize, normalize=normalize)

    def to_dict(self) -> dict[str, Any]:
        """The mapping form (lists, not tuples)."""
        resize = list(self.resize) if isinstance(self.resize, tuple) else self.resize
        return {"source": self.source, "resize": resize, "normalize": self.normalize}

    def open(self) -> CalibrationSource:
        """Opens the source the spec names (see :func:`calibration_source`)."""
        return calibration_source(self.source, resize=self.resize, normalize=self.normalize)


def calibration_source(obj: Any, *, resize: bool | Sequence[int] = True,
                       normalize: Mapping[str, Any] | Normalization | None = None
                       ) -> CalibrationSource:
    """Turns what a user hands over into a :class:`CalibrationSource`.

    Args:
        obj: A source; a :class:`CalibrationSpec` or its mapping; a path (``.npy``, ``.npz`` or
            an image folder); an array, a mapping of arrays or a list of arrays; or a
            ``tf.data.Dataset``, generator (function) or iterable (its first N samples).
        resize: Image folders only (see :class:`ImageFolderSource`).
        normalize: Optional normalisation of the raw values.

    Returns:
        The source.

    Raises:
        InputError: A path that does not exist or has an unknown suffix, or bad options.
    """
    if isinstance(obj, CalibrationSpec):
        return obj.open()
    if isinstance(obj, Mapping) and "source" in obj and not isinstance(obj.get("source"),
                                                                       np.ndarray):
        return CalibrationSpec.from_value(obj).open()
    if isinstance(obj, (str, os.PathLike)):
        p = Path(obj)
        if p.is_dir():
            return ImageFolderSource(p, resize=resize, normalize=normalize)
        if p.suffix.lower() in (".npy", ".npz"):
            return ArraySource(load_array_file(p), name=str(p), normalize=normalize)
        if not p.exists():
            raise InputError(f"calibration source {str(p)!r} does not exist; expected a .npy or "
                             ".npz file or a folder of images")
        raise InputError(f"calibration source {str(p)!r} is not understood; expected a .npy or "
                         ".npz file or a folder of images")
    if isinstance(obj, (ArraySource, ImageFolderSource, StreamSource)):
        return obj
    if isinstance(obj, (np.ndarray, Mapping)) or (
            isinstance(obj, (list, tuple)) and obj and all(isinstance(a, np.ndarray) for a in obj)):
        return ArraySource(obj, normalize=normalize)
    if isinstance(obj, CalibrationSource):
        return obj
    if callable(obj) or isinstance(obj, Iterable):
        return StreamSource(obj)
    raise InputError(f"calibration source must be a path, arrays, a dataset or a generator; got "
                     f"{type(obj).__name__}")

