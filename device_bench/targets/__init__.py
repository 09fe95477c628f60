"""Benchmark targets: where a model runs. ``get_target(spec)`` turns a ``--target`` into one.

Specs: ``local``, ``ssh://USER@HOST[:PORT]``, ``adb://SERIAL`` and ``qemu-aarch64[:CPU]``.
"""

from __future__ import annotations

from device_bench.errors import BenchInputError
from device_bench.targets.base import Target
from device_bench.targets.local import LocalTarget

__all__ = ["KNOWN_SPECS", "LocalTarget", "QemuTarget", "Target", "get_target"]

# Every spec form, as the error messages list them.
KNOWN_SPECS: tuple[str, ...] = (
    "local",
    "ssh://USER@HOST[:PORT]",
    "adb://SERIAL",
    "qemu-aarch64[:CPU]",
)


def __getattr__(name: str) -> object:
    # QemuTarget is exported but imported on first use, like get_target does.
    if name == "QemuTarget":
        from device_bench.targets.qemu import QemuTarget

        return QemuTarget
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def get_target(spec: str) -> Target:
    """The target a spec names.

    Each remote kind lives in its own module, imported only when named, so that ``local`` never
    pays for (or needs) what ssh, adb or qemu need.

    Args:
        spec: ``local``, ``ssh://USER@HOST[:PORT]``, ``adb://SERIAL`` or ``qemu-aarch64[:CPU]``.

    Returns:
        A new target object.

    Raises:
        BenchInputError: The spec is malformed (the target's own message) or names no known
            target (the message lists the known forms).
    """
    if not isinstance(spec, str):
        raise BenchInputError(f"target must be a string, got {type(spec).__name__}")
    if spec == "local":
        return LocalTarget()
    if spec.startswith("ssh://"):
        from device_bench.targets.ssh import SSHTarget

        return SSHTarget.from_spec(spec)
    if spec.startswith("adb://"):
        from device_bench.targets.adb import AdbTarget

        return AdbTarget.from_spec(spec)
    if spec == "qemu-aarch64" or spec.startswith("qemu-aarch64:"):
        from device_bench.targets.qemu import QemuTarget

        return QemuTarget.from_spec(spec)
    raise BenchInputError(
        f"unknown target {spec!r}; expected one of: {', '.join(KNOWN_SPECS)}"
    )
