"""Benchmark targets: where a model runs. ``get_target(spec)`` turns a ``--target`` into one.

Specs: ``local``, ``ssh://USER@HOST[:PORT]``, ``adb://SERIAL`` and ``qemu-aarch64[:CPU]``.

Each target module of this package declares its kind (``TARGET_KIND``, a
:class:`~device_bench.targets.base.TargetKind`: scheme, spec form, factory). The package finds
the modules itself (:func:`target_kinds`), so adding a target is one new module here plus its
test; nothing else lists the kinds. The modules are imported on the first lookup, not when this
package is imported: ``import device_bench.targets`` stays as cheap as the local target.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil

from device_bench.errors import BenchInputError
from device_bench.registry import Registry
from device_bench.targets.base import Target, TargetKind, spec_scheme
from device_bench.targets.local import LocalTarget

__all__ = ["KNOWN_SPECS", "LocalTarget", "QemuTarget", "Target", "TargetKind", "get_target",
           "target_kinds"]


@functools.cache
def target_kinds() -> Registry[TargetKind]:
    """Every target kind this package holds, keyed by scheme (``local``, ``ssh://`` ...).

    Imports each public module of the package once and registers its ``TARGET_KIND``; helper
    modules (``base``, ``remote``) declare none.

    Returns:
        The registry, listed in each kind's ``order``.

    Raises:
        TypeError: A module's ``TARGET_KIND`` is not a TargetKind.
        ValueError: Two modules claim the same scheme or the same kind name.
    """
    kinds: Registry[TargetKind] = Registry("target", label=lambda kind: kind.spec_form)
    seen: dict[str, str] = {}
    for info in pkgutil.iter_modules(__path__, prefix=f"{__name__}."):
        if info.name.rpartition(".")[2].startswith("_"):
            continue
        module = importlib.import_module(info.name)
        kind = getattr(module, "TARGET_KIND", None)
        if kind is None:
            continue
        if not isinstance(kind, TargetKind):
            raise TypeError(f"{info.name}.TARGET_KIND must be a TargetKind, got "
                            f"{type(kind).__name__}")
        if kind.name in seen:
            raise ValueError(f"target kind {kind.name!r} is declared by both {seen[kind.name]} "
                             f"and {info.name}")
        seen[kind.name] = info.name
        kinds.register(kind.scheme, kind, order=kind.order)
    return kinds


def __getattr__(name: str) -> object:
    # Computed on first use, so that importing the package does not import every target.
    if name == "KNOWN_SPECS":  # every spec form, as the error messages list them
        return target_kinds().labels()
    if name == "QemuTarget":
        return importlib.import_module(f"{__name__}.qemu").QemuTarget
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def get_target(spec: str) -> Target:
    """The target a spec names.

    Args:
        spec: ``local``, ``ssh://USER@HOST[:PORT]``, ``adb://SERIAL`` or ``qemu-aarch64[:CPU]``
            (any form in ``KNOWN_SPECS``).

    Returns:
        A new target object.

    Raises:
        BenchInputError: The spec is malformed (the target's own message) or names no known
            target (the message lists the known forms).
    """
    if not isinstance(spec, str):
        raise BenchInputError(f"target must be a string, got {type(spec).__name__}")
    kinds = target_kinds()
    scheme = spec_scheme(spec)
    if scheme not in kinds:
        raise kinds.unknown(spec)
    return kinds.get(scheme).from_spec(spec)
