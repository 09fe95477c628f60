"""A real OpenSSH server on 127.0.0.1 for the ssh target's tests (no mocks).

:func:`start_sshd` installs ``openssh-server`` with apt-get when ``/usr/sbin/sshd`` is missing
(with ``CI=true`` a failed install fails the test; otherwise it skips, saying why), makes a
throwaway host key and user key with ``ssh-keygen``, writes an ``sshd_config`` that listens on a
free loopback port and a client ``ssh_config`` that trusts exactly that host key
(``StrictHostKeyChecking yes``), starts ``sshd -D -e`` and waits until the port accepts.
"""

from __future__ import annotations

import contextlib
import getpass
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from apt_packages import ensure_program

SSHD = "/usr/sbin/sshd"


def ensure_sshd() -> str:
    """The sshd program (and the ssh client tools), installed with apt-get when missing.

    Returns:
        Its path.
    """
    ensure_program("ssh-keygen", "openssh-client")
    ensure_program("ssh", "openssh-client")
    return ensure_program(SSHD, "openssh-server")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "edgekit-test",
                    "-f", str(path)], check=True, capture_output=True, timeout=60)


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], log: Path,
                   timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd exited with {proc.returncode}: {log.read_text().strip()}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"sshd did not listen on 127.0.0.1:{port} within {timeout_s} s")


@dataclass(frozen=True)
class SSHServer:
    """A running test sshd and the client files that reach it.

    Attributes:
        port: Its port on 127.0.0.1.
        user: The login name (the user running the tests).
        ssh_config: Client config: key, known_hosts with this server's key, strict checking.
        unknown_config: The same, but with an empty known_hosts (the host key is unknown).
        identity: The user's private key.
        host_key_line: The server's public key as a known_hosts line.
    """

    port: int
    user: str
    ssh_config: Path
    unknown_config: Path
    identity: Path
    host_key_line: str


def _client_config(path: Path, identity: Path, known_hosts: Path) -> None:
    path.write_text(
        "Host *\n"
        f"  IdentityFile {identity}\n"
        "  IdentitiesOnly yes\n"
        f"  UserKnownHostsFile {known_hosts}\n"
        "  GlobalKnownHostsFile /dev/null\n"
        "  StrictHostKeyChecking yes\n"
        "  LogLevel ERROR\n"
    )


@contextlib.contextmanager
def start_sshd(workdir: Path, *, prefix: Sequence[str] = ()) -> Iterator[SSHServer]:
    """Runs sshd on a free loopback port for the duration of the ``with`` block.

    Args:
        workdir: An empty folder for the keys, configs and pid file.
        prefix: A command that execs sshd (its arguments follow), e.g. ``unshare -m ...``
            to run the "board" in its own mount namespace; its process must become sshd.

    Yields:
        The server's connection details.
    """
    sshd = ensure_sshd()
    user = getpass.getuser()
    host_key, user_key = workdir / "host_ed25519", workdir / "user_ed25519"
    _keygen(host_key)
    _keygen(user_key)
    authorized = workdir / "authorized_keys"
    authorized.write_text(Path(f"{user_key}.pub").read_text())
    authorized.chmod(0o600)
    port = free_port()
    config = workdir / "sshd_config"
    config.write_text(
        "ListenAddress 127.0.0.1\n"
        f"Port {port}\n"
        f"HostKey {host_key}\n"
        f"AuthorizedKeysFile {authorized}\n"
        f"PidFile {workdir / 'sshd.pid'}\n"
        "StrictModes no\n"
        "UsePAM no\n"
        "PermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
        "PubkeyAuthentication yes\n"
        "AllowTcpForwarding no\n"
        "X11Forwarding no\n"
        "PrintMotd no\n"
        "LogLevel ERROR\n"
    )
    Path("/run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)  # privilege separation
    host_pub = Path(f"{host_key}.pub").read_text().split()
    host_key_line = f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}\n"
    known, empty = workdir / "known_hosts", workdir / "known_hosts_empty"
    known.write_text(host_key_line)
    empty.write_text("")
    client, unknown = workdir / "ssh_config", workdir / "ssh_config_unknown"
    _client_config(client, user_key, known)
    _client_config(unknown, user_key, empty)

    log = workdir / "sshd.log"
    with open(log, "wb") as log_file:
        proc = subprocess.Popen([*prefix, sshd, "-D", "-e", "-f", str(config)],
                                stdout=subprocess.DEVNULL, stderr=log_file)
    try:
        _wait_for_port(port, proc, log)
        yield SSHServer(port=port, user=user, ssh_config=client, unknown_config=unknown,
                        identity=user_key, host_key_line=host_key_line)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def write_ssh_shim(server: SSHServer, folder: Path) -> tuple[Path, str]:
    """An ``ssh`` that adds the server's client config, for specs used as a user would write them.

    A ``ssh://user@127.0.0.1:PORT`` spec reaches the test server only with its client config
    (key, known_hosts); with ``folder`` first on ``PATH`` (this process's, or a Ray worker's),
    every ``ssh`` the targets run is the system client with ``-F CONFIG``.

    Args:
        server: The running test sshd.
        folder: A new folder for the shim.

    Returns:
        ``(folder, spec)``: the folder to put first on PATH, and the board's ``ssh://`` spec
        (with this Python as the board's interpreter).
    """
    folder.mkdir(parents=True)
    ssh = folder / "ssh"
    ssh.write_text(f"#!/bin/sh\nexec {shutil.which('ssh')} -F '{server.ssh_config}' \"$@\"\n")
    ssh.chmod(0o755)
    python = urllib.parse.quote(sys.executable)
    return folder, f"ssh://{server.user}@127.0.0.1:{server.port}?python={python}"
