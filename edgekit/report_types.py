"""The pipeline report (``edgekit.report/1``) as frozen types: :class:`Report` and its entries.

``Report.to_dict()`` is report.json exactly (same keys, same order, same nulls) and
``Report.from_dict()`` reads it back; scripts compare these files, so the key order is part of
the contract. One entry per stage, in run order::

    KerasEntry   the float model and each compression stage (kind: float, Prune, QAT, ...)
    TfliteEntry  each .tflite (kind: tflite): conversion, calibration, verification, inspection,
                 weight_sparsity, [quant_debug], [selective], bench per target, [slower_than],
                 [final]

Every entry counts its work: ``macs`` (multiply-accumulates per inference) and ``params``
(``edgekit.converters.keras_work`` / ``tflite_work``); a ``.tflite`` entry that runs slower on a
target than a ``.tflite`` of a model it was made from says so in ``slower_than``.

A stage's ``details`` stay a plain JSON mapping: each stage owns what it records. Every field is
documented in ``docs/schemas/report.md``. No TensorFlow here: report readers (HTML, comparison,
JUnit) import this module alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from device_bench.errors import BenchInputError
from device_bench.json_record import OMIT_FALSE, OMIT_NONE
from device_bench.result import BenchResult
from edgekit.core.errors import InputError
from edgekit.report_tflite import (
    Calibration,
    Conversion,
    Inspection,
    QuantDebug,
    ReportRecord,
    Selective,
    SelectiveSkipped,
    Verification,
    WeightSparsity,
)

__all__ = [
    "SCHEMA",
    "BudgetResult",
    "DataInfo",
    "Entry",
    "FinalSummary",
    "HostInfo",
    "KerasEntry",
    "Report",
    "SlowerThan",
    "TfliteEntry",
    "as_report",
]

SCHEMA = "edgekit.report/1"
TFLITE_KIND = "tflite"


@dataclass(frozen=True, kw_only=True)
class HostInfo(ReportRecord):
    """The ``host`` block: where the pipeline ran (not where it was benchmarked).

    Attributes:
        python: Python version.
        machine: CPU architecture.
    """

    what = "host"

    python: str
    machine: str


@dataclass(frozen=True, kw_only=True)
class DataInfo(ReportRecord):
    """The ``data`` block: ``Dataset.describe()``.

    Attributes:
        name: The data set (``digits``, ``kws``, a path).
        sample_shape: One sample's shape (no batch dimension).
        num_classes: Classes.
        class_names: Their names, by class index.
        train_samples: Training split size.
        heldout_samples: Held-out split size (every accuracy in the report is on it).
        split_seed: Seed of the stratified split.
        heldout_indices: Indices of the held-out samples in the source, so anyone can re-check.
    """

    what = "data"

    name: str
    sample_shape: tuple[int, ...]
    num_classes: int
    class_names: tuple[str, ...]
    train_samples: int
    heldout_samples: int
    split_seed: int
    heldout_indices: tuple[int, ...]


@dataclass(frozen=True, kw_only=True)
class KerasEntry(ReportRecord):
    """A Keras stage: the float model (kind ``float``) or a compression stage's result.

    Attributes:
        name: Stage name (``float``, ``prune``, ``qat``, ``prune2``...).
        kind: ``float`` or the stage class (``Prune``, ``QAT``, ``Distill``, ``LowRank``...).
        artefact: The model file in the run folder.
        accuracy: Held-out accuracy (fraction, 6 decimals).
        bytes: Size of the file (or folder).
        gzip_bytes: Its size after gzip level 9.
        params: Parameters.
        macs: Multiply-accumulates per inference at batch 1 (``keras_work``); absent in reports
            written before the work was counted.
        sparsity: Share of zeros over all Conv/Dense kernels (None: no kernels).
        layer_sparsity: Share of zeros per kernel layer.
        details: What the stage did (stage-specific JSON; see each stage).
        seconds: Wall time of the stage.
        reused: Set when a finished stage was reused (resume, sweep): its artefact, relative to
            the run folder; the key is absent otherwise.
    """

    what = "Keras stage entry"

    name: str
    kind: str
    artefact: str
    accuracy: float | None
    bytes: int
    gzip_bytes: int
    params: int
    macs: int | None = field(default=None, metadata=OMIT_NONE)
    sparsity: float | None
    layer_sparsity: Mapping[str, float | None]
    details: Mapping[str, Any]
    seconds: float
    reused: str | None = field(default=None, metadata=OMIT_NONE)

    @classmethod
    def claims(cls, data: Mapping[str, Any]) -> bool:
        """Every entry whose kind is not ``tflite``."""
        return data.get("kind") != TFLITE_KIND

    @property
    def zero_share(self) -> float | None:
        """Share of zero weights (the ``sparsity`` field)."""
        return self.sparsity


@dataclass(frozen=True, kw_only=True)
class SlowerThan(ReportRecord):
    """A ``.tflite`` ran slower on a target than an earlier one it was made from.

    Attributes:
        than: The faster entry's name (``float32``: the float model converted as it was).
        target: The target spec both ran on.
        p50_ms: This entry's p50 latency there.
        than_p50_ms: The faster entry's p50 there.
        ratio: ``p50_ms / than_p50_ms`` (above 1), 4 decimals.
    """

    what = "slower_than"

    than: str
    target: str
    p50_ms: float
    than_p50_ms: float
    ratio: float


@dataclass(frozen=True, kw_only=True)
class TfliteEntry(ReportRecord):
    """A converted ``.tflite``: the float32 baseline or the deliverable (``final``).

    Attributes:
        name: Its name (``float32``, ``model_int8``).
        kind: ``tflite``.
        artefact: The ``.tflite`` file in the run folder.
        source: The stage whose model was converted.
        conversion: The conversion config.
        accuracy: Held-out accuracy of the ``.tflite`` (the verification's).
        bytes: Size.
        gzip_bytes: Size after gzip level 9.
        macs: Multiply-accumulates per inference of its main subgraph (``tflite_work``);
            absent in reports written before the work was counted (as is ``params``).
        params: Elements of the constant weights and biases of its counted ops.
        calibration: The calibration record (None: the mode needs none).
        verification: Against the Keras model on the held-out split.
        inspection: Ops, dtypes, I/O quantization.
        weight_sparsity: Zero weights per weight op.
        quant_debug: Per-layer quantization error (int8 with ``debug_layers``); absent otherwise.
        selective: Selective quantization (int8 with ``max_accuracy_drop``), or why it was
            skipped; absent otherwise.
        bench: One ``edgekit.bench/1`` result per target spec.
        slower_than: Each earlier ``.tflite`` of a model this one was made from that ran faster
            on a target (higher p50 here); empty when none did; absent in older reports.
        seconds: Wall time of conversion, verification and inspection (not the bench).
        final: True on the deliverable; the key is absent on the other entries.
    """

    what = ".tflite entry"

    name: str
    kind: str = TFLITE_KIND
    artefact: str
    source: str
    conversion: Conversion
    accuracy: float | None
    bytes: int
    gzip_bytes: int
    macs: int | None = field(default=None, metadata=OMIT_NONE)
    params: int | None = field(default=None, metadata=OMIT_NONE)
    calibration: Calibration | None
    verification: Verification
    inspection: Inspection
    weight_sparsity: tuple[WeightSparsity, ...]
    quant_debug: QuantDebug | None = field(default=None, metadata=OMIT_NONE)
    selective: Selective | SelectiveSkipped | None = field(default=None, metadata=OMIT_NONE)
    bench: Mapping[str, BenchResult] = field(default_factory=dict)
    slower_than: tuple[SlowerThan, ...] | None = field(default=None, metadata=OMIT_NONE)
    seconds: float
    final: bool = field(default=False, metadata=OMIT_FALSE)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.kind != TFLITE_KIND:
            raise InputError(f"{self.what}: kind must be {TFLITE_KIND!r}, got {self.kind!r}")

    @classmethod
    def claims(cls, data: Mapping[str, Any]) -> bool:
        """Entries whose kind is ``tflite``."""
        return data.get("kind") == TFLITE_KIND

    @property
    def zero_share(self) -> float | None:
        """Share of zero weights over the weight ops (None: no weights, or none readable)."""
        rows = [w for w in self.weight_sparsity if w.zeros is not None]
        params = sum(w.params for w in rows)
        return sum(w.zeros or 0 for w in rows) / params if params else None


Entry = KerasEntry | TfliteEntry


@dataclass(frozen=True, kw_only=True)
class BudgetResult(ReportRecord):
    """One budget the recipe set, and whether it held.

    Attributes:
        name: ``max_accuracy_drop``, ``max_size_kb``, ``max_latency_ms[<target>]``,
            ``max_energy_mj[<target>]``, ``require_int8`` or ``channel_target[<stage>]`` (a
            channel search's budget on the shipped model, :mod:`edgekit.report_search`).
        limit: The limit (true for ``require_int8``).
        value: The measured figure (for ``require_int8``: whether the model is full-integer);
            None when it was not measured, which fails.
        unit: Its unit (``points``, ``KiB``, ``ms (p50)``, ``mJ/inference``; "" for
            ``require_int8``).
        passed: Whether the budget held.
        float_ops: ``require_int8`` only: names of the ops that touch float tensors.
        float_io: ``require_int8`` only: float inputs/outputs.
    """

    what = "budget"

    name: str
    limit: float | bool | str | None
    value: float | bool | str | None
    unit: str
    passed: bool
    float_ops: tuple[str, ...] | None = field(default=None, metadata=OMIT_NONE)
    float_io: tuple[str, ...] | None = field(default=None, metadata=OMIT_NONE)


@dataclass(frozen=True, kw_only=True)
class FinalSummary(ReportRecord):
    """The ``final`` block: the deliverable in one place.

    Attributes:
        artefact: The final ``.tflite``.
        accuracy: Its held-out accuracy.
        float_accuracy: The float model's.
        accuracy_drop_points: 100 x (float - final), 4 decimals (None when either is missing).
        bytes: Its size.
        gzip_bytes: Its size after gzip.
        macs: Its multiply-accumulates per inference; absent in reports written before the work
            was counted (as is ``params``).
        params: Its weight and bias parameters.
        full_integer: No float op and no float input/output.
    """

    what = "final"

    artefact: str
    accuracy: float | None
    float_accuracy: float | None
    accuracy_drop_points: float | None
    bytes: int
    gzip_bytes: int
    macs: int | None = field(default=None, metadata=OMIT_NONE)
    params: int | None = field(default=None, metadata=OMIT_NONE)
    full_integer: bool


@dataclass(frozen=True, kw_only=True)
class Report(ReportRecord):
    """One pipeline run (``edgekit.report/1``, ``OUT/report.json``).

    Attributes:
        schema: ``edgekit.report/1``.
        edgekit_version: edgekit's version (``unknown`` from a source tree).
        created_utc: When the report was written (ISO 8601, seconds).
        host: Where the pipeline ran.
        seconds: Wall time of the run.
        recipe: The resolved recipe (``Recipe.to_dict()``).
        data: The data and its split.
        stages: One entry per stage, in run order.
        final: The deliverable's summary.
        budgets: Every budget the recipe set, in recipe order.
        passed: Every budget held.
    """

    what = "report"
    schema_id = SCHEMA

    schema: str = SCHEMA
    edgekit_version: str
    created_utc: str
    host: HostInfo
    seconds: float
    recipe: Mapping[str, Any]
    data: DataInfo
    stages: tuple[Entry, ...]
    final: FinalSummary
    budgets: tuple[BudgetResult, ...]
    passed: bool

    @classmethod
    def from_dict(cls, data: Any, where: str | None = None) -> Report:
        """Reads report.json back (the inverse of :meth:`to_dict`).

        Args:
            data: The parsed JSON.
            where: What to call it in messages (default ``report``).

        Returns:
            The report.

        Raises:
            InputError: A wrong ``schema``, an unknown or missing key, or a value of the wrong
                type, in one line that names the path (also inside a bench result).
        """
        try:
            return super().from_dict(data, where)
        except BenchInputError as e:
            raise InputError(str(e)) from e

    @property
    def tflite_entries(self) -> tuple[TfliteEntry, ...]:
        """The ``.tflite`` entries, in run order."""
        return tuple(e for e in self.stages if isinstance(e, TfliteEntry))

    @property
    def final_entry(self) -> TfliteEntry | None:
        """The deliverable's entry: the last flagged ``final``, else the one named by
        ``final.artefact``; None when there is neither."""
        flagged = [e for e in self.tflite_entries if e.final]
        if flagged:
            return flagged[-1]
        return next((e for e in self.tflite_entries if e.artefact == self.final.artefact), None)

    @property
    def targets(self) -> tuple[str, ...]:
        """Every bench target of any entry, in first-seen order."""
        seen: dict[str, None] = {}
        for e in self.tflite_entries:
            seen.update(dict.fromkeys(e.bench))
        return tuple(seen)

    @property
    def failed_budgets(self) -> tuple[str, ...]:
        """Names of the budgets that did not hold."""
        return tuple(b.name for b in self.budgets if not b.passed)


def as_report(report: Report | Mapping[str, Any], what: str = "report") -> Report:
    """A :class:`Report` from a report or its JSON dict (readers take either).

    Args:
        report: The report, or an ``edgekit.report/1`` dict.
        what: What to call it in messages (``run A``, ``report``).

    Returns:
        The report.

    Raises:
        InputError: Not a report (wrong schema, keys or types); the message names ``what``.
    """
    if isinstance(report, Report):
        return report
    return Report.from_dict(report, what)
