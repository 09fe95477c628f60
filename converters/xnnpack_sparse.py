"""Does a ``.tflite`` model meet XNNPACK's rules for sparse inference?

XNNPACK runs the "Fast Sparse ConvNets" kernels (arXiv:1911.09723) on a part of a CNN that it
can switch to NCHW layout. This module applies the rules of XNNPACK's subgraph rewrite
(``xnn_check_nchw_compatibility`` / ``xnn_subgraph_rewrite_for_nchw`` in ``src/subgraph.c``)
and of LiteRT's XNNPACK delegate (``tensorflow/lite/delegates/xnnpack/README.md``, "Sparse
Inference") to the flatbuffer, statically:

1. **Float only.** Every op of the sparse part must read and write fp32/fp16 tensors; quantized
   (int8/QS8, uint8/QU8) nodes get no NCHW layout at all. A full-integer model is never eligible.
2. **Sparse weight storage.** The delegate asks XNNPACK for sparse inference
   (``XNN_FLAG_HINT_SPARSE_INFERENCE``) only when a delegated op reads weights unpacked by a
   ``DENSIFY`` op from a sparse fp32/fp16 tensor: convert with
   ``converter.optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]``.
3. **Shape of the part.** It starts at a 3x3 stride-2 ``CONV_2D`` with padding 1 on each side,
   no dilation and 3 input channels, and ends at a ``MEAN`` over the spatial axes (global average
   pooling) or a ``DEPTH_TO_SPACE``. In between only: 1x1 ``CONV_2D`` (stride 1, no padding);
   ``DEPTHWISE_CONV_2D`` 3x3 or 5x5, stride 1 or 2, padding (k-1)/2, no dilation, multiplier 1;
   ``ADD``/``MUL`` of 4-D tensors (a constant side must be a scalar or a vector);
   ``RESIZE_BILINEAR``; 4-D unary elementwise ops (``RELU``, ``RELU6``, ``HARD_SWISH``, ...).
   Every tensor inside is read only by ops of the part. Padding: TensorFlow ``SAME`` padding is
   turned into explicit padding only for stride 1; a stride-2 conv needs an explicit zero
   ``PAD`` (Keras ``ZeroPadding2D(1)`` + ``padding="valid"``), which XNNPACK fuses into it.
4. **Sparsity.** More than 2/3 of the weights of the part's 1x1 convolutions must be zero.

Layout is NHWC throughout TFLite; XNNPACK converts the part to NCHW itself. The verdict is about
the model: XNNPACK can still decline at run time on hardware without its CHW kernels (its
hardware check skips the rewrite where the sparse kernels would be slower, e.g. x86 with AVX in
the versions that introduced it).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from .flatbuffer import _NUMPY_DTYPES, _buffer_bytes, _dtype, _is_constant, _load, _op_name
from .result import JsonResult

__all__ = ["SparseCheck", "check_xnnpack_sparse", "format_xnnpack_sparse"]

_NCHW, _NHWC2NCHW, _NCHW2NHWC = 1, 2, 4
_FLOAT = frozenset({"float32", "float16"})
_UNARY = frozenset({"ABS", "CEIL", "ELU", "FLOOR", "HARD_SWISH", "LEAKY_RELU", "LOGISTIC", "NEG",
                    "RELU", "RELU6", "RELU_N1_TO_1", "ROUND", "SQUARE"})
_WEIGHT_UNPACK = frozenset({"DENSIFY", "DEQUANTIZE"})
_PAD_OPS = frozenset({"PAD", "PADV2"})


@dataclass(frozen=True)
class SparseCheck(JsonResult):
    """The verdict of :func:`check_xnnpack_sparse`.

    Attributes:
        eligible: The model has a part XNNPACK would run with sparse kernels.
        reasons: Why not (empty when eligible); each names the rule and the op.
        ops: One row per op: ``{"index", "op", "role", "reason", "cluster"}``; ``role`` is
            ``stem``, ``body``, ``end``, ``fused pad``, ``weights`` or ``outside``.
        clusters: Candidate parts: ``{"ops", "valid", "reasons", "params_1x1", "zeros_1x1",
            "sparsity_1x1", "sparse_weights"}``.
        notes: Facts that qualify the verdict.
    """

    eligible: bool
    reasons: list[str] = field(default_factory=list)
    ops: list[dict[str, Any]] = field(default_factory=list)
    clusters: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data."""
        return {"eligible": self.eligible, "reasons": list(self.reasons),
                "ops": [dict(o) for o in self.ops], "clusters": [dict(c) for c in self.clusters],
                "notes": list(self.notes)}


class _Graph:
    """The main subgraph with producer/consumer maps."""

    def __init__(self, parsed: Any):
        self.parsed = parsed
        self.sub = parsed.model.subgraphs[0]
        self.tensors = self.sub.tensors or []
        self.ops = self.sub.operators or []
        self.names = [_op_name(parsed.model, op.opcodeIndex) for op in self.ops]
        self.producer: dict[int, int] = {}
        self.consumers: dict[int, list[int]] = {}
        for i, op in enumerate(self.ops):
            for t in self.ins(i):
                self.consumers.setdefault(t, []).append(i)
            for t in op.outputs if op.outputs is not None else []:
                self.producer[int(t)] = i
        self.graph_outputs = {int(t) for t in (self.sub.outputs if self.sub.outputs is not None
                                               else [])}

    def ins(self, i: int) -> list[int]:
        op = self.ops[i]
        return [int(t) for t in (op.inputs if op.inputs is not None else []) if t >= 0]

    def outs(self, i: int) -> list[int]:
        op = self.ops[i]
        return [int(t) for t in (op.outputs if op.outputs is not None else [])]

    def shape(self, t: int) -> list[int]:
        s = self.tensors[t].shape
        return [int(d) for d in (s if s is not None else [])]

    def const(self, t: int) -> bool:
        return _is_constant(self.parsed, self.tensors[t])

    def values(self, t: int) -> np.ndarray | None:
        raw = _buffer_bytes(self.parsed, self.tensors[t])
        dtype = _NUMPY_DTYPES.get(_dtype(self.tensors[t]))
        if raw is None or dtype is None or len(raw) % np.dtype(dtype).itemsize:
            return None  # none, or no whole number of elements (a malformed model)
        return np.frombuffer(raw, dtype=dtype)


def _unpacked_from(g: _Graph, t: int) -> int | None:
    """The op that unpacks weight ``t`` (DENSIFY/DEQUANTIZE with an input), else None.

    Only an op before every reader counts, so a malformed graph (an op that reads its own
    output) cannot send the walk round in circles.
    """
    p = g.producer.get(t)
    if p is None or g.names[p] not in _WEIGHT_UNPACK or not g.ins(p):
        return None
    readers = g.consumers.get(t, [])
    return p if all(p < c for c in readers) and t not in g.ins(p) else None


def _static(g: _Graph, t: int, depth: int = 0) -> bool:
    """A constant, or the output of a weight-unpacking op (DENSIFY/DEQUANTIZE) of a constant."""
    if g.const(t):
        return True
    p = _unpacked_from(g, t)
    return (p is not None and depth < len(g.ops)
            and all(_static(g, s, depth + 1) for s in g.ins(p)))


def _weight_zeros(g: _Graph, t: int, depth: int = 0) -> tuple[int, int, bool]:
    """(params, zeros, sparse-encoded) of a weight tensor, following DENSIFY/DEQUANTIZE."""
    params = math.prod(g.shape(t)) if g.shape(t) else 0
    p = _unpacked_from(g, t)
    if p is not None and depth < len(g.ops):
        src = g.ins(p)[0]
        if g.names[p] == "DENSIFY" and g.tensors[src].sparsity is not None:
            stored = g.values(src)
            nonzero = int(np.count_nonzero(stored)) if stored is not None else params
            return params, params - nonzero, _dtype(g.tensors[src]) in _FLOAT
        _, zeros, sparse = _weight_zeros(g, src, depth + 1)
        return params, zeros, sparse
    values = g.values(t)
    zeros = int(np.count_nonzero(values == 0)) if values is not None else 0
    return params, zeros, False


def _fused_pad(g: _Graph, i: int) -> list[int] | None:
    """[top, bottom, left, right] of a zero spatial PAD feeding op ``i`` only, else None."""
    p = g.producer.get(g.ins(i)[0]) if g.ins(i) else None
    if p is None or g.names[p] not in _PAD_OPS or not g.outs(p) or not g.ins(p) \
            or len(g.consumers.get(g.outs(p)[0], [])) != 1:
        return None
    ins = g.ins(p)
    pads = g.values(ins[1]) if len(ins) > 1 else None
    if pads is None or pads.size != 8:
        return None
    pads = pads.reshape(4, 2)
    if g.names[p] == "PADV2" and len(ins) > 2:
        value = g.values(ins[2])
        if value is None or np.any(value != 0):
            return None
    if pads[0].any() or pads[3].any():
        return None
    return [int(pads[1, 0]), int(pads[1, 1]), int(pads[2, 0]), int(pads[2, 1])]


def _padding(g: _Graph, i: int, k: int, stride: int) -> tuple[list[int] | None, str | None]:
    """Explicit padding XNNPACK would see for a conv, or (None, reason)."""
    opts = g.ops[i].builtinOptions
    if opts.padding == schema.Padding.SAME:
        if stride != 1:
            return None, (f"SAME padding with stride {stride} stays implicit in XNNPACK; use an "
                          "explicit zero PAD (ZeroPadding2D) and padding='valid'")
        return [(k - 1) // 2, k - 1 - (k - 1) // 2] * 2, None
    return _fused_pad(g, i) or [0, 0, 0, 0], None


def _classify(g: _Graph, i: int) -> tuple[int, str, str | None]:
    """(layout flags, role, reason) of op ``i`` alone."""
    name = g.names[i]
    data_ins = [t for t in g.ins(i) if not _static(g, t)]
    touched = [g.tensors[t] for t in data_ins + g.outs(i)]
    if name in _WEIGHT_UNPACK and not data_ins:
        return 0, "weights", None
    readers = g.consumers.get(g.outs(i)[0], []) if g.outs(i) else []
    if name in _PAD_OPS and all(g.names[c] in ("CONV_2D", "DEPTHWISE_CONV_2D") for c in readers) \
            and any(_fused_pad(g, c) is not None for c in readers):
        return 0, "fused pad", None
    bad = sorted({_dtype(t) for t in touched} - _FLOAT)
    if bad:
        return 0, "outside", (f"{'/'.join(bad)} tensors: XNNPACK's sparse path runs fp32/fp16 "
                              "ops only (quantized nodes get no NCHW layout)")
    four_d = bool(data_ins) and len(g.shape(data_ins[0])) == 4
    if name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        o = g.ops[i].builtinOptions
        options = schema.Conv2DOptionsT if name == "CONV_2D" else schema.DepthwiseConv2DOptionsT
        if len(g.ins(i)) < 2 or not isinstance(o, options) or len(g.shape(g.ins(i)[1])) != 4:
            return 0, "outside", (f"malformed {name}: expected an input, a 4-D filter and "
                                  f"{options.__name__[:-1]}")
        w = g.shape(g.ins(i)[1])
        w_dtype = _dtype(g.tensors[g.ins(i)[1]])
        if w_dtype not in _FLOAT:
            return 0, "outside", (f"{w_dtype} weights with float activations (dynamic-range "
                                  "quantization): XNNPACK does not take such ops")
        kh, kw = w[1], w[2]
        if (o.dilationHFactor, o.dilationWFactor) != (1, 1):
            return 0, "outside", "dilated convolution"
        if o.strideH != o.strideW:
            return 0, "outside", f"unequal strides {o.strideH}x{o.strideW}"
        pad, why = _padding(g, i, kh, o.strideH)
        if pad is None:
            return 0, "outside", why
        if name == "CONV_2D":
            if (kh, kw) == (1, 1):
                if o.strideH != 1 or any(pad):
                    return 0, "outside", "1x1 conv with stride or padding"
                return _NCHW, "body", None
            if (kh, kw) == (3, 3):
                if o.strideH != 2 or pad != [1, 1, 1, 1] or w[3] != 3:
                    return 0, "outside", (f"3x3 conv needs stride 2, padding 1 and 3 input "
                                          f"channels to start the sparse part; has stride "
                                          f"{o.strideH}, padding {pad}, {w[3]} input channels")
                return _NHWC2NCHW, "stem", None
            return 0, "outside", f"{kh}x{kw} conv: only 1x1 and the 3x3 stride-2 stem qualify"
        if o.depthMultiplier != 1:
            return 0, "outside", f"depthwise multiplier {o.depthMultiplier}"
        if kh != kw or kh not in (3, 5) or o.strideH not in (1, 2):
            return 0, "outside", f"depthwise {kh}x{kw} stride {o.strideH}: needs 3x3/5x5, 1 or 2"
        if pad != [(kh - 1) // 2] * 4:
            return 0, "outside", f"depthwise {kh}x{kh} padding {pad}: needs {(kh - 1) // 2}"
        return _NCHW, "body", None
    if name == "MEAN":
        axes = g.values(g.ins(i)[1]) if len(g.ins(i)) > 1 else None
        if four_d and axes is not None and sorted(int(a) for a in axes) == [1, 2]:
            return _NCHW | _NCHW2NHWC, "end", None
        return 0, "outside", "MEAN not over the spatial axes of a 4-D tensor"
    if name == "DEPTH_TO_SPACE":
        return _NCHW2NHWC, "end", None
    if name in ("ADD", "MUL"):
        if not all(len(g.shape(t)) == 4 for t in g.ins(i)):
            return 0, "outside", f"{name} of tensors that are not all 4-D"
        for t in g.ins(i):
            if _static(g, t) and sum(d != 1 for d in g.shape(t)) > 1:
                return 0, "outside", f"{name} with a constant that is not a scalar or vector"
        return _NCHW, "body", None
    if name in _UNARY or name == "RESIZE_BILINEAR":
        if not four_d:
            return 0, "outside", f"{name} of a tensor that is not 4-D"
        if name == "RESIZE_BILINEAR" and min(g.shape(data_ins[0])[1:3]) <= 1:
            return 0, "outside", "RESIZE_BILINEAR of a 1-pixel input"
        return _NCHW, "body", None
    return 0, "outside", f"{name} is not a sparse-path op (runs outside any sparse part)"


def _source(g: _Graph, t: int) -> int | None:
    """The op producing ``t``, looking through a fused PAD."""
    p = g.producer.get(t)
    if p is not None and g.names[p] in _PAD_OPS:
        return g.producer.get(g.ins(p)[0]) if g.ins(p) else None
    return p


def check_xnnpack_sparse(model: str | os.PathLike[str] | bytes) -> SparseCheck:
    """Checks a ``.tflite`` against XNNPACK's sparse-inference rules (see the module docs).

    Args:
        model: Path of the ``.tflite`` file, or its bytes.

    Returns:
        The verdict, per-op roles and the candidate sparse parts.

    Raises:
        InputError: The file is missing, not a TFLite flatbuffer, or damaged.
    """
    g = _Graph(_load(model))
    n = len(g.ops)
    flags, roles, why = [0] * n, [""] * n, [None] * n  # type: ignore[var-annotated]
    for i in range(n):
        flags[i], roles[i], why[i] = _classify(g, i)
    parent = list(range(n))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    broken: dict[int, list[str]] = {}
    for i in range(n):
        if not flags[i] & (_NCHW | _NCHW2NHWC):
            continue
        for t in g.ins(i):
            if _static(g, t):
                continue
            p = _source(g, t)
            if p is not None and flags[p] & (_NCHW | _NHWC2NCHW):
                parent[find(p)] = find(i)
            else:
                what = "a graph input" if p is None else f"#{p} {g.names[p]}"
                broken.setdefault(i, []).append(f"#{i} {g.names[i]} reads {what}, which is not "
                                                "in the sparse part")
    members: dict[int, list[int]] = {}
    for i in range(n):
        if flags[i]:
            members.setdefault(find(i), []).append(i)
    clusters = []
    for ops in members.values():
        reasons = [r for i in ops for r in broken.get(i, [])]
        inside = set(ops)
        for i in ops:
            for t in g.outs(i):
                readers = [c for c in g.consumers.get(t, []) if g.names[c] not in _PAD_OPS]
                readers += [c2 for c in g.consumers.get(t, []) if g.names[c] in _PAD_OPS
                            for o in g.outs(c)[:1] for c2 in g.consumers.get(o, [])]
                leaks = [c for c in readers if c not in inside] + (
                    ["output"] if t in g.graph_outputs else [])
                if leaks and not flags[i] & _NCHW2NHWC:
                    reasons.append(f"#{i} {g.names[i]} output is also read outside the sparse "
                                   f"part ({', '.join(str(x) for x in leaks)})")
        if not any(flags[i] & _NHWC2NCHW for i in ops):
            reasons.append("no 3x3 stride-2 CONV_2D (padding 1, 3 input channels) starts it")
        if not any(flags[i] & _NCHW2NHWC for i in ops):
            reasons.append("no MEAN over the spatial axes (or DEPTH_TO_SPACE) ends it")
        params = zeros = 0
        sparse_weights = False
        for i in ops:
            if g.names[i] == "CONV_2D" and g.shape(g.ins(i)[1])[1:3] == [1, 1]:
                p_, z_, s_ = _weight_zeros(g, g.ins(i)[1])
                params, zeros, sparse_weights = params + p_, zeros + z_, sparse_weights or s_
        if params == 0:
            reasons.append("it has no 1x1 CONV_2D")
        elif zeros * 3 <= params * 2:
            reasons.append(f"only {zeros}/{params} ({100 * zeros / params:.1f} %) of its 1x1 conv "
                           "weights are zero; XNNPACK needs more than 2/3")
        if params and not sparse_weights:
            reasons.append("its 1x1 conv weights are stored dense: the delegate enables sparse "
                           "inference only for DENSIFY'd sparse fp32/fp16 weights (convert with "
                           "Optimize.EXPERIMENTAL_SPARSITY)")
        clusters.append({"ops": sorted(ops), "valid": not reasons, "reasons": reasons,
                         "params_1x1": params, "zeros_1x1": zeros,
                         "sparsity_1x1": round(zeros / params, 4) if params else None,
                         "sparse_weights": sparse_weights})
    cluster_of = {i: k for k, c in enumerate(clusters) for i in c["ops"]}
    rows = [{"index": i, "op": g.names[i], "role": roles[i], "reason": why[i],
             "cluster": cluster_of.get(i)} for i in range(n)]
    eligible = any(c["valid"] for c in clusters)
    reasons: list[str] = []
    if not eligible:
        quantized = [r for r in rows if r["reason"] and "fp32/fp16" in r["reason"]]
        if quantized:
            reasons.append(f"{len(quantized)} op(s) use quantized tensors: XNNPACK sparse "
                           "inference supports fp32/fp16 models only (int8/QS8 is not supported)")
        if not clusters:
            reasons.append("no op sequence of the sparse pattern (3x3 stride-2 CONV_2D stem -> "
                           "1x1 CONV_2D / depthwise -> spatial MEAN) was found")
        for k, c in enumerate(clusters):
            reasons += [f"part {k} (ops {c['ops'][0]}-{c['ops'][-1]}): {r}" for r in c["reasons"]]
    notes = ["TFLite tensors are NHWC; XNNPACK switches the sparse part to NCHW itself.",
             "The verdict is about the model; XNNPACK still skips the rewrite on hardware "
             "without its CHW kernels."]
    return SparseCheck(eligible=eligible, reasons=reasons, ops=rows, clusters=clusters,
                       notes=notes)


def format_xnnpack_sparse(check: SparseCheck) -> str:
    """The verdict, its reasons and the per-op roles as text.

    Args:
        check: From :func:`check_xnnpack_sparse`.

    Returns:
        Multi-line text (no trailing newline).
    """
    lines = [f"xnnpack sparse  {'ELIGIBLE' if check.eligible else 'not eligible'}"]
    lines += [f"  - {r}" for r in check.reasons]
    for k, c in enumerate(check.clusters):
        pct = "-" if c["sparsity_1x1"] is None else f"{100 * c['sparsity_1x1']:.1f} %"
        lines.append(f"  part {k}: ops {c['ops']}, 1x1 zeros {pct}, sparse storage "
                     f"{'yes' if c['sparse_weights'] else 'no'}: "
                     f"{'valid' if c['valid'] else 'invalid'}")
    width = max([len(r["op"]) for r in check.ops] + [2])
    for r in check.ops:
        if r["role"] in ("weights", "fused pad"):
            continue
        note = "" if r["reason"] is None else f"  {r['reason']}"
        lines.append(f"  #{r['index']:<4} {r['op']:<{width}}  {r['role']:<7}{note}")
    return "\n".join(lines)
