"""``python -m device_bench.insn_probe MODEL --json OUT``: outputs and marked inference segments.

Runs where the model is checked: inside the emulator (guest side of the ``qemu-aarch64`` target)
and, for the reference outputs, on the host. It

1. loads the model (one thread unless ``--threads``), feeds the benchmark's input (seeded random,
   or ``--input``, exactly as ``python -m device_bench`` makes it) and runs it once;
2. saves the raw output tensors to ``--outputs OUT.npz`` (``out0``, ``out1`` ... in
   ``get_output_details()`` order);
3. runs ``--warmup`` inferences (marked as tag 63, so the marking code is warm too), then an
   empty segment (tag 0) and ``--segments`` segments of ``--runs`` inferences (tags 1..K), each
   between two marker system calls ``syscall(MAGIC, 1, tag)`` / ``syscall(MAGIC, 2, tag)``.

The marker number is unused by Linux (the call fails with ENOSYS and changes nothing); under
qemu-user the ``insn_count`` plugin sees it and writes the instructions executed in between. The
empty segment measures the markers' own cost, which the host subtracts. With one thread and a
fixed ``PYTHONHASHSEED`` the counts repeat exactly from run to run.

Needs only numpy and a TFLite interpreter. Exit codes as ``python -m device_bench``.
"""

from __future__ import annotations

import argparse
import ctypes
import errno
import os
import platform
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import numpy as np

from device_bench.atomicio import atomic_target, write_json
from device_bench.errors import BenchInputError, TargetError
from device_bench.interpreter import load_interpreter
from device_bench.runner import BenchOptions, make_inputs

__all__ = ["MAGIC", "MARK_START", "MARK_STOP", "main", "probe"]

SCHEMA = "edgekit.insn_probe/1"
MAGIC = 0x7EDC  # must match DEFAULT_MAGIC in qemu_plugin/insn_count.c
MARK_START = 1
MARK_STOP = 2
WARMUP_TAG = 63
PROG = "device_bench.insn_probe"


def _marker(magic: int) -> tuple[Callable[[int, int], None], Callable[[], int]]:
    """A function that issues the marker syscall, and one that reads the errno it left."""
    libc = ctypes.CDLL(None, use_errno=True)
    syscall = libc.syscall
    syscall.restype = ctypes.c_long
    number = ctypes.c_long(magic)
    args = {(kind, tag): (ctypes.c_long(kind), ctypes.c_long(tag))
            for kind in (MARK_START, MARK_STOP) for tag in range(64)}

    def mark(kind: int, tag: int) -> None:
        syscall(number, *args[(kind, tag)])

    return mark, ctypes.get_errno


def _segment(mark: Callable[[int, int], None], invoke: Callable[[], Any], n: int, tag: int) -> None:
    # The same code for the empty segment (n == 0) and the counted ones, so that the empty one
    # measures exactly the overhead the others carry.
    mark(MARK_START, tag)
    for _ in range(n):
        invoke()
    mark(MARK_STOP, tag)


def probe(
    model_path: str,
    options: BenchOptions,
    *,
    outputs_path: str | None,
    runs: int,
    segments: int,
    warmup: int,
    magic: int = MAGIC,
) -> dict[str, Any]:
    """Runs the model once (outputs), then the marked segments.

    Args:
        model_path: The ``.tflite`` file.
        options: ``threads`` (None: 1), ``xnnpack``, ``seed`` and ``input_path`` are used.
        outputs_path: Where to save the raw outputs (``.npz``); None does not save them.
        runs: Inferences per counted segment (0: no segments at all).
        segments: Counted segments (at most 62).
        warmup: Inferences before the segments.
        magic: The marker syscall number.

    Returns:
        The probe record (``schema`` ``edgekit.insn_probe/1``).

    Raises:
        BenchInputError: The model or input is unusable, or a count is out of range.
        TargetError: The interpreter failed while running.
    """
    if runs < 0 or warmup < 0 or not 1 <= segments < WARMUP_TAG:
        raise BenchInputError(
            f"runs and warmup must be >= 0 and segments in 1..{WARMUP_TAG - 1}, "
            f"got {runs}, {warmup}, {segments}"
        )
    threads = options.threads if options.threads is not None else 1
    loaded = load_interpreter(model_path, threads=threads, xnnpack=options.xnnpack)
    interp = loaded.interpreter
    for detail, value in zip(interp.get_input_details(), make_inputs(interp, options),
                             strict=True):
        interp.set_tensor(detail["index"], value)
    outputs = interp.get_output_details()
    try:
        interp.invoke()
        arrays = {f"out{i}": np.array(interp.get_tensor(d["index"]))
                  for i, d in enumerate(outputs)}
        if outputs_path is not None:
            with atomic_target(outputs_path) as tmp, open(tmp, "wb") as f:
                np.savez(f, **arrays)
        marker_errno = None
        if runs > 0:
            invoke = interp.invoke
            mark, get_errno = _marker(magic)
            _segment(mark, invoke, warmup, WARMUP_TAG)
            _segment(mark, invoke, 0, 0)
            marker_errno = get_errno()
            for tag in range(1, segments + 1):
                _segment(mark, invoke, runs, tag)
    except (RuntimeError, ValueError) as e:
        raise TargetError(f"{loaded.name} failed to run model {model_path!r}: {e}") from e
    return {
        "schema": SCHEMA,
        "machine": platform.machine() or None,
        "interpreter": loaded.name,
        "version": loaded.version,
        "delegate": loaded.delegate,
        "threads": threads,
        "warmup": warmup if runs > 0 else 0,
        "runs_per_segment": runs,
        "segments": segments if runs > 0 else 0,
        "magic": magic,
        "marker_errno": (errno.errorcode.get(marker_errno, str(marker_errno))
                         if marker_errno is not None else None),
        "outputs_path": outputs_path,
        "outputs": [{"name": d["name"], "dtype": np.dtype(d["dtype"]).name,
                     "shape": [int(s) for s in d["shape"]]} for d in outputs],
    }


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{PROG}: error: {message}\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the probe from the command line.

    Args:
        argv: Arguments without the program name; None reads ``sys.argv``.

    Returns:
        0 ok, 1 the model failed to run, 2 bad input.
    """
    p = _Parser(prog=PROG, description="Model outputs and marked inference segments.")
    p.add_argument("model")
    p.add_argument("--json", required=True, metavar="OUT", help="the probe record (JSON)")
    p.add_argument("--outputs", default=None, metavar="NPZ", help="save the raw outputs here")
    p.add_argument("--runs", type=int, default=10, help="inferences per segment (0: none)")
    p.add_argument("--segments", type=int, default=3, help="counted segments")
    p.add_argument("--warmup", type=int, default=5, help="inferences before the segments")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--input", default=None, metavar="FILE")
    p.add_argument("--threads", type=int, default=None, help="interpreter threads (default 1)")
    p.add_argument("--no-xnnpack", action="store_true")
    p.add_argument("--magic", type=lambda s: int(s, 0), default=MAGIC)
    args = p.parse_args(argv)
    try:
        options = BenchOptions(threads=args.threads, seed=args.seed, xnnpack=not args.no_xnnpack,
                               input_path=args.input)
        record = probe(os.fspath(args.model), options, outputs_path=args.outputs, runs=args.runs,
                       segments=args.segments, warmup=args.warmup, magic=args.magic)
        write_json(args.json, record)
    except BenchInputError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    except TargetError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
