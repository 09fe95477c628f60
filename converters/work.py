"""Work accounting: multiply-accumulates (MACs) and parameters per op, from a model itself.

:func:`tflite_work` reads a ``.tflite`` flatbuffer (through :mod:`.flatbuffer`: no TensorFlow,
no interpreter) and :func:`keras_work` a tf_keras model; both count the same way, so a Keras
stage and its ``.tflite`` can be set side by side (BatchNormalization folds into the convolution
before it, so their *parameters* differ, their MACs do not).

A MAC is one multiply-accumulate of one inference, batch included (a dynamic batch counts as 1;
Keras models are counted at batch 1). The counted ops, with N the batch, O the output and I the
input spatial positions::

    CONV_2D             N·OH·OW·OC · KH·KW · IC/groups   (filter [OC, KH, KW, IC/groups])
    DEPTHWISE_CONV_2D   N·OH·OW·OC · KH·KW               (filter [1, KH, KW, OC])
    FULLY_CONNECTED     rows · units · in_features        (rows = input elements / in_features)
    TRANSPOSE_CONV      N·IH·IW·IC · KH·KW·OC            (filter [OC, KH, KW, IC])
    BATCH_MATMUL        output elements · K               (the contracted dimension)
    CONV_3D             N·OD·OH·OW·OC · KD·KH·KW · IC/groups
    CONV_3D_TRANSPOSE   N·ID·IH·IW·IC · KD·KH·KW·OC

Every other op counts **0 MACs**: elementwise ops (ADD, MUL, SUB...), pooling, MEAN, activations,
SOFTMAX, reshapes, concatenation, QUANTIZE/DEQUANTIZE. They cost time, but far less than the ops
above in the models edgekit targets. The counts are dense: a zero weight (pruning) still counts,
because an int8 interpreter computes it.

Parameters are the elements of the counted ops' constant weight and bias tensors (inputs 1 and 2;
TRANSPOSE_CONV's bias is input 3; BATCH_MATMUL counts a constant operand), following a
DEQUANTIZE to its constant (float16 models). Only the main subgraph is counted (the bodies of
control-flow ops are not). On the Keras side ``params`` is ``model.count_params()``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

from edgekit.core.tfmot_wrappers import WRAPPER_CLASSES

from .flatbuffer import _dims, _is_constant, _load, _op_name, _Parsed

__all__ = ["format_macs", "keras_work", "tflite_work"]

_DEQUANTIZE = "DEQUANTIZE"
# Ops whose output holds the same elements as their input 0 (only the shape changes).
_SAME_ELEMENTS = frozenset({"RESHAPE", "SQUEEZE", "EXPAND_DIMS"})


# ---------------------------------------------------------------- .tflite
class _Graph:
    """The main subgraph with the lookups the op rules need."""

    def __init__(self, parsed: _Parsed) -> None:
        self.parsed = parsed
        self.subgraph = parsed.model.subgraphs[0]
        self.tensors = self.subgraph.tensors or []
        # tensor index -> (name of the op that writes it, that op's input 0)
        self.producer: dict[int, tuple[str, int]] = {}
        for op in self.subgraph.operators or []:
            if op.inputs is None or not len(op.inputs) or op.inputs[0] < 0:
                continue
            name = _op_name(parsed.model, op.opcodeIndex)
            for out in op.outputs if op.outputs is not None else []:
                self.producer[int(out)] = (name, int(op.inputs[0]))

    def dims(self, op: Any, position: int, outputs: bool = False) -> list[int] | None:
        """The shape of an op's input (or output) at ``position``; None when it is left out."""
        indices = op.outputs if outputs else op.inputs
        if indices is None or position >= len(indices) or indices[position] < 0:
            return None
        return _dims(self.tensors[int(indices[position])])

    def elements(self, op: Any, position: int) -> int | None:
        """Elements of an op's input at ``position``, looking through reshapes when its stored
        shape is not static (a -1 past the batch: a Tensordot's ``[-1, -1]`` reshape).

        Returns:
            The element count, or None when the input is left out.
        """
        indices = op.inputs if op.inputs is not None else []
        if position >= len(indices) or indices[position] < 0:
            return None
        index = int(indices[position])
        for _ in range(len(self.tensors)):
            tensor = self.tensors[index]
            signature = tensor.shapeSignature
            dynamic = signature is not None and any(int(d) < 0 for d in list(signature)[1:])
            made_by = self.producer.get(index)
            if not dynamic or made_by is None or made_by[0] not in _SAME_ELEMENTS:
                return math.prod(_dims(tensor))
            index = made_by[1]
        return math.prod(_dims(self.tensors[index]))

    def constant_elements(self, op: Any, positions: tuple[int, ...]) -> int:
        """Elements of the constant tensors among an op's inputs at ``positions``."""
        total = 0
        inputs = op.inputs if op.inputs is not None else []
        for position in positions:
            if position >= len(inputs) or inputs[position] < 0:
                continue
            index = int(inputs[position])
            tensor = self.tensors[index]
            made_by = self.producer.get(index)
            if not _is_constant(self.parsed, tensor) and made_by and made_by[0] == _DEQUANTIZE:
                tensor = self.tensors[made_by[1]]
            if _is_constant(self.parsed, tensor):
                total += math.prod(_dims(tensor))
        return total


def _conv(g: _Graph, op: Any) -> tuple[int, int]:
    out, filt = g.dims(op, 0, outputs=True), g.dims(op, 1)
    if not out or not filt or len(filt) != 4:
        return 0, g.constant_elements(op, (1, 2))
    _, kh, kw, in_per_group = filt
    return math.prod(out) * kh * kw * in_per_group, g.constant_elements(op, (1, 2))


def _depthwise(g: _Graph, op: Any) -> tuple[int, int]:
    out, filt = g.dims(op, 0, outputs=True), g.dims(op, 1)
    if not out or not filt or len(filt) != 4:
        return 0, g.constant_elements(op, (1, 2))
    return math.prod(out) * filt[1] * filt[2], g.constant_elements(op, (1, 2))


def _fully_connected(g: _Graph, op: Any) -> tuple[int, int]:
    inp, filt = g.elements(op, 0), g.dims(op, 1)
    if not inp or not filt or len(filt) != 2 or filt[1] == 0:
        return 0, g.constant_elements(op, (1, 2))
    units, in_features = filt
    rows = inp // in_features
    return rows * units * in_features, g.constant_elements(op, (1, 2))


def _transpose_conv(g: _Graph, op: Any) -> tuple[int, int]:
    filt, inp = g.dims(op, 1), g.dims(op, 2)  # inputs: output_shape, filter, input, [bias]
    if not inp or not filt or len(filt) != 4:
        return 0, g.constant_elements(op, (1, 3))
    oc, kh, kw, _ = filt
    return math.prod(inp) * kh * kw * oc, g.constant_elements(op, (1, 3))


def _batch_matmul(g: _Graph, op: Any) -> tuple[int, int]:
    x, out = g.dims(op, 0), g.dims(op, 0, outputs=True)
    if not x or len(x) < 2 or out is None:
        return 0, g.constant_elements(op, (0, 1))
    adj_x = bool(getattr(op.builtinOptions, "adjX", False))
    k = x[-2] if adj_x else x[-1]
    return math.prod(out) * k, g.constant_elements(op, (0, 1))


def _conv3d(g: _Graph, op: Any) -> tuple[int, int]:
    out, filt = g.dims(op, 0, outputs=True), g.dims(op, 1)  # filter [KD, KH, KW, IC/g, OC]
    if not out or not filt or len(filt) != 5:
        return 0, g.constant_elements(op, (1, 2))
    kd, kh, kw, in_per_group, _ = filt
    return math.prod(out) * kd * kh * kw * in_per_group, g.constant_elements(op, (1, 2))


def _conv3d_transpose(g: _Graph, op: Any) -> tuple[int, int]:
    filt, inp = g.dims(op, 1), g.dims(op, 2)  # filter [KD, KH, KW, OC, IC]
    if not inp or not filt or len(filt) != 5:
        return 0, g.constant_elements(op, (1, 3))
    kd, kh, kw, oc, _ = filt
    return math.prod(inp) * kd * kh * kw * oc, g.constant_elements(op, (1, 3))


_TFLITE_RULES: dict[str, Callable[[_Graph, Any], tuple[int, int]]] = {
    "CONV_2D": _conv,
    "DEPTHWISE_CONV_2D": _depthwise,
    "FULLY_CONNECTED": _fully_connected,
    "TRANSPOSE_CONV": _transpose_conv,
    "BATCH_MATMUL": _batch_matmul,
    "CONV_3D": _conv3d,
    "CONV_3D_TRANSPOSE": _conv3d_transpose,
}


def _parsed_work(parsed: _Parsed) -> dict[str, Any]:
    """:func:`tflite_work` of an already parsed model."""
    g = _Graph(parsed)
    ops: list[dict[str, Any]] = []
    for index, op in enumerate(g.subgraph.operators or []):
        name = _op_name(parsed.model, op.opcodeIndex)
        rule = _TFLITE_RULES.get(name)
        macs, params = rule(g, op) if rule is not None else (0, 0)
        ops.append({"index": index, "op": name, "macs": int(macs), "params": int(params)})
    return {"macs": sum(o["macs"] for o in ops), "params": sum(o["params"] for o in ops),
            "ops": ops}


def tflite_work(model: str | os.PathLike[str] | bytes) -> dict[str, Any]:
    """Counts the MACs and parameters of every op of a ``.tflite`` model's main subgraph.

    Args:
        model: Path of the ``.tflite`` file, or its bytes.

    Returns:
        ``{"macs": int, "params": int, "ops": [{"index", "op", "macs", "params"}, ...]}``: the
        totals, and one row per op in graph order (0 and 0 for ops that count no work; see the
        module docstring).

    Raises:
        InputError: The file is missing, is not a TFLite flatbuffer, or is damaged.
    """
    return _parsed_work(_load(model))


# ---------------------------------------------------------------- Keras
def _shape(layer: Any, which: str) -> tuple[int, ...] | None:
    """A layer's input or output shape at its first call, unknown dimensions (batch) as 1."""
    shape: Any = None
    for get in (lambda: getattr(layer, f"{which}_shape"),
                lambda: getattr(layer, f"get_{which}_shape_at")(0),
                lambda: getattr(layer, which).shape):
        try:
            shape = get()
        except (AttributeError, RuntimeError, ValueError):
            continue
        if shape is not None:
            break
    if isinstance(shape, list):  # several inputs: the first
        shape = shape[0] if shape else None
    if shape is None:
        return None
    return tuple(1 if d is None else int(d) for d in tuple(shape))


def _channels_spatial(shape: tuple[int, ...], layer: Any) -> tuple[int, tuple[int, ...]]:
    """(channels, spatial dimensions) of a conv layer's input or output shape (batch first)."""
    if getattr(layer, "data_format", "channels_last") == "channels_first":
        return shape[1], shape[2:]
    return shape[-1], shape[1:-1]


def _keras_conv(layer: Any, inp: tuple[int, ...], out: tuple[int, ...]) -> int:
    in_ch, _ = _channels_spatial(inp, layer)
    _, spatial = _channels_spatial(out, layer)
    groups = int(getattr(layer, "groups", 1) or 1)
    return (math.prod(spatial) * int(layer.filters) * math.prod(layer.kernel_size)
            * (in_ch // groups))


def _keras_transpose(layer: Any, inp: tuple[int, ...], out: tuple[int, ...]) -> int:
    in_ch, spatial = _channels_spatial(inp, layer)
    return math.prod(spatial) * in_ch * math.prod(layer.kernel_size) * int(layer.filters)


def _keras_depthwise(layer: Any, inp: tuple[int, ...], out: tuple[int, ...]) -> int:
    in_ch, _ = _channels_spatial(inp, layer)
    _, spatial = _channels_spatial(out, layer)
    return math.prod(spatial) * in_ch * int(layer.depth_multiplier) * math.prod(layer.kernel_size)


def _keras_separable(layer: Any, inp: tuple[int, ...], out: tuple[int, ...]) -> int:
    in_ch, _ = _channels_spatial(inp, layer)
    _, spatial = _channels_spatial(out, layer)
    mid = in_ch * int(layer.depth_multiplier)
    return math.prod(spatial) * mid * (math.prod(layer.kernel_size) + int(layer.filters))


def _keras_dense(layer: Any, inp: tuple[int, ...], out: tuple[int, ...]) -> int:
    return math.prod(inp[1:-1]) * inp[-1] * int(layer.units)


# Most specific first: a layer takes the rule of the first class of its MRO named here
# (Conv2DTranspose subclasses Conv2D; subclasses of these layers are counted like them).
_KERAS_RULES: dict[str, Callable[[Any, tuple[int, ...], tuple[int, ...]], int]] = {
    "Conv1DTranspose": _keras_transpose,
    "Conv2DTranspose": _keras_transpose,
    "Conv3DTranspose": _keras_transpose,
    "SeparableConv1D": _keras_separable,
    "SeparableConv2D": _keras_separable,
    "DepthwiseConv1D": _keras_depthwise,
    "DepthwiseConv2D": _keras_depthwise,
    "Conv1D": _keras_conv,
    "Conv2D": _keras_conv,
    "Conv3D": _keras_conv,
    "Dense": _keras_dense,
}


def _rule(layer: Any) -> Callable[[Any, tuple[int, ...], tuple[int, ...]], int] | None:
    for cls in type(layer).__mro__:
        if cls.__name__ in _KERAS_RULES:
            return _KERAS_RULES[cls.__name__]
    return None


def _layer_rows(model: Any, prefix: str = "") -> list[dict[str, Any]]:
    """One row per leaf layer (nested models walked into, tfmot wrappers unwrapped)."""
    rows: list[dict[str, Any]] = []
    for layer in model.layers:
        if hasattr(layer, "layers") and type(layer).__name__ not in WRAPPER_CLASSES:
            rows += _layer_rows(layer, f"{prefix}{layer.name}/")
            continue
        inner = getattr(layer, "layer", None) if type(layer).__name__ in WRAPPER_CLASSES else None
        kind = inner if inner is not None else layer
        rule = _rule(kind)
        macs = 0
        if rule is not None:
            inp, out = _shape(layer, "input"), _shape(layer, "output")
            if inp is not None and out is not None:
                macs = rule(kind, inp, out)
        rows.append({"name": f"{prefix}{layer.name}", "type": type(kind).__name__,
                     "macs": int(macs), "params": int(layer.count_params())})
    return rows


def keras_work(model: Any) -> dict[str, Any]:
    """Counts the MACs and parameters of a Keras model, layer by layer, at batch 1.

    Counted layers: Conv1D/2D/3D (``groups`` included), DepthwiseConv1D/2D
    (``depth_multiplier``), SeparableConv1D/2D (depthwise + pointwise), Dense (on inputs of any
    rank: every position counts), Conv1D/2D/3DTranspose. Every other layer counts 0 MACs, as
    the elementwise ops do in :func:`tflite_work`. Layers of nested models are counted,
    tfmot wrappers (QAT, pruning) by the layer they wrap; a layer called several times
    (shared) counts once, at its first call.

    Args:
        model: A built tf_keras model.

    Returns:
        ``{"macs": int, "params": int, "layers": [{"name", "type", "macs", "params"}, ...]}``;
        ``params`` is ``model.count_params()``, a layer's its own ``count_params()``.
    """
    rows = _layer_rows(model)
    return {"macs": sum(r["macs"] for r in rows), "params": int(model.count_params()),
            "layers": rows}


def format_macs(macs: int | None) -> str:
    """A MAC count for people: ``115 k``, ``5.62 M``, ``1.2 G`` (3 significant digits).

    Args:
        macs: The count, or None.

    Returns:
        The text (``—`` for None).
    """
    if macs is None:
        return "—"
    if macs < 1000:
        return str(macs)
    for scale, unit in ((1e3, "k"), (1e6, "M"), (1e9, "G")):
        text = f"{macs / scale:.3g}"
        if float(text) < 1000 or unit == "G":
            return f"{text} {unit}"
    raise AssertionError("unreachable")  # pragma: no cover
