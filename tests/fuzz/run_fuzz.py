"""The long fuzz run (``make fuzz``): 100,000 inputs over the parser targets, a table of results.

Runs every target of :mod:`fuzz_targets` with Hypothesis for its share of ``--total`` inputs
(generation only: a crash is recorded, its input saved under ``--crash-dir``, and the run goes
on), then prints one row per target: inputs, results, documented refusals, crashes (distinct
by place and exception type) and the rate. ``--out RELIABILITY.md`` also writes that table as
the file's ``fuzz`` section (only that section is replaced). Exit 1 when anything crashed.

::

    nice -n 10 .venv/bin/python tests/fuzz/run_fuzz.py --total 100000 --out RELIABILITY.md
    .venv/bin/python tests/fuzz/run_fuzz.py --only recipe --total 2000 --seed 3

``--seed`` makes a run repeatable; ``--minutes`` stops each target at its share of the time left
(the fastest run first, so time one leaves unused goes to the next; the table then says how
many inputs fitted).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import fuzz_targets
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed

REPO = fuzz_targets.REPO
# Shares of --total per target: the cheap readers get the most inputs. Run in this order (the
# fastest first): with --minutes, time a target leaves unused goes to the ones after it.
SHARES = {"tflite_inspect": 0.36, "array_file": 0.15, "image_folder": 0.03, "recipe": 0.22,
          "tflite_load": 0.24}
PARSERS = {
    "tflite_inspect": "`edgekit inspect` (flatbuffer reader, work, sparsity, XNNPACK check)",
    "tflite_load": "device_bench model loading and a run, in a sandbox process",
    "recipe": "`Recipe.load` (.yaml/.json), resolved and reloaded",
    "array_file": "`--data` .npz, `--calibration` .npz/.npy",
    "image_folder": "`--data` / `--calibration` image folders",
}
# Crashes that fuzzing found and that are fixed; each has a regression test
# (tests/fuzz/test_fuzz_regressions.py) and, for .tflite files, its input in tests/data/fuzz/.
FIXED = [
    ("tflite_load", "subgraph input is a constant tensor: SIGSEGV in set_tensor",
     "input_is_constant.tflite"),
    ("tflite_load", "an operator writes a constant tensor: SIGSEGV in invoke",
     "op_writes_constant.tflite"),
    ("tflite_load", "subgraph output -1: abort (double free) when the interpreter is freed",
     "output_minus_one.tflite"),
    ("tflite_load", "FULLY_CONNECTED (and CONCATENATION) input left out (-1): SIGSEGV",
     "fc_weights_left_out.tflite"),
    ("tflite_load", "DEPTHWISE_CONV_2D with 2 inputs: SIGSEGV at the first invoke",
     "depthwise_two_inputs.tflite"),
    ("tflite_load", "SPLIT carrying depthwise options: SIGSEGV (refused by the probe run)",
     "split_with_conv_options.tflite"),
    ("tflite_load", "a tensor name that is not UTF-8: UnicodeDecodeError in LiteRT's Python API",
     "check_tflite rule"),
    ("tflite_inspect", "fewer zero points than scales: IndexError", "fewer_zero_points.tflite"),
    ("tflite_inspect", "quantized_dimension past the rank: IndexError",
     "bad_quantized_dimension.tflite"),
    ("tflite_inspect", "scales that do not match the channels: ValueError (broadcast)",
     "check_tflite rule"),
    ("tflite_inspect", "CONV_2D with one input / a 2-D filter: IndexError in the XNNPACK check",
     "conv_one_input.tflite"),
    ("tflite_inspect", "DEPTHWISE_CONV_2D with Conv2D options: AttributeError",
     "depthwise_conv_options.tflite"),
    ("tflite_inspect", "a DEQUANTIZE that reads its own output: RecursionError",
     "dequantize_cycle.tflite"),
    ("tflite_inspect", "a float32 weight over 18 bytes: ValueError in np.frombuffer",
     "weight_type_mismatch.tflite"),
    ("recipe", "bytes that are not UTF-8: UnicodeDecodeError", "inline: not_utf8"),
    ("recipe", "deep nesting: RecursionError in PyYAML", "inline: deep_nesting"),
    ("recipe", "a list where a number belongs: TypeError in the stage/train constructors",
     "inline: list_for_a_number, list_for_learning_rate, unhashable_class_name"),
    ("recipe", "an alias bomb / a 10,000-candidate sweep: a hang", "inline: alias_bomb, "
     "huge_sweep"),
    ("array_file", "empty, non-zip, bad-CRC or truncated files: EOFError, BadZipFile, "
     "TokenError", "inline: empty_file, not_a_zip, bad_crc, truncated_npy_header"),
    ("array_file", "complex or timedelta samples: TypeError in np.mod / ComplexWarning",
     "inline: complex_samples, timedelta_samples"),
    ("array_file", "a 0-d x: TypeError (len of unsized object); a label of 2**62",
     "inline: test_data_npz_*"),
]


@dataclass
class Stats:
    """What one target did."""

    name: str
    counts: Counter[str] = field(default_factory=Counter)
    crashes: dict[str, str] = field(default_factory=dict)  # signature -> saved input
    seconds: float = 0.0
    probe: int = 0  # refusals that came from the probe run (tflite_load)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def _signature(detail: str) -> str:
    """A crash's identity: its place and exception type (numbers in messages left out)."""
    head = detail.split(": ", 1)[0]
    return re.sub(r"\d+(?=\))", "N", head)


def _save(example: Any, folder: Path, stem: str) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(example, bytes):
        path = folder / f"{stem}.tflite"
        path.write_bytes(example)
    elif isinstance(example, tuple):
        path = folder / f"{stem}{example[0]}"
        path.write_bytes(example[1])
    else:
        path = folder / stem
        for cls, files in example.items():
            (path / cls).mkdir(parents=True, exist_ok=True)
            for name, data in files:
                (path / cls / name).write_bytes(data)
    return str(path)


def fuzz(target: fuzz_targets.Target, examples: int, seed: int, crash_dir: Path,
         seconds: float | None) -> Stats:
    """Runs one target for ``examples`` inputs (or until ``seconds`` have passed).

    Args:
        target: The target.
        examples: How many inputs.
        seed: Hypothesis seed.
        crash_dir: Where crashing inputs are saved.
        seconds: Time limit, or None.

    Returns:
        The target's stats.
    """
    stats = Stats(target.name)
    start = time.perf_counter()

    class _Stop(Exception):
        pass

    with tempfile.TemporaryDirectory(prefix=f"fuzz-{target.name}-") as tmp:
        workdir = Path(tmp)

        @settings(max_examples=examples, deadline=None, database=None, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck), report_multiple_bugs=False)
        @hypothesis_seed(seed)
        @given(target.inputs())
        def body(example: Any) -> None:
            if seconds is not None and time.perf_counter() - start > seconds:
                raise _Stop
            outcome = target.run(example, workdir)
            stats.counts[outcome.kind] += 1
            if outcome.kind == "refused" and "crashes the interpreter" in outcome.detail:
                stats.probe += 1  # a crash the check did not foresee, contained in a fork
            if outcome.kind == "crash":
                key = _signature(outcome.detail)
                if key not in stats.crashes:
                    saved = _save(example, crash_dir / target.name, f"crash{len(stats.crashes)}")
                    stats.crashes[key] = saved
                    print(f"  {target.name}: CRASH {outcome.detail} -> {saved}", flush=True)

        try:
            body()
        except _Stop:
            pass
    fuzz_targets.SANDBOX.close()
    stats.seconds = time.perf_counter() - start
    return stats


def table(rows: list[Stats]) -> str:
    """The results as a Markdown table."""
    lines = ["| target | parser | inputs | results | refused (documented error) | crashes | "
             "inputs/s |", "|---|---|---:|---:|---:|---:|---:|"]
    for s in rows:
        rate = s.total / s.seconds if s.seconds else 0.0
        lines.append(f"| `{s.name}` | {PARSERS[s.name]} | {s.total:,} | {s.counts['ok']:,} | "
                     f"{s.counts['refused']:,} | {len(s.crashes)} | {rate:,.0f} |")
    total = sum(s.total for s in rows)
    crashes = sum(len(s.crashes) for s in rows)
    lines.append(f"| **all** | | **{total:,}** | | | **{crashes}** | |")
    return "\n".join(lines)


def section(rows: list[Stats], command: str, seed: int) -> str:
    """The RELIABILITY.md ``fuzz`` section: the table, the fixed crashes, how it was made."""
    seconds = sum(s.seconds for s in rows)
    fixed = "\n".join(f"- `{t}`: {what} (`{where}`)" for t, what, where in FIXED)
    probe = sum(s.probe for s in rows)
    contained = (f"\n\nOf the `tflite_load` refusals, {probe:,} came from the probe run: a crash "
                 "that `device_bench.tflite_check` did not foresee, contained in a forked child "
                 "and reported as one line." if probe else "")
    return (f"## Fuzzing the parsers that read users' files\n\n"
            f"`{command}` (Hypothesis, seed {seed}, {seconds / 60:.1f} min on "
            f"{os.cpu_count()} cores, {platform.platform()}, Python "
            f"{platform.python_version()}). Inputs are real files (the models, data and images "
            f"of `tests/data/fuzz/seeds/`, the recipes of `examples/recipes/`) mutated byte by "
            f"byte and field by field, plus hostile ones (YAML tags that would run code, alias "
            f"bombs, deep nesting, object arrays). A crash is any exception other than the "
            f"documented one-line error, a hang past {fuzz_targets.TIME_LIMIT_S:g} s, or a dead "
            f"interpreter process. `make test` runs the same targets briefly "
            f"(`tests/fuzz/test_fuzz_parsers.py`).\n\n{table(rows)}{contained}\n\n"
            f"Crashes found by fuzzing and fixed (each a regression test in "
            f"`tests/fuzz/test_fuzz_regressions.py`):\n\n{fixed}\n")


def _write_section(path: Path, markdown: str) -> None:
    sys.path.insert(0, str(REPO / "bench"))
    from sections import write_section

    if not path.exists():
        path.write_text("# edgekit reliability\n\nEvery table below names the command that "
                        "produced it.\n", encoding="utf-8")
    write_section(path, "fuzz", markdown)


def main(argv: list[str] | None = None) -> int:
    """Runs the fuzzers; prints the table (and writes ``--out``).

    Args:
        argv: Arguments (default: ``sys.argv[1:]``).

    Returns:
        0 when nothing crashed, 1 otherwise.
    """
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--total", type=int, default=100_000, help="inputs over all targets")
    p.add_argument("--only", action="append", choices=sorted(SHARES),
                   help="run only this target (repeatable); it gets the whole --total")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--minutes", type=float, default=None, help="time limit over all targets")
    p.add_argument("--crash-dir", default=str(REPO / "runs" / "fuzz" / "crashes"))
    p.add_argument("--out", default=None, help="write the table as this file's fuzz section")
    args = p.parse_args(argv)
    names = [n for n in SHARES if n in (args.only or SHARES)]
    weight = sum(SHARES[n] for n in names)
    rows = []
    start = time.perf_counter()
    for k, name in enumerate(names):
        share = SHARES[name] / weight
        n = max(1, round(args.total * share))
        limit = None
        if args.minutes is not None:  # this target's share of the time that is left
            left = args.minutes * 60 - (time.perf_counter() - start)
            limit = max(0.0, left) * SHARES[name] / sum(SHARES[m] for m in names[k:])
        print(f"== {name}: {n:,} inputs", flush=True)
        rows.append(fuzz(fuzz_targets.TARGETS[name], n, args.seed, Path(args.crash_dir), limit))
        print(f"   {rows[-1].total:,} inputs in {rows[-1].seconds:.0f} s, "
              f"{dict(rows[-1].counts)}", flush=True)
    print(table(rows))
    if args.out:
        given = list(argv if argv is not None else sys.argv[1:])
        extra = [a for a, b in zip(given, [None, *given], strict=True)
                 if a not in ("--total", "--out") and b not in ("--total", "--out")]
        command = "tests/fuzz/run_fuzz.py " + " ".join(given)
        if args.total == 100_000 and not args.only:
            command = "make fuzz" + (f' FUZZ_ARGS="{" ".join(extra)}"' if extra else "")
        _write_section(Path(args.out), section(rows, command, args.seed))
        print(f"wrote the fuzz section of {args.out}")
    return 1 if any(s.crashes for s in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
