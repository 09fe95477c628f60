"""Compression stages: pruning, quantization-aware training, distillation, low-rank factorization.

Recipes name a stage by ``class_name``; :func:`stage_from_dict` builds it and rejects unknown
names or config keys with a message that lists the known ones.
"""

from __future__ import annotations

from typing import Any

from edgekit.compress.base import SerializableStage, Stage, StageResult, kernel_sparsity
from edgekit.compress.distill import Distill
from edgekit.compress.lowrank import LowRank
from edgekit.compress.prune import Prune
from edgekit.compress.qat import QAT
from edgekit.errors import InputError

STAGES: dict[str, type[SerializableStage]] = {"Prune": Prune, "QAT": QAT, "Distill": Distill,
                                              "LowRank": LowRank}

__all__ = [
    "QAT",
    "STAGES",
    "Distill",
    "LowRank",
    "Prune",
    "Stage",
    "StageResult",
    "kernel_sparsity",
    "stage_from_dict",
]


def stage_from_dict(entry: Any) -> Any:
    """Builds a stage from ``{"class_name": ..., "config": {...}}``.

    Args:
        entry: The recipe entry.

    Returns:
        The stage object.

    Raises:
        InputError: Not a mapping, unknown class_name or keys, or invalid config values.
    """
    if not isinstance(entry, dict) or "class_name" not in entry:
        raise InputError(
            f"a stage must be a mapping {{class_name, config}}, got {entry!r}"
        )
    unknown = sorted(set(entry) - {"class_name", "config"})
    if unknown:
        raise InputError(f"unknown key(s) {unknown} in stage; known keys: class_name, config")
    name = entry["class_name"]
    if name not in STAGES:
        raise InputError(f"unknown stage {name!r}; known stages: {', '.join(STAGES)}")
    return STAGES[name].from_config(entry.get("config") or {})
