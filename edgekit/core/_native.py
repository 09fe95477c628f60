"""Silencing native (C++) log output that Python logging settings cannot reach.

TensorFlow >= 2.19 prints oneDNN/CUDA notices from C++ at import time even with
``TF_CPP_MIN_LOG_LEVEL`` set (tensorflow/tensorflow#100442), and the TFLite converter logs its
MLIR passes the same way. Redirecting file descriptor 2 for the duration is the only switch.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator


@contextlib.contextmanager
def quiet_native_stderr(enabled: bool = True) -> Iterator[None]:
    """Sends file descriptor 2 to a temp file while active.

    If the block raises, the captured text is written back to stderr first, so nothing that
    explains a failure is lost. ``EDGEKIT_NATIVE_LOGS=1`` turns the silencing off everywhere.

    Args:
        enabled: False makes this a no-op.

    Yields:
        Nothing.
    """
    if not enabled or os.environ.get("EDGEKIT_NATIVE_LOGS") == "1":
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no fd 2 (embedded interpreters): nothing to silence
        yield
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        failed = False
        try:
            yield
        except BaseException:
            failed = True
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            if failed:
                sink.seek(0)
                sys.stderr.write(sink.read().decode("utf-8", "replace"))
                sys.stderr.flush()
