"""device_bench.targets.ssh through a real OpenSSH server on 127.0.0.1 (see sshd_fixture.py).

The "board" is this machine reached over ssh; its Python is this test run's interpreter (the
system python3 has no numpy), passed with ``?python=``.
"""

from __future__ import annotations

import glob
import hashlib
import io
import shlex
import shutil
import subprocess
import sys
import tarfile
import time
import urllib.parse
import uuid
from pathlib import Path

import numpy as np
import pytest
from sshd_fixture import SSHServer, free_port, start_sshd

from device_bench.errors import BenchInputError, TargetError
from device_bench.remote_payload import build_tar, package_files
from device_bench.runner import SCHEMA, BenchOptions
from device_bench.targets import Target, get_target
from device_bench.targets.ssh import SPEC_FORM, SSHTarget

FAST = BenchOptions(runs=20, min_seconds=0.05, warmup=3, warmup_seconds=0.01)
BOARD_PYTHON = sys.executable


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory):
    with start_sshd(tmp_path_factory.mktemp("sshd")) as server:
        yield server


def _target(server: SSHServer, config: Path | None = None, python: str = BOARD_PYTHON,
            **kwargs) -> SSHTarget:
    spec = f"ssh://{server.user}@127.0.0.1:{server.port}?python={urllib.parse.quote(python)}"
    return SSHTarget.from_spec(spec, ssh_options=["-F", str(config or server.ssh_config)],
                               **kwargs)


def _edgekit_dirs() -> set[str]:
    return set(glob.glob("/tmp/edgekit.*"))


def test_ssh_benchmarks_through_a_real_sshd(sshd: SSHServer, tiny) -> None:
    before = _edgekit_dirs()
    target = _target(sshd)
    assert isinstance(target, Target) and target.kind == "ssh"
    result = target.bench(str(tiny.int8), FAST)
    assert result["schema"] == SCHEMA
    assert result["target"]["kind"] == "ssh"
    assert result["target"]["host"] == "127.0.0.1"
    assert result["model"]["path"] == str(tiny.int8)
    assert result["model"]["sha256"] == hashlib.sha256(tiny.int8.read_bytes()).hexdigest()
    assert result["runs"] >= 20
    lat = result["latency_ms"]
    assert 0 < lat["min"] <= lat["p50"] <= lat["max"]
    assert lat["mean"] > 0 and lat["init"] > 0 and lat["first"] > 0
    assert result["runtime"]["interpreter"] == "ai_edge_litert"
    assert BenchOptions.from_dict(result["options"]) == FAST
    # The board's temp folder is gone, and no other was left behind.
    assert target.last_remote_dir is not None
    assert target.last_remote_dir.startswith("/tmp/edgekit.")
    assert not Path(target.last_remote_dir).exists()
    assert _edgekit_dirs() == before


def test_ssh_sends_the_input_file(sshd: SSHServer, tiny, tmp_path: Path) -> None:
    data = tmp_path / "x.npy"
    np.save(data, tiny.x[:1])
    options = BenchOptions(runs=10, min_seconds=0.02, warmup=1, warmup_seconds=0.0,
                           input_path=str(data))
    result = _target(sshd).bench(str(tiny.float32), options)
    assert result["options"]["input_path"] == str(data)
    assert result["runs"] >= 10


def test_hostile_model_name_is_one_quoted_argument(sshd: SSHServer, tiny, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    folder = tmp_path / f"dir with space; $(touch ek-pwn-{tag}-a)"
    folder.mkdir()
    model = folder / (f"m; touch ek-pwn-{tag}-b `touch ek-pwn-{tag}-c` "
                      f"$(touch ek-pwn-{tag}-d).tflite")
    shutil.copyfile(tiny.int8, model)
    result = _target(sshd).bench(str(model), FAST)
    assert result["model"]["path"] == str(model)
    assert result["model"]["sha256"] == hashlib.sha256(model.read_bytes()).hexdigest()
    # The remote shell ran no part of the name: nothing was created in its home (its cwd).
    assert not list(Path.home().glob(f"ek-pwn-{tag}-*"))
    assert not list(Path("/").glob(f"ek-pwn-{tag}-*"))


def test_ssh_command_is_an_argument_list_quoted_for_the_remote_shell() -> None:
    target = SSHTarget("board", user="pi", port=2222, ssh_options=["-F", "cfg"])
    remote = ["cat", "--", "/tmp/a b; rm -rf ~ $(id) `id`.json"]
    cmd = target.ssh_command(remote)
    assert cmd[:2] == ["ssh", "-T"]
    assert cmd[-3:-1] == ["--", "pi@board"]
    assert shlex.split(cmd[-1]) == remote
    for option in ("BatchMode=yes", "ConnectTimeout=10"):
        assert cmd[cmd.index(option) - 1] == "-o"
    assert ["-p", "2222"] == cmd[cmd.index("-p"):cmd.index("-p") + 2]
    assert ["-F", "cfg"] == cmd[cmd.index("-F"):cmd.index("-F") + 2]
    assert not any("stricthostkeychecking" in part.lower() for part in cmd)


def test_run_command_uses_the_board_python_and_the_options() -> None:
    target = SSHTarget("board", python="/opt/py 3/bin/python3", timeout_s=30)
    argv = target.run_command("/tmp/edgekit.X", "m.tflite", BenchOptions(runs=20, threads=2))
    assert argv[:2] == ["sh", "-c"] and argv[3:5] == ["sh", "30"]
    tail = argv[5:]
    assert tail[:6] == ["env", "PYTHONPATH=/tmp/edgekit.X", "PYTHONDONTWRITEBYTECODE=1",
                        "/opt/py 3/bin/python3", "-m", "device_bench"]
    assert tail[-2:] == ["--", "/tmp/edgekit.X/m.tflite"]
    assert ["--target-kind", "ssh"] == tail[tail.index("--target-kind"):][:2]
    assert ["--threads", "2"] == tail[tail.index("--threads"):][:2]


def test_unknown_host_key_is_refused(sshd: SSHServer, tiny) -> None:
    known_hosts = Path(sshd.unknown_config.read_text().split("UserKnownHostsFile ")[1].split()[0])
    with pytest.raises(TargetError) as err:
        _target(sshd, config=sshd.unknown_config).bench(str(tiny.int8), FAST)
    message = str(err.value)
    assert "known_hosts" in message and "host-key checking stays on" in message
    assert f"ssh-keyscan -p {sshd.port} 127.0.0.1" in message
    assert known_hosts.read_text() == ""  # nothing was added behind the user's back


def test_ssh_options_may_not_disable_host_key_checking() -> None:
    for options in (["-o", "StrictHostKeyChecking=no"], ["-oStrictHostKeyChecking off"]):
        with pytest.raises(BenchInputError, match="must not turn off host-key checking"):
            SSHTarget("board", ssh_options=options)


def test_missing_model_is_bad_input_before_connecting(tmp_path: Path) -> None:
    target = SSHTarget("127.0.0.1", port=free_port(), connect_timeout_s=1)
    with pytest.raises(BenchInputError, match=r"model '.*missing\.tflite' does not exist"):
        target.bench(str(tmp_path / "missing.tflite"), FAST)
    assert target.last_remote_dir is None


def test_board_rejection_is_bad_input_naming_the_local_file(sshd: SSHServer,
                                                            corrupt_model: Path) -> None:
    with pytest.raises(BenchInputError) as err:
        _target(sshd).bench(str(corrupt_model), FAST)
    assert str(err.value).startswith(f"model {str(corrupt_model)!r} is not a valid TFLite")


def test_dead_port_fails_fast(sshd: SSHServer, tiny) -> None:
    target = SSHTarget("127.0.0.1", port=free_port(), connect_timeout_s=5,
                       ssh_options=["-F", str(sshd.ssh_config)])
    start = time.monotonic()
    with pytest.raises(TargetError, match="Connection refused"):
        target.bench(str(tiny.int8), FAST)
    assert time.monotonic() - start < 5


def test_board_python_without_numpy(sshd: SSHServer, tiny, tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True,
                   capture_output=True, timeout=120)
    target = _target(sshd, python=str(bare / "bin" / "python"))
    with pytest.raises(TargetError, match=r"lacks numpy; pip install numpy ai-edge-litert"):
        target.bench(str(tiny.int8), FAST)
    assert not Path(target.last_remote_dir or "/nonexistent").exists()


def test_board_without_that_python(sshd: SSHServer, tiny) -> None:
    with pytest.raises(TargetError, match=r"cannot run '/nonexistent/python3' \(exit 127"):
        _target(sshd, python="/nonexistent/python3").bench(str(tiny.int8), FAST)


def test_run_timeout_stops_and_cleans_up(sshd: SSHServer, tiny) -> None:
    target = _target(sshd, timeout_s=2)
    start = time.monotonic()
    with pytest.raises(TargetError, match=r"timed out after 2 s"):
        target.bench(str(tiny.int8), BenchOptions(min_seconds=60))
    assert time.monotonic() - start < 15
    assert not Path(target.last_remote_dir or "/nonexistent").exists()


@pytest.mark.parametrize("spec, host, user, port, python", [
    ("ssh://pi@raspberrypi.local", "raspberrypi.local", "pi", None, "python3"),
    ("ssh://board", "board", None, None, "python3"),
    ("ssh://root@10.0.0.7:2222?python=/usr/bin/python3.11", "10.0.0.7", "root", 2222,
     "/usr/bin/python3.11"),
    ("ssh://u@[::1]:22/", "::1", "u", 22, "python3"),
])
def test_spec_parsing(spec: str, host: str, user: str | None, port: int | None,
                      python: str) -> None:
    target = get_target(spec)
    assert isinstance(target, SSHTarget)
    assert (target.host, target.user, target.port, target.python) == (host, user, port, python)


@pytest.mark.parametrize("spec, why", [
    ("ssh://", "no host"),
    ("ssh://pi@host:99999", "the port must be a number"),
    ("ssh://pi:secret@host", "passwords are not supported"),
    ("ssh://host/some/path", "unexpected path"),
    ("ssh://host?pyton=python3", "unknown option(s) 'pyton' (known: python)"),
    ("ssh://host?python=", "each option must be given once, with a value"),
    ("ssh://-oProxyCommand=x", "ssh host must be a host name"),
])
def test_malformed_specs(spec: str, why: str) -> None:
    with pytest.raises(BenchInputError) as err:
        SSHTarget.from_spec(spec)
    assert str(err.value).startswith(f"ssh target {spec!r}: ")
    assert why in str(err.value)
    assert str(err.value).endswith(f"expected {SPEC_FORM}")


def test_payload_is_the_package_and_runs_from_its_own_folder(tmp_path: Path, tiny) -> None:
    data = build_tar({"m.tflite": tiny.int8})
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        names = tar.getnames()
    assert sorted(names) == sorted([name for name, _ in package_files()] + ["m.tflite"])
    assert "device_bench/__main__.py" in names
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    subprocess.run(["tar", "-x", "-f", "-", "-C", str(tmp_path)], input=data, check=True)
    env = {"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"}
    where = subprocess.run(
        [sys.executable, "-c", "import device_bench; print(device_bench.__file__)"],
        capture_output=True, text=True, cwd="/", env=env, check=True,
    )
    assert where.stdout.strip() == str(tmp_path / "device_bench" / "__init__.py")
    proc = subprocess.run(
        [sys.executable, "-m", "device_bench", "--json", "-", "--runs", "5", "--min-seconds", "0",
         "--warmup-seconds", "0", "--windows", "1", "--", str(tmp_path / "m.tflite")],
        capture_output=True, text=True, cwd="/", timeout=120, check=False, env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert '"schema": "edgekit.bench/1"' in proc.stdout
    with pytest.raises(BenchInputError, match="must be a plain file name"):
        build_tar({"../evil": tiny.int8})
