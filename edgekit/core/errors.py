"""Exception types that the CLI maps to exit codes.

``InputError`` (exit 2): the user gave something unusable (missing file, wrong shape, unknown key).
``CheckFailed`` (exit 1): everything ran, but a budget or a check (``--require-int8``) did not hold.
"""

from __future__ import annotations

from device_bench.errors import BenchInputError


class EdgekitError(Exception):
    """Base class of edgekit's own errors."""


class InputError(EdgekitError, ValueError):
    """Bad input: the message names the input and what was expected (CLI exit 2)."""


class CheckFailed(EdgekitError):
    """A budget or check failed after a successful run (CLI exit 1)."""


# Everything the CLI reports as "bad input" (exit 2, one line, no traceback).
INPUT_ERRORS: tuple[type[Exception], ...] = (InputError, BenchInputError)
