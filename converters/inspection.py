"""What is inside a ``.tflite`` file: ops, tensor dtypes, I/O quantization, size, weight sparsity,
and the work (MACs and parameters, per op and in total: :mod:`.work`).

Reads the flatbuffer with the schema bindings that ship in ``ai_edge_litert``
(``schema_py_generated``), without TensorFlow and without building an interpreter, so it works on
any model, including ones the local runtime cannot run.

A model is *full integer* when no op reads or writes a float (float32/float16) activation and its
inputs and outputs are not float: it then runs on integer-only hardware (microcontroller NPUs,
Edge TPU, Hexagon) with no float fallback.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from device_bench.sizes import gzip_size

from .flatbuffer import (
    _NUMPY_DTYPES,
    _buffer_bytes,
    _dtype,
    _is_constant,
    _load,
    _op_name,
    _quant,
    _text,
    _weight_tensor,
)
from .result import JsonResult
from .work import _parsed_work, format_macs

__all__ = [
    "InspectionResult",
    "format_inspection",
    "inspect_tflite",
    "weight_sparsity",
]

_FLOAT_DTYPES = frozenset({"float32", "float16"})
# Ops whose input 1 is the weight (filter) tensor; TRANSPOSE_CONV's inputs are
# (output_shape, filter, input, bias), so it is input 1 there too.
_WEIGHT_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV")


@dataclass(frozen=True)
class InspectionResult(JsonResult):
    """Static facts about one ``.tflite`` model (see :func:`inspect_tflite`).

    ``macs``/``params`` are the main subgraph's multiply-accumulates and weight parameters
    (:func:`~edgekit.converters.work.tflite_work`); ``op_work`` lists its ops that count any
    (``{"index", "op", "macs", "params"}``, graph order).
    """

    path: str
    bytes: int
    gzip_bytes: int
    ops: list[dict[str, Any]] = field(default_factory=list)
    tensors: dict[str, int] = field(default_factory=dict)
    inputs: list[dict[str, Any]] = field(default_factory=list)
    outputs: list[dict[str, Any]] = field(default_factory=list)
    float_ops: list[dict[str, Any]] = field(default_factory=list)
    float_io: list[str] = field(default_factory=list)
    full_integer: bool = False
    float_tensors: list[str] = field(default_factory=list)
    macs: int = 0
    params: int = 0
    op_work: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Returns the result as plain JSON-ready data (fresh copies of the lists)."""
        return {
            "path": self.path,
            "bytes": self.bytes,
            "gzip_bytes": self.gzip_bytes,
            "ops": [dict(o) for o in self.ops],
            "tensors": dict(self.tensors),
            "inputs": [dict(t) for t in self.inputs],
            "outputs": [dict(t) for t in self.outputs],
            "float_ops": [dict(o) for o in self.float_ops],
            "float_io": list(self.float_io),
            "full_integer": self.full_integer,
            "float_tensors": list(self.float_tensors),
            "macs": self.macs,
            "params": self.params,
            "op_work": [dict(o) for o in self.op_work],
        }


def _io_entry(tensor: Any) -> dict[str, Any]:
    scale, zero_point = _quant(tensor)
    return {
        "name": _text(tensor.name),
        "shape": [int(d) for d in (tensor.shape if tensor.shape is not None else [])],
        "dtype": _dtype(tensor),
        "scale": scale,
        "zero_point": zero_point,
    }


def inspect_tflite(model: str | os.PathLike[str] | bytes) -> InspectionResult:
    """Lists the ops, tensor dtypes, I/O quantization and size of a ``.tflite`` model.

    Args:
        model: Path of the ``.tflite`` file, or its bytes.

    Returns:
        The inspection. ``float_ops`` lists every op that reads or writes a non-constant
        float32/float16 tensor, ``float_tensors`` those tensors (activations and I/O, not
        weights); ``full_integer`` is true when there are none and no input or output is float.
        ``macs``, ``params`` and ``op_work`` count the work of the main subgraph
        (:func:`~edgekit.converters.work.tflite_work`).

    Raises:
        InputError: The file is missing, is not a TFLite flatbuffer, or is damaged.
    """
    parsed = _load(model)
    m = parsed.model
    counts: Counter[str] = Counter()
    dtypes: Counter[str] = Counter()
    float_ops: list[dict[str, Any]] = []
    float_tensors: list[str] = []
    for sg_index, subgraph in enumerate(m.subgraphs):
        tensors = subgraph.tensors or []
        dtypes.update(_dtype(t) for t in tensors)
        for op_index, op in enumerate(subgraph.operators or []):
            name = _op_name(m, op.opcodeIndex)
            counts[name] += 1
            touched: list[str] = []
            for ti in [*(op.inputs if op.inputs is not None else []),
                       *(op.outputs if op.outputs is not None else [])]:
                if ti < 0:  # optional input left out
                    continue
                t = tensors[ti]
                if _dtype(t) in _FLOAT_DTYPES and not _is_constant(parsed, t):
                    tname = _text(t.name)
                    if tname not in touched:
                        touched.append(tname)
            float_tensors.extend(t for t in touched if t not in float_tensors)
            if touched:
                float_ops.append(
                    {"op": name, "subgraph": sg_index, "index": op_index, "tensors": touched}
                )
    main = m.subgraphs[0]
    main_tensors = main.tensors or []
    inputs = [_io_entry(main_tensors[i]) for i in (main.inputs if main.inputs is not None else [])]
    outputs = [
        _io_entry(main_tensors[i]) for i in (main.outputs if main.outputs is not None else [])
    ]
    float_io = [t["name"] for t in [*inputs, *outputs] if t["dtype"] in _FLOAT_DTYPES]
    ops = [
        {"op": op, "count": n} for op, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    ]
    work = _parsed_work(parsed)
    return InspectionResult(
        path=parsed.name,
        bytes=len(parsed.data),
        gzip_bytes=gzip_size(parsed.data),
        ops=ops,
        tensors=dict(sorted(dtypes.items())),
        inputs=inputs,
        outputs=outputs,
        float_ops=float_ops,
        float_io=float_io,
        full_integer=not float_ops and not float_io,
        float_tensors=float_tensors,
        macs=work["macs"],
        params=work["params"],
        op_work=[o for o in work["ops"] if o["macs"] or o["params"]],
    )


def _count_zeros(values: np.ndarray, tensor: Any) -> int:
    """Zeros of a weight: stored values equal to the zero point (0 for float and symmetric int)."""
    _, zero_point = _quant(tensor)
    if zero_point is None or np.issubdtype(values.dtype, np.floating):
        return int(np.count_nonzero(values == 0))
    zps = np.asarray(zero_point if isinstance(zero_point, list) else [zero_point])
    if zps.size > 1 and values.ndim > 0:
        axis = int(tensor.quantization.quantizedDimension)
        shape = [1] * values.ndim
        shape[axis] = zps.size
        zps = zps.reshape(shape)
    return int(np.count_nonzero(values == zps))


def weight_sparsity(model: str | os.PathLike[str] | bytes) -> list[dict[str, Any]]:
    """Counts the zero weights of every conv / depthwise / fully-connected / transpose-conv op.

    An int8 weight equal to its zero point (0: weights are symmetric) is a zero weight, so a pruned
    model shows its sparsity here after conversion. Ops whose filter is not a constant are skipped.

    Args:
        model: Path of the ``.tflite`` file, or its bytes.

    Returns:
        One dict per weight op, in graph order: ``{"op", "tensor", "shape", "dtype", "scales",
        "params", "zeros", "sparsity"}``; ``scales`` is the number of quantization scales (0 when
        unquantized, 1 per-tensor, C per-channel). ``zeros``/``sparsity`` are None for dtypes numpy
        cannot read (e.g. packed int4).

    Raises:
        InputError: The file is missing, is not a TFLite flatbuffer, or is damaged.
    """
    parsed = _load(model)
    rows: list[dict[str, Any]] = []
    for subgraph in parsed.model.subgraphs:
        for op in subgraph.operators or []:
            name = _op_name(parsed.model, op.opcodeIndex)
            inputs = op.inputs if op.inputs is not None else []
            if name not in _WEIGHT_OPS or len(inputs) < 2 or inputs[1] < 0:
                continue
            t = _weight_tensor(parsed, subgraph, int(inputs[1]))
            if t is None:
                continue
            shape = [int(d) for d in (t.shape if t.shape is not None else [])]
            params = int(np.prod(shape)) if shape else 0
            dtype = _dtype(t)
            scale, _ = _quant(t)
            n_scales = 0 if scale is None else (len(scale) if isinstance(scale, list) else 1)
            zeros: int | None = None
            np_dtype = _NUMPY_DTYPES.get(dtype)
            raw = _buffer_bytes(parsed, t)
            # A buffer that is no whole number of elements is not this tensor's (malformed).
            if np_dtype is not None and raw is not None \
                    and len(raw) % np.dtype(np_dtype).itemsize == 0:
                values = np.frombuffer(raw, dtype=np_dtype)
                if values.size == params:
                    zeros = _count_zeros(values.reshape(shape), t)
            rows.append({
                "op": name,
                "tensor": _text(t.name),
                "shape": shape,
                "dtype": dtype,
                "scales": n_scales,
                "params": params,
                "zeros": zeros,
                "sparsity": (zeros / params) if zeros is not None and params else None,
            })
    return rows


def _short(name: str, width: int = 56) -> str:
    """Shortens long converter tensor names (``a;b;c`` fused names) for the text report."""
    return name if len(name) <= width else name[: width // 2 - 1] + "…" + name[-(width // 2) :]


def _fmt_quant(entry: dict[str, Any]) -> str:
    if entry["scale"] is None:
        return "-"
    if isinstance(entry["scale"], list):
        return f"per-channel ({len(entry['scale'])} scales)"
    return f"scale={entry['scale']:.6g} zero_point={entry['zero_point']}"


def format_inspection(
    result: InspectionResult, sparsity: list[dict[str, Any]] | None = None
) -> str:
    """Renders an inspection (and optionally :func:`weight_sparsity`) as a text report.

    Args:
        result: From :func:`inspect_tflite`.
        sparsity: From :func:`weight_sparsity` of the same model, or None to leave it out.

    Returns:
        Multi-line text for the terminal (no trailing newline).
    """
    kb = result.bytes / 1024
    gz = result.gzip_bytes / 1024
    lines = [
        f"model      {result.path}",
        f"size       {result.bytes} bytes ({kb:.1f} KiB), gzip -9 {result.gzip_bytes} bytes "
        f"({gz:.1f} KiB)",
        f"integer    {'full integer' if result.full_integer else 'NOT full integer'}",
        f"work       {format_macs(result.macs)} MACs ({result.macs:,}), {result.params:,} params",
        "",
        "ops (histogram)",
    ]
    width = max([len(o["op"]) for o in result.ops] + [2])
    most = max([o["count"] for o in result.ops] + [1])
    for o in result.ops:
        bar = "#" * max(1, round(30 * o["count"] / most))
        lines.append(f"  {o['op']:<{width}}  {o['count']:>4}  {bar}")
    if result.op_work:
        lines += ["", "work per op (MACs per inference; ops that count none are left out)"]
        for o in result.op_work:
            share = f"{100 * o['macs'] / result.macs:5.1f}%" if result.macs else "  n/a"
            lines.append(f"  #{o['index']:<4} {o['op']:<{width}}  {o['macs']:>13,} MACs  {share}"
                         f"  {o['params']:>9,} params")
    lines += ["", "tensors    " + ", ".join(f"{k}: {v}" for k, v in result.tensors.items()), ""]
    lines.append("inputs / outputs")
    for kind, entries in (("in ", result.inputs), ("out", result.outputs)):
        for e in entries:
            lines.append(
                f"  {kind} {_short(e['name'])}  {e['dtype']}{e['shape']}  {_fmt_quant(e)}"
            )
    if result.float_ops or result.float_io:
        lines += ["", f"float ops ({len(result.float_ops)})"]
        lines += [
            f"  #{o['index']:<4} {o['op']:<{width}}  {', '.join(_short(t) for t in o['tensors'])}"
            for o in result.float_ops
        ]
        if result.float_io:
            lines.append(f"  float I/O: {', '.join(result.float_io)}")
        if result.float_tensors:
            lines += ["", f"float tensors ({len(result.float_tensors)})"]
            lines += [f"  {_short(t)}" for t in result.float_tensors]
    if sparsity:
        lines += ["", "weight sparsity"]
        for row in sparsity:
            pct = "n/a" if row["sparsity"] is None else f"{100 * row['sparsity']:5.1f}%"
            shape = "x".join(str(d) for d in row["shape"])
            lines.append(
                f"  {row['op']:<18} {row['dtype']:<8} {shape:<14} {row['params']:>9} params  {pct}"
                f"  {_short(row['tensor'])}"
            )
        total = sum(r["params"] for r in sparsity if r["zeros"] is not None)
        zeros = sum(r["zeros"] for r in sparsity if r["zeros"] is not None)
        if total:
            lines.append(f"  {'total':<18} {'':<8} {'':<14} {total:>9} params  "
                         f"{100 * zeros / total:5.1f}%")
    return "\n".join(lines)
