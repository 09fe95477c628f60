"""Reading a ``.tflite`` flatbuffer: the parsed model and the helpers every reader of it shares.

The schema bindings that ship in ``ai_edge_litert`` (``schema_py_generated``) parse the file
into plain Python objects; no TensorFlow, no interpreter, so this works on any model, including
ones the local runtime cannot run. :mod:`.inspection` (ops, dtypes, sparsity), :mod:`.work`
(MACs and parameters), :mod:`.xnnpack_sparse` and :mod:`.quant_debug` read models through it.

Tensors are read as the schema stores them: ``shape`` holds the static dimensions (a dynamic
batch is stored as 1 there, and as -1 in ``shape_signature``); a constant tensor (a weight, a
bias) points at a non-empty buffer, an activation at buffer 0 or an empty one.

:func:`_load` first runs :func:`device_bench.tflite_check.check_tflite` (structure, and every
tensor, buffer, operator-code and subgraph index in range), so the readers may index with the
file's numbers; any byte string gives a parsed model or one :class:`InputError` line (fuzzed:
``tests/fuzz``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from device_bench.tflite_check import MalformedModel, check_tflite
from edgekit.core.errors import InputError

_TFLITE_IDENTIFIER = b"TFL3"

_DTYPE_NAMES: dict[int, str] = {
    v: k.lower() for k, v in vars(schema.TensorType).items() if not k.startswith("_")
}
_OP_NAMES: dict[int, str] = {
    v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")
}
_NUMPY_DTYPES: dict[str, Any] = {
    "float32": np.float32, "float16": np.float16, "float64": np.float64, "int8": np.int8,
    "uint8": np.uint8, "int16": np.int16, "uint16": np.uint16, "int32": np.int32,
    "uint32": np.uint32, "int64": np.int64, "uint64": np.uint64, "bool": np.bool_,
}


@dataclass(frozen=True)
class _Parsed:
    """A parsed model plus the raw bytes its buffers point into."""

    name: str
    data: bytes
    model: Any  # schema.ModelT


def _load(model: str | os.PathLike[str] | bytes) -> _Parsed:
    """Reads and parses a ``.tflite`` file (or its bytes).

    Args:
        model: Path of the ``.tflite`` file, or its bytes.

    Returns:
        The parsed model.

    Raises:
        InputError: The file is missing or unreadable, is not a TFLite flatbuffer, is damaged,
            or has no subgraph.
    """
    if isinstance(model, (bytes, bytearray, memoryview)):
        name, data = "<bytes>", bytes(model)
    else:
        p = Path(model)
        name = str(p)
        if not p.exists():
            raise InputError(f"model {name!r} does not exist; expected a .tflite file")
        if not p.is_file():
            raise InputError(f"model {name!r} is not a file; expected a .tflite file")
        try:
            data = p.read_bytes()
        except OSError as e:
            raise InputError(f"model {name!r} cannot be read: {e.strerror or e}") from e
        if not data:
            raise InputError(f"model {name!r} is empty; expected a .tflite file")
    if len(data) < 8 or data[4:8] != _TFLITE_IDENTIFIER:
        raise InputError(
            f"model {name!r} is not a TFLite flatbuffer (expected file identifier TFL3)"
        )
    try:
        # Every index the readers follow is in range after this, and the walk below is bounded
        # by the file's size (shared tables would make it endless).
        check_tflite(data, name, runnable=False)
    except MalformedModel as e:
        if e.reason == "the model has no subgraphs":
            raise InputError(f"model {name!r} has no subgraphs") from None
        raise InputError(f"model {name!r} is a damaged TFLite flatbuffer: {e.reason}") from None
    try:
        parsed = schema.ModelT.InitFromPackedBuf(data, 0)
    except Exception as e:  # a truncated/corrupt flatbuffer raises struct/index errors
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise InputError(f"model {name!r} is a damaged TFLite flatbuffer: {first}") from e
    if not parsed.subgraphs:
        raise InputError(f"model {name!r} has no subgraphs")
    return _Parsed(name=name, data=data, model=parsed)


def _text(value: bytes | str | None) -> str:
    """A name field as text (the bindings give bytes)."""
    if value is None:
        return ""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _op_name(model: Any, opcode_index: int) -> str:
    """The builtin op name of an opcode (``CONV_2D``), or ``CUSTOM:<code>``."""
    code = model.operatorCodes[opcode_index]
    builtin = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
    if builtin == schema.BuiltinOperator.CUSTOM:
        return f"CUSTOM:{_text(code.customCode)}"
    return _OP_NAMES.get(builtin, f"BUILTIN_{builtin}")


def _dtype(tensor: Any) -> str:
    """A tensor's dtype name (``int8``, ``float32``)."""
    return _DTYPE_NAMES.get(int(tensor.type), f"type_{tensor.type}")


def _dims(tensor: Any) -> list[int]:
    """A tensor's static shape, dynamic dimensions (-1, e.g. the batch) read as 1.

    ``shape`` already stores a dynamic batch as 1; ``shape_signature`` is used only when
    ``shape`` is missing.
    """
    shape = tensor.shape if tensor.shape is not None and len(tensor.shape) else None
    if shape is None and tensor.shapeSignature is not None:
        shape = tensor.shapeSignature
    return [max(int(d), 1) for d in (shape if shape is not None else [])]


def _buffer_bytes(parsed: _Parsed, tensor: Any) -> bytes | None:
    """The constant data behind ``tensor``, or None for activations / empty buffers."""
    buffers = parsed.model.buffers or []
    if tensor.buffer <= 0 or tensor.buffer >= len(buffers):
        return None
    buf = buffers[tensor.buffer]
    if buf.data is not None and len(buf.data) > 0:
        return bytes(np.asarray(buf.data, dtype=np.uint8))
    if buf.offset > 1 and buf.size > 0:  # large models keep buffers after the flatbuffer
        return parsed.data[buf.offset : buf.offset + buf.size]
    return None


def _is_constant(parsed: _Parsed, tensor: Any) -> bool:
    """Whether ``tensor`` is backed by a non-empty buffer (a weight, not an activation)."""
    buffers = parsed.model.buffers or []
    if tensor.buffer <= 0 or tensor.buffer >= len(buffers):
        return False
    buf = buffers[tensor.buffer]
    return (buf.data is not None and len(buf.data) > 0) or (buf.offset > 1 and buf.size > 0)


def _quant(tensor: Any) -> tuple[Any, Any]:
    """Returns (scale, zero_point): floats/ints for per-tensor, lists per-channel, None if none."""
    q = tensor.quantization
    if q is None or q.scale is None or len(q.scale) == 0:
        return None, None
    scales = [float(s) for s in q.scale]
    zps = [int(z) for z in q.zeroPoint] if q.zeroPoint is not None else [0] * len(scales)
    if len(scales) == 1:
        return scales[0], (zps[0] if zps else 0)
    return scales, zps


def _weight_tensor(parsed: _Parsed, subgraph: Any, tensor_index: int) -> Any | None:
    """The constant tensor behind an op input, following a DEQUANTIZE (float16 models).

    Args:
        parsed: The model.
        subgraph: The subgraph the op belongs to.
        tensor_index: The op's input tensor index.

    Returns:
        The constant tensor (the input itself, or the DEQUANTIZE's source), or None when the
        input is computed (an activation).
    """
    tensors = subgraph.tensors or []
    t = tensors[tensor_index]
    if _is_constant(parsed, t):
        return t
    for op in subgraph.operators or []:
        outs = op.outputs if op.outputs is not None else []
        if tensor_index in list(outs) and _op_name(parsed.model, op.opcodeIndex) == "DEQUANTIZE":
            ins = op.inputs if op.inputs is not None else []
            if not len(ins) or ins[0] < 0:  # a DEQUANTIZE of nothing (a malformed model)
                return None
            src = tensors[ins[0]]
            return src if _is_constant(parsed, src) else None
    return None
