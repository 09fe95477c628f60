"""Distillation on digits: a small student trained from scratch vs distilled, same epochs.

Writes the "distillation" section of BENCHMARKS.md::

    python bench/distill_digits.py --out BENCHMARKS.md --jobs 2

1. Teacher: the demo CNN (about 90 k parameters) trained on all 1437 training digits, as
   ``edgekit demo`` trains it.
2. Student: the same architecture at about 3 k parameters (``demo_cnn`` with filters 4/8/8 and
   a 16-unit hidden layer). Each row draws, per seed, a stratified subset of the training
   digits (10, 20 or 50 labels per class, or all of them) and trains the student on it twice
   from the same initial weights, with the same batches and shifts: once on the labels
   (cross-entropy), once distilled (edgekit's defaults T = 4, alpha = 0.9:
   ``L = a KL(p_T||q_T) T^2 + (1-a) CE``). Subset rows train for about 1200 optimizer steps.
   Control rows give the distilled student a teacher trained only on that same subset;
   unlabeled rows also give it the other training digits without their labels (what
   ``Distill``'s ``unlabeled`` feeds ``fit_distilled``), for about as many steps.
3. Low-rank: the teacher's 1024x64 hidden Dense factorized by SVD at a few energy shares,
   accuracy right after the factorization and after a short fine-tune.

Every accuracy is on the 360 held-out digits, which no step trains on. ``--split validation``
runs the same rows with a teacher and students trained on 80 % of the training digits and
scored on the other 20 % (how the rows were chosen); it prints the table and writes nothing
unless ``--out`` is given.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
STUDENT = {"filters": (4, 8, 8), "dense_units": 16}
TEMPERATURE, ALPHA = 4.0, 0.9
LR = 2e-3
STEPS = 1200  # optimizer steps per subset row (batch 32)


@dataclass(frozen=True)
class Row:
    """One student setting: which labels it sees, how long it trains, which teacher guides it.

    Attributes:
        label: The row's name in the table.
        per_class: Training labels per class (0: every training sample).
        epochs: Epochs for both students.
        options: Student builder options (``demo_cnn``'s).
        own_teacher: The teacher is trained on the student's subset only (control).
        unlabeled: The distilled student also gets the other training samples without their
            labels (``Distill.unlabeled``), for about as many steps as the scratch one.
    """

    label: str
    per_class: int
    epochs: int
    options: dict[str, Any] = field(default_factory=lambda: dict(STUDENT))
    own_teacher: bool = False
    unlabeled: bool = False


def subset_epochs(per_class: int, classes: int = 10, batch: int = 32) -> int:
    """Epochs that give a subset of ``per_class`` labels per class about :data:`STEPS` steps."""
    return max(1, round(STEPS / max(1, (per_class * classes) // batch)))


def rows(args: argparse.Namespace) -> list[Row]:
    """Every row of the table, in order."""
    out = [Row(f"{k} labels per class", k, subset_epochs(k)) for k in args.per_class]
    out += [
        Row("all labels, dropout 0.3 (registry default)", 0, args.epochs),
        Row("all labels, no dropout", 0, args.epochs, {**STUDENT, "dropout": 0.0}),
        Row("all labels, dropout 0.3, short budget", 0, args.short_epochs),
    ]
    out += [Row(f"{k} labels per class, teacher trained on them only", k, subset_epochs(k),
                own_teacher=True) for k in args.control_per_class]
    out += [Row(f"{k} labels per class + the other training digits unlabeled", k,
                subset_epochs(k), unlabeled=True) for k in args.unlabeled_per_class]
    return out


def splits(split: str) -> Any:
    """The digits :class:`~edgekit.data.Dataset` to train and score on.

    Args:
        split: ``"held-out"`` (edgekit's split) or ``"validation"`` (the training digits split
            again, 80 / 20, seed 1; its ``x_test`` is the validation part).

    Returns:
        The Dataset.
    """
    import dataclasses

    from sklearn.model_selection import train_test_split

    from edgekit.data import load_digits

    data = load_digits(32)
    if split == "held-out":
        return data
    fit_idx, val_idx = train_test_split(np.arange(len(data.y_train)), test_size=0.2,
                                        random_state=1, stratify=data.y_train)
    return dataclasses.replace(
        data, x_train=data.x_train[fit_idx], y_train=data.y_train[fit_idx],
        x_test=data.x_train[val_idx], y_test=data.y_train[val_idx],
        train_indices=data.train_indices[fit_idx], heldout_indices=data.train_indices[val_idx])


def draw(y: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Indices of a stratified subset: ``per_class`` samples of each class, drawn by ``seed``."""
    if per_class == 0:
        return np.arange(len(y))
    rng = np.random.default_rng(1000 + seed)
    return np.sort(np.concatenate([rng.choice(np.flatnonzero(y == c), per_class, replace=False)
                                   for c in np.unique(y)]))


def build(seed: int, **options: Any) -> Any:
    """A fresh ``demo_cnn`` for 32x32 digits with seeded initial weights."""
    from edgekit.core._keras import keras
    from edgekit.models import build_model

    keras.utils.set_random_seed(seed)
    return build_model("demo_cnn", input_shape=(32, 32, 1), num_classes=10, **options)


_WORKER: dict[str, Any] = {}


def _init_worker(split: str, teacher_path: str, threads: int) -> None:
    """Per process: TensorFlow threads, the arrays and the shared teacher."""
    from edgekit.core._keras import tf

    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    _WORKER["data"] = splits(split)
    teacher = build(0)
    teacher.load_weights(teacher_path)
    _WORKER["teacher"] = teacher


def student_pair(row: Row, seed: int) -> dict[str, Any]:
    """Scratch and distilled student of ``row`` for one seed (runs in a worker).

    Args:
        row: The setting.
        seed: Seed of the subset, the initial weights, the batches and the shifts.

    Returns:
        Accuracies of both students (and of the subset teacher for a control row).
    """
    from edgekit.compress.distillation import fit_distilled
    from edgekit.compress.training import accuracy, fit

    d, teacher = _WORKER["data"], _WORKER["teacher"]
    idx = draw(d.y_train, row.per_class, seed)
    x, y = d.x_train[idx], d.y_train[idx]
    t0 = time.perf_counter()
    out: dict[str, Any] = {"seed": seed, "samples": len(idx)}
    if row.own_teacher:
        teacher = build(seed)
        fit(teacher, x, y, epochs=row.epochs, learning_rate=LR, seed=seed, desc="teacher")
        out["teacher"] = accuracy(teacher, d.x_test, d.y_test)
    scratch = build(seed, **row.options)
    fit(scratch, x, y, epochs=row.epochs, learning_rate=LR, seed=seed, desc=f"scratch {seed}")
    distilled = build(seed, **row.options)
    extra: dict[str, Any] = {}
    if row.unlabeled:  # same steps over labelled + unlabelled samples
        rest = np.setdiff1d(np.arange(len(d.y_train)), idx)
        extra = {"x_unlabeled": d.x_train[rest],
                 "epochs": max(1, round(STEPS / (len(d.y_train) // 32)))}
        out["distill_epochs"] = extra["epochs"]
    fit_distilled(distilled, teacher, x, y, temperature=TEMPERATURE, alpha=ALPHA,
                  **{"epochs": row.epochs, **extra}, learning_rate=LR, seed=seed,
                  desc=f"distilled {seed}")
    out.update(params=int(scratch.count_params()),
               scratch=accuracy(scratch, d.x_test, d.y_test),
               distilled=accuracy(distilled, d.x_test, d.y_test),
               seconds=time.perf_counter() - t0)
    print(f"{row.label}, seed {seed}: {out}", file=sys.stderr, flush=True)
    return out


def _pair_task(task: tuple[Row, int]) -> dict[str, Any]:
    return student_pair(*task)


def lowrank_rows(teacher: Any, data: Any, energies: list[float], epochs: int
                 ) -> list[dict[str, Any]]:
    """LowRank on the teacher's hidden Dense at each energy share."""
    from edgekit.compress import LowRank
    from edgekit.compress.base import copy_model
    from edgekit.compress.lowrank import factorize
    from edgekit.compress.training import accuracy

    out = []
    for energy in energies:
        result = LowRank(energy=energy, epochs=epochs, learning_rate=5e-4).apply(
            copy_model(teacher), data)
        d = result.details
        fc = d["layers"]["fc1"]
        plain, _ = factorize(teacher, energy=energy, min_params=LowRank().min_params)
        out.append({
            "energy": energy, "rank": fc["rank"], "max_rank": fc["max_rank"],
            "kept": fc["energy_kept"], "fc_before": fc["params_before"],
            "fc_after": fc["params_after"], "params_before": d["params_before"],
            "params_after": d["params_after"],
            "acc_tuned": accuracy(result.model, data.x_test, data.y_test),
            "acc_factorized": accuracy(plain, data.x_test, data.y_test),
        })
        print(f"lowrank {energy}: {out[-1]}", file=sys.stderr)
    return out


def pct(x: float) -> str:
    return f"{100 * x:.2f} %"


def gain_stats(results: list[dict[str, Any]]) -> tuple[float, float, float, int]:
    """Mean paired gain (points), its 95 % t-interval, and the seeds the distilled one wins."""
    from scipy import stats

    gains = [100 * (r["distilled"] - r["scratch"]) for r in results]
    mean = statistics.mean(gains)
    if len(gains) < 2:
        return mean, float("nan"), float("nan"), sum(g > 0 for g in gains)
    half = stats.t.ppf(0.975, len(gains) - 1) * statistics.stdev(gains) / len(gains) ** 0.5
    return mean, mean - half, mean + half, sum(g > 0 for g in gains)


def command(args: argparse.Namespace) -> str:
    """The command line that reproduces the section."""
    parts = ["python bench/distill_digits.py"]
    parts += [f"--out {Path(args.out).name}"] if args.out else []
    parts += [f"--split {args.split}", f"--epochs {args.epochs}",
             f"--short-epochs {args.short_epochs}", f"--teacher-epochs {args.teacher_epochs}",
             "--seeds " + " ".join(map(str, args.seeds)),
             "--per-class " + " ".join(map(str, args.per_class)),
             "--control-per-class " + " ".join(map(str, args.control_per_class)),
             "--unlabeled-per-class " + " ".join(map(str, args.unlabeled_per_class)),
             "--energies " + " ".join(f"{e:g}" for e in args.energies),
             f"--lowrank-epochs {args.lowrank_epochs}", f"--jobs {args.jobs}"]
    return " ".join(parts)


def render(args: argparse.Namespace, data: Any, teacher_info: dict[str, Any],
           runs: list[tuple[Row, list[dict[str, Any]]]], lr_rows: list[dict[str, Any]],
           wall: float) -> str:
    """The Markdown section."""
    from bench.sections import machine_line
    from edgekit.core._keras import tf

    sd = statistics.stdev if len(args.seeds) > 1 else (lambda _: 0.0)
    params = runs[0][1][0]["params"]
    scored = "held-out" if args.split == "held-out" else "validation"
    lines = [
        "## Distillation and low-rank factorization on digits (issue 3)",
        "",
        f"Made by `{command(args)}` on {dt.date.today().isoformat()}: {machine_line()}, "
        f"TensorFlow {tf.__version__} (tf_keras). Whole script: {wall:.0f} s.",
        "",
        f"Data: scikit-learn's digits at 32x32x1 (edgekit's `digits`): {len(data.y_train)} "
        f"training / {len(data.y_test)} {scored} samples (one sample = "
        f"{100 / len(data.y_test):.2f} points); every accuracy below is on the {scored} "
        "samples, which no step trains on. Training everywhere: Adam with a cosine-decayed rate, "
        "batch 32, random shifts of up to 2 px.",
        "",
        f"Teacher: `demo_cnn` ({teacher_info['params']} parameters), all {len(data.y_train)} "
        f"training samples, {args.teacher_epochs} epochs at {LR:g}, seed 0: {scored} accuracy "
        f"{pct(teacher_info['accuracy'])}.",
        "",
        f"Student: `demo_cnn` with filters 4/8/8 and a 16-unit hidden layer ({params} "
        f"parameters, {teacher_info['params'] / params:.0f}x smaller), at {LR:g}. Per seed a row "
        "draws its training subset (stratified: N labels of each class, or all), and both "
        "students start from the same initial weights and see the same batches and shifts; only "
        "the loss differs: cross-entropy on the labels (scratch) or `Distill`'s loss with "
        f"T = {TEMPERATURE:g}, alpha = {ALPHA:g} (distilled; edgekit's defaults, not tuned). "
        f"Subset rows train for about {STEPS} steps. In the control rows the teacher is a "
        "`demo_cnn` trained per seed on the student's subset only, so the student gets no "
        "label the scratch one lacks. In the unlabeled rows the distilled student also gets "
        "the other training digits without their labels (what `Distill`'s `unlabeled` does: "
        "the teacher's outputs are their only target), for about as many steps.",
        "",
        "| student setting | samples | epochs | teacher accuracy | scratch (mean +- sd) | "
        "distilled (mean +- sd) | gain (points) [95 % CI] | distilled ahead | "
        "per seed: scratch / distilled |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    clear = []
    for row, results in runs:
        scratch = [r["scratch"] for r in results]
        distilled = [r["distilled"] for r in results]
        mean, low, high, wins = gain_stats(results)
        if low > 0:
            clear.append(row.label)
        teacher = (statistics.mean(r["teacher"] for r in results) if row.own_teacher
                   else teacher_info["accuracy"])
        per_seed = ", ".join(f"{100 * r['scratch']:.1f} / {100 * r['distilled']:.1f}"
                             for r in results)
        epochs = (f"{row.epochs} (distilled: {results[0]['distill_epochs']})"
                  if row.unlabeled else str(row.epochs))
        lines.append(
            f"| {row.label} | {results[0]['samples']} | {epochs} | {pct(teacher)} | "
            f"{pct(statistics.mean(scratch))} +- {100 * sd(scratch):.2f} | "
            f"{pct(statistics.mean(distilled))} +- {100 * sd(distilled):.2f} | "
            f"{mean:+.2f} [{low:+.2f}, {high:+.2f}] | {wins} of {len(results)} | {per_seed} |")
    lines += [
        "",
        f"Seeds {', '.join(map(str, args.seeds))}; sd is over seeds; the gain is distilled minus "
        "scratch per seed, with a Student-t 95 % interval over seeds. Rows whose interval lies "
        f"above zero: {', '.join(clear) if clear else 'none'}. "
        + ("The rows (subset sizes, step budget, the full-data variants) were chosen with "
           "`--split validation`, never on the held-out samples." if args.split == "held-out"
           else "This is the run the rows were chosen with."),
    ]
    if lr_rows:
        lines += [
            "",
            "### Low-rank factorization of the teacher's hidden Dense (`LowRank`)",
            "",
            "The teacher's `fc1` (1024 x 64 kernel) replaced by `Dense(r, linear, no bias) -> "
            "Dense(64)` from its truncated SVD; `energy` picks the smallest rank keeping that "
            f"share of the squared singular values. Fine-tune: {args.lowrank_epochs} epochs at "
            "5e-4 (same shifts). Size: parameters, and their float32 bytes.",
            "",
            "| energy | rank / 64 | energy kept | fc1 params | model params | float32 KiB | "
            "accuracy: factorized / fine-tuned |",
            "|---:|---:|---:|---:|---:|---:|---:|",
            f"| (teacher) | 64 | 1.000 | {lr_rows[0]['fc_before']} | "
            f"{lr_rows[0]['params_before']} | {lr_rows[0]['params_before'] / 256:.1f} | "
            f"{pct(teacher_info['accuracy'])} |",
        ]
        for r in lr_rows:
            lines.append(f"| {r['energy']:g} | {r['rank']} | {r['kept']:.3f} | {r['fc_after']} | "
                         f"{r['params_after']} | {r['params_after'] / 256:.1f} | "
                         f"{pct(r['acc_factorized'])} / {pct(r['acc_tuned'])} |")
    return "\n".join(lines) + "\n"


def run_rows(args: argparse.Namespace, teacher_path: str) -> list[tuple[Row, list[dict[str, Any]]]]:
    """Every (row, seed) pair, in ``args.jobs`` processes; results grouped by row."""
    import multiprocessing

    table = rows(args)
    tasks = [(row, seed) for row in table for seed in args.seeds]
    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_init_worker,
                                 initargs=(args.split, teacher_path, 1)) as pool:
            results = list(pool.map(_pair_task, tasks))
    else:
        _init_worker(args.split, teacher_path, 0)
        results = [_pair_task(t) for t in tasks]
    n = len(args.seeds)
    return [(row, results[i * n:(i + 1) * n]) for i, row in enumerate(table)]


def main(argv: list[str] | None = None) -> int:
    """Runs the benchmark and writes its section."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None,
                        help="Markdown file to write (default: BENCHMARKS.md for the held-out "
                             "split, nothing for the validation split)")
    parser.add_argument("--split", choices=("held-out", "validation"), default="held-out")
    parser.add_argument("--epochs", type=int, default=30, help="epochs of the all-labels rows")
    parser.add_argument("--short-epochs", type=int, default=10, help="short-budget epochs")
    parser.add_argument("--teacher-epochs", type=int, default=30)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    parser.add_argument("--per-class", type=int, nargs="*", default=[10, 20, 50],
                        help="labels per class of the subset rows")
    parser.add_argument("--control-per-class", type=int, nargs="*", default=[10, 20],
                        help="subset rows repeated with a teacher trained on the subset only")
    parser.add_argument("--unlabeled-per-class", type=int, nargs="*", default=[10],
                        help="subset rows repeated with the other training digits unlabeled")
    parser.add_argument("--energies", type=float, nargs="*", default=[0.95, 0.9, 0.75])
    parser.add_argument("--lowrank-epochs", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=max(1, min(4, os.cpu_count() or 1)),
                        help="worker processes, one TensorFlow thread each when > 1 (default: "
                             "the cores, at most 4)")
    args = parser.parse_args(argv)
    if args.out is None and args.split == "held-out":
        args.out = str(REPO / "BENCHMARKS.md")
    sys.path.insert(0, str(REPO))
    from bench.sections import write_section
    from edgekit.compress.training import accuracy, fit

    t0 = time.perf_counter()
    data = splits(args.split)
    teacher = build(0)
    fit(teacher, data.x_train, data.y_train, epochs=args.teacher_epochs, learning_rate=LR,
        seed=0, desc="teacher")
    info = {"params": int(teacher.count_params()),
            "accuracy": accuracy(teacher, data.x_test, data.y_test)}
    print(f"teacher: {info}", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="distill-digits-") as tmp:
        teacher_path = os.path.join(tmp, "teacher.h5")
        teacher.save_weights(teacher_path)
        runs = run_rows(args, teacher_path)
    lr_rows = lowrank_rows(teacher, data, args.energies, args.lowrank_epochs)
    text = render(args, data, info, runs, lr_rows, time.perf_counter() - t0)
    if args.out:
        write_section(args.out, "distillation", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
