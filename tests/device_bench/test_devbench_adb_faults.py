"""adb devices that are offline or unauthorized, on recorded adb client output (data/adb/).

No phone exists here. The ``adb`` these tests hand the target replays, call by call, a scripted
list of device states: in state ``device`` it execs adb_fixture.py's stand-in (which runs the
commands with this machine's ``sh`` and copies pushed files, so the benchmark really runs); in
``offline`` or ``unauthorized`` it prints the real client's text for that command (recorded from
AOSP's adb source, data/adb/README.md) and exits with the real client's status. Each test checks
the one-line error, the number of adb calls (retries only for an offline device), the time bound
and the "phone's" temp folders.
"""

from __future__ import annotations

import json
import re
import stat
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from adb_fixture import FakeAdb, make_fake_adb

from device_bench.errors import BenchInputError, TargetError
from device_bench.runner import BenchOptions
from device_bench.targets.adb import AdbTarget

DATA = Path(__file__).parent / "data" / "adb"
FAST = BenchOptions(runs=20, min_seconds=0.05, warmup=3, warmup_seconds=0.01)
EXIT = {"shell": 1, "push": 1, "exec-out": 255}  # the real client's statuses (README.md)
SPEC = "adb://R58M1234ABC"

boards = pytest.mark.reliability("boards")

_REPLAY = '''\
#!{python}
import json, os, sys

args = sys.argv[1:]
with open({log!r}, "a", encoding="utf-8") as log:
    log.write(json.dumps(args) + "\\n")
with open({log!r}, encoding="utf-8") as log:
    number = len(log.read().splitlines())
states = json.load(open({states!r}, encoding="utf-8"))
state = states[min(number, len(states)) - 1]
if state == "device":
    os.execv({real!r}, [{real!r}, *args])
command = (args[2:] if args[:1] == ["-s"] else args)[0]
name = os.path.join({data!r}, command + "_" + state + ".txt")
if not os.path.exists(name):
    name = os.path.join({data!r}, command + "_" + state.split("_")[0] + ".txt")
sys.stderr.write(open(name, encoding="utf-8").read())
sys.exit({exits!r}[command])
'''


class Phone:
    """A replaying ``adb`` in front of adb_fixture's stand-in, and what it saw."""

    def __init__(self, folder: Path, states: list[str]) -> None:
        self.fake: FakeAdb = make_fake_adb(folder)
        self.log = folder / "replay-calls.jsonl"
        state_file = folder / "states.json"
        state_file.write_text(json.dumps(states))
        self.program = folder / "adb-replay"
        self.program.write_text(_REPLAY.format(
            python=sys.executable, log=str(self.log), states=str(state_file),
            real=str(self.fake.program), data=str(DATA), exits=EXIT))
        self.program.chmod(self.program.stat().st_mode | stat.S_IXUSR)

    def target(self, **kwargs) -> AdbTarget:
        options = {"tries": 3, "backoff_s": 0.1, "python": sys.executable, **kwargs}
        return AdbTarget.from_spec(SPEC, adb=str(self.program),
                                   remote_root=str(self.fake.remote_root), **options)

    def calls(self) -> list[list[str]]:
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def steps(self) -> list[str]:
        """Each call as the step it was: shell's first word, or push/exec-out."""
        named = []
        for call in self.calls():
            command, rest = call[2], call[3:]
            if command == "shell":
                words = rest[0].split()
                named.append("facts" if "getprop" in rest[0] else
                             "mkdir" if "mkdir -m 700" in rest[0] else
                             "clean-up" if "rm -rf" in rest[0] else
                             "run" if "device_bench" in rest[0] else words[0])
            else:
                named.append(command)
        return named


@pytest.fixture()
def phone(tmp_path: Path) -> Callable[[list[str]], Phone]:
    return lambda states: Phone(tmp_path, states)


def _fails(target: AdbTarget, model: Path) -> tuple[str, float]:
    start = time.monotonic()
    with pytest.raises(TargetError) as err:
        target.bench(str(model), FAST)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{SPEC}: ")
    return message, time.monotonic() - start


def test_every_recording_is_documented_with_its_exit_status() -> None:
    readme = (DATA / "README.md").read_text(encoding="utf-8")
    recorded = sorted(p.name for p in DATA.glob("*.txt"))
    assert len(recorded) == 7
    for name in recorded:
        command = name.rsplit("_", 1)[0].split("_")[0]
        assert f"| `{name}` | `adb -s SERIAL {command} " in readme
        assert readme.split(f"| `{name}` |")[1].split("\n")[0].endswith(f"| {EXIT[command]} |")
    unauthorized = (DATA / "shell_unauthorized.txt").read_text()
    assert unauthorized.splitlines() == [
        "adb: device unauthorized.",
        "This adb server's $ADB_VENDOR_KEYS is not set",
        "Try 'adb kill-server' if that seems wrong.",
        "Otherwise check for a confirmation dialog on your device.",
    ]


@boards
@pytest.mark.parametrize("state, line", [
    ("offline", "adb: device offline"),
    ("offline_at_connect", "error: device offline"),
])
def test_offline_device_is_retried_with_backoff_then_one_line(phone, tiny, state: str,
                                                               line: str) -> None:
    p = phone([state])
    target = p.target()
    message, took = _fails(target, tiny.int8)
    assert message.startswith(
        f"{SPEC}: read device facts: the device is offline ({line}); check its cable or "
        "network and that `adb devices` lists it as 'device'; gave up after 3 tries in ")
    assert p.steps() == ["facts"] * 3
    assert sum(target.retry.delays()) == pytest.approx(0.3)
    assert 0.3 <= took < 5
    assert p.fake.temp_dirs() == []


@boards
@pytest.mark.parametrize("at, step", [(1, "facts"), (3, "push"), (5, "run"), (7, "clean-up")])
def test_device_offline_for_one_call_is_retried_into_a_result(phone, tiny, at: int,
                                                              step: str) -> None:
    states = ["device"] * 9
    states[at - 1] = "offline"
    p = phone(states)
    result = p.target().bench(str(tiny.int8), FAST)
    assert result["runs"] >= FAST.runs and result["target"]["host"] == "R58M1234ABC"
    steps = ["facts", "mkdir", "push", "push", "run", "exec-out", "clean-up"]
    assert p.steps() == [*steps[:at], step, *steps[at:]]  # that call, once more
    assert p.fake.temp_dirs() == []


@boards
def test_device_gone_during_the_push_fails_in_bound_and_the_retried_clean_up_removes_the_dir(
        phone, tiny) -> None:
    p = phone(["device", "device", "offline", "offline", "offline", "offline", "device"])
    target = p.target()
    message, took = _fails(target, tiny.int8)
    assert message.startswith(
        f"{SPEC}: pushing the device_bench package: the device is offline (adb: error: failed "
        "to get feature set: device offline); ")
    assert "; gave up after 3 tries in " in message
    assert p.steps() == ["facts", "mkdir", "push", "push", "push", "clean-up", "clean-up"]
    assert took < 2 * target.retry.bound_s(target.command_timeout_s)
    assert p.fake.temp_dirs() == []


@boards
@pytest.mark.parametrize("at, step, line", [
    (1, "read device facts", "adb: device unauthorized."),
    (3, "pushing the device_bench package",
     "adb: error: failed to get feature set: device unauthorized."),
])
def test_unauthorized_device_is_not_retried(phone, tiny, at: int, step: str, line: str) -> None:
    p = phone(["device"] * (at - 1) + ["unauthorized", "device"])
    message, took = _fails(p.target(), tiny.int8)
    assert message == (
        f"{SPEC}: {step}: the device has not authorized this computer ({line}); unlock it and "
        "accept the 'Allow USB debugging?' dialog (not retried)")
    assert len(p.calls()) == at + (1 if at > 2 else 0)  # no retry; the clean-up after mkdir
    assert took < 5
    assert p.fake.temp_dirs() == []


@boards
def test_retry_options_are_checked_and_one_try_means_no_retry(phone, tiny) -> None:
    with pytest.raises(BenchInputError, match=r"tries must be an integer in 1\.\.10, got 0"):
        AdbTarget("R58M", tries=0)
    with pytest.raises(BenchInputError, match=r"backoff_s must be a number of seconds in 0\.\.60"):
        AdbTarget("R58M", backoff_s=-1)
    p = phone(["offline"])
    message, _ = _fails(p.target(tries=1), tiny.int8)
    assert re.search(r"; gave up after 1 try in \d+\.\d s$", message) and len(p.calls()) == 1
