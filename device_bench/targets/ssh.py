"""The ssh target: benchmark on a board reached with the system's OpenSSH client.

``ssh://[USER@]HOST[:PORT][?python=/usr/bin/python3]``. The system ``ssh`` is used, so
``~/.ssh/config`` (aliases, ``IdentityFile``, ``ProxyJump``), the agent and ``known_hosts`` all
apply. ``BatchMode=yes`` (never a password prompt) and ``ConnectTimeout`` are set; host-key
checking is never turned off: an unknown host key is an error that says how to add it.

One run, in three ssh connections: ``mktemp -d`` and ``tar -x`` of the device_bench package and
the model (fed on stdin); ``python3 -m device_bench --json OUT ... -- MODEL`` with ``PYTHONPATH``
on the unpacked package, under the board's ``timeout`` when it has one; ``cat OUT`` and
``rm -rf`` of the temp folder. After a failure or a timeout a fourth one still removes the
folder. ssh hands the remote command to a shell as one string, so every command is built as an
argument list and each element is quoted (``shlex.join``): a file name such as
``a b; $(rm -rf ~).tflite`` stays one harmless argument.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import subprocess
import sys
import urllib.parse
from pathlib import Path
from typing import Any

from device_bench.child_output import (
    ERROR_PREFIX,
    WARNING_PREFIX,
    last_line,
    relay_warnings,
)
from device_bench.errors import BenchInputError, TargetError
from device_bench.remote_payload import build_tar, timeout_wrapped
from device_bench.runner import BenchOptions
from device_bench.targets.base import parse_spec_query

__all__ = ["SPEC_FORM", "SSHTarget"]

SPEC_FORM = "ssh://[USER@]HOST[:PORT][?python=PATH]"
_QUERY_KEYS = ("python",)
_HOST_RE = re.compile(r"^[A-Za-z0-9._:%\[\]-]+$")
_USER_RE = re.compile(r"^[A-Za-z0-9._-][A-Za-z0-9._@-]*$")
_GRACE_S = 15.0
# Fixed scripts (no variable part pasted in; paths arrive as quoted positional arguments).
# Makes the temp folder, prints it, and unpacks the tar arriving on stdin into it.
_SETUP_SCRIPT = (
    'd=$(mktemp -d -t edgekit.XXXXXXXX) || exit 1; printf "%s\\n" "$d"; '
    'exec tar -x -f - -C "$d"'
)
# Prints the result file ($1), then removes the temp folder ($2).
_FETCH_SCRIPT = 'cat -- "$1"; s=$?; rm -rf -- "$2"; exit $s'
_SSH_FAILED = 255


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
        connect_timeout_s: Seconds for each connection (``ConnectTimeout``) and for each of the
            short calls (temp folder, upload, download, clean-up).
        ssh: The ssh client program.

    Attributes:
        last_remote_dir: The board's temp folder of the latest run (removed by then), or None.

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
        self.ssh = ssh
        self.last_remote_dir: str | None = None

    @classmethod
    def from_spec(cls, spec: str, **kwargs: Any) -> SSHTarget:
        """Builds a target from ``ssh://[USER@]HOST[:PORT][?python=PATH]``.

        Args:
            spec: The target spec.
            **kwargs: Further constructor arguments (``ssh_options``, ``timeout_s`` ...); they
                win over the spec's options.

        Returns:
            The target.

        Raises:
            BenchInputError: The spec is malformed; the message names it and the expected form.
        """
        def bad(why: str) -> BenchInputError:
            return BenchInputError(f"ssh target {spec!r}: {why}; expected {SPEC_FORM}")

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
        return timeout_wrapped(self.timeout_s, [
            "env", f"PYTHONPATH={remote_dir}", "PYTHONDONTWRITEBYTECODE=1",
            self.python, "-m", "device_bench",
            "--json", f"{remote_dir}/result.json",
            "--target-kind", self.kind,
            *options.to_argv(),
            "--", f"{remote_dir}/{model_name}",
        ])

    def _ssh(self, remote_argv: list[str], what: str, timeout: float,
             stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        try:
            return subprocess.run(
                self.ssh_command(remote_argv), input=stdin, capture_output=True,
                timeout=timeout, check=False,
                stdin=None if stdin is not None else subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired as e:
            raise TargetError(f"{self.spec}: {what} did not finish within {timeout:g} s") from e
        except OSError as e:
            raise TargetError(
                f"cannot run the ssh client {self.ssh!r}: {e.strerror or e}; install OpenSSH "
                "(apt-get install openssh-client)"
            ) from e

    def _connection_error(self, stderr: str, what: str) -> TargetError:
        last = last_line(stderr) or "no message"
        port = f"-p {self.port} " if self.port else ""
        if "REMOTE HOST IDENTIFICATION HAS CHANGED" in stderr:
            return TargetError(
                f"{self.spec}: the host key of {self.host} has CHANGED since it was stored in "
                "known_hosts; if the board was re-installed, remove the old key "
                f"(ssh-keygen -R {self.host}) and add the new one after checking it"
            )
        if "Host key verification failed" in stderr or "host key is known for" in stderr:
            return TargetError(
                f"{self.spec}: the host key of {self.host} is not in known_hosts, and host-key "
                "checking stays on; check the key's fingerprint and add it, e.g. "
                f"`ssh-keyscan {port}{self.host} >> ~/.ssh/known_hosts`, or connect once with "
                f"`ssh {port}{self.destination}`"
            )
        if "Permission denied" in stderr:
            return TargetError(
                f"{self.spec}: authentication failed ({last}); ssh runs with BatchMode=yes, so "
                "it needs a key (IdentityFile or the agent), never a password"
            )
        return TargetError(f"{self.spec}: ssh failed during {what}: {last}")

    def _checked(self, proc: subprocess.CompletedProcess[bytes], what: str) -> str:
        stderr = proc.stderr.decode("utf-8", "replace")
        if proc.returncode == _SSH_FAILED:
            raise self._connection_error(stderr, what)
        if proc.returncode != 0:
            raise TargetError(
                f"{self.spec}: {what} failed (exit {proc.returncode}): "
                f"{last_line(stderr) or 'no message'}"
            )
        return proc.stdout.decode("utf-8", "replace")

    def _run_error(self, proc: subprocess.CompletedProcess[bytes], model_path: str,
                   remote_model: str) -> Exception:
        stderr = proc.stderr.decode("utf-8", "replace")
        last = last_line(stderr)
        # The board's messages name its copy of the model: name the user's file instead.
        message = last.removeprefix(ERROR_PREFIX).replace(remote_model, model_path)
        rc = proc.returncode
        if rc == _SSH_FAILED:
            return self._connection_error(stderr, "the benchmark")
        if rc == 124:
            return TargetError(
                f"{self.spec}: benchmark of {model_path!r} timed out after {self.timeout_s:g} s"
            )
        if rc == 137:
            return TargetError(
                f"{self.spec}: benchmark of {model_path!r} was killed (SIGKILL: it outlived the "
                f"{self.timeout_s:g} s timeout, or the board ran out of memory)"
            )
        missing = re.search(r"No module named '([^']+)'", stderr)
        if missing and missing.group(1).split(".")[0] == "numpy":
            return TargetError(
                f"{self.spec}: the board's {self.python} lacks numpy; pip install numpy "
                f"ai-edge-litert on {self.host} (or pass ?python= for another interpreter)"
            )
        if missing:
            return TargetError(
                f"{self.spec}: the board's {self.python} cannot import {missing.group(1)!r}: "
                f"{message}"
            )
        if rc in (126, 127):
            return TargetError(
                f"{self.spec}: the board cannot run {self.python!r} (exit {rc}: "
                f"{message or 'not found'}); install Python 3 with numpy on {self.host}, or "
                "pass ?python=/path/to/python3"
            )
        if "no TFLite interpreter found" in message:
            return TargetError(
                f"{self.spec}: the board's {self.python} has no TFLite interpreter; pip install "
                f"ai-edge-litert (or tflite-runtime) on {self.host}"
            )
        if rc == 2:
            return BenchInputError(message or "bad input (exit 2)")
        return TargetError(
            f"{self.spec}: benchmark of {model_path!r} failed (exit {rc}): "
            f"{message or 'no message'}"
        )

    def _cleanup(self, remote_dir: str) -> None:
        try:
            proc = self._ssh(["rm", "-rf", "--", remote_dir], "removing the temp folder",
                             self.connect_timeout_s + _GRACE_S)
            self._checked(proc, "removing the temp folder")
        except TargetError as e:
            print(f"{WARNING_PREFIX}{remote_dir} was not removed from the board: {e}",
                  file=sys.stderr)

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
            TargetError: ssh could not connect (unknown host key, refused, timed out,
                authentication), the board lacks Python/numpy/an interpreter, or the run failed,
                timed out, or wrote no JSON.
        """
        if not isinstance(options, BenchOptions):
            raise BenchInputError(f"options must be BenchOptions, got {type(options).__name__}")
        model = Path(os.fspath(model_path))
        if not model.is_file():
            raise BenchInputError(f"model {os.fspath(model_path)!r} does not exist; expected a "
                                  ".tflite file")
        extra = {model.name: model}
        remote_options = options
        if options.input_path is not None:
            source = Path(options.input_path)
            if not source.is_file():
                raise BenchInputError(f"input file {options.input_path!r} does not exist; "
                                      "expected an .npy or .npz file")
            input_name = "input" + "".join(source.suffixes[-1:])
            extra[input_name] = source
        payload = build_tar(extra)
        short = self.connect_timeout_s + _GRACE_S

        upload = self._ssh(["sh", "-c", _SETUP_SCRIPT], "the upload",
                           short + len(payload) / 1e6, stdin=payload)  # at least 1 MB/s
        first = upload.stdout.decode("utf-8", "replace").partition("\n")[0].strip()
        remote_dir = first if first.startswith("/") and "/edgekit." in first else None
        self.last_remote_dir = remote_dir
        removed = False
        try:
            self._checked(upload, "the upload")
            if remote_dir is None:
                raise TargetError(f"{self.spec}: mktemp -d printed {first!r}, not a folder")
            if options.input_path is not None:
                remote_options = dataclasses.replace(
                    options, input_path=f"{remote_dir}/{input_name}")
            proc = self._ssh(self.run_command(remote_dir, model.name, remote_options),
                             f"the benchmark of {os.fspath(model_path)!r}",
                             self.timeout_s + _GRACE_S)
            relay_warnings(proc.stderr.decode("utf-8", "replace"))
            if proc.returncode != 0:
                raise self._run_error(proc, os.fspath(model_path),
                                      f"{remote_dir}/{model.name}")
            fetch = self._ssh(["sh", "-c", _FETCH_SCRIPT, "sh", f"{remote_dir}/result.json",
                               remote_dir], "fetching the result", short)
            removed = fetch.returncode != _SSH_FAILED  # the script ran, and removed the folder
            text = self._checked(fetch, "fetching the result")
        finally:
            if remote_dir is not None and not removed:
                self._cleanup(remote_dir)
        try:
            result = json.loads(text)
        except ValueError as e:
            raise TargetError(f"{self.spec}: the benchmark wrote no valid JSON result: {e}") from e
        if not isinstance(result, dict) or not isinstance(result.get("model"), dict):
            raise TargetError(f"{self.spec}: the benchmark's JSON is not a bench result")
        result["model"]["path"] = os.fspath(model_path)
        if isinstance(result.get("target"), dict):
            result["target"]["host"] = self.host
        if isinstance(result.get("options"), dict):
            result["options"]["input_path"] = options.input_path
        return result
