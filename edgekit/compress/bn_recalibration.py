"""Re-estimate BatchNormalization statistics after a structural change (adaptive BN).

Removing channels changes what every later layer sees: a BatchNormalization layer downstream of a
cut still holds the moving mean and variance of the unpruned network, so right after the cut it
normalises with the wrong statistics and the model is near chance even where the kept weights
are good. EagleEye (Li et al., "EagleEye: Fast Sub-net Evaluation for Efficient Neural Network
Pruning", ECCV 2020, arXiv 2007.02491) showed that re-estimating those statistics on a few
training batches, with no weight update, restores most of the accuracy and makes the post-cut
accuracy rank sub-networks the way their fine-tuned accuracy does. edgekit uses it after every
cut, before fine-tuning, and the latency search uses it to compare proposals cheaply.

The statistics are the exact average over the drawn batches: each BatchNormalization layer's
momentum is set so that batch ``k`` (from 0) contributes ``1 / (k + 1)`` (a running mean), the
model is called in training mode (as it was when the statistics were first gathered), and the
momenta are restored afterwards. No weight is trained.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgekit.core._keras import keras
from edgekit.core.errors import InputError

__all__ = ["batch_norm_layers", "recalibrate_batch_norm", "seeded_rows"]


def seeded_rows(total: int, n: int, seed: int) -> np.ndarray:
    """``n`` distinct row indices of ``total``, drawn with ``seed``, in ascending order."""
    return np.sort(np.random.default_rng(seed).choice(total, n, replace=False))


def batch_norm_layers(model: keras.Model) -> list[Any]:
    """Every BatchNormalization layer of ``model``, nested models included, in layer order.

    Args:
        model: A tf_keras model.

    Returns:
        The layers (each once).
    """
    found: list[Any] = []
    seen: set[int] = set()

    def walk(layers: list[Any]) -> None:
        for layer in layers:
            if isinstance(layer, keras.Model):
                walk(layer.layers)
            elif isinstance(layer, keras.layers.BatchNormalization) and id(layer) not in seen:
                seen.add(id(layer))
                found.append(layer)

    walk(model.layers)
    return found


def recalibrate_batch_norm(model: keras.Model, x: np.ndarray, *, batches: int, batch_size: int,
                           seed: int = 0) -> dict[str, int]:
    """Re-estimates the moving statistics of every BatchNormalization layer in place.

    Args:
        model: A tf_keras model (changed in place: only BN moving means and variances).
        x: Training inputs to draw from.
        batches: How many batches to average over (0: nothing is done).
        batch_size: Samples per batch.
        seed: Seed of the draw.

    Returns:
        ``{"layers": BN layers recalibrated, "batches": batches used, "samples": samples read}``.

    Raises:
        InputError: ``batches`` or ``batch_size`` is not a non-negative / positive integer.
    """
    if isinstance(batches, bool) or not isinstance(batches, int) or batches < 0:
        raise InputError(f"recalibrate_bn must be an integer >= 0 (batches), got {batches!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    layers = batch_norm_layers(model)
    if batches == 0 or not layers or len(x) == 0:
        return {"layers": 0, "batches": 0, "samples": 0}
    n = min(len(x), batches * batch_size)
    pick = seeded_rows(len(x), n, seed)
    chunks = [pick[i:i + batch_size] for i in range(0, n, batch_size)]
    momenta = [layer.momentum for layer in layers]
    try:
        for k, rows in enumerate(chunks):
            for layer in layers:
                layer.momentum = k / (k + 1.0)
            model(np.asarray(x[rows], np.float32), training=True)
    finally:
        for layer, momentum in zip(layers, momenta, strict=True):
            layer.momentum = momentum
    return {"layers": len(layers), "batches": len(chunks), "samples": int(n)}
