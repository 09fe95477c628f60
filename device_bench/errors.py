"""Errors of the device-side runner (no TensorFlow, no edgekit imports here)."""

from __future__ import annotations


class BenchInputError(ValueError):
    """Bad input to the benchmark (missing model, bad option, unknown target): exit 2."""


class TargetError(RuntimeError):
    """The target could not run the benchmark (connection, remote failure)."""
