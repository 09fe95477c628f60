"""Writes the "channel-rounding" section of BENCHMARKS.md: the channel multiple pruning keeps.

``python bench/channel_rounding.py --out BENCHMARKS.md [--quick] [--work DIR]`` (about 17 minutes
on 2 cores; ``--quick`` about 1.5). Models and ``results.json`` (every raw figure) go to ``--work``,
by default ``/tmp/edgekit-channel-rounding``.

The question: a channel-pruning stage leaves C output channels; is it worth rounding C up to a
multiple of 4, 8 or 16 (``round_to``)? If the int8 kernels work in tiles of m channels, a count
just above a multiple costs as much as the next multiple, and rounding up keeps channels (accuracy)
for free. One layer at a time, swept over C:

- ``pointwise``: 1x1 Conv2D as in DS-CNN keyword spotting, input 25x5x64, C output channels;
- ``conv3x3``: 3x3 Conv2D 'same' at 16x16 with C input and C output channels (both sides pruned,
  as between two pruned layers);
- ``depthwise``: 3x3 DepthwiseConv2D 'same' at 25x5 with C channels.

Each is a tiny tf_keras model (Input -> layer with fused ReLU; random weights, seed 0) converted to
full int8 with int8 I/O (per-channel), calibrated on 16 seeded random inputs in [-1, 1]: the
figures are timing and instruction work only, the outputs mean nothing.

Two measures per model:

1. Host latency: this machine's XNNPACK, one thread, through the local target (a fresh
   ``python -m device_bench`` process per measurement, ``TIMING`` below: each about 0.2 s of
   timed ``invoke()`` calls after warm-up). All models of all cases are measured round-robin, in a
   seeded shuffled order per round, for ``ROUNDS`` rounds; the figure is the median over rounds of
   each measurement's p50, because the machine is shared and noisy.
2. Guest instructions per inference on an emulated Cortex-A72 (``qemu-aarch64``, XNNPACK on, one
   thread, ``COUNT`` below, the markers' cost subtracted; the Python call into ``invoke()`` is
   included). Deterministic, so one count per model; a narrower sweep (``QEMU_COUNTS``), since each
   count takes a few seconds of emulation. Instructions, not time.

Derived, per case, target and m in {4, 8, 16}: for every count C that is not a multiple of m (and
whose round-up R is measured), the change ``cost(R) / cost(C) - 1``; "faster" / "slower" when it
passes the tolerance (host: the measured round-to-round noise, at least ``MIN_HOST_TOL``; A72:
``QEMU_TOL``), else "same". The recommended ``round_to`` is the largest m in {1, 4, 8, 16} for
which rounding up to a multiple of m is never slower than the unrounded count by more than the
tolerance, in every case, on both targets (m = 1, no rounding, always qualifies). The section
also lists what blocks each m, and the rule's answer for other A72 tolerances and for each target
alone, so that the rule itself can be judged.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

SEED = 0
CALIBRATION_SAMPLES = 16
CPU = "cortex-a72"
MULTIPLES = (4, 8, 16)
ROUNDS = 6
COUNT = {"count_runs": 10, "count_segments": 3, "count_warmup": 20}
TIMING = {"threads": 1, "warmup": 100, "warmup_seconds": 0.1, "runs": 300, "min_seconds": 0.2,
          "windows": 3}
MIN_HOST_TOL = 0.02
QEMU_TOL = 0.005
SENSITIVITY_TOLS = (0.005, 0.01, 0.02, 0.05)
_LABEL = {"host": "host XNNPACK", "qemu": "A72 instructions"}
HOST_COUNTS = list(range(8, 65))
# Every count in 17..40 (whole bands (16, 32] and (24, 40]), multiples of 8 elsewhere.
QEMU_COUNTS = sorted({*range(17, 41), 8, 16, 48, 56, 64})
QUICK = {"host": [8, 12, 15, 16, 17, 24], "qemu": [15, 16, 17, 24], "rounds": 2,
         "timing": {**TIMING, "min_seconds": 0.15, "warmup_seconds": 0.05}}
CASES = {
    "pointwise": "1x1 Conv2D, input 25x5x64, C output channels",
    "conv3x3": "3x3 Conv2D 'same', 16x16, C in and C out",
    "depthwise": "3x3 DepthwiseConv2D 'same', 25x5, C channels",
}


def input_shape(case: str, channels: int) -> tuple[int, int, int]:
    """The model input (without batch) of ``case`` at ``channels``."""
    return {"pointwise": (25, 5, 64), "conv3x3": (16, 16, channels),
            "depthwise": (25, 5, channels)}[case]


def build_model(case: str, channels: int, path: Path) -> dict[str, Any]:
    """Builds one single-layer model, converts it to full int8 and writes ``path``.

    Args:
        case: A key of ``CASES``.
        channels: The swept channel count C.
        path: Where the ``.tflite`` goes.

    Returns:
        ``{"case", "channels", "path", "bytes", "xnnpack_ops"}``; ``xnnpack_ops`` is what the
        host interpreter's node list shows: the builtin ops and whether a DELEGATE node (XNNPACK)
        took them.
    """
    from edgekit.converters.modes import ConversionConfig, convert_keras
    from edgekit.core._keras import keras

    keras.utils.set_random_seed(SEED)
    shape = input_shape(case, channels)
    inp = keras.Input(shape)
    if case == "pointwise":
        layer = keras.layers.Conv2D(channels, 1, activation="relu")
    elif case == "conv3x3":
        layer = keras.layers.Conv2D(channels, 3, padding="same", activation="relu")
    else:
        layer = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu")
    model = keras.Model(inp, layer(inp))
    rng = np.random.default_rng(SEED)
    calib = rng.uniform(-1.0, 1.0, size=(CALIBRATION_SAMPLES, *shape)).astype(np.float32)
    path.write_bytes(convert_keras(model, ConversionConfig(mode="int8", io="int8"), calib))
    return {"case": case, "channels": channels, "path": str(path), "bytes": path.stat().st_size,
            "xnnpack_ops": delegated_ops(path)}


def delegated_ops(path: Path) -> dict[str, Any]:
    """The ops of a model as the host interpreter (XNNPACK on, one thread) lists them.

    Args:
        path: The ``.tflite`` file.

    Returns:
        ``{"ops": [...], "delegated": bool}``: ``delegated`` is true when the node list has a
        DELEGATE node, i.e. XNNPACK took the model's op (a single-op model has no partial case).
    """
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path), num_threads=1)
    interp.allocate_tensors()
    names = [op["op_name"] for op in interp._get_ops_details()]
    return {"ops": [n for n in names if n != "DELEGATE"], "delegated": "DELEGATE" in names}


def build_all(work: Path, counts: list[int]) -> list[dict[str, Any]]:
    """Builds every case at every count of ``counts``.

    Args:
        work: Output folder (the models go in ``work/models``).
        counts: Channel counts.

    Returns:
        The :func:`build_model` records, case by case.
    """
    folder = work / "models"
    folder.mkdir(parents=True, exist_ok=True)
    models = []
    t0 = time.perf_counter()
    for case in CASES:
        for c in counts:
            models.append(build_model(case, c, folder / f"{case}_c{c}.tflite"))
        print(f"built {case}: {len(counts)} models ({time.perf_counter() - t0:.0f} s)",
              file=sys.stderr)
    return models


def time_host(models: list[dict[str, Any]], rounds: int, timing: dict[str, Any]) -> None:
    """Times every model on the local target, round-robin, and stores ``host`` in each record.

    Args:
        models: From :func:`build_all`; each gains ``host``: ``{"p50_us", "rounds_p50_us",
            "rounds_cv", "rel_range"}`` (``rel_range``: (max - min) / median of the rounds).
        rounds: Rounds over all models (each in a seeded shuffled order).
        timing: ``BenchOptions`` fields.
    """
    from device_bench.errors import BenchInputError, TargetError
    from device_bench.runner import BenchOptions
    from device_bench.targets import LocalTarget

    options = BenchOptions(**timing)
    target = LocalTarget()
    samples: dict[int, list[float]] = {i: [] for i in range(len(models))}
    cvs: dict[int, list[float]] = {i: [] for i in range(len(models))}
    t0 = time.perf_counter()
    total, done = rounds * len(models), 0
    for r in range(rounds):
        order = list(range(len(models)))
        random.Random(SEED + r).shuffle(order)
        for i in order:
            try:
                res = target.bench(models[i]["path"], options)
            except (BenchInputError, TargetError) as e:
                print(f"host {models[i]['case']} C={models[i]['channels']}: {e}", file=sys.stderr)
            else:
                samples[i].append(res["latency_ms"]["p50"] * 1000.0)
                cvs[i].append(res["latency_ms"]["cv"])
            done += 1
            if done % 25 == 0 or done == total:
                el = time.perf_counter() - t0
                print(f"host timing {done}/{total} (round {r + 1}/{rounds}), {el:.0f} s, "
                      f"about {el / done * (total - done):.0f} s left", file=sys.stderr)
    for i, rec in enumerate(models):
        vals = samples[i]
        if not vals:
            rec["host"] = None
            continue
        med = statistics.median(vals)
        rec["host"] = {"p50_us": med, "rounds_p50_us": vals, "rounds_cv": cvs[i],
                       "rel_range": (max(vals) - min(vals)) / med}


def count_qemu(models: list[dict[str, Any]], counts: list[int],
               no_xnnpack_at: int | None) -> dict[str, Any]:
    """Counts A72 guest instructions per inference for the models at ``counts``.

    Args:
        models: From :func:`build_all`; those at ``counts`` gain ``qemu`` (the target's ``arm``
            block), the others ``qemu: None``.
        counts: The channel counts to emulate.
        no_xnnpack_at: A count at which each case is also counted without XNNPACK (to show the
            guest's XNNPACK is in use); None skips it.

    Returns:
        ``{"setup_s", "no_xnnpack": [...], "seconds"}``.
    """
    from device_bench.errors import BenchInputError, TargetError
    from device_bench.runner import BenchOptions
    from device_bench.targets import QemuTarget

    target = QemuTarget(cpu=CPU, **COUNT)
    t0 = time.perf_counter()
    target.prepare()
    setup_s = time.perf_counter() - t0
    todo = [m for m in models if m["channels"] in counts]
    for m in models:
        m["qemu"] = None
    t0 = time.perf_counter()
    for k, m in enumerate(todo, 1):
        try:
            m["qemu"] = target.check(m["path"], BenchOptions(threads=1))
        except (BenchInputError, TargetError) as e:
            print(f"qemu {m['case']} C={m['channels']}: {e}", file=sys.stderr)
        if k % 10 == 0 or k == len(todo):
            el = time.perf_counter() - t0
            print(f"qemu {CPU} {k}/{len(todo)}, {el:.0f} s, about "
                  f"{el / k * (len(todo) - k):.0f} s left", file=sys.stderr)
    off = []
    # The built-in kernels may round differently on ARM and x86: record it, do not stop on it.
    builtin = QemuTarget(cpu=CPU, require_identical=False, **COUNT)
    for m in todo if no_xnnpack_at is not None else []:
        if m["channels"] != no_xnnpack_at:
            continue
        try:
            arm = builtin.check(m["path"], BenchOptions(threads=1, xnnpack=False))
        except (BenchInputError, TargetError) as e:
            print(f"qemu {m['case']} C={m['channels']} without XNNPACK: {e}", file=sys.stderr)
            continue
        on = (m["qemu"] or {}).get("instructions_per_inference")
        off.append({"case": m["case"], "channels": m["channels"], "xnnpack": on,
                    "builtin": arm["instructions_per_inference"],
                    "builtin_outputs_match_host": arm["outputs_match_host"],
                    "builtin_max_abs_diff": arm["max_abs_diff"]})
    return {"setup_s": setup_s, "no_xnnpack": off, "seconds": time.perf_counter() - t0}


def costs(models: list[dict[str, Any]], case: str, target: str) -> dict[int, float]:
    """``{C: cost}`` of one case on ``host`` (p50 us) or ``qemu`` (instructions/inference)."""
    out = {}
    for m in models:
        if m["case"] != case or not m.get(target):
            continue
        value = m[target]["p50_us"] if target == "host" else \
            m[target]["instructions_per_inference"]
        if value:
            out[m["channels"]] = float(value)
    return out


def rounding_effects(cost: dict[int, float], m: int, tol: float) -> dict[int, dict[str, Any]]:
    """What rounding each count up to a multiple of ``m`` changes.

    Args:
        cost: ``{C: cost}`` from :func:`costs`.
        m: The multiple.
        tol: Relative changes within +-tol count as "same".

    Returns:
        ``{C: {"to", "change", "verdict"}}`` for each C that is not a multiple of m and whose
        round-up is in ``cost``; ``change`` is ``cost[to] / cost[C] - 1`` (negative: faster).
    """
    out = {}
    for c in sorted(cost):
        to = math.ceil(c / m) * m
        if to == c or to not in cost:
            continue
        change = cost[to] / cost[c] - 1.0
        verdict = "faster" if change < -tol else "slower" if change > tol else "same"
        out[c] = {"to": to, "change": change, "verdict": verdict}
    return out


def summarize(effects: dict[int, dict[str, Any]]) -> dict[str, Any] | None:
    """Worst and mean change over the counts of :func:`rounding_effects` (None when empty)."""
    if not effects:
        return None
    worst_c = max(effects, key=lambda c: effects[c]["change"])
    changes = [e["change"] for e in effects.values()]
    verdicts = [e["verdict"] for e in effects.values()]
    return {"n": len(effects), "worst": effects[worst_c]["change"], "worst_at": worst_c,
            "best": min(changes), "mean": statistics.fmean(changes),
            **{v: verdicts.count(v) for v in ("faster", "same", "slower")}}


def host_tolerance(models: list[dict[str, Any]]) -> float:
    """The host's "same within noise" band: the median round-to-round range, >= MIN_HOST_TOL."""
    ranges = [m["host"]["rel_range"] for m in models if m.get("host")]
    return max(MIN_HOST_TOL, statistics.median(ranges) if ranges else 0.0)


def recommend(summary: dict[str, Any], targets: tuple[str, ...] = ("host", "qemu")
              ) -> tuple[int, dict[int, bool], dict[int, list[str]]]:
    """Applies the rule to summaries from :func:`analyse`.

    Args:
        summary: ``[case][target][m]`` summaries.
        targets: The targets the rule looks at.

    Returns:
        (the largest m in {1, 4, 8, 16} that passes, ``{m: passes}``, ``{m: what blocks it}``).
    """
    passes, blocking = {}, {}
    for m in MULTIPLES:
        blocking[m] = []
        for case in CASES:
            for target in targets:
                s = summary[case][target][m]
                if s is None:
                    blocking[m].append(f"{case} {target}: not measured")
                elif s["slower"]:
                    blocking[m].append(f"{case} {_LABEL[target]}: {s['slower']} of {s['n']} "
                                       f"counts slower, worst {_pct(s['worst'])} at "
                                       f"C={s['worst_at']}")
        passes[m] = not blocking[m]
    return max([1, *[m for m in MULTIPLES if passes[m]]]), passes, blocking


def analyse(models: list[dict[str, Any]], host_tol: float | None = None,
            qemu_tol: float = QEMU_TOL) -> dict[str, Any]:
    """Tolerances, rounding effects, summaries and the recommended ``round_to``.

    Args:
        models: Measured records.
        host_tol: The host tolerance; None is :func:`host_tolerance`.
        qemu_tol: The emulated A72 tolerance.

    Returns:
        ``{"tolerance", "effects", "summary", "passes", "blocking", "round_to", "rule"}`` with
        effects and summaries keyed ``[case][target][m]``.
    """
    tol = {"host": host_tolerance(models) if host_tol is None else host_tol, "qemu": qemu_tol}
    effects: dict[str, Any] = {}
    summary: dict[str, Any] = {}
    for case in CASES:
        effects[case], summary[case] = {}, {}
        for target in ("host", "qemu"):
            cost = costs(models, case, target)
            effects[case][target] = {m: rounding_effects(cost, m, tol[target]) for m in MULTIPLES}
            summary[case][target] = {m: summarize(e) for m, e in effects[case][target].items()}
    round_to, passes, blocking = recommend(summary)
    rule = ("the largest m in {1, 4, 8, 16} for which rounding every measured count up to a "
            "multiple of m is never slower than the unrounded count by more than the tolerance "
            f"(host {tol['host'] * 100:.1f} %, emulated A72 {tol['qemu'] * 100:.1f} %), in all "
            "three cases on both targets; m = 1 (no rounding) always qualifies")
    return {"tolerance": tol, "effects": effects, "summary": summary, "passes": passes,
            "blocking": blocking, "round_to": round_to, "rule": rule}


def sensitivity(models: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rule's answer for other A72 tolerances and for each target alone.

    Args:
        models: Measured records.

    Returns:
        One row per A72 tolerance in ``SENSITIVITY_TOLS``: ``{"qemu_tol", "both", "qemu",
        "host"}`` (the host's tolerance stays the measured one).
    """
    rows = []
    for qtol in SENSITIVITY_TOLS:
        summary = analyse(models, qemu_tol=qtol)["summary"]
        rows.append({"qemu_tol": qtol, "both": recommend(summary)[0],
                     "qemu": recommend(summary, ("qemu",))[0],
                     "host": recommend(summary, ("host",))[0]})
    return rows


def _pct(x: float) -> str:
    return f"{x * 100:+.1f} %"


def _cell(effect: dict[str, Any] | None) -> str:
    if effect is None:
        return "·"
    mark = {"faster": "faster", "slower": "**slower**", "same": "="}[effect["verdict"]]
    return f"{_pct(effect['change'])} {mark}"


def _summary_text(s: dict[str, Any] | None) -> str:
    if s is None:
        return "not measured"
    saves = -s["mean"]
    avg = f"saves {saves * 100:.1f} %" if saves >= 0 else f"costs {-saves * 100:.1f} % more"
    worst = max(s["worst"], 0.0) * 100
    return (f"never slower by more than {worst:.1f} % (worst at C={s['worst_at']}), "
            f"{avg} on average over the {s['n']} counts that are not multiples "
            f"({s['faster']} faster, {s['same']} same, {s['slower']} slower)")


def _noisy(models: list[dict[str, Any]]) -> str:
    """``"k/n"``: host measurements whose window-median CV is above 5 %."""
    cvs = [cv for m in models if m.get("host") for cv in m["host"]["rounds_cv"]]
    return f"{sum(cv > 0.05 for cv in cvs)}/{len(cvs)}"


def render(data: dict[str, Any], command: str, seconds: float) -> str:
    """The section's Markdown.

    Args:
        data: ``{"models", "analysis", "qemu", "setup"}`` as :func:`main` collects them.
        command: The command line that produced it.
        seconds: The script's wall time.

    Returns:
        Markdown starting with a ``##`` heading.
    """
    from sections import machine_line

    models, an, setup = data["models"], data["analysis"], data["setup"]
    arm = next((m["qemu"] for m in models if m.get("qemu")), None) or {}
    tol = an["tolerance"]
    timing = setup["timing"]
    quick = " (--quick smoke run: a small sweep)" if setup["quick"] else ""
    delegated = sum(bool(m["xnnpack_ops"]["delegated"]) for m in models)
    lines = [
        f"## Channel-count rounding for pruning: one int8 layer swept over C{quick}",
        "",
        f"Made by `{command}` on {dt.date.today().isoformat()}: {machine_line()}; "
        f"ai_edge_litert {setup['litert']}, XNNPACK, one thread; qemu-aarch64 "
        f"{arm.get('qemu', '?')} `-cpu {CPU}` (`insn_count` plugin), guest sysroot "
        f"`{arm.get('sysroot', '?')}`. Load average at the start {setup['load_start']}, at the "
        f"end {setup['load_end']} (the machine is shared). Whole script: {seconds:.0f} s "
        f"(models {setup['build_s']:.0f} s, host timing {setup['host_s']:.0f} s, emulation "
        f"{data['qemu']['seconds']:.0f} s). Raw results: `{setup['results']}`.",
        "",
        "Cases (tf_keras, random weights seed 0, fused ReLU; full int8, int8 I/O, per-channel, "
        f"calibrated on {CALIBRATION_SAMPLES} seeded random inputs: **timing and instruction work "
        "only**, the outputs mean nothing): "
        + "; ".join(f"`{k}`: {v}" for k, v in CASES.items()) + ". "
        f"XNNPACK took the layer in {delegated} of {len(models)} models (host node list).",
        "",
        f"Host: p50 of one `invoke()` in a fresh `python -m device_bench` process (local target, "
        f"{timing['threads']} thread, >= {timing['warmup']} warm-up runs and "
        f"{timing['warmup_seconds']:g} s, then >= {timing['runs']} runs over >= "
        f"{timing['min_seconds']:g} s in {timing['windows']} windows); all "
        f"{len(models)} models round-robin in a shuffled order per round, {setup['rounds']} "
        f"rounds, median of the rounds ({_noisy(models)} measurements had a window-median CV "
        "above 5 %: the machine is shared). Emulated Cortex-A72: guest instructions per "
        "`invoke()` "
        f"(XNNPACK, one thread, {COUNT['count_warmup']} warm-up, median of "
        f"{COUNT['count_segments']} segments of {COUNT['count_runs']}, markers subtracted; the "
        "Python call into `invoke()` is included) — **instructions, emulated Cortex-A72, not "
        "time**. Change = cost(rounded up) / cost(C) - 1; within the tolerance it is \"=\" "
        f"(host {tol['host'] * 100:.1f} %: the median round-to-round range (max - min) / median, "
        f"at least {MIN_HOST_TOL * 100:.0f} %; A72 {tol['qemu'] * 100:.1f} %).",
        "",
        f"**Recommended default `round_to = {an['round_to']}`.** Rule: {an['rule']}.",
        "",
        "| case | round up to | host XNNPACK: worst / mean change, faster-same-slower "
        "| A72 instructions: worst / mean change, faster-same-slower | never slower |",
        "|---|---:|---|---|---|",
    ]
    for case in CASES:
        for m in MULTIPLES:
            cells = []
            for target in ("host", "qemu"):
                s = an["summary"][case][target][m]
                cells.append("n/a" if s is None else
                             f"{_pct(s['worst'])} (C={s['worst_at']}) / {_pct(s['mean'])}, "
                             f"{s['faster']}-{s['same']}-{s['slower']}")
            ok = all((an["summary"][case][t][m] or {"slower": 1})["slower"] == 0
                     for t in ("host", "qemu"))
            lines.append(f"| {case} | {m} | {cells[0]} | {cells[1]} | {'yes' if ok else 'no'} |")
    lines += ["", "What blocks each multiple under the rule: " + "; ".join(
        f"{m}: " + (", ".join(an["blocking"][m]) or "nothing") for m in MULTIPLES) + ".",
              "", "The rule's answer with other A72 tolerances (host tolerance as measured), and "
              "on each target alone (computed, for judging the rule; the recommendation above "
              "is the stated rule's):", "",
              "| A72 tolerance | both targets | A72 instructions only | host XNNPACK only |",
              "|---:|---:|---:|---:|"]
    for row in data["sensitivity"]:
        lines.append(f"| {row['qemu_tol'] * 100:.1f} % | {row['both']} | {row['qemu']} | "
                     f"{row['host']} |")
    lines += ["", "Per rounding choice:", ""]
    for m in MULTIPLES:
        for case in CASES:
            for target, label in _LABEL.items():
                lines.append(f"- multiple of {m}, {case}, {label}: rounding up is "
                             + _summary_text(an["summary"][case][target][m]) + ".")
    key = [c for c in (8, 15, 16, 17, 24, 25, 31, 32, 33, 40, 41, 48, 64)
           if any(m["channels"] == c for m in models)]
    lines += ["", "Key figures (host p50 in µs / A72 instructions per inference in thousands):",
              "", "| C | " + " | ".join(CASES) + " |", "|---:|" + "---:|" * len(CASES)]
    for c in key:
        row = [str(c)]
        for case in CASES:
            h, q = costs(models, case, "host").get(c), costs(models, case, "qemu").get(c)
            row.append(f"{h:.2f} / " + (f"{q / 1e3:.1f} k" if q else "–") if h else "–")
        lines.append("| " + " | ".join(row) + " |")
    counted = [m["qemu"] for m in models if m.get("qemu")]
    same = sum(bool(q["outputs_match_host"]) for q in counted)
    lines += ["", f"Outputs on the emulated A72 (XNNPACK) were bit-identical to the x86 host's "
              f"for {same} of {len(counted)} counted models."]
    off = data["qemu"]["no_xnnpack"]
    if off:
        diffs = [o for o in off if o["builtin_outputs_match_host"] is False]
        lines[-1] += (" XNNPACK is in use in the guest: A72 instructions with / without it "
                      "(built-in kernels): " + ", ".join(
                          f"{o['case']} C={o['channels']} {o['xnnpack'] / 1e3:.1f} k / "
                          f"{o['builtin'] / 1e3:.1f} k" for o in off
                          if o["xnnpack"] and o["builtin"]) + ".")
        if diffs:
            lines[-1] += (" Without XNNPACK the built-in kernels' outputs on ARM differ from the "
                          "x86 built-in ones in " + ", ".join(
                              f"{o['case']} C={o['channels']} (max "
                              f"{o['builtin_max_abs_diff']:g} step)" for o in diffs)
                          + ": the built-in kernels round differently on the two "
                          "architectures.")
    for case in CASES:
        host, qemu = costs(models, case, "host"), costs(models, case, "qemu")
        eff = an["effects"][case]
        lines += ["", f"<details><summary>{case}: every count</summary>", "",
                  "| C | host p50 µs | round range | A72 instr | "
                  + " | ".join(f"→{m} host | →{m} A72" for m in MULTIPLES) + " |",
                  "|---:|---:|---:|---:|" + "---|---|" * len(MULTIPLES)]
        for c in sorted(set(host) | set(qemu)):
            rec = next(m for m in models if m["case"] == case and m["channels"] == c)
            rng = f"{rec['host']['rel_range'] * 100:.1f} %" if rec.get("host") else "–"
            row = [str(c), f"{host[c]:.2f}" if c in host else "–", rng,
                   f"{qemu[c]:,.0f}" if c in qemu else "–"]
            for m in MULTIPLES:
                row += [_cell(eff["host"][m].get(c)) if c % m else "·",
                        _cell(eff["qemu"][m].get(c)) if c % m and c in qemu else "·"]
            lines.append("| " + " | ".join(row) + " |")
        lines += ["", "</details>"]
    lines.append("")
    return "\n".join(lines)


def _command(argv: list[str]) -> str:
    nice = os.nice(0)
    prefix = f"nice -n {nice} " if nice > 0 else ""
    return prefix + "python bench/channel_rounding.py" + "".join(f" {a}" for a in argv)


def main(argv: list[str] | None = None) -> int:
    """Builds the models, measures them, analyses the sweep and writes the section.

    Args:
        argv: Arguments without the program name.

    Returns:
        0.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(REPO / "BENCHMARKS.md"), help="the Markdown file")
    p.add_argument("--work", default=None,
                   help="where the models and raw results go (default "
                        "/tmp/edgekit-channel-rounding[-quick])")
    p.add_argument("--quick", action="store_true", help="a small sweep, for a smoke run")
    args = p.parse_args(argv)
    from sections import write_section

    start = time.perf_counter()
    work = Path(args.work or ("/tmp/edgekit-channel-rounding" + ("-quick" if args.quick else "")))
    host_counts = QUICK["host"] if args.quick else HOST_COUNTS
    qemu_counts = QUICK["qemu"] if args.quick else QEMU_COUNTS
    rounds = QUICK["rounds"] if args.quick else ROUNDS
    timing = QUICK["timing"] if args.quick else TIMING
    print(f"work folder: {work}", file=sys.stderr)
    load_start = " / ".join(f"{x:.2f}" for x in os.getloadavg())

    models = build_all(work, sorted(set(host_counts) | set(qemu_counts)))
    build_s = time.perf_counter() - start
    for m in models:
        if not m["xnnpack_ops"]["delegated"]:
            print(f"warning: XNNPACK did not take {m['case']} C={m['channels']}: "
                  f"{m['xnnpack_ops']['ops']}", file=sys.stderr)
    timed = [m for m in models if m["channels"] in host_counts]
    t0 = time.perf_counter()
    time_host(timed, rounds, timing)
    host_s = time.perf_counter() - t0
    for m in models:
        m.setdefault("host", None)
    partial = work / "results.partial.json"
    partial.write_text(json.dumps({"models": models, "phase": "host timed"}, indent=2,
                                  default=str) + "\n")
    print(f"host results so far: {partial}", file=sys.stderr)
    qemu = count_qemu(models, qemu_counts, None if args.quick else 32)
    import ai_edge_litert

    setup = {"quick": args.quick, "rounds": rounds, "timing": timing, "host_counts": host_counts,
             "qemu_counts": qemu_counts, "build_s": build_s, "host_s": host_s,
             "load_start": load_start,
             "load_end": " / ".join(f"{x:.2f}" for x in os.getloadavg()),
             "litert": getattr(ai_edge_litert, "__version__", None) or _dist("ai-edge-litert"),
             "results": str(work / "results.json")}
    data = {"models": models, "qemu": qemu, "setup": setup, "analysis": analyse(models),
            "sensitivity": sensitivity(models)}
    seconds = time.perf_counter() - start
    command = _command(argv)
    data["command"], data["seconds"] = command, seconds
    (work / "results.json").write_text(json.dumps(data, indent=2, default=str) + "\n")
    write_section(args.out, "channel-rounding", render(data, command, seconds))
    an = data["analysis"]
    print(f"recommended round_to = {an['round_to']} ({an['rule']})", file=sys.stderr)
    print(f"raw results: {work / 'results.json'}; wrote section channel-rounding of {args.out} "
          f"({seconds:.0f} s)", file=sys.stderr)
    return 0


def _dist(name: str) -> str | None:
    import importlib.metadata

    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


if __name__ == "__main__":
    sys.exit(main())
