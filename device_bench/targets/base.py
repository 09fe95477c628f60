"""The interface every benchmark target implements, and how a target module declares its kind.

A target module (``local.py``, ``ssh.py`` ...) holds a ``TARGET_KIND = TargetKind(...)``: the
spec prefix it answers to, the form error messages list, and the factory that turns a spec into
a target. :mod:`device_bench.targets` finds those modules itself, so adding a target is one new
module (plus its test), with no list to edit anywhere else.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from device_bench.errors import BenchInputError

if TYPE_CHECKING:
    from device_bench.runner import BenchOptions

__all__ = ["Target", "TargetKind", "parse_spec_query", "spec_scheme", "target_spec_error"]

_NAME_RE = re.compile(r"^[a-z][a-z0-9-]*$")


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


def spec_scheme(spec: str) -> str:
    """The part of a target spec that chooses the target kind.

    ``ssh://pi@board`` -> ``ssh://``; ``qemu-aarch64:cortex-a72`` -> ``qemu-aarch64``;
    ``local`` -> ``local``. ``ssh:/pi@board`` -> ``ssh`` (no kind answers to that).

    Args:
        spec: A ``--target`` value.

    Returns:
        The URL scheme with its ``://`` when the spec has one, else the text before the first
        ``:``.
    """
    head, sep, _ = spec.partition("://")
    return head + sep if sep else spec.partition(":")[0]


@dataclass(frozen=True)
class TargetKind:
    """What a target module declares about its kind (its module's ``TARGET_KIND``).

    Attributes:
        name: The ``target.kind`` its results report (``ssh``); lower case, digits and ``-``.
        scheme: What :func:`spec_scheme` gives for its specs: a URL scheme with ``://``
            (``ssh://``) or a bare word, alone or followed by ``:ARG`` (``qemu-aarch64``).
        spec_form: The form error messages list (``ssh://USER@HOST[:PORT]``).
        from_spec: Builds a target from a spec of this kind; raises BenchInputError (one
            line, naming the spec and the expected form) for a malformed one.
        example: A valid spec (for documentation and the registry's tests).
        emulated: Its timings come from an emulator (``emulated: true`` in results).
        order: Place in listings such as ``KNOWN_SPECS`` (smaller first).

    Raises:
        ValueError: A field is malformed (a programming error in the target module).
    """

    name: str
    scheme: str
    spec_form: str
    from_spec: Callable[[str], Target]
    example: str
    emulated: bool = False
    order: float = 100.0

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME_RE.match(self.name):
            raise ValueError(f"target kind name must be lower-case letters, digits and '-', "
                             f"got {self.name!r}")
        bare = self.scheme.removesuffix("://")
        if not _NAME_RE.match(bare) or ":" in bare:
            raise ValueError(f"target kind {self.name!r}: scheme must be a word or 'word://', "
                             f"got {self.scheme!r}")
        if not isinstance(self.example, str) or spec_scheme(self.example) != self.scheme:
            raise ValueError(f"target kind {self.name!r}: example {self.example!r} does not "
                             f"start with its scheme {self.scheme!r}")
        if not callable(self.from_spec):
            raise ValueError(f"target kind {self.name!r}: from_spec must be callable")


def target_spec_error(kind: str, spec: object, why: str, form: str) -> BenchInputError:
    """The one-line error for a malformed spec of one kind.

    Args:
        kind: The kind (``ssh``).
        spec: What was given.
        why: What is wrong with it.
        form: The expected form.

    Returns:
        ``BenchInputError("ssh target 'ssh://': no host; expected ssh://[USER@]HOST...")``.
    """
    return BenchInputError(f"{kind} target {spec!r}: {why}; expected {form}")


def parse_spec_query(query: str, known: Sequence[str],
                     bad: Callable[[str], Exception]) -> dict[str, str]:
    """The ``?key=value&...`` options of a target spec (``ssh://``, ``adb://``).

    Args:
        query: The text after ``?`` (may be empty).
        known: The option names the target accepts.
        bad: Builds the error for a reason (it names the spec and the expected form).

    Returns:
        ``{key: value}``.

    Raises:
        Exception: ``bad(why)`` for a malformed query, an unknown option, or an option given
            twice or without a value.
    """
    try:
        parsed = urllib.parse.parse_qs(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError as e:
        raise bad(f"malformed query {query!r}") from e
    unknown = sorted(set(parsed) - set(known))
    if unknown:
        raise bad(f"unknown option(s) {', '.join(map(repr, unknown))} "
                  f"(known: {', '.join(known)})")
    if any(len(values) != 1 or not values[0] for values in parsed.values()):
        raise bad("each option must be given once, with a value")
    return {key: values[0] for key, values in parsed.items()}
