"""Where a channel search scores its proposals and takes its measurements.

Each step of the search (:mod:`~edgekit.compress.channel_search`) proposes one cut per
prunable group and short-fine-tunes every proposal before it chooses: those fine-tunes are
independent of one another, and they are most of a search's time. A :class:`SearchPool` runs
them: :class:`LocalPool` (the default) one after another in this process; the Ray executor
(:mod:`edgekit.search_pool_ray`, the pipeline layer) as Ray tasks spread over a cluster, so that
a search inside a sweep (or ``edgekit run --executor ray``) uses the same cluster as the
sweep's candidates. The pool also carries the search's measurements (``measuring``): on Ray a
board is a resource of capacity 1, so a search measuring on it never runs beside another
candidate's benchmark there.

The pool in force is a context variable: the executor that runs a build installs its pool
(:func:`use_pool`), and the search asks :func:`current_pool` (the compress layer never imports
an executor).

A proposal travels as a :class:`ScoreJob` (its model as ``.keras`` bytes, the fine-tune's
settings) with one :class:`ScoreData` per step (the drawn batches, shared by every job), and
comes back as a :class:`Scored` (held-out accuracy, the fine-tuned model's bytes, where and how
long it ran). :func:`score_proposal` is the one function that scores, whichever pool runs it:
it seeds every generator (``keras.utils.set_random_seed``) and loads the model from its bytes
first, so a proposal scored in a Ray worker gets the same dropout draws and batches as one
scored here (what can still differ is the float rounding of a process with other thread
counts).
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import socket
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np

from edgekit.compress.bn_recalibration import recalibrate_batch_norm, seeded_rows
from edgekit.compress.training import accuracy, fit
from edgekit.core._keras import keras
from edgekit.core.model_io import load_model, save_model

__all__ = ["LocalPool", "ScoreData", "ScoreJob", "Scored", "SearchPool", "current_pool",
           "model_from_bytes", "model_to_bytes", "score_data", "score_proposal", "use_pool",
           "worker_id"]

Item = TypeVar("Item")
Common = TypeVar("Common")
Result = TypeVar("Result")


def worker_id() -> str:
    """``host:pid`` of this process (where a proposal was scored)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def model_to_bytes(model: keras.Model) -> bytes:
    """The model as the bytes of a ``.keras`` file."""
    with tempfile.TemporaryDirectory(prefix="edgekit-proposal-") as tmp:
        path = save_model(model, Path(tmp) / "model.keras")
        return path.read_bytes()


def model_from_bytes(blob: bytes) -> keras.Model:
    """A model from :func:`model_to_bytes`'s bytes.

    The bytes are the search's own (the driver made them from a model this run already loaded,
    under whatever trust the run was given), so Lambda layers load as they did there.
    """
    with tempfile.TemporaryDirectory(prefix="edgekit-proposal-") as tmp:
        path = Path(tmp) / "model.keras"
        path.write_bytes(blob)
        return load_model(path, unsafe=True)


@dataclass(frozen=True)
class ScoreData:
    """What every proposal of a search is scored with (drawn once, shared by every job).

    Attributes:
        bn_x: The batches that re-estimate BatchNormalization statistics (in order).
        fit_x: The short fine-tune's samples.
        fit_y: Their labels.
        val_x: The held-out share of the training split the proposals are ranked on.
        val_y: Its labels.
    """

    bn_x: np.ndarray
    fit_x: np.ndarray
    fit_y: np.ndarray
    val_x: np.ndarray
    val_y: np.ndarray


def score_data(x: np.ndarray, y: np.ndarray, val_x: np.ndarray, val_y: np.ndarray, *,
               recalibrate_bn: int, proposal_batches: int, batch_size: int, seed: int
               ) -> ScoreData:
    """Draws the search's scoring batches from its training split (seeded).

    The draws are those :func:`~edgekit.compress.bn_recalibration.recalibrate_batch_norm` and a
    seeded fine-tune subset would make from the whole split, taken here once so that a job
    carries only what it reads.

    Args:
        x: The search's training samples (the held-out share removed).
        y: Their labels.
        val_x: The held-out samples.
        val_y: Their labels.
        recalibrate_bn: BatchNormalization batches.
        proposal_batches: Fine-tune batches per proposal (0: none).
        batch_size: Samples per batch.
        seed: Seed of both draws.

    Returns:
        The scoring data.
    """
    bn_pick = seeded_rows(len(x), min(len(x), recalibrate_bn * batch_size), seed)
    fit_pick = seeded_rows(len(x), min(len(x), max(0, proposal_batches) * batch_size), seed)
    return ScoreData(x[bn_pick], x[fit_pick], y[fit_pick], val_x, val_y)


@dataclass(frozen=True)
class ScoreJob:
    """One proposal to score.

    Attributes:
        label: ``group before->after`` (the progress bar's label).
        model: The cut model's ``.keras`` bytes.
        recalibrate_bn: BatchNormalization batches (0: none).
        batch_size: Samples per batch.
        learning_rate: The short fine-tune's learning rate.
        augment_shift: Its random shift (image samples).
        seed: Seed of every generator.
    """

    label: str
    model: bytes
    recalibrate_bn: int
    batch_size: int
    learning_rate: float
    augment_shift: int
    seed: int


@dataclass(frozen=True)
class Scored:
    """A scored proposal.

    Attributes:
        accuracy: Held-out accuracy after BN re-estimation and the short fine-tune.
        model: The fine-tuned model's ``.keras`` bytes.
        worker: ``host:pid`` of the process that scored it.
        seconds: How long the scoring took there.
    """

    accuracy: float
    model: bytes
    worker: str
    seconds: float


def score_proposal(job: ScoreJob, data: ScoreData) -> Scored:
    """Re-estimates BN statistics, fine-tunes briefly, and scores one proposal.

    Args:
        job: The proposal.
        data: The search's scoring data.

    Returns:
        Its held-out accuracy and the fine-tuned model.
    """
    t0 = time.perf_counter()
    keras.utils.set_random_seed(job.seed)
    model = model_from_bytes(job.model)
    recalibrate_batch_norm(model, data.bn_x, batches=job.recalibrate_bn,
                           batch_size=job.batch_size, seed=job.seed)
    if len(data.fit_x):
        fit(model, data.fit_x, data.fit_y, epochs=1, learning_rate=job.learning_rate,
            batch_size=job.batch_size, augment_shift=job.augment_shift, seed=job.seed,
            desc=f"proposal {job.label}")
    score = accuracy(model, data.val_x, data.val_y)
    return Scored(score, model_to_bytes(model), worker_id(), time.perf_counter() - t0)


class SearchPool(Protocol):
    """Runs a search's independent work somewhere (this process, a cluster).

    Attributes:
        kind: ``local`` or ``ray``.
    """

    kind: str

    def map(self, fn: Callable[[Item, Common], Result], items: Sequence[Item],
            common: Common) -> list[Result]:
        """``[fn(item, common) for item in items]``, in order, wherever the pool runs them.

        Raises:
            Whatever ``fn`` raised for the first item that failed.
        """

    def measuring(self, spec: str, target: Any) -> Any:
        """The object a search measures on ``spec`` with (``bench``/``check`` of a path).

        Args:
            spec: The device_bench target spec.
            target: The device_bench target object for it, made here.

        Returns:
            ``target`` itself, or one with the same ``bench`` and ``check`` that runs them
            where the pool places measurements on that target.
        """

    def stats(self) -> dict[str, Any]:
        """What ran where: ``kind``, ``tasks``, ``measurements`` (for the report)."""


class LocalPool:
    """Runs everything here, one after another (the default)."""

    kind = "local"

    def __init__(self) -> None:
        self.tasks = 0

    def map(self, fn: Callable[[Item, Common], Result], items: Sequence[Item],
            common: Common) -> list[Result]:
        """Calls ``fn`` on each item in this process, in order."""
        self.tasks += len(items)
        return [fn(item, common) for item in items]

    def measuring(self, spec: str, target: Any) -> Any:
        """``target`` itself: measurements run in this process."""
        return target

    def stats(self) -> dict[str, Any]:
        """``{"kind": "local", "tasks": N}``."""
        return {"kind": self.kind, "tasks": self.tasks}


_POOL: contextvars.ContextVar[SearchPool | None] = contextvars.ContextVar(
    "edgekit_search_pool", default=None)


def current_pool() -> SearchPool:
    """The pool installed by the enclosing :func:`use_pool`, else a new :class:`LocalPool`."""
    pool = _POOL.get()
    return LocalPool() if pool is None else pool


@contextlib.contextmanager
def use_pool(pool: SearchPool) -> Iterator[SearchPool]:
    """Within it, channel searches run their proposals and measurements on ``pool``.

    Args:
        pool: The pool.

    Yields:
        The pool.
    """
    token = _POOL.set(pool)
    try:
        yield pool
    finally:
        _POOL.reset(token)
