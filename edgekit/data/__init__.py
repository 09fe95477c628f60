"""Datasets: the embedded digits default, keyword spotting, ``.npz`` files and image folders.

Every loader returns a :class:`Dataset` with a fixed, seeded held-out split (stratified; for
``kws``, the held-out speakers) and the indices of both splits in the source, so anyone can
re-check an accuracy figure.

The embedded default is scikit-learn's bundled handwritten digits (1797 real 8x8 scans, 0..16
grey levels, shipped inside the package: no download), upsampled to 32x32x1 and scaled to [0, 1].
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from device_bench.array_limits import check_array_sizes, numpy_file_kind
from edgekit.core.checks import check_labels
from edgekit.core.errors import InputError

DIGITS = "digits"
KWS = "kws"  # keyword spotting from speech made here (edgekit.data.kws)
DEFAULT_TEST_FRACTION = 0.2
DEFAULT_SPLIT_SEED = 0
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
# Labels are class indices: a label past this is a broken file, not a class (counting the
# classes of label 2**62 would need exabytes).
MAX_CLASSES = 65_536


@dataclass(frozen=True)
class Dataset:
    """A labelled classification dataset with its held-out split.

    Attributes:
        name: ``"digits"`` or the source path.
        x_train: Training samples, float32 (N, ...).
        y_train: Integer labels of the training samples.
        x_test: Held-out samples (never used for training or calibration).
        y_test: Integer labels of the held-out samples.
        train_indices: Positions of the training samples in the source.
        heldout_indices: Positions of the held-out samples in the source.
        num_classes: Number of classes.
        class_names: Class names (folder names for an image folder), index = label.
        split_seed: Seed of the stratified split.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    train_indices: np.ndarray
    heldout_indices: np.ndarray
    num_classes: int
    class_names: tuple[str, ...] = field(default=())
    split_seed: int = DEFAULT_SPLIT_SEED

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """Shape of one sample (no batch dimension)."""
        return tuple(int(d) for d in self.x_train.shape[1:])

    def describe(self) -> dict[str, Any]:
        """Returns a JSON-ready description (sizes, split seed, held-out indices).

        Returns:
            A dict for the report's ``data`` entry.
        """
        return {
            "name": self.name,
            "sample_shape": list(self.sample_shape),
            "num_classes": self.num_classes,
            "class_names": list(self.class_names),
            "train_samples": len(self.x_train),
            "heldout_samples": len(self.x_test),
            "split_seed": self.split_seed,
            "heldout_indices": [int(i) for i in self.heldout_indices],
        }


def split(
    x: np.ndarray,
    y: np.ndarray,
    *,
    name: str,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    seed: int = DEFAULT_SPLIT_SEED,
    class_names: tuple[str, ...] = (),
) -> Dataset:
    """Splits samples into a stratified, seeded train / held-out pair.

    Args:
        x: Samples (N, ...), float32.
        y: Integer labels (N,).
        name: Dataset name for the report.
        test_fraction: Share of samples held out, in (0, 1).
        seed: Seed of the split.
        class_names: Optional class names.

    Returns:
        The :class:`Dataset`.

    Raises:
        InputError: Too few samples per class to stratify, one class only, or a bad fraction.
    """
    from sklearn.model_selection import train_test_split

    if not 0.0 < test_fraction < 1.0:
        raise InputError(f"test_fraction must be in (0, 1), got {test_fraction}")
    labels = np.asarray(y).astype(np.int64)
    counts = np.bincount(labels)
    if len(labels) < 4 or counts[counts > 0].min() < 2:
        raise InputError(
            f"data {name!r} needs at least 2 samples of every class to hold some out; "
            f"got class counts {counts.tolist()}"
        )
    if np.count_nonzero(counts) < 2:
        raise InputError(f"data {name!r} holds one class only (label {int(labels[0])}); "
                         "expected samples of at least 2 classes")
    idx = np.arange(len(labels))
    try:
        tr, te = train_test_split(idx, test_size=test_fraction, stratify=labels, random_state=seed)
    except ValueError as e:
        raise InputError(f"data {name!r} cannot be split into train/held-out: {e}") from e
    tr, te = np.sort(tr), np.sort(te)
    num_classes = int(labels.max()) + 1
    return Dataset(
        name=name,
        x_train=x[tr],
        y_train=labels[tr],
        x_test=x[te],
        y_test=labels[te],
        train_indices=tr,
        heldout_indices=te,
        num_classes=max(num_classes, len(class_names)),
        class_names=class_names,
        split_seed=seed,
    )


def _resize(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of (N, H, W, C) float images."""
    from edgekit.core._keras import tf

    if images.shape[1:3] == size:
        return images.astype(np.float32)
    return tf.image.resize(images, size, method="bilinear").numpy().astype(np.float32)


def load_digits(
    size: int = 32, *, test_fraction: float = DEFAULT_TEST_FRACTION, seed: int = DEFAULT_SPLIT_SEED
) -> Dataset:
    """Loads scikit-learn's bundled digits, upsampled to ``size`` x ``size`` x 1 in [0, 1].

    Args:
        size: Output height and width (8 keeps the original resolution).
        test_fraction: Share held out.
        seed: Seed of the stratified split.

    Returns:
        The :class:`Dataset` (1797 samples, 10 classes).

    Raises:
        InputError: ``size`` below 8.
    """
    from sklearn.datasets import load_digits as sk_digits

    if size < 8:
        raise InputError(f"digits size must be >= 8 (the source is 8x8), got {size}")
    bunch = sk_digits()
    x = (bunch.images.astype(np.float32) / 16.0)[..., None]
    x = _resize(x, (size, size))
    return split(
        x, bunch.target, name=DIGITS, test_fraction=test_fraction, seed=seed,
        class_names=tuple(str(c) for c in range(10)),
    )


def load_npz(
    path: str | os.PathLike[str],
    *,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    seed: int = DEFAULT_SPLIT_SEED,
) -> Dataset:
    """Loads an ``.npz`` with arrays ``x`` (samples) and ``y`` (integer labels).

    uint8 samples are scaled to [0, 1]; other numeric samples are used as they are (float32).

    Args:
        path: The ``.npz`` file.
        test_fraction: Share held out.
        seed: Seed of the stratified split.

    Returns:
        The :class:`Dataset`.

    Raises:
        InputError: Missing file, not an npz, missing ``x``/``y``, mismatched lengths,
            non-integer labels, or NaN / Inf samples.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"data {str(p)!r} does not exist; expected an .npz with arrays x and y")
    try:
        if numpy_file_kind(p) != "npz":
            raise InputError(f"data {str(p)!r} is not a readable .npz file: expected a zip "
                             "of NumPy arrays x and y")
        too_big = check_array_sizes(p)
        if too_big:
            raise InputError(f"data {str(p)!r} is refused: {too_big}")
        with np.load(p, allow_pickle=False) as npz:
            keys = set(npz.files)
            if not {"x", "y"} <= keys:
                raise InputError(
                    f"data {str(p)!r} must hold arrays 'x' and 'y'; found {sorted(keys)}"
                )
            x, y = npz["x"], npz["y"]
    except InputError:
        raise
    except Exception as e:
        raise InputError(f"data {str(p)!r} is not a readable .npz file: {e}") from e
    # The kinds first: x and y may be 0-d, strings or dates in a file made by hand.
    if x.ndim < 2 or x.dtype.kind not in "biuf":
        raise InputError(f"data {str(p)!r}: x must be numeric (N, ...), got {x.dtype} {x.shape}")
    if y.dtype.kind not in "iu" or y.ndim != 1 or (y < 0).any():
        raise InputError(
            f"data {str(p)!r}: y must be non-negative integer labels of shape (N,), "
            f"got {y.dtype} {y.shape}"
        )
    if len(x) != len(y):
        raise InputError(f"data {str(p)!r}: x has {len(x)} samples but y has {len(y)} labels")
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        bad = int(x.size - np.count_nonzero(np.isfinite(x)))
        raise InputError(f"data {str(p)!r}: x holds {bad:,} NaN or Inf values; expected "
                         "finite numbers")
    if y.size and int(y.max()) >= MAX_CLASSES:
        raise InputError(f"data {str(p)!r}: y holds label {int(y.max())}; expected class "
                         f"indices below {MAX_CLASSES:,}")
    xf = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)
    return split(xf, y, name=str(p), test_fraction=test_fraction, seed=seed)


def load_image_folder(
    path: str | os.PathLike[str],
    *,
    image_size: tuple[int, int],
    channels: int = 3,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    seed: int = DEFAULT_SPLIT_SEED,
) -> Dataset:
    """Loads ``path/<class>/<image>`` files (one sub-folder per class, sorted names = labels).

    Images are decoded, converted to ``channels`` (1 grey, 3 RGB), resized bilinearly to
    ``image_size`` and scaled to [0, 1].

    Args:
        path: The root folder.
        image_size: (height, width) of the model input.
        channels: 1 or 3.
        test_fraction: Share held out.
        seed: Seed of the stratified split.

    Returns:
        The :class:`Dataset`.

    Raises:
        InputError: Missing folder, fewer than two class folders, no images, or an unreadable image.
    """
    from edgekit.core._keras import tf

    root = Path(path)
    if not root.is_dir():
        raise InputError(f"data {str(root)!r} is not a folder of class sub-folders")
    if channels not in (1, 3):
        raise InputError(f"image channels must be 1 or 3, got {channels}")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if len(classes) < 2:
        raise InputError(
            f"data {str(root)!r} must hold one sub-folder per class (at least 2), found {classes}"
        )
    images: list[np.ndarray] = []
    labels: list[int] = []
    for label, cls in enumerate(classes):
        files = sorted(f for f in (root / cls).iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        for f in files:
            try:
                img = tf.io.decode_image(f.read_bytes(), channels=channels, expand_animations=False)
            except Exception as e:
                raise InputError(f"image {str(f)!r} could not be decoded: {e}") from e
            img = tf.image.resize(tf.cast(img, tf.float32) / 255.0, image_size, method="bilinear")
            images.append(img.numpy())
            labels.append(label)
    if not images:
        raise InputError(f"data {str(root)!r} has no images ({', '.join(IMAGE_SUFFIXES)})")
    x = np.stack(images).astype(np.float32)
    return split(
        x, np.asarray(labels), name=str(root), test_fraction=test_fraction, seed=seed,
        class_names=tuple(classes),
    )


def load_kws(settings: Any = None, *, progress: bool = True) -> Dataset:
    """The ``kws`` keyword-spotting set (:mod:`edgekit.data.kws`), held-out speakers as its test.

    Args:
        settings: A ``KwsSettings`` (default: the generator's defaults).
        progress: Show a progress bar while it is made (first use only; then it is cached).

    Returns:
        The dataset; its ``train_indices`` / ``heldout_indices`` index the training samples
        followed by the held-out ones.

    Raises:
        InputError: espeak-ng is missing (the message says how to install it) or lacks a voice.
    """
    from edgekit.data.kws import CLASS_NAMES, KwsSettings, load_arrays

    chosen = settings if settings is not None else KwsSettings()
    a, _, _ = load_arrays(chosen, progress=progress)
    n_train, n_test = len(a.y_train), len(a.y_test)
    return Dataset(name=KWS, x_train=a.x_train, y_train=a.y_train, x_test=a.x_test,
                   y_test=a.y_test, train_indices=np.arange(n_train),
                   heldout_indices=np.arange(n_train, n_train + n_test),
                   num_classes=len(CLASS_NAMES), class_names=CLASS_NAMES,
                   split_seed=chosen.seed)


def load_data(
    spec: str,
    *,
    input_shape: tuple[int | None, ...] | None = None,
    num_classes: int | None = None,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    seed: int = DEFAULT_SPLIT_SEED,
) -> Dataset:
    """Loads the data a recipe or the CLI names.

    Args:
        spec: ``"digits"``, ``"kws"`` (keyword spotting, :mod:`edgekit.data.kws`), a path to an
            ``.npz``, or an image folder.
        input_shape: The model's sample shape (no batch dim), when known: sizes the digits and
            image folders, and is checked against the data.
        num_classes: The model's classes, when known: every label must be one of them
            (``edgekit.core.checks.check_labels``).
        test_fraction: Share held out.
        seed: Seed of the stratified split.

    Returns:
        The :class:`Dataset`.

    Raises:
        InputError: Unknown spec, unreadable data, data that does not fit ``input_shape``, or
            labels outside ``[0, num_classes)``.
    """
    spec = str(spec)
    if spec == KWS:
        ds = load_kws()
    elif spec == DIGITS:
        size = 32
        if input_shape is not None and len(input_shape) == 3 and input_shape[0]:
            size = int(input_shape[0])
        ds = load_digits(size, test_fraction=test_fraction, seed=seed)
    elif spec.endswith(".npz"):
        ds = load_npz(spec, test_fraction=test_fraction, seed=seed)
    elif Path(spec).is_dir():
        if input_shape is None or len(input_shape) != 3 or not input_shape[0]:
            raise InputError(
                f"data {spec!r} is an image folder; the model must have an (H, W, C) input, "
                f"got {input_shape}"
            )
        ds = load_image_folder(
            spec, image_size=(int(input_shape[0]), int(input_shape[1] or input_shape[0])),
            channels=int(input_shape[2] or 3), test_fraction=test_fraction, seed=seed,
        )
    else:
        raise InputError(
            f"data {spec!r} is not understood; expected 'digits', 'kws', an .npz file with x "
            "and y, or a folder with one sub-folder of images per class"
        )
    if input_shape is not None:
        check_fits(ds, input_shape)
    if num_classes is not None:
        check_labels(np.concatenate([ds.y_train, ds.y_test]), num_classes, spec)
    return ds


def check_fits(ds: Dataset, input_shape: tuple[int | None, ...]) -> None:
    """Checks that the dataset's samples fit a model input (``None`` dims match anything).

    Args:
        ds: The dataset.
        input_shape: Model input shape without the batch dimension.

    Raises:
        InputError: The shapes differ.
    """
    got = ds.sample_shape
    want = tuple(input_shape)
    fits = len(got) == len(want) and all(
        w is None or int(w) == g for g, w in zip(got, want, strict=True)
    )
    if not fits:
        shown = tuple("?" if w is None else int(w) for w in want)
        raise InputError(
            f"data {ds.name!r} has sample shape {got} but the model expects input shape {shown}"
        )
