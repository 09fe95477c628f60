"""Running one compression stage, the one way the CLI, the API and recipes all use.

A stage reads a model and writes a file: :func:`run_stage` binds the stage's teacher (a teacher
named ``float`` is the run's float model file), applies the stage, saves the result atomically
where the caller says, and reloads it from that file, so the next stage starts from exactly
what was written (as DESIGN.md has it: stages hand each other files, not live objects).
``edgekit.pipeline`` runs a recipe's stages with it; ``edgekit.api.compress`` (and so
``edgekit compress``) runs its stages with it too.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgekit.compress.distillation import bind_teacher
from edgekit.core._keras import keras
from edgekit.core.model_io import load_model, save_model
from edgekit.data import Dataset

__all__ = ["StageOutput", "run_stage"]


@dataclass(frozen=True)
class StageOutput:
    """What one stage handed on.

    Attributes:
        model: The model, as reloaded from ``path``.
        path: The file it was saved to.
        details: What the stage reports about itself (its report entry's ``details``).
    """

    model: keras.Model
    path: Path
    details: dict[str, Any]


def run_stage(stage: Any, model: keras.Model, data: Dataset, dest: str | os.PathLike[str],
              float_model: str | os.PathLike[str],
              checkpoints: str | os.PathLike[str] | None = None) -> StageOutput:
    """Applies ``stage`` to ``model`` and hands the result on as the file ``dest``.

    Args:
        stage: A registered compression stage (``apply(model, data) -> StageResult``).
        model: Its input model.
        data: Training and held-out data.
        dest: The output file (``.keras``, or ``.h5`` for a stage whose artefact suffix is).
        float_model: The model file a teacher named ``float`` stands for.
        checkpoints: A folder where a stage that can resume mid-way (``with_checkpoints``: the
            channel search) keeps its steps; removed once the stage has finished.

    Returns:
        The reloaded model, its file and the stage's details.

    Raises:
        InputError: Bad stage values for this model or data, a teacher that cannot be loaded,
            or an output path that cannot be written.
    """
    stage = bind_teacher(stage, Path(float_model))
    if checkpoints is not None and hasattr(stage, "with_checkpoints"):
        stage = stage.with_checkpoints(checkpoints)
    result = stage.apply(model, data)
    path = save_model(result.model, Path(dest))
    if checkpoints is not None:
        shutil.rmtree(checkpoints, ignore_errors=True)
    return StageOutput(load_model(path), path, dict(result.details))
