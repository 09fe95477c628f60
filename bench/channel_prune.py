"""Channel pruning on keyword spotting: speed at equal accuracy, the width baseline, criteria.

``python bench/channel_prune.py --out BENCHMARKS.md [--part speed|criteria|all]
[--seeds 0] [--criteria-seeds 0 1 2] [--epochs 30] [--ratios 0.3 0.5]``

Task: the keyword-spotting set of ``data: kws`` (espeak-ng speech made on this machine, 12
classes, held-out speakers), where DS-CNN float sits near 90 %, so a cut shows in accuracy.

**speed** (section ``channel-prune-speed``), per seed:

* dense DS-CNN trained ``--epochs`` epochs (Adam 2e-3, cosine), then full int8 (int8 I/O,
  200 seeded training samples to calibrate);
* for every ratio: ``ChannelPrune`` (``--importance``, layer scope, ``round_to`` the stage
  default) with a fine-tune of ``--fine`` epochs (default ``FINE``), then ``QAT`` for
  ``QAT_EPOCHS``, then full int8;
* the obvious alternative: DS-CNN built narrower (``filters`` = the pruned model's channel
  count, so the same MACs) and trained from scratch for the same total epochs
  (``--epochs + --fine`` float, then the same QAT);
* every int8 model: held-out accuracy, MACs (from the ``.tflite``), host p50 on one thread
  (XNNPACK; all models timed round-robin in ``ROUNDS`` rounds in one run, median of the
  rounds), and guest instructions per inference on an emulated Cortex-A72
  (``qemu-aarch64:cortex-a72``; instructions, not time).

**criteria** (section ``channel-prune-criteria``): every registered importance criterion at
ratio ``CRITERIA_RATIO``, global scope, the same ``CRITERIA_FINE``-epoch fine-tune, per seed
from the same dense model; accuracy right after the cut (before any fine-tune), after the
fine-tune (float) and after post-training int8, MACs and host p50 (round-robin per seed).
Mean and spread over the seeds; the ranking is computed, not written by hand.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

LR = 2e-3
FINE = 20
QAT_EPOCHS = 5
CALIBRATION = 200
ROUNDS = 7
TIMING = {"threads": 1, "runs": 300, "min_seconds": 0.6, "warmup": 50, "windows": 3}
COUNT = {"count_runs": 10, "count_segments": 3, "count_warmup": 10}
DISTILL = {"temperature": 4.0, "alpha": 0.5}
CRITERIA_RATIO = 0.5
CRITERIA_FINE = 3


def load_task() -> Any:
    """The keyword-spotting dataset (generated once into the cache, then loaded)."""
    from edgekit.data import load_data

    return load_data("kws")


def dense_model(data: Any, seed: int, epochs: int, work: Path, filters: int = 64) -> Path:
    """Trains (or reuses) DS-CNN with ``filters`` channels; returns the saved ``.keras``."""
    from edgekit.compress.training import fit
    from edgekit.core._keras import keras
    from edgekit.core.model_io import save_model
    from edgekit.models.registry import build_model

    path = work / f"seed{seed}" / f"ds_cnn_{filters}_{epochs}ep.keras"
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(seed)
    model = build_model("ds_cnn", input_shape=data.x_train.shape[1:],
                        num_classes=int(data.y_train.max()) + 1, filters=filters)
    fit(model, data.x_train, data.y_train, epochs=epochs, learning_rate=LR, augment_shift=0,
        seed=seed, desc=f"ds_cnn {filters} seed {seed}")
    return save_model(model, path)


def to_int8(model: Any, data: Any, seed: int, path: Path) -> dict[str, Any]:
    """Full-int8 conversion, held-out accuracy and MACs of the ``.tflite``."""
    from edgekit.converters.modes import ConversionConfig, convert_keras
    from edgekit.converters.verify import verify_tflite
    from edgekit.converters.work import tflite_work

    pick = np.random.default_rng(seed).choice(len(data.x_train), CALIBRATION, replace=False)
    blob = convert_keras(model, ConversionConfig(mode="int8", io="int8"), data.x_train[pick])
    path.write_bytes(blob)
    check = verify_tflite(path, data.x_test, data.y_test)
    return {"path": str(path), "int8_accuracy": check.accuracy,
            "macs": tflite_work(path)["macs"], "bytes": len(blob)}


def keras_accuracy(model: Any, data: Any) -> float:
    from edgekit.compress.training import accuracy

    return accuracy(model, data.x_test, data.y_test)


def time_models(paths: dict[str, str]) -> dict[str, float]:
    """Host p50 (ms, one thread), round-robin over ``ROUNDS`` rounds, median per model."""
    from device_bench.runner import BenchOptions
    from device_bench.targets import LocalTarget

    target, options = LocalTarget(), BenchOptions(**TIMING)
    seen: dict[str, list[float]] = {k: [] for k in paths}
    for r in range(ROUNDS):
        for name, path in paths.items():
            seen[name].append(target.bench(path, options)["latency_ms"]["p50"])
        print(f"timing round {r + 1}/{ROUNDS}", file=sys.stderr)
    return {k: statistics.median(v) for k, v in seen.items()}


def prepare_qemu() -> None:
    """Finds qemu and builds (or reuses) the ARM sysroot; exits with the reason if it cannot."""
    from device_bench.errors import TargetError
    from device_bench.targets import QemuTarget

    try:
        QemuTarget(cpu="cortex-a72").prepare()
    except TargetError as e:
        raise SystemExit(f"bench: {e}") from e


def count_models(paths: dict[str, str]) -> dict[str, int | None]:
    """Guest instructions per inference on an emulated Cortex-A72 (None if qemu fails)."""
    from device_bench.runner import BenchOptions
    from device_bench.targets import QemuTarget

    target = QemuTarget(cpu="cortex-a72", **COUNT)
    target.prepare()
    out: dict[str, int | None] = {}
    for name, path in paths.items():
        try:
            out[name] = target.check(path, BenchOptions())["instructions_per_inference"]
        except Exception as e:  # report the failure in the table rather than lose the run
            print(f"qemu count of {name} failed: {e}", file=sys.stderr)
            out[name] = None
    return out


def _cached(path: Path) -> dict[str, Any] | None:
    """A model's figures from an earlier run of this script into the same --work folder."""
    if path.is_file() and Path(json.loads(path.read_text())["path"]).is_file():
        return json.loads(path.read_text())
    return None


def _save(path: Path, row: dict[str, Any]) -> dict[str, Any]:
    path.write_text(json.dumps(row, indent=1, default=str) + "\n")
    return row


def _pruned_name(ratio: float, importance: str, distill: bool) -> str:
    return (f"pruned {ratio:g}" + ("" if importance == "l1" else f" {importance}")
            + (" distilled" if distill else ""))


def pruned_model(dense: Any, data: Any, seed: int, ratio: float, importance: str,
                 distill: bool, folder: Path) -> dict[str, Any]:
    """ChannelPrune of the dense model at ``ratio`` (layer scope), ``FINE`` fine-tune epochs
    (distilled from the dense model or not), ``QAT_EPOCHS`` of QAT, full int8 (cached in
    ``folder`` under a name that carries ratio, importance, distillation and ``FINE``)."""
    from edgekit.compress import QAT, ChannelPrune

    stem = f"{_pruned_name(ratio, importance, distill).replace(' ', '_')}_fine{FINE}"
    row = _cached(folder / f"{stem}.json")
    if row is not None:
        return row
    config = {"ratio": ratio, "importance": importance, "epochs": FINE,
              "learning_rate": 1e-3, "augment_shift": 0, "seed": seed}
    if distill:
        config["distill"] = {"teacher": "float", **DISTILL}
    cut = ChannelPrune.from_config(config).apply(dense, data)
    qat = QAT.from_config({"epochs": QAT_EPOCHS, "augment_shift": 0,
                           "seed": seed}).apply(cut.model, data)
    return _save(folder / f"{stem}.json", {
        "float_accuracy": keras_accuracy(cut.model, data),
        "channels": cut.model.get_layer("conv1").filters,
        "groups": cut.details["groups"],
        "qat_accuracy": keras_accuracy(qat.model, data),
        **to_int8(qat.model, data, seed, folder / f"{stem}.tflite")})


def width_model(data: Any, seed: int, epochs: int, channels: int, work: Path
                ) -> dict[str, Any]:
    """DS-CNN built with ``channels`` channels, ``epochs + FINE`` epochs from scratch, the same
    QAT, full int8 (cached in ``work/seed<seed>``)."""
    from edgekit.compress import QAT
    from edgekit.core.model_io import load_model

    folder = work / f"seed{seed}"
    stem = f"width_{channels}_{epochs + FINE}ep"
    row = _cached(folder / f"{stem}.json")
    if row is not None:
        return row
    narrow = load_model(dense_model(data, seed, epochs + FINE, work, filters=channels))
    qat = QAT.from_config({"epochs": QAT_EPOCHS, "augment_shift": 0,
                           "seed": seed}).apply(narrow, data)
    return _save(folder / f"{stem}.json", {
        "float_accuracy": keras_accuracy(narrow, data), "channels": channels,
        "qat_accuracy": keras_accuracy(qat.model, data),
        **to_int8(qat.model, data, seed, folder / f"{stem}.tflite")})


def run_speed(data: Any, seed: int, epochs: int, ratios: list[float], importance: str,
              work: Path, distills: tuple[bool, ...] = (False,)) -> dict[str, Any]:
    """The dense, pruned and width-multiplier models of one seed (see the module docstring)."""
    from edgekit.core.model_io import load_model

    folder = work / f"seed{seed}"
    dense = load_model(dense_model(data, seed, epochs, work))
    rows: dict[str, dict[str, Any]] = {"dense": {"float_accuracy": keras_accuracy(dense, data),
                                                 **to_int8(dense, data, seed,
                                                           folder / "dense.tflite")}}
    for ratio in ratios:
        for distill in distills:
            rows[_pruned_name(ratio, importance, distill)] = pruned_model(
                dense, data, seed, ratio, importance, distill, folder)
        channels = rows[_pruned_name(ratio, importance, distills[0])]["channels"]
        rows[f"width {channels}"] = width_model(data, seed, epochs, channels, work)
    paths = {k: v["path"] for k, v in rows.items()}
    for name, p50 in time_models(paths).items():
        rows[name]["p50_ms"] = p50
    for name, n in count_models(paths).items():
        rows[name]["instructions"] = n
    return rows


def run_criteria(data: Any, seed: int, epochs: int, work: Path) -> dict[str, Any]:
    """Every criterion at one ratio from the same dense model (one seed)."""
    from edgekit.compress import ChannelPrune
    from edgekit.compress.importance import CRITERIA
    from edgekit.core.model_io import load_model

    dense = load_model(dense_model(data, seed, epochs, work))
    folder = work / f"seed{seed}" / "criteria"
    folder.mkdir(parents=True, exist_ok=True)
    rows: dict[str, dict[str, Any]] = {}
    for name in CRITERIA.names():
        t0 = time.perf_counter()
        stage = ChannelPrune.from_config({"ratio": CRITERIA_RATIO, "importance": name,
                                          "scope": "global", "epochs": CRITERIA_FINE,
                                          "learning_rate": 1e-3, "augment_shift": 0,
                                          "seed": seed})
        cut, details = stage.cut(dense, data)
        before = keras_accuracy(cut, data)
        stage.fine_tune(cut, data, f"{name} fine-tune", teacher=dense)
        rows[name] = {"cut_accuracy": before, "float_accuracy": keras_accuracy(cut, data),
                      "channels": details["channels"], "batches": details["batches"],
                      **to_int8(cut, data, seed, folder / f"{name}.tflite"),
                      "seconds": round(time.perf_counter() - t0, 1)}
        print(f"seed {seed} {name}: {rows[name]}", file=sys.stderr)
    for name, p50 in time_models({k: v["path"] for k, v in rows.items()}).items():
        rows[name]["p50_ms"] = p50
    return rows


# -- rendering ------------------------------------------------------------------------------


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.2f} %"


def _mean_sd(values: list[float], scale: float = 100.0, unit: str = " %", digits: int = 2
             ) -> str:
    if not values:
        return "—"
    m = statistics.mean(values) * scale
    sd = statistics.stdev(values) * scale if len(values) > 1 else 0.0
    return f"{m:.{digits}f} ± {sd:.{digits}f}{unit}"


def render_speed(results: dict[int, dict[str, Any]], args: Any, command: str) -> str:
    from sections import goal_figure, machine_line

    lines = ["## Channel pruning on keyword spotting: speed at equal accuracy (issue 11)", "",
             f"Command: `{command}` ({time.strftime('%Y-%m-%d')}; {machine_line()}).", "",
             f"DS-CNN on `data: kws` (held-out speakers). Dense: {args.epochs} epochs. Pruned: "
             f"ChannelPrune (importance `{args.importance}`, layer scope) + {FINE} fine-tune "
             f"epochs + {QAT_EPOCHS} QAT epochs. Width: DS-CNN built with that many channels, "
             f"{args.epochs + FINE} epochs from scratch + the same QAT. All full int8. p50: "
             f"host, 1 thread, XNNPACK, {ROUNDS} round-robin rounds (median). Instructions: "
             "guest instructions per inference on emulated Cortex-A72 (qemu-aarch64; "
             "instructions, not time). Rows `distilled`: the fine-tune is distilled from the "
             f"dense model (temperature {DISTILL['temperature']:g}, alpha "
             f"{DISTILL['alpha']:g}). A model whose figures an earlier run of this command left "
             "in `--work` (same seed) is not trained again; every model is timed and counted "
             "again in this run.", ""]
    goals = []
    for seed, rows in results.items():
        dense = rows["dense"]
        lines += [f"Seed {seed}:", "",
                  "| model | channels | float | int8 | int8 vs dense float | MACs | MACs "
                  "ratio | p50 (ms) | speed-up | A72 instructions | ratio |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for name, r in rows.items():
            drop = 100 * (dense["float_accuracy"] - r["int8_accuracy"])
            ins = r.get("instructions")
            ins_ratio = (f"{dense['instructions'] / ins:.2f}x" if ins and
                         dense.get("instructions") else "—")
            lines.append(
                f"| {name} | {r.get('channels', 64)} | {_pct(r['float_accuracy'])} | "
                f"{_pct(r['int8_accuracy'])} | {-drop:+.2f} points | {r['macs']:,} | "
                f"{dense['macs'] / r['macs']:.2f}x | {r['p50_ms']:.4f} | "
                f"{dense['p50_ms'] / r['p50_ms']:.2f}x | "
                f"{'—' if ins is None else f'{ins:,}'} | {ins_ratio} |")
        lines.append("")
        for name, r in rows.items():
            if not name.startswith("pruned"):
                continue
            width = next(v for k, v in rows.items() if k.startswith("width")
                         and v["channels"] == r["channels"])
            drop = 100 * (dense["float_accuracy"] - r["int8_accuracy"])
            macs = dense["macs"] / r["macs"]
            speed = dense["p50_ms"] / r["p50_ms"]
            ins = (dense["instructions"] / r["instructions"]
                   if r.get("instructions") and dense.get("instructions") else None)
            met = drop <= 1.0 and macs >= 2.0 and speed >= 1.8 and ins is not None and ins >= 1.8
            gain = 100 * (r["int8_accuracy"] - width["int8_accuracy"])
            goals.append(
                f"- seed {seed}, {name}: int8 drop {goal_figure(drop, 1.0)} points "
                f"(goal <= 1.0), MACs "
                f"{macs:.2f}x (>= 2.0), p50 {speed:.2f}x (>= 1.8), A72 instructions "
                f"{'n/a' if ins is None else f'{ins:.2f}x'} (>= 1.8): "
                f"**{'met' if met else 'missed'}**; against the width model of the same MACs: "
                f"{goal_figure(gain, 0.5, '+')} points (goal >= +0.5): "
                f"**{'met' if gain >= 0.5 else 'missed'}**")
    lines += ["Against the issue's goals (computed from the table):", "", *goals]
    return "\n".join(lines)


def render_criteria(results: dict[int, dict[str, Any]], epochs: int, command: str) -> str:
    from sections import machine_line

    seeds = sorted(results)
    names = list(results[seeds[0]])
    lines = ["## Channel pruning: importance criteria ablation (issue 11)", "",
             f"Command: `{command}` ({time.strftime('%Y-%m-%d')}; {machine_line()}).", "",
             f"DS-CNN on `data: kws`, every criterion at ratio {CRITERIA_RATIO} (global scope, "
             f"max_layer_ratio 0.8), the same {CRITERIA_FINE}-epoch fine-tune, from the same "
             f"dense model per seed ({epochs} epochs); seeds {seeds}; mean ± std over the "
             "seeds. int8: post-training full int8 of the fine-tuned model. p50: host, 1 thread, "
             "round-robin per seed.", "",
             "| criterion | right after the cut | fine-tuned (float) | int8 | MACs | p50 (ms) |",
             "|---|---|---|---|---|---|"]
    means = {}
    for name in names:
        rows = [results[s][name] for s in seeds]
        means[name] = statistics.mean(r["int8_accuracy"] for r in rows)
        lines.append(
            f"| {name} | {_mean_sd([r['cut_accuracy'] for r in rows])} | "
            f"{_mean_sd([r['float_accuracy'] for r in rows])} | "
            f"{_mean_sd([r['int8_accuracy'] for r in rows])} | "
            f"{statistics.mean(r['macs'] for r in rows):,.0f} | "
            f"{_mean_sd([r['p50_ms'] for r in rows], 1.0, '', 4)} |")
    ranked = sorted(names, key=lambda n: -means[n])
    spread = [statistics.stdev([results[s][n]["int8_accuracy"] for s in seeds]) * 100
              for n in names] if len(seeds) > 1 else []
    lines += ["", f"Ranked by mean int8 accuracy: {', '.join(ranked)}. Best minus worst: "
              f"{100 * (means[ranked[0]] - means[ranked[-1]]):.2f} points"
              + (f"; the median seed-to-seed std is {statistics.median(spread):.2f} points."
                 if spread else ".")]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    global FINE, QAT_EPOCHS, CRITERIA_FINE, ROUNDS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="BENCHMARKS.md to write the sections into")
    parser.add_argument("--part", choices=("speed", "criteria", "all"), default="all")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--criteria-seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--criteria-epochs", type=int, default=10,
                        help="epochs of the dense model the criteria cut (per seed)")
    parser.add_argument("--criteria-fine", type=int, default=3,
                        help="fine-tune epochs after each criterion's cut")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--fine", type=int, default=FINE,
                        help="fine-tune epochs after the cut (the width model gets as many more)")
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.3, 0.5])
    parser.add_argument("--importance", default="l1")
    parser.add_argument("--distill", choices=("no", "yes", "both"), default="no",
                        help="fine-tune the pruned model distilled from the dense one")
    parser.add_argument("--work", default=None, help="folder for models (reused across runs)")
    parser.add_argument("--quick", action="store_true",
                        help="one-epoch fine-tunes and two timing rounds (a smoke run)")
    args = parser.parse_args(argv)
    FINE = args.fine
    if args.quick:
        FINE, QAT_EPOCHS, ROUNDS = 1, 1, 2
        args.criteria_fine = 1
    with tempfile.TemporaryDirectory(prefix="channel-bench-") as tmp:
        work = Path(args.work or tmp)
        data = load_task()
        if args.part in ("speed", "all"):
            prepare_qemu()  # before any training: a missing emulator fails now, not in an hour
            t0 = time.perf_counter()
            distills = {"no": (False,), "yes": (True,), "both": (False, True)}[args.distill]
            results = {s: run_speed(data, s, args.epochs, args.ratios, args.importance, work,
                                    distills) for s in args.seeds}
            command = (f"python bench/channel_prune.py --out BENCHMARKS.md --part speed --seeds "
                       f"{' '.join(map(str, args.seeds))} --epochs {args.epochs} --fine {FINE} "
                       f"--ratios "
                       f"{' '.join(f'{r:g}' for r in args.ratios)} --importance "
                       f"{args.importance} --distill {args.distill} --work WORK")
            md = render_speed(results, args, command)
            md += f"\n\nWhole part: {(time.perf_counter() - t0) / 60:.0f} min."
            print(md)
            print(json.dumps(results, indent=1, default=str), file=sys.stderr)
            if args.out:
                from sections import write_section

                write_section(args.out, "channel-prune-speed", md)
        if args.part in ("criteria", "all"):
            t0 = time.perf_counter()
            CRITERIA_FINE = args.criteria_fine
            results = {s: run_criteria(data, s, args.criteria_epochs, work)
                       for s in args.criteria_seeds}
            command = (f"python bench/channel_prune.py --out BENCHMARKS.md --part criteria "
                       f"--criteria-seeds {' '.join(map(str, args.criteria_seeds))} "
                       f"--criteria-epochs {args.criteria_epochs} --criteria-fine "
                       f"{args.criteria_fine}")
            md = render_criteria(results, args.criteria_epochs, command)
            md += f"\n\nWhole part: {(time.perf_counter() - t0) / 60:.0f} min."
            print(md)
            print(json.dumps(results, indent=1, default=str), file=sys.stderr)
            if args.out:
                from sections import write_section

                write_section(args.out, "channel-prune-criteria", md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
