"""Training loop shared by float training, pruning fine-tune and QAT.

What makes compression recover accuracy on small image data, found by measurement on digits
(see BENCHMARKS.md): random shifts of up to ``shift`` pixels (zero-padded, not wrapped), a cosine
learning-rate decay over the whole run, and seeded, repeatable batches.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from tqdm import tqdm

from edgekit.core._keras import keras
from edgekit.core.checks import checked_kwargs
from edgekit.core.errors import InputError


@dataclass(frozen=True)
class TrainConfig:
    """How a model from ``models/`` is trained from scratch.

    Attributes:
        epochs: Passes over the training split.
        learning_rate: Peak Adam learning rate (cosine-decayed to 0).
        batch_size: Samples per step.
        augment_shift: Max random shift in pixels for image inputs (0 = no augmentation).
        seed: Seed of weights, batches and augmentation.
    """

    epochs: int = 30
    learning_rate: float = 2e-3
    batch_size: int = 32
    augment_shift: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        _check_fit_args(self.epochs, self.learning_rate, self.batch_size, self.augment_shift)

    def to_dict(self) -> dict[str, Any]:
        """Returns the config as a plain dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> TrainConfig:
        """Builds the config from a dict, rejecting unknown keys.

        Raises:
            InputError: Unknown keys or bad values.
        """
        return cls(**checked_kwargs(cls, config, "train"))


def _check_fit_args(epochs: int, lr: float, batch_size: int, shift: int) -> None:
    if not isinstance(epochs, int) or epochs < 1:
        raise InputError(f"epochs must be an integer >= 1, got {epochs!r}")
    if not lr > 0:
        raise InputError(f"learning_rate must be > 0, got {lr!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if not isinstance(shift, int) or shift < 0:
        raise InputError(f"augment_shift must be an integer >= 0, got {shift!r}")


def shifted_batches(
    x: np.ndarray, y: np.ndarray, *, batch_size: int, shift: int, seed: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Endless shuffled batches; image samples (H, W, C) get random zero-padded shifts.

    Args:
        x: Samples.
        y: Labels.
        batch_size: Samples per batch (the last partial batch of an epoch is dropped).
        shift: Max shift in pixels (0 or non-image samples: no augmentation).
        seed: Seed of order and shifts.

    Yields:
        (x_batch, y_batch).
    """
    rng = np.random.default_rng(seed)
    n = len(x)
    bs = min(batch_size, n)
    image = x.ndim == 4 and shift > 0
    if image:
        pad = ((0, 0), (shift, shift), (shift, shift), (0, 0))
        h, w = x.shape[1], x.shape[2]
    while True:
        order = rng.permutation(n)
        for start in range(0, n - bs + 1, bs):
            idx = order[start : start + bs]
            xb = x[idx]
            if image:
                padded = np.pad(xb, pad)
                out = np.empty_like(xb)
                offs = rng.integers(0, 2 * shift + 1, size=(len(idx), 2))
                for k, (dy, dx) in enumerate(offs):
                    out[k] = padded[k, dy : dy + h, dx : dx + w]
                xb = out
            yield xb, y[idx]


def epoch_progress(epochs: int, desc: str) -> Any:
    """A Keras callback that shows a tqdm bar over epochs with loss and accuracy (to stderr).

    Built per call (a ``LambdaCallback``) so that no Keras class is touched when this module is
    imported: TensorFlow loads only when something trains.

    Args:
        epochs: The bar's length.
        desc: Its label.

    Returns:
        The callback.
    """
    state: dict[str, Any] = {}

    def begin(logs: dict[str, Any] | None = None) -> None:
        state["bar"] = tqdm(total=epochs, desc=desc, unit="epoch", file=sys.stderr,
                            leave=False, disable=None)

    def epoch_end(epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs or {}
        state["bar"].set_postfix(loss=f"{logs.get('loss', float('nan')):.3f}",
                                 acc=f"{logs.get('accuracy', float('nan')):.3f}")
        state["bar"].update(1)

    def end(logs: dict[str, Any] | None = None) -> None:
        state.pop("bar").close()

    return keras.callbacks.LambdaCallback(on_train_begin=begin, on_epoch_end=epoch_end,
                                          on_train_end=end)


def fit(
    model: keras.Model,
    x: np.ndarray,
    y: np.ndarray,
    *,
    epochs: int,
    learning_rate: float,
    batch_size: int = 32,
    augment_shift: int = 2,
    seed: int = 0,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    desc: str = "train",
) -> dict[str, list[float]]:
    """Compiles and trains a logits classifier with Adam and a cosine-decayed learning rate.

    Args:
        model: The tf_keras model (logits output).
        x: Training samples.
        y: Integer labels.
        epochs: Passes over the data.
        learning_rate: Peak learning rate.
        batch_size: Samples per step.
        augment_shift: Max random shift for image samples.
        seed: Seed of batches and augmentation.
        callbacks: Extra callbacks (e.g. tfmot's ``UpdatePruningStep``).
        desc: Label of the progress bar.

    Returns:
        The Keras history (``loss``, ``accuracy`` per epoch).

    Raises:
        InputError: Bad arguments.
    """
    _check_fit_args(epochs, learning_rate, batch_size, augment_shift)
    steps = max(1, len(x) // min(batch_size, len(x)))
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=epochs * steps)
    compile_classifier(model, keras.optimizers.Adam(schedule))
    batches = shifted_batches(x, y, batch_size=batch_size, shift=augment_shift, seed=seed)
    history = model.fit(
        batches,
        steps_per_epoch=steps,
        epochs=epochs,
        verbose=0,
        callbacks=[*callbacks, epoch_progress(epochs, desc)],
    )
    return {k: [float(v) for v in vals] for k, vals in history.history.items()}


def compile_classifier(model: keras.Model, optimizer: Any = "adam") -> None:
    """Compiles ``model`` as a logits classifier with sparse labels and an accuracy metric."""
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )


def accuracy(model: keras.Model, x: np.ndarray, y: np.ndarray, batch_size: int = 256) -> float:
    """Top-1 accuracy of a Keras classifier.

    Args:
        model: The model.
        x: Samples.
        y: Integer labels.
        batch_size: Inference batch size.

    Returns:
        Accuracy in [0, 1].
    """
    logits = model.predict(x, batch_size=batch_size, verbose=0)
    return float(np.mean(np.argmax(logits, axis=-1) == y))


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Optimizer steps per epoch for ``n`` samples (partial batches dropped)."""
    return max(1, math.floor(n / min(batch_size, n)))
