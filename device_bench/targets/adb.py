"""The adb target: benchmark on an Android phone (or board) over ``adb``, pinned to chosen cores.

``adb://SERIAL[?cores=4-7&benchmark_model=/host/path/benchmark_model&python=python3]``

Two ways to run:

- with ``benchmark_model`` (TFLite's C++ tool, built for the phone by the user): the tool and the
  model are pushed to ``/data/local/tmp/edgekit-XXXXXX`` and run under ``taskset``; its text is
  parsed (:mod:`device_bench.benchmark_model_output`) into an ``edgekit.bench/1`` result;
- without it, the Python runner, where the phone has Python with numpy and a TFLite interpreter
  (Termux, a rooted image): the device_bench package is pushed and ``python3 -m device_bench``
  runs under ``taskset``, its JSON fetched with ``adb exec-out cat``.

:class:`AdbTarget` is a :class:`~device_bench.targets.remote.Transport` plus its spec parsing;
both ways run through :func:`~device_bench.targets.remote.run_remote`, the protocol every remote
target shares (one exit-status rule: 124 timed out, 137 killed). ``adb shell`` joins its
arguments into one string for the phone's shell, so every command is an argument list quoted
element by element (``shlex.join``). The temp folder is removed afterwards (and anything still
running from it stopped), also after a failure or a timeout. :func:`parse_benchmark_model_output`
turns the text of a ``benchmark_model`` run made by hand into the same result dict.

Faults: each adb call has a time limit (``command_timeout_s``; the run ``timeout_s`` plus
``command_timeout_s``). A device that adb reports ``offline`` (or still connecting or
authorizing), and a connection that dropped during a step that can be repeated, are retried by
the one rule of :mod:`device_bench.targets.retry` (``tries`` attempts, ``backoff_s`` doubling);
an ``unauthorized`` device is never retried (the user must accept the phone's "Allow USB
debugging?" dialog), nor is a connection dropped during the run itself. The adb client's words
are those of AOSP's ``packages/modules/adb`` (``transport.cpp``: "device offline", "device
unauthorized.\nThis adb server's $ADB_VENDOR_KEYS is not set ..."), printed as ``adb: ...``,
``error: ...`` or ``adb: error: failed to get feature set: ...``.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from device_bench.benchmark_model_output import parse_output, to_bench_result
from device_bench.errors import BenchInputError, TargetError
from device_bench.remote_payload import copy_package
from device_bench.runner import BenchOptions, model_facts
from device_bench.targets._adb_device import (
    FACTS_SCRIPT,
    cores_mask,
    parse_cores,
    parse_device_facts,
)
from device_bench.targets.base import TargetKind, parse_spec_query, target_spec_error
from device_bench.targets.remote import (
    MKDIR_SCRIPT,
    REMOVE_LOST_SCRIPT,
    REMOVE_SCRIPT,
    Completed,
    Payload,
    RemoteFile,
    bench_with_runner,
    check_input,
    check_model,
    check_options,
    fault_line,
    run_remote,
    runner_argv,
    temp_name,
)
from device_bench.targets.retry import (
    DEFAULT_BACKOFF_S,
    DEFAULT_TRIES,
    NotConnected,
    Refused,
    RetryPolicy,
    TransientError,
)

__all__ = [
    "FACTS_SCRIPT",
    "SPEC_FORM",
    "TARGET_KIND",
    "AdbTarget",
    "cores_mask",
    "parse_benchmark_model_output",
    "parse_cores",
    "parse_device_facts",
]

SPEC_FORM = "adb://SERIAL[?cores=LIST&benchmark_model=PATH&python=PATH]"
_QUERY_KEYS = ("benchmark_model", "cores", "python")
_SERIAL_RE = re.compile(r"^[A-Za-z0-9._:-]+$")
# The adb client's own failures (the first line it prints; AOSP packages/modules/adb:
# transport.cpp acquire_one_transport, client/commandline.cpp, client/file_sync_client.cpp).
_ADB_PREFIX = (r"^(?:adb(?:\.exe)?: (?:error: )?|error: )"
               r"(?:failed to get feature set: |connect failed: )?")
_NOT_READY = re.compile(_ADB_PREFIX + r"device (?:offline|still connecting|still authorizing)")
_UNAUTHORIZED = re.compile(_ADB_PREFIX + r"device unauthorized")
_DROPPED = re.compile(_ADB_PREFIX + r"(?:closed|protocol fault|.*Connection reset by peer)")
def parse_benchmark_model_output(
    text: str, model_path: str | os.PathLike[str] | None = None, *, kind: str = "adb"
) -> dict[str, Any]:
    """The ``edgekit.bench/1`` result of a ``benchmark_model`` run's text (run by hand, say).

    Args:
        text: What ``benchmark_model`` printed (stdout and stderr).
        model_path: The ``.tflite`` on this machine, to fill the ``model`` block (sha256, size);
            None keeps only the tool's ``Graph:`` path.
        kind: ``target.kind`` to report.

    Returns:
        The result dict (see :func:`device_bench.benchmark_model_output.to_bench_result`).

    Raises:
        BenchInputError: The text is not the output of one finished run, or the model file
            cannot be read.
    """
    parsed = parse_output(text)
    model = model_facts(model_path) if model_path is not None else None
    return to_bench_result(parsed, model=model, kind=kind)


def _check_tool_options(options: BenchOptions) -> None:
    if options.input_path is not None:
        raise BenchInputError(
            "input_path is not supported with benchmark_model (it feeds random inputs); "
            "use the Python runner (no benchmark_model) for an .npy/.npz input"
        )


class AdbTarget:
    """Benchmarks on an Android device over adb.

    Args:
        serial: The device's adb serial (``adb devices``), e.g. ``R58M1234ABC`` or
            ``192.168.1.20:5555``.
        cores: Cores to pin the run to (a core list such as ``"4-7"`` or a sequence of ints);
            None runs unpinned.
        benchmark_model: A ``benchmark_model`` binary on this machine, built for the device;
            None uses the Python runner with the device's ``python``.
        python: The device's Python 3 (Python runner only).
        adb: The adb program.
        timeout_s: Seconds the benchmark itself may run.
        command_timeout_s: Seconds for each short adb call (facts, push, fetch, clean-up), and
            beyond ``timeout_s`` for the run; a call past its limit fails, not retried.
        remote_root: Where the temp folder is made on the device.
        tries: Attempts per adb call while the device is offline (or the connection dropped
            during a step that can be repeated), 1..10; 1 turns retries off.
        backoff_s: Seconds before the second attempt, doubled before each further one.

    One adb call takes at most ``tries * limit + backoff_s * (2 ** (tries - 1) - 1)`` seconds.

    Attributes:
        retry: The retry policy of every adb call.

    Raises:
        BenchInputError: An argument is malformed; the message names it.
    """

    kind = "adb"

    def __init__(
        self,
        serial: str,
        *,
        cores: str | tuple[int, ...] | list[int] | None = None,
        benchmark_model: str | os.PathLike[str] | None = None,
        python: str = "python3",
        adb: str = "adb",
        timeout_s: float = 600.0,
        command_timeout_s: float = 120.0,
        remote_root: str = "/data/local/tmp",
        tries: int = DEFAULT_TRIES,
        backoff_s: float = DEFAULT_BACKOFF_S,
    ) -> None:
        if not isinstance(serial, str) or not _SERIAL_RE.match(serial) or serial.startswith("-"):
            raise BenchInputError(f"adb serial must look like 'R58M1234ABC' or "
                                  f"'192.168.1.20:5555', got {serial!r}")
        if cores is None:
            self.cores: tuple[int, ...] | None = None
        elif isinstance(cores, str):
            self.cores = parse_cores(cores)
        else:
            cores_mask(tuple(cores))  # validates
            self.cores = tuple(sorted(set(cores)))
        self.benchmark_model = os.fspath(benchmark_model) if benchmark_model is not None else None
        for name, value in (("python", python), ("adb", adb), ("remote_root", remote_root)):
            if not isinstance(value, str) or not value.strip():
                raise BenchInputError(f"{name} must be a non-empty string, got {value!r}")
        if not remote_root.startswith("/"):
            raise BenchInputError(f"remote_root must be an absolute path, got {remote_root!r}")
        for name, value in (("timeout_s", timeout_s), ("command_timeout_s", command_timeout_s)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise BenchInputError(f"{name} must be a number > 0, got {value!r}")
        self.serial = serial
        self.python = python
        self.adb = adb
        self.timeout_s = float(timeout_s)
        self.command_timeout_s = float(command_timeout_s)
        self.remote_root = remote_root.rstrip("/") or "/"
        self.retry = RetryPolicy.checked(tries, backoff_s)

    @classmethod
    def from_spec(cls, spec: str, **kwargs: Any) -> AdbTarget:
        """Builds a target from ``adb://SERIAL[?cores=4-7&benchmark_model=PATH&python=PATH]``.

        Args:
            spec: The target spec.
            **kwargs: Further constructor arguments; they win over the spec's options.

        Returns:
            The target.

        Raises:
            BenchInputError: The spec is malformed; the message names it and the expected form.
        """
        def bad(why: str) -> BenchInputError:
            return target_spec_error("adb", spec, why, SPEC_FORM)

        if not isinstance(spec, str) or not spec.startswith("adb://"):
            raise bad("not an adb:// spec")
        # Not urlsplit: a serial such as 192.168.1.20:5555 is not a host:port to take apart.
        serial, _, query = spec[len("adb://"):].partition("?")
        serial = serial.rstrip("/")
        if not serial:
            raise bad("no serial")
        options = parse_spec_query(query, _QUERY_KEYS, bad)
        try:
            return cls(serial, **{**options, **kwargs})
        except BenchInputError as e:
            raise bad(str(e)) from e

    @property
    def spec(self) -> str:
        """The spec naming this target (without options), as messages name it."""
        return f"adb://{self.serial}"

    @property
    def host(self) -> str:
        """The device's serial (``target.host`` of its results)."""
        return self.serial

    @property
    def mask(self) -> str | None:
        """The ``taskset`` mask of the pinned cores, or None when unpinned."""
        return cores_mask(self.cores) if self.cores else None

    def adb_command(self, *args: str) -> list[str]:
        """``adb -s SERIAL ARGS...``."""
        return [self.adb, "-s", self.serial, *args]

    def shell_command(self, argv: list[str]) -> list[str]:
        """``adb -s SERIAL shell QUOTED``: ``argv`` run by the device's shell, each element quoted.

        Args:
            argv: The device command as an argument list.

        Returns:
            The local argument list.
        """
        return self.adb_command("shell", shlex.join(argv))

    def pinned(self, argv: list[str]) -> list[str]:
        """``argv`` under ``taskset MASK`` when cores are chosen, else unchanged."""
        return ["taskset", self.mask, *argv] if self.mask else list(argv)

    def benchmark_model_argv(self, remote_bin: str, remote_model: str,
                             options: BenchOptions) -> list[str]:
        """The device command that runs ``benchmark_model`` with ``options``.

        Args:
            remote_bin: The tool's path on the device.
            remote_model: The model's path on the device.
            options: How to measure: ``threads``, ``warmup``, ``warmup_seconds``, ``runs``,
                ``min_seconds`` and ``xnnpack`` map onto the tool's flags; it has no windows or
                seed (random inputs of its own).

        Returns:
            ``[taskset MASK] BIN --graph=... --num_threads=... ...``. A tool too old for a flag
            (``--report_peak_memory_footprint`` came later than TF 2.4) logs
            ``Unconsumed cmdline flags`` and runs on.

        Raises:
            BenchInputError: ``options.input_path`` is set (the tool takes no .npy/.npz input).
        """
        _check_tool_options(options)
        argv = [remote_bin, f"--graph={remote_model}"]
        if options.threads is not None:
            argv.append(f"--num_threads={options.threads}")
        argv += [
            f"--warmup_runs={options.warmup}",
            f"--warmup_min_secs={options.warmup_seconds:g}",
            f"--num_runs={options.runs}",
            f"--min_secs={options.min_seconds:g}",
            f"--use_xnnpack={'true' if options.xnnpack else 'false'}",
            "--report_peak_memory_footprint=true",
        ]
        return self.pinned(argv)

    def python_argv(self, remote_dir: str, remote_model: str,
                    options: BenchOptions) -> list[str]:
        """The device command that runs the Python runner (``python3 -m device_bench``).

        Args:
            remote_dir: The device folder holding the pushed ``device_bench`` package.
            remote_model: The model's path on the device.
            options: How to measure (``input_path`` already a device path).

        Returns:
            ``[taskset MASK] env PYTHONPATH=DIR PYTHON -m device_bench --json ... -- MODEL``.
        """
        return self.pinned(runner_argv(remote_dir, remote_model, options, python=self.python,
                                       kind=self.kind))

    def _run(self, cmd: list[str], what: str, timeout: float) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, errors="replace",
                                  timeout=timeout, stdin=subprocess.DEVNULL, check=False)
        except subprocess.TimeoutExpired as e:
            raise TargetError(f"{self.spec}: {what} did not finish within {timeout:g} s (the "
                              "device hung or stopped answering); not retried") from e
        except OSError as e:
            raise TargetError(
                f"cannot run adb ({self.adb!r}): {e.strerror or e}; install the Android "
                "platform-tools (apt-get install adb) or pass adb=/path/to/adb"
            ) from e

    def _adb_fault(self, proc: subprocess.CompletedProcess[str], what: str,
                   repeatable: bool) -> TargetError | None:
        """The adb client's own failure in a call's output (not the device command's), or None.

        Returns:
            TransientError for an offline (connecting, authorizing) device, and for a dropped
            connection when ``repeatable``; TargetError for an unauthorized device and a
            connection dropped during the run; None when adb itself did not fail.
        """
        if proc.returncode == 0:
            return None
        text = proc.stderr.lstrip() or proc.stdout.lstrip()
        first = text.partition("\n")[0].strip()
        if _NOT_READY.match(text):
            return NotConnected(
                f"{self.spec}: {what}: the device is offline ({first}); check its cable or "
                "network and that `adb devices` lists it as 'device'")
        if _UNAUTHORIZED.match(text):
            return Refused(
                f"{self.spec}: {what}: the device has not authorized this computer ({first}); "
                "unlock it and accept the 'Allow USB debugging?' dialog (not retried)")
        if _DROPPED.match(text):
            if repeatable:
                return TransientError(f"{self.spec}: {what}: the connection to the device "
                                      f"dropped ({first})")
            return TargetError(f"{self.spec}: {what}: the connection to the device dropped "
                               f"({first}); not retried (the device may still be running it)")
        return None

    def _call(self, cmd: list[str], what: str, timeout: float, *,
              repeatable: bool = True) -> subprocess.CompletedProcess[str]:
        """One adb call under the retry policy; its outcome whatever the device command's status.

        Raises:
            TargetError: adb failed for good (TransientError: after every attempt).
        """
        def attempt() -> subprocess.CompletedProcess[str]:
            proc = self._run(cmd, what, timeout)
            error = self._adb_fault(proc, what, repeatable)
            if error is not None:
                raise error
            return proc

        return self.retry.call(attempt)

    def _checked(self, cmd: list[str], what: str, timeout: float | None = None) -> str:
        proc = self._call(cmd, what, timeout or self.command_timeout_s)
        if proc.returncode != 0:
            message = (fault_line(proc.stderr) or fault_line(proc.stdout) or "no message")
            raise TargetError(f"{self.spec}: {what} failed (exit {proc.returncode}): "
                              f"{message}")
        return proc.stdout

    def device_facts(self) -> dict[str, Any]:
        """The ``target`` block, read from the device (model, SoC, Android version, governor).

        Returns:
            See :func:`parse_device_facts`.

        Raises:
            TargetError: adb cannot reach the device.
        """
        text = self._checked(self.shell_command(["sh", "-c", FACTS_SCRIPT]),
                             "read device facts")
        return parse_device_facts(text, serial=self.serial, cores=self.cores)

    # ------------------------------------------------------------------------- the transport

    def make_temp_dir(self) -> str:
        """Creates ``REMOTE_ROOT/edgekit-<random>`` (mode 0700) and returns its path.

        A folder that a failed attempt may have made is removed before the error is raised.

        Raises:
            TargetError: adb or mkdir failed, or printed no such folder.
        """
        name = temp_name("edgekit-")
        try:
            remote_dir = self._checked(
                self.shell_command(["sh", "-c", MKDIR_SCRIPT, "sh", self.remote_root, name]),
                "make temp dir").strip()
        except (NotConnected, Refused):
            raise  # the device never let the command run: nothing was made
        except TargetError:
            try:
                self._checked(self.shell_command(["sh", "-c", REMOVE_LOST_SCRIPT, "sh",
                                                  self.remote_root, name]), "clean-up")
            except TargetError:
                pass  # the step's own error is the one to report
            raise
        if not remote_dir.startswith("/") or not remote_dir.endswith(f"/{name}"):
            raise TargetError(f"{self.spec}: make temp dir: mkdir printed {remote_dir!r}, not "
                              "the folder")
        return remote_dir

    def push(self, payload: Payload, remote_dir: str) -> None:
        """``adb push`` of the package (when asked) and each file; ``chmod 755`` executables.

        Raises:
            TargetError: adb failed.
        """
        if payload.package:
            with tempfile.TemporaryDirectory(prefix="edgekit-adb-") as stage:
                package = copy_package(stage)
                self._checked(self.adb_command("push", str(package), f"{remote_dir}/"),
                              "pushing the device_bench package")
        for f in payload.files:
            remote = f"{remote_dir}/{f.name}"
            self._checked(self.adb_command("push", os.fspath(f.source), remote),
                          f"pushing {f.name}")
            if f.executable:
                self._checked(self.shell_command(["chmod", "755", remote]),
                              f"making {f.name} executable")

    def execute(self, argv: list[str], what: str, timeout_s: float) -> Completed:
        """``adb shell`` of ``argv`` (quoted): the run step, retried only while the device is
        offline (nothing ran yet).

        Returns:
            Its outcome, whatever its exit status.

        Raises:
            TargetError: adb is missing, the device is offline (after every try) or
                unauthorized, the connection dropped, or the run outlived ``timeout_s`` on this
                side.
        """
        proc = self._call(self.shell_command(argv), f"run ({what})", timeout_s, repeatable=False)
        return Completed(proc.returncode, proc.stdout, proc.stderr)

    def pull(self, remote_path: str) -> str:
        """The text of a file on the device (``adb exec-out cat``).

        Raises:
            TargetError: adb or cat failed.
        """
        return self._checked(self.adb_command("exec-out", shlex.join(["cat", remote_path])),
                             "pull")

    def remove_dir(self, remote_dir: str) -> None:
        """Stops anything still running from a temp folder on the device, then removes it.

        Raises:
            TargetError: adb or rm failed.
        """
        self._checked(self.shell_command(["sh", "-c", REMOVE_SCRIPT, "sh", remote_dir]),
                      "clean-up")

    # ------------------------------------------------------------------------- the benchmark

    def bench(self, model_path: str, options: BenchOptions) -> dict[str, Any]:
        """Benchmarks a model on the device.

        Args:
            model_path: The ``.tflite`` file on this machine.
            options: How to measure.

        Returns:
            The ``edgekit.bench/1`` result (``target.kind == "adb"``, ``target.host`` the serial,
            ``model.path`` the path on this machine).

        Raises:
            BenchInputError: The model, the benchmark_model binary or the input file is missing,
                an option does not apply, or the device's runner rejected its input (exit 2).
            TargetError: adb is missing or cannot reach the device, or the run failed, timed
                out, was killed or printed no result.
        """
        options = check_options(options)
        model = check_model(model_path)
        if self.benchmark_model is not None:
            if not Path(self.benchmark_model).is_file():
                raise BenchInputError(f"benchmark_model {self.benchmark_model!r} does not exist; "
                                      "expected the tool's binary built for the device")
            _check_tool_options(options)
        check_input(options)
        if shutil.which(self.adb) is None:
            raise TargetError(f"adb ({self.adb!r}) not found; install the Android platform-tools "
                              "(apt-get install adb) or pass adb=/path/to/adb")
        facts = self.device_facts()
        if self.benchmark_model is not None:
            result = self._bench_tool(self.benchmark_model, model, model_path, options)
        else:
            result = bench_with_runner(self, model_path, options, python=self.python,
                                       kind=self.kind, timeout_s=self.timeout_s,
                                       command=self.pinned, grace_s=self.command_timeout_s)
        result["model"]["path"] = os.fspath(model_path)
        result["target"] = {**facts, **{k: v for k, v in result.get("target", {}).items()
                                        if facts.get(k) is None and v is not None}}
        result["target"].update(kind=self.kind, host=self.serial)
        return result

    def _bench_tool(self, tool: str, model: Path, model_path: str,
                    options: BenchOptions) -> dict[str, Any]:
        payload = Payload((RemoteFile(model.name, model),
                           RemoteFile("benchmark_model", Path(tool), executable=True)),
                          package=False)

        def build(remote_dir: str) -> list[str]:
            return self.benchmark_model_argv(f"{remote_dir}/benchmark_model",
                                             f"{remote_dir}/{model.name}", options)

        out = run_remote(self, payload, build, what=f"benchmark_model run of {model_path!r}",
                         timeout_s=self.timeout_s, grace_s=self.command_timeout_s)
        try:
            parsed = parse_output(f"{out.proc.stdout}\n{out.proc.stderr}")
        except BenchInputError as e:
            raise TargetError(f"{self.spec}: {e}") from e
        return to_bench_result(parsed, model=model_facts(model), kind=self.kind)


TARGET_KIND = TargetKind(
    name="adb",
    scheme="adb://",
    spec_form="adb://SERIAL",
    from_spec=AdbTarget.from_spec,
    example="adb://192.168.1.20:5555?cores=4-7",
    order=20,
)
