"""Boards that fail, through a real OpenSSH server on 127.0.0.1 (sshd_fixture.py).

Every fault is made for real: a closed port, a key the server does not accept, a known_hosts
entry with another host key, the connection's sshd process killed during the run, the sshd
processes of one connection frozen (SIGSTOP: the board stops answering) or the listener frozen
(connections time out), the board's temp root on a 128 KiB tmpfs in sshd's own mount namespace,
and a board Python without numpy or without a TFLite interpreter. Each test checks the one-line
error (target, step), how many ssh connections were tried (an ``ssh`` wrapper counts them:
retries only for transient faults), the time bound, and, over ssh, that the board's temp root
is empty afterwards. The hostile-name tests benchmark models whose names hold ``$(...)``,
quotes, backticks and a newline, and look for the file they would create.

Three cases are marked slow (the default run keeps one of each kind): the hangs in make temp dir
and pull (the same host-side limit as the push's), and the Python without numpy (also in
test_devbench_ssh.py).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from apt_packages import unavailable
from sshd_fixture import SSHServer, free_port, start_sshd

from device_bench.errors import TargetError
from device_bench.runner import BenchOptions
from device_bench.targets.ssh import SSHTarget

FAST = BenchOptions(runs=20, min_seconds=0.05, warmup=3, warmup_seconds=0.01)
SLOW = BenchOptions(runs=100000, min_seconds=30, warmup=1, warmup_seconds=0.0)
BOARD_PYTHON = sys.executable
BACKOFF = 0.1  # waits of 0.1 s then 0.2 s between the three tries
TMPFS_BYTES = 128 * 1024  # smaller than the pushed package (~380 kB)

boards = pytest.mark.reliability("boards")
names = pytest.mark.reliability("names")


# ---- the "board" ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SSHServer]:
    with start_sshd(tmp_path_factory.mktemp("sshd")) as server:
        yield server


@pytest.fixture(scope="module")
def full_board(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SSHServer, Path]]:
    """An sshd whose sessions see a 128 KiB tmpfs at the returned folder (a private mount
    namespace: the host's mount table is left alone)."""
    if not shutil.which("unshare"):
        unavailable("unshare (util-linux) is missing: cannot make a private mount namespace")
    probe = subprocess.run(["unshare", "-m", "--propagation", "private", "true"],
                           capture_output=True, text=True, timeout=30, check=False)
    if probe.returncode != 0:
        unavailable(f"cannot make a private mount namespace ({probe.stderr.strip()}); "
                    "the full-disk test needs root")
    work = tmp_path_factory.mktemp("full-board")
    mount_point = work / "tmpfs"
    mount_point.mkdir()
    mount = (f'mount -t tmpfs -o size={TMPFS_BYTES},mode=0755 edgekit-board "$0" '
             '&& exec "$@"')
    prefix = ["unshare", "-m", "--propagation", "private", "--", "sh", "-c", mount,
              str(mount_point)]
    (work / "sshd").mkdir()
    with start_sshd(work / "sshd", prefix=prefix) as server:
        yield server, mount_point


def _ssh_base(server: SSHServer) -> list[str]:
    return ["ssh", "-T", "-F", str(server.ssh_config), "-o", "BatchMode=yes",
            "-p", str(server.port), "127.0.0.1"]


def on_board(server: SSHServer, *argv: str) -> str:
    """Runs ``argv`` on the board over a fresh ssh connection; its stdout."""
    proc = subprocess.run([*_ssh_base(server), shlex.join(argv)], capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def left_on_board(server: SSHServer, root: Path) -> list[str]:
    """What the board's temp root holds, listed on the board."""
    return on_board(server, "ls", "-A", "--", str(root)).split()


@pytest.fixture()
def root(sshd: SSHServer, tmp_path: Path) -> Path:
    """This test's temp root on the board (empty)."""
    folder = tmp_path / "board-tmp"
    folder.mkdir()
    assert left_on_board(sshd, folder) == []
    return folder


@pytest.fixture()
def counting_ssh(tmp_path: Path) -> tuple[str, Callable[[], int]]:
    """An ``ssh`` that logs each start and execs the real client; and the count so far."""
    log = tmp_path / "ssh-starts.log"
    program = tmp_path / "ssh"
    real = shutil.which("ssh")
    assert real is not None
    program.write_text(f"#!/bin/sh\necho start >> {shlex.quote(str(log))}\n"
                       f'exec {shlex.quote(real)} "$@"\n')
    program.chmod(program.stat().st_mode | stat.S_IXUSR)
    return str(program), lambda: len(log.read_text().splitlines()) if log.exists() else 0


def _target(server: SSHServer, root: Path | None, ssh: str = "ssh", *,
            config: Path | None = None, port: int | None = None, python: str = BOARD_PYTHON,
            **kwargs) -> SSHTarget:
    spec = (f"ssh://{server.user}@127.0.0.1:{port or server.port}"
            f"?python={urllib.parse.quote(python)}")
    options = {"tries": 3, "backoff_s": BACKOFF, "connect_timeout_s": 2.0,
               "step_timeout_s": 10.0, "remote_root": str(root) if root else None, **kwargs}
    return SSHTarget.from_spec(spec, ssh_options=["-F", str(config or server.ssh_config)],
                               ssh=ssh, **options)


def _fails(target: SSHTarget, model: Path, options: BenchOptions = FAST) -> tuple[str, float]:
    start = time.monotonic()
    with pytest.raises(TargetError) as err:
        target.bench(str(model), options)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{target.spec}: ")
    return message, time.monotonic() - start


# ---- the board's processes (this machine plays it) --------------------------------------------


def _processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every process now."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat_text = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(
                "utf-8", "replace")
            found[int(entry.name)] = (int(stat_text.rpartition(")")[2].split()[1]), cmdline)
    return found


def _listener(server: SSHServer) -> int:
    config = str(server.ssh_config.parent / "sshd_config")
    pids = [pid for pid, (_, cmd) in _processes().items()
            if f"-D -e -f {config}" in cmd and " -R" not in cmd]
    assert len(pids) == 1, pids
    return pids[0]


def _descendants(pid: int, procs: dict[int, tuple[int, str]]) -> list[int]:
    children = [p for p, (parent, _) in procs.items() if parent == pid]
    return children + [d for c in children for d in _descendants(c, procs)]


def _session_of(pid: int, listener: int, procs: dict[int, tuple[int, str]]) -> int:
    """The connection's sshd (the listener's child) that ``pid`` runs under."""
    while procs[pid][0] != listener:
        pid = procs[pid][0]
    return pid


class Saboteur:
    """Stops (or kills) one ssh connection's sshd processes on the board, from a thread."""

    def __init__(self, server: SSHServer) -> None:
        self.listener = _listener(server)
        self.frozen: list[int] = []
        self.done = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def freeze_connection(self, number: int) -> None:
        """Freezes the ``number``-th new connection (1 = the next) as soon as sshd forks it."""
        seen = set(_descendants(self.listener, _processes()))

        def watch() -> None:
            order: list[int] = []
            while not self._stop.is_set():
                procs = _processes()
                order += [p for p, (parent, _) in procs.items()
                          if parent == self.listener and p not in seen and p not in order]
                if len(order) >= number:
                    self._freeze_tree(order[number - 1])
                    return
                time.sleep(0.002)

        self._start(watch)

    def act_when_running(self, marker: str, action: str) -> None:
        """Once a board process whose command line holds ``marker`` runs, freezes ("freeze")
        or kills ("kill") the sshd of its connection."""
        def watch() -> None:
            while not self._stop.is_set():
                procs = _processes()
                board = set(_descendants(self.listener, procs))
                hits = [p for p, (_, cmd) in procs.items() if marker in cmd and p in board]
                if hits:
                    session = _session_of(hits[0], self.listener, procs)
                    if action == "kill":
                        os.kill(session, signal.SIGKILL)
                        self.done.set()
                    else:
                        self._freeze_tree(session)
                    return
                time.sleep(0.01)

        self._start(watch)

    def _freeze_tree(self, pid: int) -> None:
        # Only the connection's sshd processes: the commands under them run on (and finish)
        # but nothing reaches this side any more. (Freezing a login shell's children could
        # leave their locks behind: pyenv's rehash in ~/.bashrc, for one.)
        for _ in range(3):  # a frozen sshd forks no more; catch children forked meanwhile
            procs = _processes()
            for p in [pid, *_descendants(pid, procs)]:
                program = procs.get(p, (0, ""))[1].split(" ", 1)[0].rstrip(":")
                if p not in self.frozen and program.endswith("sshd"):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(p, signal.SIGSTOP)
                        self.frozen.append(p)
            time.sleep(0.01)
        self.done.set()

    def _start(self, watch: Callable[[], None]) -> None:
        self._thread = threading.Thread(target=watch, daemon=True)
        self._thread.start()

    def release(self) -> None:
        """Ends the watch and kills the sshd processes it froze (this test's sshd's)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        for p in reversed(self.frozen):
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)
                os.kill(p, signal.SIGCONT)


@pytest.fixture()
def saboteur(sshd: SSHServer) -> Iterator[Saboteur]:
    s = Saboteur(sshd)
    try:
        yield s
    finally:
        s.release()


@contextlib.contextmanager
def frozen_listener(server: SSHServer, for_s: float | None = None) -> Iterator[None]:
    """The board's sshd accepts no connection (SIGSTOP) inside the block, or for ``for_s``."""
    pid = _listener(server)
    os.kill(pid, signal.SIGSTOP)
    timer = threading.Timer(for_s, os.kill, (pid, signal.SIGCONT)) if for_s else None
    if timer is not None:
        timer.start()
    try:
        yield
    finally:
        if timer is not None:
            timer.cancel()
        os.kill(pid, signal.SIGCONT)


def _no_process_under(folder: Path) -> bool:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if not [p for p, (_, cmd) in _processes().items() if f"{folder}/" in cmd]:
            return True
        time.sleep(0.05)
    return False


# ---- faults before anything runs: retried only when they may pass ---------------------------


@boards
def test_closed_port_is_retried_with_backoff_and_bounded(sshd: SSHServer, tiny, counting_ssh,
                                                         root: Path) -> None:
    ssh, starts = counting_ssh
    target = _target(sshd, root, ssh, port=free_port())
    message, took = _fails(target, tiny.int8)
    assert "make temp dir: cannot connect to 127.0.0.1: ssh: connect to host 127.0.0.1 " in message
    assert "Connection refused; gave up after 3 tries in " in message
    assert starts() == 3  # three tries, no clean-up: nothing ran over there
    assert sum(target.retry.delays()) == pytest.approx(0.3)
    assert 0.3 <= took < target.retry.bound_s(target.connect_timeout_s)
    assert target.last_remote_dir is None


@boards
def test_refused_authentication_is_not_retried(sshd: SSHServer, tiny, counting_ssh, root: Path,
                                               tmp_path: Path) -> None:
    stranger = tmp_path / "stranger_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)],
                   check=True, capture_output=True, timeout=60)
    config = tmp_path / "ssh_config_stranger"
    config.write_text(sshd.ssh_config.read_text().replace(str(sshd.identity), str(stranger)))
    ssh, starts = counting_ssh
    message, took = _fails(_target(sshd, root, ssh, config=config), tiny.int8)
    assert message == (
        f"ssh://{sshd.user}@127.0.0.1:{sshd.port}: make temp dir: authentication failed "
        f"({sshd.user}@127.0.0.1: Permission denied (publickey).; not retried); ssh runs with "
        "BatchMode=yes, so it needs a key (IdentityFile or the agent), never a password")
    assert starts() == 1 and took < 5
    assert left_on_board(sshd, root) == []


@boards
def test_changed_host_key_is_refused_and_never_accepted(sshd: SSHServer, tiny, counting_ssh,
                                                        root: Path, tmp_path: Path) -> None:
    other = tmp_path / "other_host_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)],
                   check=True, capture_output=True, timeout=60)
    known = tmp_path / "known_hosts_changed"
    key_type, key = Path(f"{other}.pub").read_text().split()[:2]
    known.write_text(f"[127.0.0.1]:{sshd.port} {key_type} {key}\n")
    before = known.read_bytes()
    config = tmp_path / "ssh_config_changed"
    old_known = sshd.ssh_config.read_text().split("UserKnownHostsFile ")[1].split()[0]
    config.write_text(sshd.ssh_config.read_text().replace(old_known, str(known)))
    ssh, starts = counting_ssh
    message, took = _fails(_target(sshd, root, ssh, config=config), tiny.int8)
    assert "make temp dir: the host key of 127.0.0.1 has CHANGED" in message
    assert "(refused, not retried)" in message and "ssh-keygen -R 127.0.0.1" in message
    assert starts() == 1 and took < 5
    assert known.read_bytes() == before  # the new key was not written anywhere
    assert left_on_board(sshd, root) == []


@boards
def test_unreachable_board_times_out_each_try_and_gives_up_in_bound(
        sshd: SSHServer, tiny, counting_ssh, root: Path) -> None:
    ssh, starts = counting_ssh
    target = _target(sshd, root, ssh, connect_timeout_s=1.0)
    with frozen_listener(sshd):
        message, took = _fails(target, tiny.int8)
    assert ("make temp dir: cannot connect to 127.0.0.1: Connection timed out during banner "
            "exchange; gave up after 3 tries in ") in message
    assert starts() == 3
    assert 3 * 1.0 + 0.3 <= took < target.retry.bound_s(target.connect_timeout_s) + 1.0
    assert left_on_board(sshd, root) == []


@boards
def test_a_board_that_answers_again_is_retried_into_a_result(sshd: SSHServer, tiny,
                                                             counting_ssh, root: Path) -> None:
    ssh, starts = counting_ssh
    target = _target(sshd, root, ssh, connect_timeout_s=1.0)
    with frozen_listener(sshd, for_s=1.4):  # the first try times out, the second gets through
        result = target.bench(str(tiny.int8), FAST)
    assert result["runs"] >= FAST.runs and result["target"]["host"] == "127.0.0.1"
    assert starts() == 6  # five steps, one of them tried twice
    assert left_on_board(sshd, root) == []


# ---- faults while it runs ---------------------------------------------------------------------


@boards
def test_connection_dropped_mid_run_is_one_line_and_cleaned_up(
        sshd: SSHServer, tiny, counting_ssh, root: Path, saboteur: Saboteur) -> None:
    ssh, starts = counting_ssh
    target = _target(sshd, root, ssh, timeout_s=60)
    saboteur.act_when_running("--target-kind ssh", "kill")
    message, took = _fails(target, tiny.int8, SLOW)
    assert saboteur.done.is_set()
    assert f"run (benchmark of {str(tiny.int8)!r}): the connection to 127.0.0.1 dropped: " in (
        message)
    assert "Connection to 127.0.0.1 closed by remote host.; not retried" in message
    assert starts() == 4  # make temp dir, push, run (not repeated), clean-up
    assert took < 20  # not the 30 s the run would have taken
    assert left_on_board(sshd, root) == []
    assert _no_process_under(root)  # the orphaned run was stopped by the clean-up


@boards
@pytest.mark.parametrize("step, connection", [
    pytest.param("make temp dir", 1, marks=pytest.mark.slow),  # the same limit as push's
    ("push", 2),
    ("run", None),
    pytest.param("pull", 4, marks=pytest.mark.slow),
])
def test_a_board_that_hangs_in_any_step_hits_its_time_limit(
        sshd: SSHServer, tiny, counting_ssh, root: Path, saboteur: Saboteur, step: str,
        connection: int | None) -> None:
    ssh, starts = counting_ssh
    target = _target(sshd, root, ssh, connect_timeout_s=30.0, step_timeout_s=2.5,
                     timeout_s=2.0)
    if connection is None:  # the run: freeze its connection while the benchmark runs
        saboteur.act_when_running("--target-kind ssh", "freeze")
        options, limit = SLOW, 2.0 + 2.5
    else:  # another step: freeze that connection as soon as sshd forks it
        saboteur.freeze_connection(connection)
        options, limit = FAST, 2.5
    message, took = _fails(target, tiny.int8, options)
    assert saboteur.done.is_set()
    label = f"run (benchmark of {str(tiny.int8)!r})" if step == "run" else step
    assert message.startswith(f"{target.spec}: {label} did not finish within ")
    assert message.endswith(" s on this side (the board 127.0.0.1 hung or stopped answering); "
                            "not retried")
    assert limit <= took < limit + 12  # the limit, plus the steps before and the clean-up
    assert starts() == (connection or 3) + 1  # up to the hung step, then the clean-up
    assert left_on_board(sshd, root) == []


@boards
def test_full_remote_disk_fails_the_push_and_cleans_up(full_board, tiny,
                                                       counting_ssh) -> None:
    server, mount_point = full_board
    ssh, starts = counting_ssh
    # The tmpfs exists only in the board's mount namespace: on this side the folder is empty.
    assert "edgekit-board" in on_board(server, "df", "--", str(mount_point))
    target = _target(server, mount_point, ssh)
    message, _ = _fails(target, tiny.int8)
    assert message.startswith(f"{target.spec}: push failed (exit 2): tar: ")
    assert message.endswith("No space left on device")
    assert starts() == 3  # make temp dir, push (a full disk is not retried), clean-up
    assert left_on_board(server, mount_point) == []
    used_kb = int(on_board(server, "du", "-s", "-k", "--", str(mount_point)).split()[0])
    assert used_kb <= 4  # the partial upload was removed too


# ---- boards without what the runner needs -----------------------------------------------------


@pytest.fixture(scope="module")
def board_pythons(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Real interpreters that lack numpy, or have numpy but no TFLite interpreter."""
    folder = tmp_path_factory.mktemp("pythons")
    bare = folder / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True,
                   capture_output=True, timeout=120)
    numpy_only = folder / "numpy-only"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(numpy_only)], check=True,
                   capture_output=True, timeout=120)
    import numpy  # the test's numpy, linked in alone

    site_of_numpy = Path(numpy.__file__).parent.parent
    only = folder / "only-numpy-site"
    only.mkdir()
    for name in ("numpy", "numpy.libs"):
        if (site_of_numpy / name).exists():
            (only / name).symlink_to(site_of_numpy / name)
    site = next((numpy_only / "lib").glob("python3*/site-packages"))
    (site / "only_numpy.pth").write_text(f"{only}\n")
    return {"no numpy": str(bare / "bin" / "python"),
            "no interpreter": str(numpy_only / "bin" / "python")}


@boards
@pytest.mark.parametrize("lacks, expected", [
    pytest.param("no numpy", "lacks numpy; pip install numpy ai-edge-litert on 127.0.0.1",
                 marks=pytest.mark.slow),  # test_devbench_ssh.py has it in the default run
    ("no interpreter", "has no TFLite interpreter; pip install ai-edge-litert (or "
                       "tflite-runtime) on 127.0.0.1"),
])
def test_board_python_without_what_the_runner_needs(sshd: SSHServer, tiny, counting_ssh,
                                                    root: Path, board_pythons, lacks: str,
                                                    expected: str) -> None:
    python = board_pythons[lacks]
    check = "import numpy" if lacks == "no interpreter" else "import sys"
    subprocess.run([python, "-c", check], check=True, timeout=60)  # the python itself works
    ssh, starts = counting_ssh
    message, _ = _fails(_target(sshd, root, ssh, python=python), tiny.int8)
    assert message.startswith(f"{_target(sshd, root).spec}: {python} {expected}")
    assert starts() == 4  # no retry: make temp dir, push, run, clean-up
    assert left_on_board(sshd, root) == []


# ---- no code from data ------------------------------------------------------------------------


@names
@pytest.mark.parametrize("name", [
    "m $(touch PWNED);'x\".tflite",
    "m `touch PWNED`\nx; touch PWNED.tflite",
], ids=["dollar-paren-quotes", "backtick-newline"])
def test_hostile_model_name_runs_nothing_on_the_board(sshd: SSHServer, tiny, root: Path,
                                                      tmp_path: Path, name: str) -> None:
    home, cwd = on_board(sshd, "sh", "-c", 'printf "%s\n%s" "$HOME" "$PWD"').splitlines()
    places = {Path(home), Path(cwd), root, Path.cwd(), tmp_path}  # the board's, and this side's

    def pwned() -> list[str]:
        found = on_board(sshd, "find", *map(str, places), "-maxdepth", "2", "-name", "PWNED*")
        return found.split() + [str(p) for place in places for p in place.glob("PWNED*")]

    assert pwned() == []
    folder = tmp_path / "models; $(touch PWNED)"
    folder.mkdir()
    model = folder / name
    shutil.copyfile(tiny.int8, model)
    result = _target(sshd, root).bench(str(model), FAST)
    assert result["model"]["path"] == str(model)
    assert result["runs"] >= FAST.runs and result["latency_ms"]["p50"] > 0
    assert pwned() == []
    assert left_on_board(sshd, root) == []
