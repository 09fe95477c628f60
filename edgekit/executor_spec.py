"""The recipe's ``executor:``: where a sweep's candidates run (this process, or a Ray cluster).

::

    executor: local                       # the default: candidates one after another, here
    executor: {kind: ray, address: auto,  # an existing Ray cluster (RAY_ADDRESS, or the one
               cpus_per_candidate: 1,     #   `ray start` started on this machine); or HOST:PORT
               max_retries: 2,            # re-runs of a task whose worker died
               bench_node: 10.0.0.5}      # the node that runs `local` benchmarks (default: the
                                          #   driver's)

``edgekit run RECIPE --executor local | ray | ray:HOST:PORT`` chooses the same from the command
line (the recipe's other Ray keys are kept). Parsing only: nothing here imports Ray; the
executors are :mod:`edgekit.executor` (local) and :mod:`edgekit.executor_ray`.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, replace
from typing import Any

from edgekit.core.checks import checked_kwargs
from edgekit.core.errors import InputError

__all__ = ["KINDS", "ExecutorSpec", "parse_address"]

KINDS = ("local", "ray")
MAX_RETRIES_LIMIT = 10
_HOST_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$")
_FORMS = "'local' or {kind: ray, address: auto | HOST:PORT, cpus_per_candidate: N, ...}"


def parse_address(address: Any, where: str = "executor.address") -> str:
    """Checks a Ray cluster address: ``auto`` or ``HOST:PORT`` (the head's GCS port).

    Args:
        address: The user's value.
        where: Where it came from, for the message.

    Returns:
        The address, unchanged.

    Raises:
        InputError: Not ``auto`` and not a host name or IP address with a port in 1-65535.
    """
    expected = "expected auto or HOST:PORT (the address `ray start --head` prints)"
    if address == "auto":
        return address
    if not isinstance(address, str) or ":" not in address:
        raise InputError(f"{where} {address!r}: {expected}")
    host, _, port = address.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise InputError(f"{where} {address!r}: the port must be a number in 1-65535; "
                         f"{expected}")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not _HOST_RE.match(host):
            raise InputError(f"{where} {address!r}: {host!r} is not a host name or IP address; "
                             f"{expected}") from None
    return address


@dataclass(frozen=True)
class ExecutorSpec:
    """Where a sweep's candidates run.

    Attributes:
        kind: ``local`` (this process, one candidate after another) or ``ray``.
        address: Ray: ``auto`` (``RAY_ADDRESS``, else the cluster started on this machine) or
            ``HOST:PORT`` of the head node.
        cpus_per_candidate: Ray: logical CPUs a candidate's training and conversion hold.
        max_retries: Ray: how often a task whose worker process or node died runs again (a
            candidate that fails with its own error is not retried).
        bench_node: Ray: IP address of the node that runs ``local`` benchmarks (None: the
            driver's node).
    """

    kind: str = "local"
    address: str = "auto"
    cpus_per_candidate: float = 1
    max_retries: int = 2
    bench_node: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise InputError(f"executor kind {self.kind!r}: expected one of {', '.join(KINDS)}")
        parse_address(self.address)
        cpus = self.cpus_per_candidate
        if isinstance(cpus, bool) or not isinstance(cpus, (int, float)) or not cpus > 0:
            raise InputError(f"executor.cpus_per_candidate must be a number > 0, got {cpus!r}")
        retries = self.max_retries
        if (isinstance(retries, bool) or not isinstance(retries, int)
                or not 0 <= retries <= MAX_RETRIES_LIMIT):
            raise InputError(f"executor.max_retries must be an integer in 0-{MAX_RETRIES_LIMIT},"
                             f" got {retries!r}")
        node = self.bench_node
        if node is not None:
            try:
                ipaddress.ip_address(node)
            except (TypeError, ValueError):
                raise InputError(f"executor.bench_node must be a node's IP address (as `ray "
                                 f"status` lists them), got {node!r}") from None

    @classmethod
    def from_value(cls, value: Any, source: str = "executor") -> ExecutorSpec:
        """Reads a recipe's ``executor:`` value.

        Args:
            value: ``"local"``, ``"ray"``, or a mapping with ``kind`` and the Ray keys.
            source: Where it came from, for messages.

        Returns:
            The spec.

        Raises:
            InputError: Another string, unknown keys (the known ones are listed), or bad values.
        """
        if value is None or value == "local":
            return cls()
        if value == "ray":
            return cls(kind="ray")
        if not isinstance(value, dict):
            raise InputError(f"{source} must be {_FORMS}, got {value!r}")
        cfg = checked_kwargs(cls, value, source)
        if "kind" not in cfg:
            raise InputError(f"{source} needs a kind ({', '.join(KINDS)}), got {value!r}")
        spec = cls(**cfg)
        if spec.kind == "local" and len(cfg) > 1:
            raise InputError(f"{source}: kind local takes no other keys, got "
                             f"{', '.join(sorted(k for k in cfg if k != 'kind'))}")
        return spec

    @classmethod
    def from_cli(cls, text: Any, base: ExecutorSpec | None = None) -> ExecutorSpec:
        """Reads ``--executor local | ray | ray:HOST:PORT`` over the recipe's own spec.

        Args:
            text: The flag's value.
            base: The recipe's executor (its Ray keys are kept when the flag says ``ray``).

        Returns:
            The spec.

        Raises:
            InputError: Another value, or a malformed address.
        """
        base = base or cls()
        if text == "local":
            return cls()
        if isinstance(text, str) and (text == "ray" or text.startswith("ray:")):
            address = text[len("ray:"):] if text.startswith("ray:") else "auto"
            parse_address(address, "--executor")
            kept = base if base.kind == "ray" else cls(kind="ray")
            return replace(kept, address=address if text != "ray" else kept.address)
        raise InputError(f"--executor {text!r}: expected local, ray or ray:HOST:PORT")

    def to_value(self) -> str | dict[str, Any]:
        """The recipe value: ``"local"``, or the Ray mapping with every key."""
        if self.kind == "local":
            return "local"
        return {"kind": self.kind, "address": self.address,
                "cpus_per_candidate": self.cpus_per_candidate, "max_retries": self.max_retries,
                "bench_node": self.bench_node}
