"""Channel search on keyword spotting: budgets met on the target, against uniform and width.

``python bench/channel_search.py --out BENCHMARKS.md [--seeds 0 1 2]
[--targets local qemu-aarch64:cortex-a72] [--budgets 0.7 0.5 0.35] [--epochs 30] [--work DIR]
[--spread]``

Task: ``data: kws`` (espeak-ng speech made here, 12 classes, held-out speakers), DS-CNN (64
channels) trained ``--epochs`` epochs, full int8 (the same dense model and cache layout as
``bench/channel_prune.py``, so one ``--work`` folder serves both).

For every target and budget (a share of the dense int8 model's figure on that target: host p50
on one thread for ``local``, guest instructions per inference for ``qemu-aarch64:cortex-a72``,
which are deterministic but are not time):

* **searched**: ``ChannelPrune`` with ``target: {latency_ratio|instructions_ratio: B, on: T}``
  (``SEARCH`` settings, importance ``l1``), fine-tuned ``FINE`` epochs distilled from the dense
  model, ``QAT`` ``QAT_EPOCHS`` epochs, full int8;
* **uniform**: ``ChannelPrune`` ``ratio`` at the widest multiple of 8 channels whose cut model
  measures within the budget on T (uniform cuts of the dense model measured beside it, no
  training), then the same fine-tune, QAT and int8;
* **width**: DS-CNN built with that many channels, trained from scratch ``--epochs + FINE``
  epochs, the same QAT and int8.

The shipped int8 models of one target are measured together with the dense one (round-robin,
``ROUNDS`` rounds, median, for latency; one count each for instructions): the figure, its ratio
to the dense model, whether it is within the budget and within 5 % under it, and held-out
accuracy. The goals are computed from the table, per seed and over the seeds.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import channel_prune as cp  # noqa: E402  (bench/ is on the path)

from edgekit.core.errors import CheckFailed  # noqa: E402

SEARCH = {"search_steps": 6, "proposal_batches": 50, "validation": 0.1}
WIDTHS = (56, 48, 40, 32, 24, 16, 8)
BAND = 0.05
SPREAD_NOTE = "; every step also proposes one share of every group (spread)"


def _kind(on: str) -> str:
    return "instructions_ratio" if on.startswith("qemu-aarch64") else "latency_ratio"


def measure(on: str, paths: dict[str, str]) -> dict[str, float]:
    """Each model's figure on ``on``, measured in one run (latency round-robin; instructions)."""
    if on.startswith("qemu-aarch64"):
        counted = cp.count_models(paths)
        return {k: float(v) for k, v in counted.items() if v is not None}
    if on != "local":
        raise SystemExit(f"bench/channel_search.py measures on local or qemu-aarch64, got {on!r}")
    return cp.time_models(paths)


def uniform_figures(dense: Any, data: Any, seed: int, on: str, folder: Path) -> dict[int, float]:
    """Figure / dense figure of uniform cuts of the dense model to each width (no training)."""
    from edgekit.compress import ChannelPrune

    paths = {"dense": str(folder / "dense.tflite")}
    for c in WIDTHS:
        path = folder / f"uniform_cut_{c}.tflite"
        if not path.is_file():
            cut, _ = ChannelPrune.from_config({"ratio": (64 - c) / 64, "epochs": 0}).cut(
                dense, data)
            cp.to_int8(cut, data, seed, path)
        paths[str(c)] = str(path)
    figures = measure(on, paths)
    return {c: figures[str(c)] / figures["dense"] for c in WIDTHS}


def searched(dense: Any, data: Any, seed: int, on: str, budget: float, folder: Path
             ) -> dict[str, Any]:
    """The searched model for one target and budget (cached in ``folder``)."""
    from edgekit.compress import QAT, ChannelPrune

    name = f"search_{on.replace(':', '_')}_{budget:g}_fine{cp.FINE}" \
        f"{'_spread' if SEARCH.get('spread') else ''}"
    row = cp._cached(folder / f"{name}.json")
    if row is not None:
        return row
    t0 = time.perf_counter()
    stage = ChannelPrune.from_config({
        "target": {_kind(on): budget, "on": on}, **SEARCH, "importance": "l1", "epochs": cp.FINE,
        "learning_rate": 1e-3, "augment_shift": 0, "seed": seed,
        "distill": {"teacher": "float", **cp.DISTILL}})
    cut = stage.apply(dense, data)
    search_seconds = time.perf_counter() - t0
    qat = QAT.from_config({"epochs": cp.QAT_EPOCHS, "augment_shift": 0,
                           "seed": seed}).apply(cut.model, data)
    s = cut.details["search"]
    return cp._save(folder / f"{name}.json", {
        "float_accuracy": cp.keras_accuracy(cut.model, data),
        "channels": {g: v["after"] for g, v in cut.details["groups"].items()},
        "search": {"steps": len(s["steps"]), "searched_ratio": s["searched_figure"] /
                   s["dense_figure"], "cost_table": s["cost_table"],
                   "seconds": round(search_seconds, 1),
                   # what each step chose from (for A/Bs of the proposal rules, e.g. --spread)
                   "path": [{"group": st["group"], "channels": st["channels"],
                             "measured_ratio": st["measured"] / s["dense_figure"],
                             "proposals": [[p["group"], *p["channels"],
                                            round(p["estimate"] / s["dense_figure"], 4),
                                            p["validation_accuracy"]]
                                           for p in st["proposals"]]}
                            for st in s["steps"]]},
        "qat_accuracy": cp.keras_accuracy(qat.model, data),
        **cp.to_int8(qat.model, data, seed, folder / f"{name}.tflite")})


def run_seed(data: Any, seed: int, epochs: int, targets: list[str], budgets: list[float],
             work: Path) -> dict[str, Any]:
    """Every target and budget of one seed."""
    from edgekit.core.model_io import load_model

    folder = work / f"seed{seed}"
    dense = load_model(cp.dense_model(data, seed, epochs, work))
    dense_row = {"float_accuracy": cp.keras_accuracy(dense, data),
                 **cp.to_int8(dense, data, seed, folder / "dense.tflite")}
    out: dict[str, Any] = {"dense": dense_row, "targets": {}}
    for on in targets:
        ratios = uniform_figures(dense, data, seed, on, folder)
        rows: dict[str, dict[str, Any]] = {}
        failed: dict[str, str] = {}
        for budget in budgets:
            fits = [c for c in WIDTHS if ratios[c] <= budget]
            channels = max(fits) if fits else None
            try:
                rows[f"searched {budget:g}"] = {
                    **searched(dense, data, seed, on, budget, folder), "budget": budget}
            except CheckFailed as e:  # a budget the search cannot meet is a result, not a crash
                failed[f"searched {budget:g}"] = str(e)
            if channels is not None:
                # the files bench/channel_prune.py --distill yes writes at the same --fine
                uniform = cp.pruned_model(dense, data, seed, (64 - channels) / 64, "l1", True,
                                          folder)
                rows[f"uniform {budget:g}"] = {**uniform, "budget": budget}
                rows[f"width {budget:g}"] = {**cp.width_model(data, seed, epochs, channels,
                                                              work), "budget": budget}
        figures = measure(on, {"dense": dense_row["path"],
                               **{k: v["path"] for k, v in rows.items()}})
        for name, row in rows.items():
            row["figure"] = figures.get(name)
            row["ratio"] = None if row["figure"] is None else row["figure"] / figures["dense"]
        # issue 11's two speed figures for the same files, whichever the search used: host p50
        # (local, round-robin) and guest instructions on an emulated Cortex-A72 (deterministic)
        paths = {"dense": dense_row["path"], **{k: v["path"] for k, v in rows.items()}}
        other = measure("qemu-aarch64:cortex-a72" if on == "local" else "local", paths)
        for name, row in rows.items():
            mine = row["ratio"]
            theirs = None if not other.get(name) or not other.get("dense") \
                else other[name] / other["dense"]
            row["p50_ratio"], row["a72_ratio"] = (mine, theirs) if on == "local" \
                else (theirs, mine)
        out["targets"][on] = {"dense_figure": figures["dense"], "uniform_cut_ratios": ratios,
                              "rows": rows, "failed": failed}
    return out


# Issue 11's goal for a channel-pruned DS-CNN: drop <= 1.0 point (int8 vs dense float) with
# >= 2.0x fewer MACs, >= 1.8x host p50 and >= 1.8x A72 instructions.
SPEED_GOAL = {"drop": 1.0, "macs": 2.0, "p50": 1.8, "a72": 1.8}


def speed_rows(res: dict[str, Any], on: str) -> list[str]:
    """The models searched on ``on`` against issue 11's four figures (empty without them)."""
    if on not in res["targets"]:
        return []
    t = res["targets"][on]
    dense = res["dense"]
    lines = ["| model | int8 | drop vs dense float | MACs | host p50 | A72 instr. | all four |",
             "|---|---|---|---|---|---|---|"]
    for name, r in t["rows"].items():
        drop = 100 * (dense["float_accuracy"] - r["int8_accuracy"])
        macs = dense["macs"] / r["macs"]
        p50 = None if not r.get("p50_ratio") else 1 / r["p50_ratio"]
        a72 = None if not r.get("a72_ratio") else 1 / r["a72_ratio"]
        met = (drop <= SPEED_GOAL["drop"] and macs >= SPEED_GOAL["macs"] and p50 is not None
               and p50 >= SPEED_GOAL["p50"] and a72 is not None and a72 >= SPEED_GOAL["a72"])
        shown = ["—" if v is None else f"{v:.2f}x" for v in (p50, a72)]
        lines.append(f"| {name} | {cp._pct(r['int8_accuracy'])} | {drop:.2f} | {macs:.2f}x | "
                     f"{shown[0]} | {shown[1]} | {'**yes**' if met else 'no'} |")
    return lines


def render(results: dict[int, dict[str, Any]], args: Any, command: str) -> str:
    from sections import machine_line

    lines = ["## Channel search on keyword spotting: budgets on the target (issue 12)", "",
             f"Command: `{command}` ({time.strftime('%Y-%m-%d')}; {machine_line()}).", "",
             f"DS-CNN (64 channels) on `data: kws`, dense {args.epochs} epochs. Searched: "
             f"ChannelPrune `target` ({SEARCH['search_steps']} steps, "
             f"{SEARCH['proposal_batches']} fine-tune batches per proposal, "
             f"{100 * SEARCH['validation']:g} % of the training split held out to score "
             f"proposals, importance l1{SPREAD_NOTE if SEARCH.get('spread') else ''}) + "
             f"{cp.FINE} distilled fine-tune epochs + "
             f"{cp.QAT_EPOCHS} QAT epochs. Uniform: ChannelPrune ratio at the widest multiple "
             "of 8 channels whose uncut-weight cut measures within the budget, the same "
             f"fine-tune and QAT. Width: DS-CNN at that width from scratch, {args.epochs + cp.FINE}"
             " epochs + the same QAT. All full int8; accuracy on the held-out speakers. Figure: "
             f"`local` host p50, 1 thread, {cp.ROUNDS} round-robin rounds (median); "
             "`qemu-aarch64:cortex-a72` guest instructions per inference (instructions, not "
             "time). Every shipped model is measured beside the dense one in one run.", ""]
    goals = []
    for seed, res in results.items():
        for on, t in res["targets"].items():
            lines += [f"Seed {seed}, target `{on}` (dense: {t['dense_figure']:.6g}, int8 "
                      f"{cp._pct(res['dense']['int8_accuracy'])}):", "",
                      "| model | budget | channels | figure | ratio to dense | within budget | "
                      "within 5 % under | int8 accuracy | search steps |",
                      "|---|---|---|---|---|---|---|---|---|"]
            for name, r in t["rows"].items():
                ratio = r.get("ratio")
                inside = ratio is not None and ratio <= r["budget"]
                near = inside and ratio >= r["budget"] * (1 - BAND)
                ch = r["channels"]
                ch = "/".join(map(str, ch.values())) if isinstance(ch, dict) else ch
                figure = "—" if r.get("figure") is None else f"{r['figure']:.6g}"
                shown = "—" if ratio is None else f"{ratio:.3f}"
                lines.append(
                    f"| {name} | {r['budget']:g} | {ch} | {figure} | "
                    f"{shown} | {'yes' if inside else 'no'} | "
                    f"{'yes' if near else 'no'} | {cp._pct(r['int8_accuracy'])} | "
                    f"{r.get('search', {}).get('steps', '—')} |")
            lines.append("")
            for budget in args.budgets:
                s = t["rows"].get(f"searched {budget:g}")
                u = t["rows"].get(f"uniform {budget:g}")
                w = t["rows"].get(f"width {budget:g}")
                why = t["failed"].get(f"searched {budget:g}")
                if why is not None:
                    goals.append(f"- seed {seed}, {on}, budget {budget:g}: the search failed "
                                 f"(exit 1 from the stage): {why}: **missed**")
                if s is None:
                    continue
                inside = s.get("ratio") is not None and s["ratio"] <= budget
                near = inside and s["ratio"] >= budget * (1 - BAND)
                beats = all(o is None or s["int8_accuracy"] >= o["int8_accuracy"] for o in (u, w))
                goals.append(
                    f"- seed {seed}, {on}, budget {budget:g}: shipped at {s.get('ratio', 0):.3f}"
                    f" of dense (within: **{'met' if inside else 'missed'}**, within 5 % "
                    f"under: **{'met' if near else 'missed'}**); int8 {cp._pct(s['int8_accuracy'])}"
                    f" vs uniform {cp._pct(u and u['int8_accuracy'])} and width "
                    f"{cp._pct(w and w['int8_accuracy'])}: **{'met' if beats else 'missed'}**")
    lines += ["Against the issue's goals (computed from the tables):", "", *goals]
    for seed, res in results.items():
        for on in res["targets"]:
            rows = speed_rows(res, on)
            lines += ["", f"Seed {seed}, the models of target `{on}` against issue 11's speed "
                      f"goal (drop <= {SPEED_GOAL['drop']:g} point vs the dense float "
                      f"{cp._pct(res['dense']['float_accuracy'])}, MACs >= "
                      f"{SPEED_GOAL['macs']:g}x, host p50 >= {SPEED_GOAL['p50']:g}x and A72 "
                      f"instructions >= {SPEED_GOAL['a72']:g}x fewer than dense; host p50 "
                      "round-robin on `local`, 1 thread, and instructions counted on "
                      "`qemu-aarch64:cortex-a72`, for the same files):", "", *rows]
    return "\n".join(lines)


def section_name(targets: list[str], spread: bool = False) -> str:
    """One BENCHMARKS.md section per target set: ``channel-search-local``,
    ``channel-search-qemu-aarch64-cortex-a72``, ``channel-search-local_qemu-aarch64-...``;
    ``...-spread`` for searches with spread proposals."""
    return "channel-search-" + "_".join(t.replace(":", "-") for t in targets) + \
        ("-spread" if spread else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="BENCHMARKS.md to write the section into")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--targets", nargs="+", default=["local", "qemu-aarch64:cortex-a72"])
    parser.add_argument("--budgets", type=float, nargs="+", default=[0.7, 0.5, 0.35])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--work", default=None, help="folder for models (reused across runs)")
    parser.add_argument("--spread", action="store_true",
                        help="the search also proposes every group cut by one share (its own "
                             "cache names and section)")
    parser.add_argument("--quick", action="store_true",
                        help="one-epoch fine-tunes, short search, two timing rounds (smoke run)")
    args = parser.parse_args(argv)
    if args.quick:
        cp.FINE, cp.QAT_EPOCHS, cp.ROUNDS = 1, 1, 2
        SEARCH.update(search_steps=2, proposal_batches=5)
    if args.spread:
        SEARCH["spread"] = True
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="channel-search-bench-") as tmp:
        work = Path(args.work or tmp)
        if any(t.startswith("qemu-aarch64") or t == "local" for t in args.targets):
            cp.prepare_qemu()  # before any training (local rows are counted on the A72 too)
        data = cp.load_task()
        results = {s: run_seed(data, s, args.epochs, args.targets, args.budgets, work)
                   for s in args.seeds}
    command = (f"python bench/channel_search.py --out BENCHMARKS.md --seeds "
               f"{' '.join(map(str, args.seeds))} --targets {' '.join(args.targets)} "
               f"--budgets {' '.join(f'{b:g}' for b in args.budgets)} --epochs {args.epochs}"
               f" --work WORK{' --spread' if args.spread else ''}"
               f"{' --quick' if args.quick else ''}")
    md = render(results, args, command)
    md += f"\n\nWhole run: {(time.perf_counter() - t0) / 60:.0f} min."
    print(md)
    print(json.dumps(results, indent=1, default=str), file=sys.stderr)
    if args.out and not args.quick:
        from sections import write_section

        write_section(args.out, section_name(args.targets, args.spread), md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
