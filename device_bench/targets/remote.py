"""The one run protocol of the remote targets (ssh, adb): stage, run, read the exit code, fetch,
clean up.

A remote target is a :class:`Transport` (how to make and remove a temp folder on the device,
push files into it, run an argument list there and read a file back) plus its spec parsing.
:func:`run_remote` does the sequence once for all of them:

1. ``make_temp_dir()`` on the device;
2. ``push`` the payload (the files, and the ``device_bench`` package when it is needed);
3. ``execute`` the command under the device's ``timeout``
   (:func:`~device_bench.remote_payload.timeout_wrapped`), and relay its warnings;
4. map its exit status with one rule for every target (:func:`exit_error`): 0 ok; 124 timed
   out; 137 killed (SIGKILL: out of memory, or it outlived the timeout's grace); anything else
   failed, with the child's last stderr line;
5. ``pull`` the result file;
6. ``remove_dir`` the temp folder: always, also after a failure or a timeout (a failed clean-up
   is a warning, never the error the user sees).

Each transport bounds every step by a time limit on this side and retries transient faults
(refused, reset or dropped connections, connect timeouts, an offline adb device) with the one
rule of :mod:`device_bench.targets.retry`; authentication, host-key and authorization failures
are never retried.

:func:`bench_with_runner` is the Python-runner job on top (``python3 -m device_bench`` on the
device, its JSON fetched), used by both ssh and adb. Commands are argument lists that the
transport quotes element by element (``shlex.join``) for the device's shell: no user string is
ever pasted into a shell line.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import secrets
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from device_bench.child_output import ERROR_PREFIX, WARNING_PREFIX, last_line, relay_warnings
from device_bench.errors import BenchInputError, TargetError
from device_bench.remote_payload import timeout_wrapped
from device_bench.runner import BenchOptions
from device_bench.tflite_check import describe_exit

__all__ = [
    "GRACE_S",
    "KILLED",
    "MKDIR_SCRIPT",
    "REMOVE_LOST_SCRIPT",
    "REMOVE_SCRIPT",
    "TIMED_OUT",
    "Completed",
    "Payload",
    "RemoteFile",
    "RemoteOutput",
    "Transport",
    "bench_with_runner",
    "check_input",
    "check_model",
    "check_options",
    "exit_error",
    "fault_line",
    "run_remote",
    "runner_argv",
    "runner_error",
    "temp_name",
]

TIMED_OUT = 124  # GNU/busybox/toybox `timeout`: the command ran out of time (SIGTERM)
KILLED = 137  # 128 + SIGKILL: `timeout -k` had to kill it, or the out-of-memory killer did
GRACE_S = 15.0  # host-side seconds beyond the remote timeout before the host gives up
RESULT_NAME = "result.json"
# Fixed scripts for the device's shell (ssh's login shell, adb's sh): no variable part is pasted
# in, every path arrives as a quoted positional argument. MKDIR_SCRIPT makes ROOT/NAME mode 0700
# ($1 = ROOT, or "" for the device's $TMPDIR, else /tmp; $2 = NAME) and prints it; it accepts the
# folder when it is already there, so a retry after a dropped connection finds the one the lost
# attempt made (NAME carries a random token chosen on this side: see temp_name).
MKDIR_SCRIPT = (
    'r=${1:-${TMPDIR:-/tmp}}; d="${r%/}/$2"; '
    'if mkdir -m 700 -- "$d" 2>/dev/null || { [ -d "$d" ] && [ ! -L "$d" ]; }; '
    'then printf "%s\\n" "$d"; else mkdir -m 700 -- "$d"; exit 1; fi'
)
# Stops what still runs from the folder $d (a run orphaned by a dropped connection: its command
# line names files in "$d/"), then removes the folder.
_CLEANUP = ('if command -v pkill >/dev/null 2>&1; then pkill -KILL -f -- "$d/" 2>/dev/null; fi; '
            'rm -rf -- "$d"')
REMOVE_SCRIPT = 'd=$1; ' + _CLEANUP  # $1 = the folder
REMOVE_LOST_SCRIPT = 'r=${1:-${TMPDIR:-/tmp}}; d="${r%/}/$2"; ' + _CLEANUP  # as MKDIR_SCRIPT
# Lines that say why a remote command failed better than its last line ("tar: Exiting with
# failure status due to previous errors" comes after the line that matters).
_FAULT_RE = re.compile(r"No space left on device|Disk quota exceeded|Read-only file system|"
                       r"Permission denied|Cannot write|Too many open files", re.IGNORECASE)


@dataclass(frozen=True)
class RemoteFile:
    """A file that goes into the device's temp folder.

    Attributes:
        name: Its name there (one path component).
        source: The file on this machine.
        executable: Made executable there (mode 0755).
    """

    name: str
    source: Path
    executable: bool = False


@dataclass(frozen=True)
class Payload:
    """What :meth:`Transport.push` sends.

    Attributes:
        files: The files, each under its own name in the temp folder.
        package: The ``device_bench`` package goes along too (as ``device_bench/``), for
            ``python -m device_bench`` with ``PYTHONPATH`` on the temp folder.
    """

    files: tuple[RemoteFile, ...]
    package: bool = True


@dataclass(frozen=True)
class Completed:
    """A command that ran on the device (whatever its exit status).

    Attributes:
        returncode: Its exit status.
        stdout: Its standard output, as text.
        stderr: Its standard error, as text.
    """

    returncode: int
    stdout: str
    stderr: str


@dataclass(frozen=True)
class RemoteOutput:
    """What :func:`run_remote` gives back.

    Attributes:
        proc: The command's outcome (exit status 0).
        fetched: The result file's text, or None when none was asked for.
        remote_dir: The temp folder it ran in (removed by then).
    """

    proc: Completed
    fetched: str | None
    remote_dir: str


@runtime_checkable
class Transport(Protocol):
    """How a remote target reaches its device (ssh, adb ...).

    Every method raises TargetError when the transport itself fails (no client program, no
    connection, a host-side timeout); :meth:`execute` returns the command's outcome otherwise,
    whatever its exit status.

    Attributes:
        spec: How messages name the target (``ssh://pi@board:2222``, ``adb://R58M1234ABC``).
        host: The device's name in fix-it hints (``pip install ... on HOST``).
    """

    spec: str
    host: str

    def make_temp_dir(self) -> str:
        """Creates a fresh temp folder on the device and returns its absolute path."""
        ...

    def push(self, payload: Payload, remote_dir: str) -> None:
        """Puts the payload's files (and the package when asked) into ``remote_dir``."""
        ...

    def execute(self, argv: list[str], what: str, timeout_s: float) -> Completed:
        """Runs ``argv`` on the device (each element quoted for its shell), waiting at most
        ``timeout_s`` on this side; ``what`` names the step in messages."""
        ...

    def pull(self, remote_path: str) -> str:
        """The text of a file on the device."""
        ...

    def remove_dir(self, remote_dir: str) -> None:
        """Removes a temp folder (and everything in it) from the device."""
        ...


def exit_error(returncode: int, *, spec: str, what: str, timeout_s: float,
               message: str) -> TargetError | None:
    """The one exit-status rule of every remote target.

    Args:
        returncode: The remote command's exit status (under the device's ``timeout``).
        spec: The target, as messages name it.
        what: The step (``benchmark of 'm.tflite'``).
        timeout_s: The remote time limit.
        message: The child's last stderr line (already cleaned up), or "".

    Returns:
        None for 0; else the TargetError: 124 timed out, 137 killed (SIGKILL), any other
        status failed with ``message``.
    """
    if returncode == 0:
        return None
    if returncode == TIMED_OUT:
        return TargetError(f"{spec}: {what} timed out after {timeout_s:g} s")
    if returncode == KILLED:
        return TargetError(
            f"{spec}: {what} was killed (exit {KILLED}, SIGKILL): the device ran out of memory, "
            f"or the run ignored the stop at its {timeout_s:g} s timeout"
        )
    return TargetError(f"{spec}: {what} failed ({describe_exit(returncode)}): "
                       f"{message or 'no message'}")


def temp_name(prefix: str) -> str:
    """A fresh temp folder name: ``prefix`` and 16 random hex digits (``edgekit.3f9c...``)."""
    return f"{prefix}{secrets.token_hex(8)}"


def fault_line(text: str) -> str:
    """The line of a failed remote command's output that says why it failed.

    Args:
        text: Its stderr (or stdout).

    Returns:
        The first line naming a known fault (no space left, read-only, permission denied ...),
        else the last non-blank line, else "".
    """
    for line in text.splitlines():
        if _FAULT_RE.search(line):
            return line.strip()
    return last_line(text)


def _child_message(proc: Completed, names: dict[str, str]) -> str:
    """The child's last stderr line (else stdout's), naming the user's files, not the copies."""
    message = (last_line(proc.stderr) or last_line(proc.stdout)).removeprefix(ERROR_PREFIX)
    for remote, local in names.items():
        message = message.replace(remote, local)
    return message


def run_remote(
    transport: Transport,
    payload: Payload,
    command: Callable[[str], list[str]],
    *,
    what: str,
    timeout_s: float,
    fetch: str | None = None,
    explain: Callable[[Completed, str], Exception | None] | None = None,
    grace_s: float = GRACE_S,
) -> RemoteOutput:
    """Runs one command on the device in a fresh temp folder, and always removes the folder.

    Args:
        transport: How to reach the device.
        payload: What the command needs in its folder.
        command: Builds the command from the temp folder's path (not yet under ``timeout``).
        what: The step, as messages name it.
        timeout_s: The remote time limit; this side waits ``grace_s`` longer.
        fetch: A file name in the folder to read back after a successful run.
        explain: A job's own reading of a failed run, tried after 124/137 and before the
            generic failure (for example the Python runner's "lacks numpy" or exit 2); it gets
            the outcome and its cleaned-up message and returns an exception or None.
        grace_s: Seconds this side waits beyond ``timeout_s`` before it gives up on the run
            (the board hung, or the connection went silent); default :data:`GRACE_S`.

    Returns:
        The outcome and the fetched text.

    Raises:
        BenchInputError: ``explain`` said the input was bad.
        TargetError: The transport failed, or the command failed, timed out or was killed
            (see :func:`exit_error`).
    """
    remote_dir = transport.make_temp_dir()
    names = {f"{remote_dir}/{f.name}": os.fspath(f.source) for f in payload.files}
    try:
        transport.push(payload, remote_dir)
        proc = transport.execute(timeout_wrapped(timeout_s, command(remote_dir)), what,
                                 timeout_s + grace_s)
        relay_warnings(proc.stderr)
        message = _child_message(proc, names)
        error: Exception | None = None
        if proc.returncode not in (0, TIMED_OUT, KILLED) and explain is not None:
            error = explain(proc, message)
        error = error or exit_error(proc.returncode, spec=transport.spec, what=what,
                                    timeout_s=timeout_s, message=message)
        if error is not None:
            raise error
        fetched = transport.pull(f"{remote_dir}/{fetch}") if fetch is not None else None
    finally:
        try:
            transport.remove_dir(remote_dir)
        except TargetError as e:
            print(f"{WARNING_PREFIX}{remote_dir} was not removed from {transport.spec}: {e}",
                  file=sys.stderr)
    return RemoteOutput(proc, fetched, remote_dir)


# ------------------------------------------------------------------------- the Python runner


def check_options(options: Any) -> BenchOptions:
    """``options``, checked to be a BenchOptions.

    Args:
        options: What the caller passed.

    Returns:
        The options.

    Raises:
        BenchInputError: It is something else (the message names its type).
    """
    if not isinstance(options, BenchOptions):
        raise BenchInputError(f"options must be BenchOptions, got {type(options).__name__}")
    return options


def check_model(model_path: str | os.PathLike[str]) -> Path:
    """The model file, checked to exist on this machine.

    Args:
        model_path: The ``.tflite`` file.

    Returns:
        Its path.

    Raises:
        BenchInputError: It is not a file.
    """
    model = Path(os.fspath(model_path))
    if not model.is_file():
        raise BenchInputError(f"model {os.fspath(model_path)!r} does not exist; expected a "
                              ".tflite file")
    return model


def check_input(options: BenchOptions) -> Path | None:
    """``options.input_path``, checked to exist on this machine.

    Args:
        options: How to measure.

    Returns:
        The input file, or None when ``input_path`` is not set.

    Raises:
        BenchInputError: It is set but not a file.
    """
    if options.input_path is None:
        return None
    source = Path(options.input_path)
    if not source.is_file():
        raise BenchInputError(f"input file {options.input_path!r} does not exist; expected an "
                              ".npy or .npz file")
    return source


def runner_argv(remote_dir: str, remote_model: str, options: BenchOptions, *, python: str,
                kind: str) -> list[str]:
    """The device command of the Python runner, with ``PYTHONPATH`` on the pushed package.

    Args:
        remote_dir: The temp folder holding ``device_bench/``; the result goes there too.
        remote_model: The model's path on the device.
        options: How to measure (``input_path`` already a device path).
        python: The device's Python 3.
        kind: The ``target.kind`` the result reports.

    Returns:
        ``env PYTHONPATH=DIR PYTHONDONTWRITEBYTECODE=1 PYTHON -m device_bench --json
        DIR/result.json --target-kind KIND ... -- MODEL``.
    """
    return [
        "env", f"PYTHONPATH={remote_dir}", "PYTHONDONTWRITEBYTECODE=1",
        python, "-m", "device_bench",
        "--json", f"{remote_dir}/{RESULT_NAME}",
        "--target-kind", kind,
        *options.to_argv(),
        "--", remote_model,
    ]


def runner_error(proc: Completed, message: str, *, spec: str, host: str,
                 python: str) -> Exception | None:
    """What a failed ``python -m device_bench`` on the device means, where it says more than
    its exit status.

    Args:
        proc: The failed run.
        message: Its cleaned-up last stderr line.
        spec: The target, as messages name it.
        host: The device, for the fix-it hints.
        python: The device's interpreter that was run.

    Returns:
        TargetError with the fix for a missing numpy, module, Python or TFLite interpreter;
        BenchInputError (the runner's own message) for exit 2; None for anything else.
    """
    missing = re.search(r"No module named '([^']+)'", proc.stderr)
    if missing and missing.group(1).split(".")[0] == "numpy":
        return TargetError(f"{spec}: {python} lacks numpy; pip install numpy ai-edge-litert on "
                           f"{host} (or pass ?python=PATH for another interpreter)")
    if missing:
        return TargetError(f"{spec}: {python} cannot import {missing.group(1)!r}: {message}")
    if proc.returncode in (126, 127):
        return TargetError(f"{spec}: cannot run {python!r} (exit {proc.returncode}: "
                           f"{message or 'not found'}) on {host}; install Python 3 with numpy "
                           "there, or pass ?python=/path/to/python3")
    if "no TFLite interpreter found" in message:
        return TargetError(f"{spec}: {python} has no TFLite interpreter; pip install "
                           f"ai-edge-litert (or tflite-runtime) on {host}")
    if proc.returncode == 2:
        return BenchInputError(message or "bad input (exit 2)")
    return None


def bench_with_runner(
    transport: Transport,
    model_path: str | os.PathLike[str],
    options: BenchOptions,
    *,
    python: str,
    kind: str,
    timeout_s: float,
    command: Callable[[list[str]], list[str]] | None = None,
    grace_s: float = GRACE_S,
) -> dict[str, Any]:
    """Benchmarks a model with the device's Python (``python -m device_bench``).

    Args:
        transport: How to reach the device.
        model_path: The ``.tflite`` file on this machine.
        options: How to measure; an ``input_path`` file is sent along.
        python: The device's Python 3 (with numpy and a TFLite interpreter).
        kind: The ``target.kind`` to report.
        timeout_s: Seconds the benchmark may run on the device.
        command: Wraps the runner's argument list (adb pins it to cores with ``taskset``);
            None runs it as it is.
        grace_s: Seconds this side waits beyond ``timeout_s`` (see :func:`run_remote`).

    Returns:
        The device's ``edgekit.bench/1`` result, with ``model.path`` and
        ``options.input_path`` the paths on this machine and ``target.host`` the transport's
        host.

    Raises:
        BenchInputError: The model or input file is missing, or the device's runner rejected
            its input (exit 2).
        TargetError: The transport failed; the device lacks Python, numpy or an interpreter;
            or the run failed, timed out, was killed or wrote no JSON result.
    """
    options = check_options(options)
    model = check_model(model_path)
    source = check_input(options)
    files = [RemoteFile(model.name, model)]
    input_name = None
    if source is not None:
        input_name = "input" + "".join(source.suffixes[-1:])
        files.append(RemoteFile(input_name, source))

    def build(remote_dir: str) -> list[str]:
        remote_options = options
        if input_name is not None:
            remote_options = dataclasses.replace(options, input_path=f"{remote_dir}/{input_name}")
        argv = runner_argv(remote_dir, f"{remote_dir}/{model.name}", remote_options,
                           python=python, kind=kind)
        return command(argv) if command is not None else argv

    def explain(proc: Completed, message: str) -> Exception | None:
        return runner_error(proc, message, spec=transport.spec, host=transport.host,
                            python=python)

    out = run_remote(transport, Payload(tuple(files), package=True), build,
                     what=f"benchmark of {os.fspath(model_path)!r}", timeout_s=timeout_s,
                     fetch=RESULT_NAME, explain=explain, grace_s=grace_s)
    try:
        result = json.loads(out.fetched or "")
    except ValueError as e:
        raise TargetError(f"{transport.spec}: the benchmark wrote no valid JSON result: "
                          f"{e}") from e
    if not isinstance(result, dict) or not isinstance(result.get("model"), dict):
        raise TargetError(f"{transport.spec}: the benchmark's JSON is not a bench result")
    result["model"]["path"] = os.fspath(model_path)
    if isinstance(result.get("target"), dict):
        result["target"]["host"] = transport.host
    if isinstance(result.get("options"), dict):
        result["options"]["input_path"] = options.input_path
    return result
