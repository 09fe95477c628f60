"""Compression stages: pruning (weights, channels), QAT, distillation, low-rank factorization.

Every module of this package is imported here, and each stage registers itself in its own module
(:mod:`edgekit.compress.registry`), so a new stage is one new file. Recipes name a stage by
``class_name``; :func:`stage_from_dict` builds it and rejects unknown names or config keys with a
message that lists the known ones. Importing this package does not load TensorFlow.
"""

from __future__ import annotations

import importlib
import pkgutil

from edgekit.compress.base import SerializableStage, Stage, StageResult, kernel_sparsity
from edgekit.compress.registry import (
    StageInfo,
    get_stage,
    stage_from_dict,
    stage_infos,
    stage_names,
)

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

from edgekit.compress.channel_prune import ChannelPrune  # noqa: E402  (registered above)
from edgekit.compress.distill import Distill  # noqa: E402
from edgekit.compress.lowrank import LowRank  # noqa: E402
from edgekit.compress.prune import Prune  # noqa: E402
from edgekit.compress.qat import QAT  # noqa: E402

STAGES: dict[str, type[SerializableStage]] = {info.name: info.cls for info in stage_infos()}

__all__ = [
    "QAT",
    "STAGES",
    "ChannelPrune",
    "Distill",
    "LowRank",
    "Prune",
    "Stage",
    "StageInfo",
    "StageResult",
    "get_stage",
    "kernel_sparsity",
    "stage_from_dict",
    "stage_infos",
    "stage_names",
]
