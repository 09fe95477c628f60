"""Writes the "cli-startup" section of BENCHMARKS.md: how long the commands that need no
TensorFlow take to answer, this tree against an earlier commit, interleaved in one run.

Run: ``python bench/cli_startup.py --out BENCHMARKS.md [--before REV]`` (about a minute).

Each case is a fresh Python process that imports the CLI and runs one command on input that
fails fast (a missing model, missing runs), or lists the models, or parses a recipe, so the
figure is the cost of getting to the first useful line: imports plus argument handling. The
``before`` tree is a ``git worktree`` of REV (default: the commit before the architecture
change), importable as it was installed (``converters/`` as ``edgekit.converters``, ``models/``
as ``edgekit.models``). Before and after alternate case by case, REPEATS times, so load on this
shared machine hits both alike; the table gives the median wall time and whether TensorFlow was
in ``sys.modules`` when the command returned.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))
COMMAND = "python bench/cli_startup.py --out BENCHMARKS.md"
BEFORE = "430c6b4"  # main before the layering of issue 14
REPEATS = 5

RECIPE = """model: demo_cnn
data: digits
stages:
  - {class_name: Prune, config: {final_sparsity: 0.5}}
  - {class_name: QAT, config: {}}
convert: {mode: int8}
"""

_CHILD = """
import json, sys, time
t0 = time.perf_counter()
case, arg = sys.argv[1], sys.argv[2]
if case == "recipe":
    from edgekit.recipe import Recipe
    Recipe.load(arg)
    code = 0
else:
    from edgekit.cli import main
    code = main(json.loads(arg))
print(json.dumps({"code": code, "tensorflow": "tensorflow" in sys.modules}))
"""


def _cases(tmp: Path) -> dict[str, tuple[str, str]]:
    """Case label -> (child case, its argument)."""
    recipe = tmp / "recipe.yaml"
    recipe.write_text(RECIPE)
    missing = str(tmp / "missing.tflite")
    return {
        "`edgekit inspect missing.tflite`": ("cli", json.dumps(["inspect", missing])),
        "`edgekit bench missing.tflite`": ("cli", json.dumps(["bench", missing])),
        "`edgekit models`": ("cli", json.dumps(["models"])),
        "`edgekit compare A B` (missing runs)": (
            "cli", json.dumps(["compare", str(tmp / "a"), str(tmp / "b")])),
        "`Recipe.load(recipe.yaml)`": ("recipe", str(recipe)),
    }


def _before_tree(rev: str, dest: Path) -> Path:
    """A worktree of ``rev`` laid out as its installed packages (returns the import root)."""
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(dest), rev],
                   check=True, capture_output=True)
    (dest / "edgekit" / "converters").symlink_to(dest / "converters")
    (dest / "edgekit" / "models").symlink_to(dest / "models")
    return dest


def _time(root: Path, case: str, arg: str) -> tuple[float, dict]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _CHILD, case, arg], capture_output=True,
                          text=True, env=env, cwd=root, timeout=300)
    wall = time.perf_counter() - t0
    if done.returncode != 0 or not done.stdout.strip():
        raise RuntimeError(f"{root}: {case} {arg}: {done.stderr[-500:]}")
    return wall, json.loads(done.stdout.strip().splitlines()[-1])


def measure(before_rev: str) -> str:
    """Runs every case before/after, interleaved; returns the section's Markdown."""
    with tempfile.TemporaryDirectory(prefix="cli-startup-") as tmp_name:
        tmp = Path(tmp_name)
        before = _before_tree(before_rev, tmp / "before")
        try:
            cases = _cases(tmp)
            walls: dict[tuple[str, str], list[float]] = {}
            tf: dict[tuple[str, str], bool] = {}
            for label, (case, arg) in cases.items():
                for tree in ("before", "after"):  # one cold start each, not counted
                    _time(before if tree == "before" else REPO, case, arg)
                for _ in range(REPEATS):
                    for tree, root in (("before", before), ("after", REPO)):
                        wall, out = _time(root, case, arg)
                        walls.setdefault((label, tree), []).append(wall)
                        tf[(label, tree)] = out["tensorflow"]
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force",
                            str(before)], capture_output=True)
    from sections import machine_line

    rows = []
    for label in cases:
        b = statistics.median(walls[(label, "before")])
        a = statistics.median(walls[(label, "after")])
        rows.append(f"| {label} | {b:.2f} s | {'yes' if tf[(label, 'before')] else 'no'} | "
                    f"{a:.2f} s | {'yes' if tf[(label, 'after')] else 'no'} | {b / a:.1f}x |")
    load = os.getloadavg()[0]
    return "\n".join([
        "## CLI start-up: commands that need no TensorFlow (issue 14)",
        "",
        f"Command: `{COMMAND}` ({dt.date.today().isoformat()}; {machine_line()}; "
        f"load average {load:.1f} at the end).",
        "",
        f"Median wall time of a fresh process ({REPEATS} runs each, after one unmeasured cold "
        f"start; before = commit `{before_rev}`, after = this tree, alternating run by run). "
        "Each command fails fast on missing input (exit 2), lists the models, or parses a "
        "recipe; TF = TensorFlow was loaded when it returned.",
        "",
        "| command | before | TF | after | TF | speed-up |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        "Before, importing the CLI or the recipe parser loaded TensorFlow (module-level imports "
        "of the Keras choice and of the compression stages), and that import was the time; "
        "after, each command imports only the layers it uses (docs/architecture.md), and "
        "`tests/test_layers.py` checks that TensorFlow stays out of `sys.modules`.",
    ])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="BENCHMARKS.md")
    parser.add_argument("--before", default=BEFORE, help="git revision to compare with")
    args = parser.parse_args()
    from sections import write_section

    markdown = measure(args.before)
    write_section(args.out, "cli-startup", markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
