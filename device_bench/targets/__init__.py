"""Benchmark targets: where a model runs. ``get_target(spec)`` turns a ``--target`` into one.

Specs: ``local``; ``ssh://USER@HOST[:PORT]``, ``adb://SERIAL`` and ``qemu-aarch64[:CPU]`` are
recognised and arrive in a later version.
"""

from __future__ import annotations

from device_bench.errors import BenchInputError
from device_bench.targets.base import Target
from device_bench.targets.local import LocalTarget

__all__ = ["KNOWN_SPECS", "SUPPORTED_SPECS", "LocalTarget", "Target", "get_target"]

# Every spec form, as the error messages list them.
KNOWN_SPECS: tuple[str, ...] = (
    "local",
    "ssh://USER@HOST[:PORT]",
    "adb://SERIAL",
    "qemu-aarch64[:CPU]",
)
# The forms this version can run.
SUPPORTED_SPECS: tuple[str, ...] = ("local",)

# Recognised prefixes of targets not built yet -> their kind.
_LATER: tuple[tuple[str, str], ...] = (
    ("ssh://", "ssh"),
    ("adb://", "adb"),
    ("qemu-aarch64", "qemu"),
)


def get_target(spec: str) -> Target:
    """The target a spec names.

    Args:
        spec: ``local``, ``ssh://USER@HOST[:PORT]``, ``adb://SERIAL`` or ``qemu-aarch64[:CPU]``.

    Returns:
        A new target object.

    Raises:
        BenchInputError: The spec names a target this version cannot run yet, or no known target
            (the message lists the known forms).
    """
    if not isinstance(spec, str):
        raise BenchInputError(f"target must be a string, got {type(spec).__name__}")
    if spec == "local":
        return LocalTarget()
    for prefix, kind in _LATER:
        if spec.startswith(prefix) and (
            prefix.endswith("://") or spec == prefix or spec.startswith(prefix + ":")
        ):
            raise BenchInputError(
                f"target {spec!r}: {kind} targets arrive in a later version; "
                f"supported now: {', '.join(SUPPORTED_SPECS)}"
            )
    raise BenchInputError(
        f"unknown target {spec!r}; expected one of: {', '.join(KNOWN_SPECS)}"
    )
