"""The local target: benchmark on this machine, in a fresh Python process.

The host process may have TensorFlow loaded (hundreds of MB, many threads); a child process that
only imports numpy and the interpreter gives the figures a device would, peak RSS included.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from device_bench.child_output import ERROR_PREFIX, last_line, relay_warnings
from device_bench.errors import BenchInputError, TargetError
from device_bench.runner import BenchOptions
from device_bench.targets.base import TargetKind, target_spec_error
from device_bench.tflite_check import describe_exit

__all__ = ["TARGET_KIND", "LocalTarget"]

# The folder that holds the device_bench package, so the child imports this very copy.
_PACKAGE_PARENT = str(Path(__file__).resolve().parents[2])


class LocalTarget:
    """Benchmarks in a child ``python -m device_bench`` process on this machine.

    Args:
        timeout_s: Seconds the child may run before it is killed (TargetError).
        python: The interpreter to run; None is this one (``sys.executable``).

    Raises:
        BenchInputError: ``timeout_s`` is not a positive number.
    """

    kind = "local"

    def __init__(self, timeout_s: float = 600.0, python: str | None = None) -> None:
        if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or timeout_s <= 0:
            raise BenchInputError(f"timeout_s must be a number > 0, got {timeout_s!r}")
        self.timeout_s = float(timeout_s)
        self.python = python or sys.executable

    @classmethod
    def from_spec(cls, spec: str, **kwargs: Any) -> LocalTarget:
        """Builds the target from ``local`` (it takes no options).

        Args:
            spec: The target spec.
            **kwargs: Constructor arguments (``timeout_s``, ``python``).

        Returns:
            The target.

        Raises:
            BenchInputError: The spec is not exactly ``local``.
        """
        if spec != "local":
            raise target_spec_error("local", spec, "takes no options", "local")
        return cls(**kwargs)

    def command(self, model_path: str, options: BenchOptions, json_out: str) -> list[str]:
        """The child's argument list (never a shell string).

        Args:
            model_path: The ``.tflite`` file.
            options: How to measure.
            json_out: Where the child writes its JSON result.

        Returns:
            The argument list for ``subprocess.run``.
        """
        return [
            self.python, "-m", "device_bench",
            "--json", json_out,
            "--target-kind", self.kind,
            *options.to_argv(),
            "--", os.fspath(model_path),
        ]

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        paths = [_PACKAGE_PARENT] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        env["PYTHONPATH"] = os.pathsep.join(paths)
        return env

    def bench(self, model_path: str, options: BenchOptions) -> dict[str, Any]:
        """Benchmarks a model in a fresh local process.

        Args:
            model_path: The ``.tflite`` file.
            options: How to measure.

        Returns:
            The child's ``edgekit.bench/1`` result dict (``target.kind == "local"``).

        Raises:
            BenchInputError: The child rejected its input (exit 2); the message is the child's.
            TargetError: The child failed, timed out, or wrote no valid JSON.
        """
        if not isinstance(options, BenchOptions):
            raise BenchInputError(f"options must be BenchOptions, got {type(options).__name__}")
        with tempfile.TemporaryDirectory(prefix="device_bench-") as tmp:
            out = os.path.join(tmp, "result.json")
            try:
                proc = subprocess.run(
                    self.command(model_path, options, out),
                    capture_output=True,
                    text=True,
                    timeout=self.timeout_s,
                    env=self._env(),
                    check=False,
                )
            except subprocess.TimeoutExpired as e:
                raise TargetError(
                    f"local benchmark of {model_path!r} timed out after {self.timeout_s:g} s"
                ) from e
            except OSError as e:
                raise TargetError(f"cannot start {self.python!r}: {e.strerror or e}") from e
            relay_warnings(proc.stderr)
            last = last_line(proc.stderr)
            if proc.returncode == 2:
                raise BenchInputError(last.removeprefix(ERROR_PREFIX) or "bad input (exit 2)")
            if proc.returncode != 0:
                # A child killed by a signal (the interpreter crashed) is named as such.
                raise TargetError(
                    f"local benchmark of {model_path!r} failed ({describe_exit(proc.returncode)}"
                    f"): {last.removeprefix(ERROR_PREFIX) or 'no message'}"
                )
            try:
                with open(out, encoding="utf-8") as f:
                    result = json.load(f)
            except (OSError, ValueError) as e:
                raise TargetError(
                    f"local benchmark of {model_path!r} wrote no valid JSON result: {e}"
                ) from e
        if not isinstance(result, dict):
            raise TargetError(f"local benchmark of {model_path!r} wrote JSON that is not an object")
        return result


TARGET_KIND = TargetKind(
    name="local",
    scheme="local",
    spec_form="local",
    from_spec=LocalTarget.from_spec,
    example="local",
    order=0,
)
