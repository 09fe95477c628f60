"""The sandbox of the ``tflite_load`` fuzz target: benchmarks models sent to it, one at a time.

Run as ``python tests/fuzz/interp_worker.py`` (the repository root on ``PYTHONPATH``). It reads
frames from stdin (4-byte little-endian length, then the model's bytes), writes each model to a
temp file, runs it through the device side exactly as ``python -m device_bench`` does
(:func:`device_bench.runner.run_benchmark`: the model check, the interpreter, random inputs,
timed invokes) with the smallest counts, and answers one JSON line per model on stdout:
``{"kind": "ok" | "refused" | "error", "detail": ...}``. ``refused`` is a documented error
(BenchInputError, TargetError), ``error`` any other exception. A crash of the interpreter ends
this process; the parent (:class:`fuzz_targets.InterpreterSandbox`) sees that as a crash of
the model it sent last, and starts a new worker.

It imports only device_bench (no TensorFlow, no edgekit), as a board would.
"""

from __future__ import annotations

import gc
import json
import os
import struct
import sys
import tempfile
import traceback


def _where(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    last = frames[-1] if frames else None
    place = f"{os.path.relpath(last.filename)}:{last.lineno}" if last else "?"
    return f"{place} {type(exc).__name__}: {exc}"


def main() -> int:
    """Serves frames until stdin closes.

    Returns:
        0 when stdin closed.
    """
    from device_bench.errors import BenchInputError, TargetError
    from device_bench.runner import BenchOptions, run_benchmark

    options = BenchOptions(warmup=0, warmup_seconds=0.0, runs=1, windows=1, min_seconds=0.0)
    stdin, stdout = sys.stdin.buffer, sys.stdout
    with tempfile.TemporaryDirectory(prefix="fuzz-interp-") as tmp:
        path = os.path.join(tmp, "model.tflite")
        while True:
            head = stdin.read(4)
            if len(head) < 4:
                return 0
            (size,) = struct.unpack("<I", head)
            data = stdin.read(size)
            with open(path, "wb") as f:
                f.write(data)
            try:
                run_benchmark(path, options)
                answer = {"kind": "ok", "detail": ""}
            except (BenchInputError, TargetError) as e:
                answer = {"kind": "refused", "detail": f"{type(e).__name__}: {e}"}
            except Exception as e:  # an undocumented error: the finding
                answer = {"kind": "error", "detail": _where(e)}
            gc.collect()  # a crash while the interpreter is freed belongs to this model too
            stdout.write(json.dumps(answer) + "\n")
            stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
