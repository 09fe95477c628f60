"""Bad input to every command: one line naming the input and what was expected, nothing lost.

Each case of ``tests/reliability/cases.py`` is a real command line of ``edgekit`` (inspect,
bench, convert, compress, run, compare, data) or ``python -m device_bench``, run in-process
(the ``main`` functions the console scripts call, SystemExit caught). A bad input must end
with exit 2 (1 for a failed check), exactly one stderr line that names the input and what was
expected, no traceback, and nothing written: the case folder and the shared inputs are
byte-for-byte as before (an output file that existed before the call, which the runner writes
for every ``--out``/``--json``/``--json-out``/``--junit`` path, survives unchanged; no temp
file is left). A hostile file name (spaces, quotes, ``;``, ``$()``, backticks, a newline,
non-ASCII) on a valid file must work, create exactly the outputs asked for, and run nothing:
no ``PWNED`` file appears. The one line LiteRT's runtime itself prints on stderr when it builds
the XNNPACK delegate (:data:`NATIVE_INFO`) is not counted.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cases import CASES, Assets, Case

REPO = Path(__file__).resolve().parents[2]
# LiteRT's C++ runtime prints this when it builds the XNNPACK delegate (no Python switch turns
# it off); the targets relay only device_bench's own lines, so only a direct run shows it.
NATIVE_INFO = "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."
OUTPUT_FLAGS = ("--out", "--json", "--json-out", "--junit")
PREVIOUS = b"the previous output, which a failed command must leave as it was\n"


def _snapshot(root: Path) -> dict[str, str]:
    """Every entry under ``root``: its relative path -> its sha256 (or ``dir``)."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            found[os.path.relpath(os.path.join(dirpath, d), root)] = "dir"
        for f in filenames:
            path = os.path.join(dirpath, f)
            with open(path, "rb") as fh:
                found[os.path.relpath(path, root)] = hashlib.sha256(fh.read()).hexdigest()
    return found


def _previous_outputs(argv: list[str], work: Path) -> list[Path]:
    """The output paths the command line names inside ``work`` whose folder exists."""
    outs = []
    for flag, value in itertools.pairwise(argv):
        if flag in OUTPUT_FLAGS:
            p = Path(value)
            if work in p.parents and p.suffix and p.parent.is_dir() and not p.exists():
                outs.append(p)
    return outs


def invoke(prog: str, argv: list[str], work: Path, capsys: pytest.CaptureFixture[str]
           ) -> tuple[int, str, str]:
    """Runs ``edgekit`` in-process, or ``python -m device_bench`` as the real child process.

    device_bench runs where it is deployed, in a process of its own: its probe run forks, and
    a fork of this TensorFlow-laden test process is no device (the local target, too, runs it
    in a fresh process).

    Args:
        prog: ``edgekit`` or ``device_bench``.
        argv: The arguments.
        work: The folder it runs in.
        capsys: Captures the in-process output.

    Returns:
        (exit code, stdout, stderr).
    """
    if prog == "device_bench":
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        done = subprocess.run([sys.executable, "-m", "device_bench", *argv], cwd=work, env=env,
                              capture_output=True, text=True, timeout=120, check=False)
        return done.returncode, done.stdout, done.stderr
    from edgekit.cli import main

    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as e:  # what the console script would exit with
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    out, err = capsys.readouterr()
    return code, out, err


def _error_lines(err: str) -> list[str]:
    """stderr's lines, less blank ones and the runtime's documented :data:`NATIVE_INFO`."""
    return [line for line in err.splitlines() if line.strip() and line != NATIVE_INFO]


@pytest.mark.parametrize("case", [
    pytest.param(c, id=c.id, marks=pytest.mark.reliability(c.category)) for c in CASES])
def test_bad_input(case: Case, assets: Assets, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                   monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "w"
    work.mkdir()
    monkeypatch.chdir(work)  # a name that runs `touch PWNED` would leave it here
    if case.setup is not None:
        case.setup(assets, work)
    argv = case.argv(assets, work)
    failing = case.code != 0
    if failing:
        for p in _previous_outputs(argv, work):
            p.write_bytes(PREVIOUS)
    before, shared = _snapshot(work), _snapshot(assets.root)

    code, out, err = invoke(case.prog, argv, work, capsys)

    assert "Traceback" not in out + err, err
    lines = _error_lines(err)
    assert code == case.code, f"exit {code}, stderr {lines}"
    after = _snapshot(work)
    assert _snapshot(assets.root) == shared  # the inputs are untouched, no temp file beside them
    if failing:
        assert len(lines) == 1, lines
        line = lines[0]
        assert line.startswith(f"{case.prog}: "), line
        for word in case.says:
            shown = word.format(W=work, A=assets.root)
            assert shown in line, f"{shown!r} not in {line!r}"
        assert after == before  # nothing half-written: old outputs intact, no temp file
    else:
        assert lines == [], lines
        made = set(after) - set(before)
        assert made == set(case.makes) - set(before), made
        for name in case.makes:
            assert (work / name).stat().st_size > 0
    assert "PWNED" not in after and "PWNED" not in _snapshot(assets.root)  # no name ran


@pytest.mark.parametrize("argv", [
    ["inspect", "m.tflite", "--require-int8", "--json-out=i.json"],
    ["inspect", "--model", "m.tflite", "--norequire_int8"],
    ["compress", "m.keras", "--prune", "0.5", "--qat", "--out", "m.h5"],
    ["compress", "m.keras", "--prune=0.5", "--qat", "True", "--out=m.h5", "--epochs", "-1"],
    ["bench", "m.tflite", "--target=local,qemu-aarch64", "--json_out_is_not_a_flag_of_bench",
     "--help"],
    ["run", "r.yaml", "--plan"],
    ["data", "kws", "--out", "k.npz", "--takes", "1"],
    ["convert", "m.keras", "-o", "x"],  # a short flag: fire's to judge
    ["models"],
    [],
], ids=lambda argv: " ".join(argv) or "nothing")
def test_what_fire_accepts_passes_the_argument_check(argv: list[str]) -> None:
    from edgekit.cli import check_arguments

    check_arguments(argv)  # raises InputError on anything it refuses
