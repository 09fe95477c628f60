"""Runs every reliability test and writes the ``reliability`` section of RELIABILITY.md.

Usage (from the repository root; ``make reliability`` runs it)::

    .venv/bin/python tests/reliability/reliability_table.py --out RELIABILITY.md [--fast]

The convention: a test counts toward the table when it carries the marker
``@pytest.mark.reliability(CATEGORY)`` (registered in ``pytest.ini``), on the test, on a
``pytest.param`` or as a module's ``pytestmark``. ``CATEGORY`` is one of :data:`CATEGORIES`'
keys (another name gets a row of its own, after them):

- ``files``, ``data``, ``recipes``, ``paths``, ``names``: the bad-input cases of
  ``tests/reliability/cases.py`` (their ids start with the category);
- ``full-disk``: ``tests/reliability/test_full_disk.py``;
- ``interrupts``: real signals (``tests/edgekit/test_interrupts.py``,
  ``tests/device_bench/test_devbench_interrupts.py``);
- ``boards``: boards that fail (a real sshd on 127.0.0.1, recorded adb outputs), e.g.
  ``@pytest.mark.reliability("boards")`` on the SSH and adb fault tests;
- ``no-code``: ``tests/test_no_code_from_data.py``.

Every parametrized case is one case. pytest runs in this process, over :data:`TEST_PATHS` that
exist, with ``-m reliability`` (``--fast``: also ``not slow``), and a small plugin counts each
case's outcome by its category: passed (a clean result: exactly the behaviour the case
demands), failed (setup errors included) or skipped. The section says which command made it,
when, on what machine, and how long it took.

Exit code: 0 when no case failed, else 1 (the section is written either way).
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
# The files holding reliability-marked tests (a missing one is left out).
TEST_PATHS = (
    "tests/reliability/test_bad_inputs.py",
    "tests/reliability/test_full_disk.py",
    "tests/edgekit/test_interrupts.py",
    "tests/device_bench/test_devbench_interrupts.py",
    "tests/device_bench/test_devbench_ssh_faults.py",
    "tests/device_bench/test_devbench_adb_faults.py",
    "tests/test_no_code_from_data.py",
)
# Category -> (the row's name, what its cases try).
CATEGORIES = {
    "files": ("bad files", "missing, empty, truncated, random-byte and wrong-kind files (a "
              ".tflite that is a PNG, a recipe that is a .tflite, a .npy named .npz...)"),
    "data": ("bad data", "wrong shapes and dtypes, NaN/Inf, empty or one-class data, labels "
             "outside the model's classes, mismatched x/y lengths, bad --input arrays"),
    "recipes": ("bad recipes and options", "unknown keys and stages, out-of-range values, "
                "empty, comment-only or non-mapping recipes, bad flag values"),
    "paths": ("bad output paths", "outputs under a regular file, a folder where the file "
              "goes, a run folder that is a file"),
    "names": ("hostile names", "spaces, quotes, `;`, `$()`, backticks, newlines, non-ASCII in "
              "file names: each must work and run nothing"),
    "full-disk": ("full disk", "every writer on a full 256 KiB tmpfs (private mount "
                  "namespace): the previous file survives, no temp file"),
    "interrupts": ("interrupts", "real SIGINT/SIGTERM in training, conversion and "
                   "benchmarking; `--resume`; one run per folder"),
    "boards": ("boards that fail", "real sshd on 127.0.0.1 (closed port, refused login, "
               "changed host key, dropped connection, hangs, full remote disk...), adb "
               "offline/unauthorized (recorded)"),
    "no-code": ("no code from data", "no shell strings, no pickles, safe YAML, Lambda layers "
                "refused without --unsafe-load"),
}
# Categories whose cases are faults survived (the rest are bad or hostile inputs).
FAULTS = ("full-disk", "interrupts", "boards")
# Categories whose every case compares the files before and after: nothing half-written, old
# outputs byte-identical, no temp file (the interrupt tests check their artefacts likewise).
NOTHING_LOST = ("files", "data", "recipes", "paths", "names", "full-disk")
# Defects this suite found, each fixed at its source and kept as the named case.
FIXED = (
    ("data-convert-nan", "NaN or Inf samples in an .npz were accepted (the int8 "
     "calibration and the accuracy silently wrong); now refused by `load_npz`"),
    ("data-convert-one-class", "an .npz holding one class only was converted and "
     "verified as if it were a test set; now refused"),
    ("data-device_bench-input-nan", "`python -m device_bench --input` with NaN samples "
     "benchmarked NaNs; now refused"),
    ("paths-convert-out-is-a-folder", "`--out` naming an existing folder: IsADirectoryError "
     "traceback at the rename; now one line before any work (`atomicio.check_parent`)"),
    ("files-inspect-folder", "`edgekit inspect FOLDER` said the folder does not exist; now "
     "'is not a file'"),
    ("files-inspect-empty", "`edgekit inspect` of an empty file: now 'is empty'"),
    ("files-convert-png-as-npz", "a file that is not a zip or .npy (here a PNG) given as "
     "`--data`, `--calibration` or `--input`: numpy called it pickled data and suggested "
     "loading it with `allow_pickle`; now 'expected a zip of NumPy arrays'"),
    ("paths-inspect-json-under-a-file", "an output under a regular file said 'cannot be "
     "created: File exists' (`--json`, `--json-out`, `data kws --out`) or 'is not writable' "
     "(`run --out`); now 'X is a file; expected a folder'"),
    ("recipe-run-sparsity-out-of-range", "a bad value inside a recipe section did not name "
     "the recipe file or the section; now 'recipe R: stages[0]: ...'"),
    ("recipe-inspect-misspelled-flag", "a misspelled option (`edgekit run r.yaml --resum`, "
     "`bench --wramup 5`, `inspect --json-out i.json --require-int9`): fire ran the whole "
     "command (writing its outputs), then exited 2 with a usage screen; now one line listing "
     "the known options, before anything runs (`edgekit.cli.check_arguments`; also unknown "
     "commands, missing and extra arguments)"),
    ("recipe-convert-calibration-unused", "`convert --calibration` with a mode that does not "
     "calibrate (float16, float32, dynamic) was silently unused; now refused"),
    ("atomicio-json", "a full disk: every writer ended in an OSError traceback; now one line "
     "naming the path and 'no space left on device (ENOSPC)', old file intact"),
)


class Counts:
    """A pytest plugin: each reliability case's category and outcome."""

    def __init__(self) -> None:
        self.category: dict[str, str] = {}
        self.outcome: dict[str, str] = {}

    def pytest_collection_finish(self, session: Any) -> None:
        for item in session.items:  # what is left after -m / -k deselected the rest
            marker = item.get_closest_marker("reliability")
            if marker is not None and marker.args:
                self.category[item.nodeid] = str(marker.args[0])

    def pytest_runtest_logreport(self, report: Any) -> None:
        if report.nodeid not in self.category:
            return
        if report.failed:
            self.outcome[report.nodeid] = "failed"
        elif report.skipped:
            self.outcome.setdefault(report.nodeid, "skipped")
        elif report.when == "call" and report.passed:
            self.outcome.setdefault(report.nodeid, "passed")

    def table(self) -> dict[str, Counter]:
        """Category -> Counter of outcomes (``cases`` included)."""
        rows: dict[str, Counter] = {}
        for nodeid, category in self.category.items():
            row = rows.setdefault(category, Counter())
            row["cases"] += 1
            row[self.outcome.get(nodeid, "not run")] += 1
        return rows


def run(fast: bool, extra: list[str]) -> tuple[Counts, int, float]:
    """Runs the reliability tests in this process.

    Args:
        fast: Leave out the slow ones.
        extra: More pytest arguments.

    Returns:
        (the counts, pytest's exit code, seconds).
    """
    paths = [p for p in TEST_PATHS if (REPO / p).is_file()]
    marks = "reliability and not slow" if fast else "reliability"
    counts = Counts()
    t0 = time.perf_counter()
    code = pytest.main(["-q", "-p", "no:cacheprovider", "-c", str(REPO / "pytest.ini"),
                        "--rootdir", str(REPO), "-m", marks, *extra,
                        *(str(REPO / p) for p in paths)], plugins=[counts])
    return counts, int(code), time.perf_counter() - t0


def _ids_passed(counts: Counts) -> set[str]:
    """The parametrize ids (``[...]``) and test names of the cases that passed."""
    found = set()
    for nodeid, outcome in counts.outcome.items():
        if outcome == "passed":
            name = nodeid.rsplit("::", 1)[-1]
            found.add(name[name.find("[") + 1: -1] if "[" in name else name)
    return found


def section(counts: Counts, command: str, seconds: float, machine: str) -> str:
    """The Markdown section.

    Args:
        counts: What ran.
        command: The command that made it.
        seconds: How long the tests took.
        machine: The machine line.

    Returns:
        The section body.
    """
    rows = counts.table()
    order = [c for c in CATEGORIES if c in rows] + sorted(set(rows) - set(CATEGORIES))
    total = Counter()
    lines = ["| category | what is tried | cases | clean | failed | skipped |",
             "|---|---|---:|---:|---:|---:|"]
    for c in order:
        row = rows[c]
        total.update(row)
        name, what = CATEGORIES.get(c, (c, ""))
        lines.append(f"| {name} (`{c}`) | {what} | {row['cases']:,} | {row['passed']:,} | "
                     f"{row['failed'] + row['not run']:,} | {row['skipped']:,} |")
    lines.append(f"| **all** | | **{total['cases']:,}** | **{total['passed']:,}** | "
                 f"**{total['failed'] + total['not run']:,}** | **{total['skipped']:,}** |")
    missing = [CATEGORIES[c][0] for c in CATEGORIES if c not in rows]
    faults = sum(rows.get(c, Counter())["passed"] for c in FAULTS)
    fault_cases = sum(rows.get(c, Counter())["cases"] for c in FAULTS)
    lost = sum(rows.get(c, Counter())["passed"] for c in NOTHING_LOST)
    passed = _ids_passed(counts)
    today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    out = [
        "## Bad input, full disks, interrupts, failing boards, untrusted files",
        "",
        f"`{command}` ({today}, {seconds:.0f} s of tests on {machine}). Each row counts the "
        "cases marked `@pytest.mark.reliability(category)` (the convention is in "
        "`tests/reliability/reliability_table.py`). A case is *clean* when it ended exactly as "
        "it demands: a bad input exits 2 (1 for a failed check) with one stderr line that "
        "names the input and what was expected, no traceback; a hostile name works and runs "
        "nothing; a fault ends with its one documented line and exit code.",
        "",
        *lines,
        "",
        f"- **Faults survived:** {faults:,} of {fault_cases:,} (full disk, interrupts, boards "
        "that fail).",
        f"- **Nothing lost:** {lost:,} clean cases (bad input, hostile names, full disk) "
        "compare the files before and after: the output absent or the previous file "
        "byte-identical, nothing else created, no temp file left (the bad-input cases compare "
        "the whole case folder and the shared inputs); the interrupt tests check every "
        "artefact, the stage cache and the lock after each stop.",
    ]
    if missing:
        out.append(f"- No cases collected for: {', '.join(missing)}.")
    out += ["", "Defects found by these cases and fixed at their source (the case stays):", ""]
    for case, text in FIXED:
        mark = "" if case in passed else " (**its case did not pass in this run**)"
        out.append(f"- `{case}`: {text}{mark}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    """Runs the tests, writes the section.

    Args:
        argv: ``--out FILE`` (default RELIABILITY.md), ``--fast``, and pytest arguments
            after ``--``.

    Returns:
        0 when every case passed, else 1.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "RELIABILITY.md"))
    parser.add_argument("--fast", action="store_true", help="leave out the slow tests")
    parser.add_argument("pytest_args", nargs="*", help="more pytest arguments (after --)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO / "bench"))
    sys.path.insert(0, str(REPO))
    from sections import machine_line, write_section

    counts, code, seconds = run(args.fast, args.pytest_args)
    command = "make reliability" + (' RELIABILITY_ARGS="--fast"' if args.fast else "")
    write_section(args.out, "reliability", section(counts, command, seconds, machine_line()))
    rows = counts.table()
    failed = sum(r["failed"] + r["not run"] for r in rows.values())
    print(f"reliability: {sum(r['cases'] for r in rows.values())} cases, {failed} failed; "
          f"wrote {args.out}")
    return 1 if failed or code not in (0, 5) else 0


if __name__ == "__main__":
    sys.exit(main())
