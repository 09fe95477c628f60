"""The interface every benchmark target implements (local, ssh, adb, qemu)."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from device_bench.runner import BenchOptions

__all__ = ["Target"]


@runtime_checkable
class Target(Protocol):
    """A place a model can be benchmarked.

    Attributes:
        kind: The ``target.kind`` its results report: ``local``, ``ssh``, ``adb`` or ``qemu``.
    """

    kind: str

    def bench(self, model_path: str, options: BenchOptions) -> dict[str, Any]:
        """Benchmarks a model on the target.

        Args:
            model_path: The ``.tflite`` file on this (host) machine.
            options: How to measure.

        Returns:
            The ``edgekit.bench/1`` result dict.

        Raises:
            BenchInputError: The model or an option is unusable.
            TargetError: The target could not run the benchmark.
        """
        ...
