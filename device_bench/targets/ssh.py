"""The ssh target: benchmark on a board reached with the system's OpenSSH client.

``ssh://[USER@]HOST[:PORT][?python=/usr/bin/python3]``. The system ``ssh`` is used, so
``~/.ssh/config`` (aliases, ``IdentityFile``, ``ProxyJump``, ``ControlMaster``), the agent and
``known_hosts`` all apply. ``BatchMode=yes`` (never a password prompt) and ``ConnectTimeout`` are
set; host-key checking is never turned off: an unknown or changed host key is an error that says
what to check, and nothing is ever added to ``known_hosts``.

:class:`SSHTarget` is a :class:`~device_bench.targets.remote.Transport` plus its spec parsing;
the run itself is :func:`~device_bench.targets.remote.bench_with_runner`, the protocol every
remote target shares. One run is five steps, each one ssh connection: **make temp dir**
(``mkdir -m 700 REMOTE_ROOT/edgekit.<random>``, the board's ``$TMPDIR`` or ``/tmp`` by
default); **push** (``tar -x`` of the device_bench package and the model, fed on stdin);
**run** (``python3 -m device_bench --json OUT ... -- MODEL`` with ``PYTHONPATH`` on the unpacked
package, under the board's ``timeout``); **pull** (``cat OUT``); **clean-up** (``rm -rf`` of the
temp folder, and a kill of anything still running from it, also after a failure or a timeout).
(A ``ControlMaster`` in ``~/.ssh/config`` or ``ssh_options`` makes the short ones nearly free.)

Faults: every step has a time limit on this side (``step_timeout_s``; the run gets
``timeout_s + step_timeout_s``). Transient faults are retried with backoff by the one rule of
:mod:`device_bench.targets.retry` (``tries`` attempts, waits of ``backoff_s``, doubling): a
refused, reset or timed-out connection (nothing ran yet), and a connection that dropped during a
step that can be repeated (make temp dir, push, pull, clean-up). Never retried: authentication
refused, an unknown or changed host key, a failed remote command (a full disk), a step past its
time limit, and a connection dropped during the run itself (the board may still be running it; a
second run would overlap the first). Each error is one line naming the target and the step.

ssh hands the remote command to a shell as one string, so every command is built as an argument
list and each element is quoted (``shlex.join``): a file name such as ``a b; $(rm -rf ~).tflite``
stays one harmless argument. The scripts run over there are fixed strings; every variable part
reaches them as a quoted positional argument.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import urllib.parse
from collections.abc import Callable
from typing import Any

from device_bench.child_output import last_line
from device_bench.errors import BenchInputError, TargetError
from device_bench.remote_payload import build_tar, timeout_wrapped
from device_bench.runner import BenchOptions
from device_bench.targets.base import TargetKind, parse_spec_query, target_spec_error
from device_bench.targets.remote import (
    MKDIR_SCRIPT,
    REMOVE_LOST_SCRIPT,
    REMOVE_SCRIPT,
    Completed,
    Payload,
    bench_with_runner,
    fault_line,
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

__all__ = ["SPEC_FORM", "TARGET_KIND", "SSHTarget"]

SPEC_FORM = "ssh://[USER@]HOST[:PORT][?python=PATH]"
_QUERY_KEYS = ("python",)
_HOST_RE = re.compile(r"^[A-Za-z0-9._:%\[\]-]+$")
_USER_RE = re.compile(r"^[A-Za-z0-9._-][A-Za-z0-9._@-]*$")
# Fixed scripts (no variable part pasted in; paths arrive as quoted positional arguments).
# Unpacks the tar arriving on stdin into the folder $1.
_UNTAR_SCRIPT = 'exec tar -x -f - -C "$1"'
_SSH_FAILED = 255
# What ssh prints when it never got a session: nothing ran on the board, any step may be retried.
_NOT_CONNECTED = re.compile(
    r"connect to host .*: (Connection refused|Connection timed out|No route to host|"
    r"Network is unreachable)|timed out during banner exchange|kex_exchange_identification|"
    r"Temporary failure in name resolution")
# What ssh prints when an open session went away: the step may have run in part.
_DROPPED = re.compile(r"closed by remote host|Connection reset|Broken pipe|client_loop|"
                      r"Connection closed|Timeout, server .* not responding", re.IGNORECASE)


def _check_seconds(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise BenchInputError(f"{name} must be a number > 0, got {value!r}")
    return float(value)


def _check_ssh_options(options: Any) -> tuple[str, ...]:
    if isinstance(options, (str, bytes)) or not isinstance(options, (list, tuple)) or not all(
        isinstance(o, str) for o in options
    ):
        raise BenchInputError(
            f"ssh_options must be a list of strings such as ['-F', 'cfg'], got {options!r}"
        )
    if re.search(r"stricthostkeychecking[\s=]+(no|off)\b", " ".join(options).lower()):
        raise BenchInputError(
            "ssh_options must not turn off host-key checking (StrictHostKeyChecking=no); add the "
            "board's key to known_hosts instead"
        )
    return tuple(options)


def _check_root(remote_root: Any) -> str | None:
    if remote_root is None:
        return None
    if (not isinstance(remote_root, str) or not remote_root.startswith("/")
            or "\n" in remote_root or "\x00" in remote_root):
        raise BenchInputError(f"remote_root must be an absolute path on the board, got "
                              f"{remote_root!r}")
    return remote_root.rstrip("/") or "/"


class SSHTarget:
    """Benchmarks on a remote board over ssh, with the board's own Python.

    Args:
        host: Host name, address or ``~/.ssh/config`` alias.
        user: Login name; None lets ssh (config, then the local user) decide.
        port: TCP port; None lets ssh decide (config, then 22).
        python: The board's Python 3 (with numpy and a TFLite interpreter).
        ssh_options: Extra ``ssh`` arguments placed before the destination, for example
            ``["-F", "ssh_config"]`` or ``["-i", "key"]``; they may not disable host-key checks.
        timeout_s: Seconds the benchmark itself may run on the board.
        connect_timeout_s: Seconds for each connection and its handshake (``ConnectTimeout``).
        step_timeout_s: Seconds this side waits for each other step (make temp dir, push plus
            1 s per MB, pull, clean-up), and beyond ``timeout_s`` for the run; a step past its
            limit fails, not retried (the board hung or stopped answering).
        tries: Attempts per step for transient faults (refused, reset or dropped connections,
            connect timeouts), 1..10; 1 turns retries off.
        backoff_s: Seconds before the second attempt, doubled before each further one.
        remote_root: The folder on the board that holds the temp folder; None is the board's
            ``$TMPDIR``, else ``/tmp``.
        ssh: The ssh client program.

    One step takes at most ``tries * limit + backoff_s * (2 ** (tries - 1) - 1)`` seconds
    (3 tries: three limits plus 3 s); a run has five steps.

    Attributes:
        last_remote_dir: The board's temp folder of the latest run (removed by then), or None.
        retry: The retry policy of every step.

    Raises:
        BenchInputError: An argument is malformed; the message names it.
    """

    kind = "ssh"

    def __init__(
        self,
        host: str,
        *,
        user: str | None = None,
        port: int | None = None,
        python: str = "python3",
        ssh_options: list[str] | tuple[str, ...] = (),
        timeout_s: float = 600.0,
        connect_timeout_s: float = 10.0,
        step_timeout_s: float = 60.0,
        tries: int = DEFAULT_TRIES,
        backoff_s: float = DEFAULT_BACKOFF_S,
        remote_root: str | None = None,
        ssh: str = "ssh",
    ) -> None:
        if not isinstance(host, str) or not _HOST_RE.match(host) or host.startswith("-"):
            raise BenchInputError(f"ssh host must be a host name or address, got {host!r}")
        if user is not None and (not isinstance(user, str) or not _USER_RE.match(user)):
            raise BenchInputError(f"ssh user must be a login name, got {user!r}")
        if port is not None and (
            isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536
        ):
            raise BenchInputError(f"ssh port must be an integer in 1..65535, got {port!r}")
        if not isinstance(python, str) or not python.strip():
            raise BenchInputError(f"python must be the board's interpreter path, got {python!r}")
        if not isinstance(ssh, str) or not ssh:
            raise BenchInputError(f"ssh must be the ssh client program, got {ssh!r}")
        self.host = host
        self.user = user
        self.port = port
        self.python = python
        self.ssh_options = _check_ssh_options(ssh_options)
        self.timeout_s = _check_seconds("timeout_s", timeout_s)
        self.connect_timeout_s = _check_seconds("connect_timeout_s", connect_timeout_s)
        self.step_timeout_s = _check_seconds("step_timeout_s", step_timeout_s)
        self.retry = RetryPolicy.checked(tries, backoff_s)
        self.remote_root = _check_root(remote_root)
        self.ssh = ssh
        self.last_remote_dir: str | None = None

    @classmethod
    def from_spec(cls, spec: str, **kwargs: Any) -> SSHTarget:
        """Builds a target from ``ssh://[USER@]HOST[:PORT][?python=PATH]``.

        Args:
            spec: The target spec.
            **kwargs: Further constructor arguments (``ssh_options``, ``timeout_s``, ``tries``
                ...); they win over the spec's options.

        Returns:
            The target.

        Raises:
            BenchInputError: The spec is malformed; the message names it and the expected form.
        """
        def bad(why: str) -> BenchInputError:
            return target_spec_error("ssh", spec, why, SPEC_FORM)

        if not isinstance(spec, str) or not spec.startswith("ssh://"):
            raise bad("not an ssh:// spec")
        parts = urllib.parse.urlsplit(spec)
        try:
            port = parts.port
        except ValueError as e:
            raise bad("the port must be a number in 0..65535") from e
        if not parts.hostname:
            raise bad("no host")
        if parts.password is not None:
            raise bad("passwords are not supported (ssh runs with BatchMode: use a key)")
        if parts.path not in ("", "/") or parts.fragment:
            raise bad(f"unexpected path {parts.path!r}")
        options = parse_spec_query(parts.query, _QUERY_KEYS, bad)
        user = urllib.parse.unquote(parts.username) if parts.username else None
        try:
            return cls(parts.hostname, **{"user": user, "port": port, **options, **kwargs})
        except BenchInputError as e:
            raise bad(str(e)) from e

    @property
    def destination(self) -> str:
        """``USER@HOST`` or ``HOST``, as ssh gets it."""
        return f"{self.user}@{self.host}" if self.user else self.host

    @property
    def spec(self) -> str:
        """The spec naming this target (without options)."""
        port = f":{self.port}" if self.port else ""
        return f"ssh://{self.destination}{port}"

    def ssh_command(self, remote_argv: list[str]) -> list[str]:
        """The local ``ssh`` argument list that runs ``remote_argv`` on the board.

        Args:
            remote_argv: The remote command as an argument list; each element is quoted for the
                remote shell (``shlex.join``), so none is ever interpreted by it.

        Returns:
            The argument list for ``subprocess.run`` (its last element is the quoted command).
        """
        port = ["-p", str(self.port)] if self.port else []
        return [
            self.ssh, "-T",
            "-o", "BatchMode=yes",
            "-o", f"ConnectTimeout={max(1, round(self.connect_timeout_s))}",
            "-o", "ServerAliveInterval=15",
            "-o", "ServerAliveCountMax=4",
            *port, *self.ssh_options,
            "--", self.destination, shlex.join(remote_argv),
        ]

    def run_command(self, remote_dir: str, model_name: str, options: BenchOptions) -> list[str]:
        """The remote argument list of the benchmark itself.

        Args:
            remote_dir: The board's temp folder holding the package and the model.
            model_name: The model's file name in that folder.
            options: How to measure (``input_path`` already pointing into ``remote_dir``).

        Returns:
            ``sh -c WRAPPER sh SECONDS env PYTHONPATH=DIR PYTHON -m device_bench ...``.
        """
        return timeout_wrapped(self.timeout_s, runner_argv(
            remote_dir, f"{remote_dir}/{model_name}", options, python=self.python,
            kind=self.kind))

    # ------------------------------------------------------------------------- one step

    def _ssh(self, remote_argv: list[str], step: str, timeout: float,
             stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        try:
            return subprocess.run(
                self.ssh_command(remote_argv), input=stdin, capture_output=True,
                timeout=timeout, check=False,
                stdin=None if stdin is not None else subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired as e:
            raise TargetError(
                f"{self.spec}: {step} did not finish within {timeout:g} s on this side (the "
                f"board {self.host} hung or stopped answering); not retried") from e
        except OSError as e:
            raise TargetError(
                f"cannot run the ssh client {self.ssh!r}: {e.strerror or e}; install OpenSSH "
                "(apt-get install openssh-client)"
            ) from e

    def _connection_error(self, stderr: str, step: str, repeatable: bool) -> TargetError:
        """What an ssh exit 255 means: permanent (keys, authentication) or transient."""
        last = last_line(stderr) or "no message"
        port = f"-p {self.port} " if self.port else ""
        if "REMOTE HOST IDENTIFICATION HAS CHANGED" in stderr:
            return Refused(
                f"{self.spec}: {step}: the host key of {self.host} has CHANGED since it was stored "
                "in known_hosts (refused, not retried); if the board was re-installed, remove the "
                f"old key (ssh-keygen -R {self.host}) and add the new one after checking it"
            )
        if "Host key verification failed" in stderr or "host key is known for" in stderr:
            return Refused(
                f"{self.spec}: {step}: the host key of {self.host} is not in known_hosts, and "
                "host-key checking stays on; check the key's fingerprint and add it, e.g. "
                f"`ssh-keyscan {port}{self.host} >> ~/.ssh/known_hosts`, or connect once with "
                f"`ssh {port}{self.destination}`"
            )
        if "Permission denied" in stderr or "Too many authentication failures" in stderr:
            return Refused(
                f"{self.spec}: {step}: authentication failed ({last}; not retried); ssh runs with "
                "BatchMode=yes, so it needs a key (IdentityFile or the agent), never a password"
            )
        if _NOT_CONNECTED.search(stderr):
            return NotConnected(f"{self.spec}: {step}: cannot connect to {self.host}: {last}")
        if _DROPPED.search(stderr):
            if repeatable:
                return TransientError(
                    f"{self.spec}: {step}: the connection to {self.host} dropped: {last}")
            return TargetError(
                f"{self.spec}: {step}: the connection to {self.host} dropped: {last}; not "
                "retried (the board may still be running it: the clean-up stops it)")
        return TargetError(f"{self.spec}: {step}: ssh failed: {last}")

    def _call(self, remote_argv: list[str], step: str, timeout: float, *,
              stdin: bytes | None = None, repeatable: bool = True,
              on_fault: Callable[[TargetError], None] | None = None) -> Completed:
        """Runs one step under the retry policy.

        Args:
            remote_argv: The remote command.
            step: The step, as messages name it.
            timeout: Seconds this side waits for each attempt.
            stdin: Bytes fed to the command.
            repeatable: The step may run again after a dropped connection.
            on_fault: Called with each failed attempt's error (before any retry).

        Returns:
            The command's outcome, whatever its exit status.

        Raises:
            TargetError: ssh failed for good (TransientError: after every attempt).
        """
        def attempt() -> Completed:
            try:
                proc = self._ssh(remote_argv, step, timeout, stdin)
                stderr = proc.stderr.decode("utf-8", "replace")
                if proc.returncode == _SSH_FAILED:
                    raise self._connection_error(stderr, step, repeatable)
            except TargetError as e:
                if on_fault is not None:
                    on_fault(e)
                raise
            return Completed(proc.returncode, proc.stdout.decode("utf-8", "replace"), stderr)

        return self.retry.call(attempt)

    def _checked(self, proc: Completed, step: str) -> str:
        if proc.returncode != 0:
            raise TargetError(f"{self.spec}: {step} failed (exit {proc.returncode}): "
                              f"{fault_line(proc.stderr) or 'no message'}")
        return proc.stdout

    # ------------------------------------------------------------------------- the transport

    def make_temp_dir(self) -> str:
        """Creates ``REMOTE_ROOT/edgekit.<random>`` (mode 0700) and returns its path.

        A folder that a failed attempt may have made is removed before the error is raised.

        Raises:
            TargetError: ssh or mkdir failed, or printed no such folder.
        """
        self.last_remote_dir = None
        name = temp_name("edgekit.")
        maybe_made: list[bool] = []

        def note(error: TargetError) -> None:
            if not isinstance(error, (NotConnected, Refused)):
                maybe_made.append(True)

        try:
            proc = self._call(["sh", "-c", MKDIR_SCRIPT, "sh", self.remote_root or "", name],
                              "make temp dir", self.step_timeout_s, on_fault=note)
            text = self._checked(proc, "make temp dir")
        except TargetError:
            if maybe_made:
                self._remove_quietly(["sh", "-c", REMOVE_LOST_SCRIPT, "sh",
                                      self.remote_root or "", name])
            raise
        first = text.partition("\n")[0].strip()
        if not first.startswith("/") or not first.endswith(f"/{name}"):
            raise TargetError(f"{self.spec}: make temp dir: mkdir printed {first!r}, not the "
                              "folder")
        self.last_remote_dir = first
        return first

    def _remove_quietly(self, remote_argv: list[str]) -> None:
        try:
            self._call(remote_argv, "clean-up", self.step_timeout_s)
        except TargetError:
            pass  # the step's own error is the one to report

    def push(self, payload: Payload, remote_dir: str) -> None:
        """Sends the payload as one tar stream, unpacked into ``remote_dir`` by the board's tar.

        Raises:
            BenchInputError: A payload file cannot be read.
            TargetError: ssh or tar failed (a full disk names "No space left on device").
        """
        data = build_tar({f.name: f.source for f in payload.files}, package=payload.package,
                         executable=[f.name for f in payload.files if f.executable])
        proc = self._call(["sh", "-c", _UNTAR_SCRIPT, "sh", remote_dir], "push",
                          self.step_timeout_s + len(data) / 1e6, stdin=data)  # at least 1 MB/s
        self._checked(proc, "push")

    def execute(self, argv: list[str], what: str, timeout_s: float) -> Completed:
        """Runs ``argv`` on the board (the run step; retried only when ssh never connected).

        Returns:
            Its outcome, whatever its exit status.

        Raises:
            TargetError: ssh itself failed (exit 255: connection, host key, authentication, a
                dropped connection), or the run outlived ``timeout_s`` on this side.
        """
        return self._call(argv, f"run ({what})", timeout_s, repeatable=False)

    def pull(self, remote_path: str) -> str:
        """The text of a file on the board (``cat``).

        Raises:
            TargetError: ssh or cat failed.
        """
        return self._checked(self._call(["cat", "--", remote_path], "pull",
                                        self.step_timeout_s), "pull")

    def remove_dir(self, remote_dir: str) -> None:
        """Stops anything still running from a temp folder on the board, then removes it.

        Raises:
            TargetError: ssh or rm failed.
        """
        proc = self._call(["sh", "-c", REMOVE_SCRIPT, "sh", remote_dir], "clean-up",
                          self.step_timeout_s)
        self._checked(proc, "clean-up")

    # ------------------------------------------------------------------------- the benchmark

    def bench(self, model_path: str, options: BenchOptions) -> dict[str, Any]:
        """Benchmarks a model on the board.

        Args:
            model_path: The ``.tflite`` file on this machine.
            options: How to measure; an ``input_path`` file is sent along.

        Returns:
            The board's ``edgekit.bench/1`` result, with ``target.kind == "ssh"``,
            ``target.host`` the ssh host, and ``model.path`` / ``options.input_path`` the
            paths on this machine.

        Raises:
            BenchInputError: The model or input file is missing, or the board's runner rejected
                its input (exit 2).
            TargetError: ssh could not connect (refused or timed out after every try, unknown
                or changed host key, authentication), the connection dropped during the run, a
                step outlived its limit, the board lacks Python/numpy/an interpreter or disk
                space, or the run failed, timed out, was killed, or wrote no JSON.
        """
        return bench_with_runner(self, model_path, options, python=self.python, kind=self.kind,
                                 timeout_s=self.timeout_s, grace_s=self.step_timeout_s)


TARGET_KIND = TargetKind(
    name="ssh",
    scheme="ssh://",
    spec_form="ssh://USER@HOST[:PORT]",
    from_spec=SSHTarget.from_spec,
    example="ssh://pi@raspberrypi.local:22?python=python3",
    order=10,
)
