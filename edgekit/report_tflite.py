"""The blocks of a report's ``.tflite`` entry as frozen types (see :mod:`edgekit.report_types`).

Each block is what a converter step wrote, read back typed: the conversion config, the
calibration record, the verification against Keras, the static inspection, the zero weights per
layer, and, for int8 with ``debug_layers`` / ``max_accuracy_drop``, the per-layer quantization
error ranking (``quant_debug``) and the selective quantization result (``selective``). Their JSON
is exactly what ``edgekit.converters`` produces (same keys, same order). Fields are documented in
``docs/schemas/report.md``. No TensorFlow here: readers of report.json import this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from device_bench.json_record import OMIT_NONE, JsonRecord
from edgekit.core.errors import InputError

__all__ = [
    "Calibration",
    "Conversion",
    "FloatOp",
    "Inspection",
    "KeptFloat",
    "OpCount",
    "OpWork",
    "QuantDebug",
    "QuantDebugRow",
    "SelectedModel",
    "Selective",
    "SelectiveCost",
    "SelectiveModel",
    "SelectiveSkipped",
    "SelectiveTrial",
    "TensorInfo",
    "Verification",
    "WeightSparsity",
]


class ReportRecord(JsonRecord):
    """A record of report.json: its errors are :class:`~edgekit.core.errors.InputError`."""

    error = InputError


@dataclass(frozen=True, kw_only=True)
class Conversion(ReportRecord):
    """The ``conversion`` block: ``ConversionConfig.to_dict()``.

    Attributes:
        mode: ``int8``, ``int16x8``, ``float16``, ``dynamic`` or ``float32``.
        io: Input/output dtype (``int8``, ``uint8``, ``int16``, ``float32``).
        per_channel: Per-channel weight scales.
    """

    what = "conversion"

    mode: str
    io: str | None
    per_channel: bool


@dataclass(frozen=True, kw_only=True)
class Calibration(ReportRecord):
    """The ``calibration`` block (None for a mode without calibration).

    Attributes:
        record: File name of the calibration record beside the model (indices, seed).
        samples: Calibration samples used.
        seed: Seed of the draw.
        source: Where they came from (``digits training split (indices into the source)``);
            absent in reports written before it was recorded (then: the training split).
        selection: ``seeded`` (drawn by seed) or ``first`` (a stream's first samples); absent
            in reports written before it was recorded (then: seeded).
    """

    what = "calibration"

    record: str
    samples: int
    seed: int
    source: str | None = field(default=None, metadata=OMIT_NONE)
    selection: str | None = field(default=None, metadata=OMIT_NONE)


@dataclass(frozen=True, kw_only=True)
class Verification(ReportRecord):
    """The ``verification`` block: the ``.tflite`` on the held-out split against its Keras model.

    Attributes:
        samples: Held-out samples compared.
        accuracy: Top-1 accuracy of the ``.tflite`` (fraction).
        reference_accuracy: Top-1 accuracy of the Keras model on the same samples.
        top1_agreement: Share of samples whose argmax agrees with the Keras model's.
        max_abs_error: Largest output difference from the Keras model.
        mean_abs_error: Mean output difference.
        snr_db: Output SNR against the Keras model in dB (None: identical outputs).
        identical: The outputs equal the Keras model's exactly.
    """

    what = "verification"

    samples: int
    accuracy: float | None
    reference_accuracy: float | None
    top1_agreement: float | None
    max_abs_error: float | None
    mean_abs_error: float | None
    snr_db: float | None
    identical: bool


@dataclass(frozen=True, kw_only=True)
class OpCount(ReportRecord):
    """One row of the op histogram: an op and how many times the graph has it."""

    what = "op count"

    op: str
    count: int


@dataclass(frozen=True, kw_only=True)
class TensorInfo(ReportRecord):
    """A model input or output.

    Attributes:
        name: Tensor name.
        shape: Its shape, batch first.
        dtype: ``int8``, ``uint8``, ``float32``...
        scale: Quantization scale (a list when per-channel); None when not quantized.
        zero_point: Quantization zero point (a list when per-channel); None when not quantized.
    """

    what = "tensor"

    name: str
    shape: tuple[int, ...]
    dtype: str
    scale: float | tuple[float, ...] | None
    zero_point: int | tuple[int, ...] | None


@dataclass(frozen=True, kw_only=True)
class FloatOp(ReportRecord):
    """An op that reads or writes a float tensor (why a model is not full-integer).

    Attributes:
        op: Op name.
        subgraph: Subgraph index.
        index: Op index in the subgraph.
        tensors: The float tensors it touches.
    """

    what = "float op"

    op: str
    subgraph: int
    index: int
    tensors: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class OpWork(ReportRecord):
    """The work of one op of the main subgraph (``edgekit.converters.tflite_work``).

    Attributes:
        index: Op index in the main subgraph.
        op: Op name.
        macs: Multiply-accumulates per inference.
        params: Elements of its constant weight and bias tensors.
    """

    what = "op work"

    index: int
    op: str
    macs: int
    params: int


@dataclass(frozen=True, kw_only=True)
class Inspection(ReportRecord):
    """The ``inspection`` block: ``InspectionResult.to_dict()`` of the ``.tflite``.

    Attributes:
        path: The file inspected.
        bytes: Its size.
        gzip_bytes: Its size after gzip level 9.
        ops: Op histogram, most frequent first.
        tensors: Tensor count per dtype.
        inputs: Model inputs.
        outputs: Model outputs.
        float_ops: Ops touching float tensors.
        float_io: Inputs/outputs that are float.
        full_integer: No float op and no float input/output.
        float_tensors: Every float tensor; absent in reports written before it was recorded.
        macs: Multiply-accumulates per inference of the main subgraph; absent in reports
            written before the work was counted (as are ``params`` and ``op_work``).
        params: Elements of the counted ops' constant weights and biases.
        op_work: The ops that count MACs or parameters, in graph order.
    """

    what = "inspection"

    path: str
    bytes: int
    gzip_bytes: int
    ops: tuple[OpCount, ...]
    tensors: Mapping[str, int]
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    float_ops: tuple[FloatOp, ...]
    float_io: tuple[str, ...]
    full_integer: bool
    float_tensors: tuple[str, ...] | None = field(default=None, metadata=OMIT_NONE)
    macs: int | None = field(default=None, metadata=OMIT_NONE)
    params: int | None = field(default=None, metadata=OMIT_NONE)
    op_work: tuple[OpWork, ...] | None = field(default=None, metadata=OMIT_NONE)


@dataclass(frozen=True, kw_only=True)
class WeightSparsity(ReportRecord):
    """Zero weights of one conv / depthwise / fully-connected op in the ``.tflite``.

    Attributes:
        op: Op name.
        tensor: The weight tensor.
        shape: Its shape.
        dtype: Its dtype.
        scales: Quantization scales (0 unquantized, 1 per-tensor, C per-channel).
        params: Weights.
        zeros: Weights equal to zero (their zero point); None when numpy cannot read the dtype.
        sparsity: zeros / params (None with ``zeros``).
    """

    what = "weight sparsity"

    op: str
    tensor: str
    shape: tuple[int, ...]
    dtype: str
    scales: int
    params: int
    zeros: int | None
    sparsity: float | None


@dataclass(frozen=True, kw_only=True)
class QuantDebugRow(ReportRecord):
    """One quantized op output, ranked by its quantization error (1 = worst).

    Attributes:
        rank: Rank, worst first.
        tensor: The op's output tensor.
        op: The producing op (None when unknown).
        layer: The Keras layer it belongs to (None when unknown).
        shape: Output shape.
        scale: Output quantization scale.
        zero_point: Output zero point.
        alone_snr_db: Model-output SNR with only this op in int8 (the ranking key; None: no
            error at all).
        snr_db: The op's own output SNR against its float shadow.
        channel_snr_db: Median per-channel SNR.
        rmse: Root-mean-square error of the output.
        rmse_over_scale: rmse in quantization steps.
        max_abs_error: Largest output error.
        float_min: Smallest float output seen.
        float_max: Largest float output seen.
    """

    what = "quant_debug layer"

    rank: int
    tensor: str
    op: str | None
    layer: str | None
    shape: tuple[int, ...]
    scale: float | None
    zero_point: int | None
    alone_snr_db: float | None
    snr_db: float | None
    channel_snr_db: float | None
    rmse: float
    rmse_over_scale: float | None
    max_abs_error: float
    float_min: float
    float_max: float


@dataclass(frozen=True, kw_only=True)
class QuantDebug(ReportRecord):
    """The ``quant_debug`` block: per-layer quantization error (``debug_layers``).

    Attributes:
        record: The ``X.layers.json`` file beside the model (the same ranking).
        schema: ``edgekit.quant_debug/1``.
        samples: Calibration samples the debug model ran on.
        ranking: How the rows are ordered.
        layers: The ranked rows, worst first.
    """

    what = "quant_debug"

    record: str
    schema: str
    samples: int
    ranking: str
    layers: tuple[QuantDebugRow, ...]


@dataclass(frozen=True, kw_only=True)
class KeptFloat(ReportRecord):
    """An op selective quantization kept in float (a row of the debug ranking)."""

    what = "kept_float op"

    rank: int
    tensor: str
    op: str | None
    layer: str | None


@dataclass(frozen=True, kw_only=True)
class SelectiveModel(ReportRecord):
    """One model selective quantization measured (the plain int8 one).

    Attributes:
        accuracy: Held-out accuracy (fraction).
        drop_points: Accuracy drop against the float model, points.
        bytes: Size.
        gzip_bytes: Size after gzip.
        latency_ms: Quick local interpreter median (None: not timed).
    """

    what = "selective model"

    accuracy: float
    drop_points: float
    bytes: int
    gzip_bytes: int
    latency_ms: float | None


@dataclass(frozen=True, kw_only=True)
class SelectedModel(ReportRecord):
    """The model selective quantization chose: :class:`SelectiveModel`'s figures, plus the ops
    kept in float and how many ops now touch float tensors."""

    what = "selective selected model"

    accuracy: float
    drop_points: float
    bytes: int
    gzip_bytes: int
    latency_ms: float | None
    kept_float: tuple[KeptFloat, ...]
    float_ops: int


@dataclass(frozen=True, kw_only=True)
class SelectiveCost(ReportRecord):
    """What keeping ops in float cost against plain int8.

    Attributes:
        bytes: Extra bytes (selected - int8).
        latency_ratio: selected / int8 latency (None: not timed).
    """

    what = "selective cost"

    bytes: int
    latency_ratio: float | None


@dataclass(frozen=True, kw_only=True)
class SelectiveTrial(ReportRecord):
    """One model the search tried: how many worst ops in float, and its accuracy."""

    what = "selective trial"

    kept_float: int
    accuracy: float
    drop_points: float


@dataclass(frozen=True, kw_only=True)
class Selective(ReportRecord):
    """The ``selective`` block: the fewest worst ops kept in float to meet an accuracy budget.

    Attributes:
        record: The ``X.selective.json`` file beside the model.
        schema: ``edgekit.selective/1``.
        budget_points: Allowed accuracy drop, points.
        eval_samples: Held-out samples measured.
        float_accuracy: Accuracy of the float Keras model on them.
        met: Whether the chosen model meets the budget.
        int8: The plain int8 model.
        selected: The chosen model.
        cost: Its cost against plain int8.
        trials: Every model tried.
    """

    what = "selective"

    record: str
    schema: str
    budget_points: float
    eval_samples: int
    float_accuracy: float
    met: bool
    int8: SelectiveModel
    selected: SelectedModel
    cost: SelectiveCost
    trials: tuple[SelectiveTrial, ...]

    @classmethod
    def claims(cls, data: Mapping[str, Any]) -> bool:
        """A selective result has no ``skipped`` key."""
        return "skipped" not in data


@dataclass(frozen=True, kw_only=True)
class SelectiveSkipped(ReportRecord):
    """The ``selective`` block when selective quantization / debugging did not run.

    Attributes:
        skipped: Why (e.g. the source is a QAT model, which converts with its learned ranges).
    """

    what = "selective"

    skipped: str

    @classmethod
    def claims(cls, data: Mapping[str, Any]) -> bool:
        """The skipped form is ``{"skipped": reason}``."""
        return "skipped" in data
