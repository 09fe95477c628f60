"""Checks a ``.tflite`` flatbuffer before anyone parses or runs it: no crash on a malformed file.

The TFLite interpreter verifies the flatbuffer's *structure* itself (a damaged file raises
"The model is not a valid Flatbuffer buffer"), but not what the indices in it mean: a subgraph
output of -1 aborts the process ("double free"), and a subgraph input or an operator output that
names a constant tensor makes ``set_tensor``/``invoke`` write into the read-only model and end the
process with SIGSEGV (both found by ``make fuzz``). Python code reading the schema bindings fails
in its own ways on such files (IndexError, or an endless read when tables are shared).

:func:`check_tflite` reads the flatbuffer with bounds checks on every read (stdlib only, so it
runs on a board with nothing but numpy and an interpreter) and refuses, with one line that names
the model and the first fault:

* structure: the ``TFL3`` identifier, every table, vtable, vector and string in range, and no
  more tables or bytes referenced than the file holds (a flatbuffer whose tables are shared,
  which no converter writes, would make a reader walk the same bytes without end);
* indices: operator codes, tensors (operator inputs, outputs and intermediates, where -1 means
  "left out"), buffers, the subgraphs that control-flow operators (IF, WHILE, CALL_ONCE) and
  signatures name, and buffers stored after the flatbuffer (``offset``/``size``) inside the file;
* shapes: no negative dimension in a tensor's ``shape`` (``shape_signature`` may hold -1);
* with ``runnable=True`` (what the interpreter loader asks for): subgraph inputs and outputs are
  real tensors (not -1), inputs are not constants, no operator writes a constant tensor, and an
  operator leaves out (-1) only the inputs its kernel takes as optional (a bias, RESHAPE's shape,
  the recurrent ops' optional weights), never an output; DEPTHWISE_CONV_2D has its 3 inputs;
  tensor and signature names are UTF-8 (the interpreter's Python API decodes them).

What it does not cover: the contents of quantization, sparsity, builtin-option and metadata
tables other than those named above (an operator with another operator's options, a count of
zero...); the interpreter's own flatbuffer verifier checks their structure, but its kernels trust
their values. So validation is the first line (fast: about a millisecond for a small model), and
containment is the backstop, twice:

* :func:`probe_in_child`: :func:`device_bench.runner.run_benchmark` first loads the model and runs
  it once in a forked child (copy-on-write, a few milliseconds); a child killed by SIGSEGV,
  SIGABRT... refuses the model with one line (a ``BenchInputError``, exit 2) instead of ending
  the benchmark process;
* every target runs ``python -m device_bench`` in a child process (local, ssh, adb, qemu), and a
  child that dies of a signal is reported as one line naming the signal (:func:`describe_exit`).

``make fuzz`` (``tests/fuzz``) found the faults listed above by fuzzing the real interpreter.
"""

from __future__ import annotations

import faulthandler
import gc
import os
import signal
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from device_bench.errors import BenchInputError

__all__ = ["NOT_TFLITE", "MalformedModel", "ModelOutline", "check_tflite", "describe_exit",
           "probe_in_child"]

IDENTIFIER = b"TFL3"
# BuiltinOperator codes of the control-flow ops and the BuiltinOptions union tags of their
# options (schema_py_generated; tests/fuzz checks them against the installed bindings).
_CONTROL_FLOW = {118: (92, (0, 1)),   # IF: IfOptions {then, else}
                 119: (93, (0, 1)),   # WHILE: WhileOptions {cond, body}
                 129: (103, (0,))}    # CALL_ONCE: CallOnceOptions {init}
# The inputs a builtin kernel takes as optional (-1, "left out"): a -1 anywhere else is read as a
# tensor and ends the process (found by fuzzing FULLY_CONNECTED and CONCATENATION). The bias of
# conv / depthwise / fully connected (2), transposed conv (3), SVDF (3), RESHAPE's shape (1),
# the recurrent ops' optional weights and auxiliary inputs (1 on); CUSTOM (32), DELEGATE (51)
# and StableHLO ops (162 on) are not checked.
_OPTIONAL_INPUTS: dict[int, frozenset[int] | None] = {
    3: frozenset({2}), 4: frozenset({2}), 9: frozenset({2}), 132: frozenset({2}),
    67: frozenset({3}), 141: frozenset({3}), 27: frozenset({3}), 22: frozenset({1}),
    16: None, 44: None, 52: None, 24: None, 35: None, 46: None}  # None: every input but 0
_UNCHECKED_OPS = frozenset({32, 51})
# Inputs a kernel reads whatever it was given: DEPTHWISE_CONV_2D (4) with only 2 inputs (no bias
# slot at all) ends the process at its first invoke.
_MIN_INPUTS = {4: 3}
_FIRST_STABLEHLO = 162
# SparseIndexVector union tags -> element bytes: Int32Vector, Uint16Vector, Uint8Vector.
_SPARSE_VECTOR_WIDTHS = {1: 4, 2: 2, 3: 1}
# Signals that mean the process crashed (rather than was stopped).
_CRASH_SIGNALS = frozenset({"SIGSEGV", "SIGABRT", "SIGBUS", "SIGILL", "SIGFPE"})
# The reason given for a file that does not carry the identifier.
NOT_TFLITE = "expected file identifier TFL3"
# How long the probe run may take before it is stopped (the real run then decides).
PROBE_TIMEOUT_S = 120.0
# Slack on the "no more bytes referenced than the file holds" rule (vtables, padding).
_SLACK = 4096


@dataclass(frozen=True)
class ModelOutline:
    """What the check counted: the main subgraph first.

    Attributes:
        subgraphs: Number of subgraphs.
        operator_codes: Number of operator codes.
        buffers: Number of buffers.
        tensors: Tensors per subgraph.
        operators: Operators per subgraph.
    """

    subgraphs: int
    operator_codes: int
    buffers: int
    tensors: tuple[int, ...]
    operators: tuple[int, ...]


class _Fault(Exception):
    """A fault found while reading (turned into one BenchInputError line)."""


class _Reader:
    """Bounds-checked reads of a flatbuffer, with a budget on what a walk may reference."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.size = len(data)
        self.budget = 2 * self.size + _SLACK  # bytes of tables, vectors and strings referenced

    def _spend(self, nbytes: int, what: str) -> None:
        self.budget -= nbytes
        if self.budget < 0:
            raise _Fault(f"{what} makes the file reference more bytes than it holds "
                         "(shared or overlapping tables)")

    def unpack(self, fmt: str, pos: int, what: str) -> int:
        width = struct.calcsize(fmt)
        if pos < 0 or pos + width > self.size:
            raise _Fault(f"{what} at byte {pos} lies outside the file ({self.size} bytes)")
        return struct.unpack_from(fmt, self.data, pos)[0]

    def table(self, pos: int, what: str) -> _Table:
        self._spend(4, what)
        vtable = pos - self.unpack("<i", pos, what)
        vt_len = self.unpack("<H", vtable, f"{what}'s vtable")
        obj_len = self.unpack("<H", vtable + 2, f"{what}'s vtable")
        if vt_len < 4 or vt_len % 2 or vtable + vt_len > self.size or pos + obj_len > self.size:
            raise _Fault(f"{what} at byte {pos} has a damaged vtable")
        return _Table(self, pos, vtable, vt_len, obj_len, what)

    def deref(self, pos: int, what: str) -> int:
        return pos + self.unpack("<I", pos, what)

    def vector(self, pos: int, elem: int, what: str) -> tuple[int, int]:
        """(first element's position, length) of the vector at ``pos``."""
        length = self.unpack("<I", pos, what)
        start = pos + 4
        if start + length * elem > self.size:
            raise _Fault(f"{what} claims {length} elements past the end of the file")
        self._spend(length * elem, what)
        return start, length


class _Table:
    """One table: its fields by slot number (the schema's field order)."""

    def __init__(self, reader: _Reader, pos: int, vtable: int, vt_len: int, obj_len: int,
                 what: str) -> None:
        self.r, self.pos, self.vtable, self.vt_len, self.obj_len = reader, pos, vtable, vt_len, \
            obj_len
        self.what = what

    def field(self, slot: int) -> int | None:
        entry = 4 + 2 * slot
        if entry + 2 > self.vt_len:
            return None
        off = self.r.unpack("<H", self.vtable + entry, f"{self.what}'s vtable")
        if off == 0:
            return None
        if off + 1 > self.obj_len:
            raise _Fault(f"{self.what} field {slot} lies outside its table")
        return self.pos + off

    def scalar(self, slot: int, fmt: str, default: int = 0) -> int:
        pos = self.field(slot)
        return default if pos is None else self.r.unpack(fmt, pos, f"{self.what} field {slot}")

    def ints(self, slot: int, fmt: str = "<i") -> list[int]:
        pos = self.field(slot)
        if pos is None:
            return []
        what = f"{self.what} field {slot}"
        width = struct.calcsize(fmt)
        start, length = self.r.vector(self.r.deref(pos, what), width, what)
        return [v[0] for v in struct.iter_unpack(fmt, self.r.data[start:start + length * width])]

    def skip_vector(self, slot: int, elem: int) -> int:
        """Range-checks a vector of scalars (or a string, ``elem`` 1); returns its length."""
        pos = self.field(slot)
        if pos is None:
            return 0
        what = f"{self.what} field {slot}"
        return self.r.vector(self.r.deref(pos, what), elem, what)[1]

    def string(self, slot: int) -> bytes:
        """A string field's bytes (b"" when absent)."""
        pos = self.field(slot)
        if pos is None:
            return b""
        what = f"{self.what} field {slot}"
        start, length = self.r.vector(self.r.deref(pos, what), 1, what)
        return self.r.data[start:start + length]

    def sub(self, slot: int, what: str) -> _Table | None:
        pos = self.field(slot)
        return None if pos is None else self.r.table(self.r.deref(pos, what), what)

    def tables(self, slot: int, what: str) -> list[_Table]:
        pos = self.field(slot)
        if pos is None:
            return []
        start, length = self.r.vector(self.r.deref(pos, what), 4, what)
        return [self.r.table(self.r.deref(start + 4 * i, f"{what} {i}"), f"{what} {i}")
                for i in range(length)]


def _check_tensor(t: _Table, buffers: int, runnable: bool) -> int:
    """Range-checks one tensor (shape, buffer, name, quantization, sparsity).

    Returns:
        Its buffer index, or 0 for a variable tensor (its data is only the initial value: the
        interpreter copies it and ops write it, so it counts as no constant).
    """
    shape = t.ints(0)
    if any(d < 0 for d in shape):
        raise _Fault(f"{t.what} has a negative dimension in its shape {shape}")
    t.ints(7)  # shape_signature (may hold -1)
    buffer = t.scalar(2, "<I")
    if buffer >= buffers:
        raise _Fault(f"{t.what} points at buffer {buffer}, but the model has {buffers} buffers")
    _check_name(t.string(3), t.what, runnable)
    quant = t.sub(4, f"{t.what}'s quantization")
    if quant is not None:
        _check_quantization(quant, shape, t.what)
    sparsity = t.sub(6, f"{t.what}'s sparsity")
    if sparsity is not None:
        sparsity.ints(0)
        sparsity.ints(1)
        for dim in sparsity.tables(2, f"{t.what}'s sparsity dimension"):
            for slot in (3, 5):  # array_segments, array_indices: Int32/Uint16/Uint8Vector
                values = dim.sub(slot, f"{dim.what} array")
                width = _SPARSE_VECTOR_WIDTHS.get(dim.scalar(slot - 1, "<B"))
                if values is not None and width is not None:
                    values.skip_vector(0, width)
    return 0 if t.scalar(5, "<B") else buffer  # is_variable


def _check_name(name: bytes, what: str, runnable: bool) -> None:
    """The interpreter's Python API decodes names as UTF-8 (UnicodeDecodeError otherwise)."""
    if runnable:
        try:
            name.decode("utf-8")
        except UnicodeDecodeError:
            raise _Fault(f"{what} has a name that is not UTF-8: {name[:40]!r}") from None


def _check_quantization(quant: _Table, shape: list[int], what: str) -> None:
    """The interpreter's own rules (``ParseQuantization``) on scales and zero points."""
    quant.skip_vector(0, 4)  # min
    quant.skip_vector(1, 4)  # max
    scales = quant.skip_vector(2, 4) if quant.field(2) is not None else None
    zero_points = quant.skip_vector(3, 8) if quant.field(3) is not None else None
    details = quant.sub(5, f"{what}'s quantization details")
    if details is not None:
        details.skip_vector(0, 1)
    if scales is None or zero_points is None or (scales == 0 and zero_points == 0):
        return  # not affine-quantized
    axis = quant.scalar(6, "<i")
    if axis < 0 or (shape and axis >= len(shape)):
        raise _Fault(f"{what} is quantized along axis {axis}, but its shape is {shape}")
    if scales != 1 and shape and scales != shape[axis]:
        raise _Fault(f"{what} has {scales} quantization scales for {shape[axis]} channels "
                     f"(axis {axis} of shape {shape})")
    if zero_points != scales:
        raise _Fault(f"{what} has {scales} quantization scales but {zero_points} zero points")


def _may_leave_out(op: int, kind: str, position: int) -> bool:
    """Whether a builtin op's kernel takes ``-1`` as its input (or output) ``position``."""
    if op in _UNCHECKED_OPS or op >= _FIRST_STABLEHLO:
        return True
    if kind == "output" or op not in _OPTIONAL_INPUTS:
        return False
    optional = _OPTIONAL_INPUTS[op]
    return position > 0 if optional is None else position in optional


def _constant(buffer: int, buffer_bytes: list[int]) -> bool:
    return buffer > 0 and buffer_bytes[buffer] > 0


def _walk(r: _Reader, runnable: bool) -> ModelOutline:
    if r.size < 8 or r.data[4:8] != IDENTIFIER:
        raise _Fault(NOT_TFLITE)
    model = r.table(r.deref(0, "the root offset"), "the model table")
    codes = model.tables(1, "operator code")
    builtin: list[int] = []
    for code in codes:
        code.skip_vector(1, 1)  # custom_code
        builtin.append(max(code.scalar(0, "<b"), code.scalar(3, "<i")))
    buffer_bytes: list[int] = []
    for buf in model.tables(4, "buffer"):
        size = buf.skip_vector(0, 1)
        offset, length = buf.scalar(1, "<Q"), buf.scalar(2, "<Q")
        if offset > 1 and (offset + length > r.size):
            raise _Fault(f"{buf.what} lies at bytes {offset}..{offset + length}, past the end of "
                         f"the file ({r.size} bytes)")
        buffer_bytes.append(size if size else (length if offset > 1 else 0))
    subgraphs = model.tables(2, "subgraph")
    if not subgraphs:
        raise _Fault("the model has no subgraphs")
    tensors_per: list[int] = []
    operators_per: list[int] = []
    for s, sg in enumerate(subgraphs):
        tensors = sg.tables(0, f"subgraph {s} tensor")
        constant = [_constant(_check_tensor(t, len(buffer_bytes), runnable), buffer_bytes)
                    for t in tensors]
        n = len(tensors)
        for slot, kind in ((1, "input"), (2, "output")):
            for i in sg.ints(slot):
                if not 0 <= i < n and (i != -1 or runnable):
                    raise _Fault(f"subgraph {s} names tensor {i} as an {kind}, but it has "
                                 f"{n} tensors")
                if runnable and kind == "input" and constant[i]:
                    raise _Fault(f"subgraph {s} input tensor {i} is a constant (it has data)")
        operators = sg.tables(3, f"subgraph {s} operator")
        for k, op in enumerate(operators):
            where = f"subgraph {s} operator {k}"
            code = op.scalar(0, "<I")
            if code >= len(codes):
                raise _Fault(f"{where} uses operator code {code}, but the model has "
                             f"{len(codes)}")
            count = len(op.ints(1))
            if runnable and count < _MIN_INPUTS.get(builtin[code], 0):
                raise _Fault(f"{where} has {count} inputs; its kernel reads "
                             f"{_MIN_INPUTS[builtin[code]]}")
            for slot, kind in ((1, "input"), (2, "output"), (8, "intermediate")):
                for position, i in enumerate(op.ints(slot)):
                    if not -1 <= i < n:
                        raise _Fault(f"{where} names tensor {i} as an {kind}, but the subgraph "
                                     f"has {n} tensors")
                    if runnable and kind == "output" and i >= 0 and constant[i]:
                        raise _Fault(f"{where} writes tensor {i}, a constant (it has data)")
                    if runnable and i == -1 and kind != "intermediate" \
                            and not _may_leave_out(builtin[code], kind, position):
                        raise _Fault(f"{where} leaves out (-1) its {kind} {position}, which "
                                     "its kernel needs")
            op.skip_vector(5, 1)  # custom_options
            op.skip_vector(7, 1)  # mutating_variable_inputs
            options_type = op.scalar(3, "<B")
            options = op.sub(4, f"{where}'s options")
            flow = _CONTROL_FLOW.get(builtin[code])
            if flow is not None and options is not None and options_type == flow[0]:
                for slot in flow[1]:
                    target = options.scalar(slot, "<i")
                    if not 0 <= target < len(subgraphs):
                        raise _Fault(f"{where} calls subgraph {target}, but the model has "
                                     f"{len(subgraphs)}")
        tensors_per.append(n)
        operators_per.append(len(operators))
    for d, sig in enumerate(model.tables(7, "signature")):
        index = sig.scalar(4, "<I")
        if index >= len(subgraphs):
            raise _Fault(f"signature {d} names subgraph {index}, but the model has "
                         f"{len(subgraphs)}")
        _check_name(sig.string(2), f"signature {d}", runnable)
        for slot in (0, 1):
            for m in sig.tables(slot, f"signature {d} tensor map"):
                _check_name(m.string(0), m.what, runnable)
                tensor = m.scalar(1, "<I")
                if tensor >= tensors_per[index]:
                    raise _Fault(f"signature {d} names tensor {tensor}, but subgraph {index} "
                                 f"has {tensors_per[index]} tensors")
    for m in model.tables(6, "metadata"):
        m.skip_vector(0, 1)
        if m.scalar(1, "<I") >= len(buffer_bytes):
            raise _Fault(f"{m.what} points at a buffer the model does not have")
    return ModelOutline(len(subgraphs), len(codes), len(buffer_bytes), tuple(tensors_per),
                        tuple(operators_per))


class MalformedModel(BenchInputError):
    """A ``.tflite`` that :func:`check_tflite` refused (a BenchInputError: exit 2).

    Args:
        name: The model's name (its path, or ``<bytes>``).
        reason: The first fault, e.g. ``subgraph 0 names tensor -1 as an output, but it has 11
            tensors``.
    """

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"model {name!r} is not a valid TFLite flatbuffer: {reason}")
        self.name = name
        self.reason = reason


def check_tflite(data: bytes, name: str = "<bytes>", *, runnable: bool = True) -> ModelOutline:
    """Checks a ``.tflite`` flatbuffer's structure and indices (see the module docstring).

    Args:
        data: The file's bytes.
        name: The model's name for the message (its path).
        runnable: Also refuse what would crash the interpreter at run time: a subgraph input or
            output of -1 or that is a constant, an operator that writes a constant.

    Returns:
        What the walk counted.

    Raises:
        MalformedModel: One line, ``model NAME is not a valid TFLite flatbuffer: REASON``, naming
            the first fault (its ``reason`` alone is an attribute).
    """
    try:
        return _walk(_Reader(bytes(data)), runnable)
    except _Fault as e:
        raise MalformedModel(name, str(e)) from None


def describe_exit(code: int) -> str:
    """Names how a child process ended, the signal included when one ended it.

    A negative ``returncode`` (Python's way) and a shell's ``128 + N`` (what ssh and adb hand
    back) both name the signal; a crash signal (SIGSEGV, SIGABRT, SIGBUS, SIGILL, SIGFPE) says
    that the interpreter crashed.

    Args:
        code: The child's exit status.

    Returns:
        ``"exit 3"``, ``"exit 143, SIGTERM"``, or ``"signal SIGSEGV: the interpreter crashed,
        the model may be malformed"``.
    """
    number = -code if code < 0 else (code - 128 if 128 < code < 128 + 65 else 0)
    if not number:
        return f"exit {code}"
    try:
        sig = signal.Signals(number).name
    except ValueError:
        sig = f"signal {number}"
    head = f"signal {sig}" if code < 0 else f"exit {code}, {sig}"
    if sig in _CRASH_SIGNALS:
        return f"{head}: the interpreter crashed, the model may be malformed"
    return head


def _wait(pid: int, timeout_s: float) -> int | None:
    """The child's wait status, or None when it is still running after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    pause = 0.001
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        if time.monotonic() > deadline:
            return None
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


def probe_in_child(run: Callable[[], object], name: str) -> None:
    """Runs ``run`` (load the model, one inference) in a forked child first: the backstop.

    The kernels of the interpreter trust what they read (an operator with the options of
    another, a count that divides by zero...), more than :func:`check_tflite` can know. A child
    that dies of a signal means the same run would end this process: refuse the model instead.
    The child shares this process's memory copy-on-write (no new interpreter to start); its
    output goes to /dev/null. A child still running after :data:`PROBE_TIMEOUT_S` (a model that
    loops, or a lock another thread held at the fork) is stopped and the real run decides.
    Where there is no ``fork`` (Windows) only the check applies.

    Args:
        run: What to try (any exception there is left for the real run to report).
        name: The model, for the message.

    Raises:
        MalformedModel: The child died of a crash signal.
    """
    if not hasattr(os, "fork"):  # pragma: no cover - Windows
        return
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 0
        try:
            faulthandler.disable()  # its dump of a crash would go to the parent's stderr
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 1)
            os.dup2(null, 2)
            run()
            gc.collect()  # freeing the interpreter can crash too (a double free)
        except BaseException:
            code = 3
        os._exit(code)
    try:
        status = _wait(pid, PROBE_TIMEOUT_S)
    except BaseException:  # interrupted: do not leave the child running
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise
    if status is None:  # a child that never finished (a lock held at fork): the real run decides
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        return
    if os.WIFSIGNALED(status):
        how = describe_exit(-os.WTERMSIG(status))
        if "crashed" in how:
            raise MalformedModel(name, f"it crashes the interpreter at its first run ({how})")
