"""A stand-in ``adb`` for the adb target's tests: this machine plays the phone.

No phone (and no adb server) exists where the tests run. :func:`make_fake_adb` writes an ``adb``
program that does what adb does on the device side, here: ``adb -s SERIAL shell CMD...`` and
``adb -s SERIAL exec-out CMD...`` join their arguments with spaces and hand that one string to
``sh -c`` (as adb hands it to the phone's shell, which is why the target quotes every element),
and ``adb -s SERIAL push SRC DST`` copies a file or a folder (into ``DST`` when it is a folder).
Every call is logged, one JSON argument list a line, so a test can see what the target ran.
"""

from __future__ import annotations

import json
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

_PROGRAM = '''\
#!{python}
import json, os, shutil, subprocess, sys

args = sys.argv[1:]
with open({log!r}, "a", encoding="utf-8") as log:
    log.write(json.dumps(args) + "\\n")
if args[:1] == ["-s"]:
    args = args[2:]
command, rest = args[0], args[1:]
if command in ("shell", "exec-out"):
    line = " ".join(rest)
    if {fail_rm!r} and "rm -rf" in line:
        print("rm: cannot remove: Read-only file system", file=sys.stderr)
        sys.exit(1)
    code = subprocess.run(["sh", "-c", line]).returncode
    sys.exit(128 - code if code < 0 else code)  # a signal, as the device's shell reports it
if command == "push":
    src, dst = rest
    if {fail_push!r}:
        print(f"adb: error: failed to copy '{{src}}' to '{{dst}}': no space left", file=sys.stderr)
        sys.exit(1)
    target = os.path.join(dst, os.path.basename(src.rstrip("/"))) if os.path.isdir(dst) else dst
    if os.path.isdir(src):
        shutil.copytree(src, target)
    else:
        shutil.copyfile(src, target)
    print(f"{{src}}: 1 file pushed.")
    sys.exit(0)
print(f"adb: unknown command {{command}}", file=sys.stderr)
sys.exit(1)
'''


@dataclass(frozen=True)
class FakeAdb:
    """A fake ``adb`` and the folder it uses as the phone's ``/data/local/tmp``.

    Attributes:
        program: The executable to pass as ``adb=``.
        remote_root: The folder to pass as ``remote_root=``.
        log: One JSON argument list per call.
    """

    program: Path
    remote_root: Path
    log: Path

    def calls(self) -> list[list[str]]:
        """The argument lists of every call so far."""
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line]

    def temp_dirs(self) -> list[Path]:
        """The target's temp folders still on the "phone"."""
        return sorted(self.remote_root.glob("edgekit-*"))


def make_fake_adb(folder: Path, *, fail_push: bool = False, fail_rm: bool = False) -> FakeAdb:
    """Writes a fake ``adb`` into ``folder``.

    Args:
        folder: An empty folder.
        fail_push: Every ``push`` fails (a full phone).
        fail_rm: Every ``rm`` on the phone fails (the clean-up cannot remove the folder).

    Returns:
        The program, its phone folder and its call log.
    """
    root = folder / "data-local-tmp"
    root.mkdir()
    log = folder / "adb-calls.jsonl"
    program = folder / "adb"
    program.write_text(_PROGRAM.format(python=sys.executable, log=str(log), fail_push=fail_push,
                                       fail_rm=fail_rm))
    program.chmod(program.stat().st_mode | stat.S_IXUSR)
    return FakeAdb(program=program, remote_root=root, log=log)
