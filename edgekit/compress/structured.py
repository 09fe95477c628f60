"""Structured m-by-n sparsity (2:4): parsing the option and checking the pattern.

tfmot's ``prune_low_magnitude(..., sparsity_m_by_n=(m, n))`` zeroes the ``m`` smallest of every
``n`` consecutive weights along the *input-channel* axis, the last axis of the kernel as TFLite
stores it (Conv2D ``[out, h, w, in]``, Dense ``[out, in]``; tensorflow/model-optimization PR
#743 and the pruning_with_sparsity_2_by_4 guide). Hardware with m:n sparse kernels reads exactly
that layout. :func:`m_by_n_violations` checks it on a Keras kernel with numpy only.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from edgekit.core.errors import InputError

__all__ = ["check_m_by_n", "m_by_n_violations", "parse_m_by_n"]


def parse_m_by_n(value: Any) -> tuple[int, int] | None:
    """Parses ``"2:4"`` (or ``[2, 4]``) into ``(m, n)``: m zeros in every n weights.

    Args:
        value: None, a ``"M:N"`` string, or a pair of integers.

    Returns:
        ``(m, n)`` or None.

    Raises:
        InputError: Not of that form, or not ``0 < m < n``.
    """
    if value is None:
        return None
    if isinstance(value, str):
        found = re.fullmatch(r"\s*(\d+)\s*:\s*(\d+)\s*", value)
        if not found:
            raise InputError(f"sparsity_m_by_n must look like '2:4' (m zeros in every n), "
                             f"got {value!r}")
        m, n = int(found.group(1)), int(found.group(2))
    elif (isinstance(value, (list, tuple)) and len(value) == 2
          and all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
        m, n = value
    else:
        raise InputError(f"sparsity_m_by_n must look like '2:4' (m zeros in every n), "
                         f"got {value!r}")
    if not 0 < m < n:
        raise InputError(f"sparsity_m_by_n needs 0 < m < n, got {m}:{n}")
    return m, n


def _rows_by_input_channel(kernel: np.ndarray) -> np.ndarray:
    """The kernel as rows whose last axis is the input channel (TFLite's layout).

    Conv2D ``[h, w, in, out]`` -> ``[out*h*w, in]``; Dense ``[in, out]`` -> ``[out, in]``.
    """
    if kernel.ndim == 2:
        return kernel.T
    if kernel.ndim == 4:
        return np.transpose(kernel, (3, 0, 1, 2)).reshape(-1, kernel.shape[2])
    raise InputError(f"m-by-n sparsity applies to 2-D or 4-D kernels, got shape {kernel.shape}")


def m_by_n_violations(kernel: np.ndarray, m: int, n: int) -> int:
    """Counts groups of ``n`` input-channel weights that hold fewer than ``m`` zeros.

    A trailing group shorter than ``n`` may keep at most ``n - m`` non-zeros (tfmot pads it).

    Args:
        kernel: A Conv2D (``[h, w, in, out]``) or Dense (``[in, out]``) kernel.
        m: Zeros required per group.
        n: Group length.

    Returns:
        The number of offending groups (0 when the pattern holds).

    Raises:
        InputError: The kernel is not 2-D or 4-D.
    """
    rows = _rows_by_input_channel(np.asarray(kernel))
    width = rows.shape[1]
    pad = (-width) % n
    padded = np.pad(rows, ((0, 0), (0, pad)))
    groups = padded.reshape(rows.shape[0], -1, n)
    nonzero = np.count_nonzero(groups, axis=-1)
    return int(np.sum(nonzero > n - m))


def check_m_by_n(kernels: dict[str, Any], m: int, n: int) -> dict[str, bool]:
    """Checks the pattern on several layers.

    Args:
        kernels: ``{layer name: kernel or list of kernels}``.
        m: Zeros required per group.
        n: Group length.

    Returns:
        ``{layer name: the pattern holds in all its kernels}``.
    """
    out = {}
    for name, ks in kernels.items():
        ks = ks if isinstance(ks, (list, tuple)) else [ks]
        out[name] = all(m_by_n_violations(k, m, n) == 0 for k in ks)
    return out
