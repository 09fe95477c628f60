"""Writes BENCHMARKS.md: the demo's figures, its robustness over seeds, the tfmot-guide baseline.

Run with ``make bench`` (or ``python bench/run_benchmarks.py --out BENCHMARKS.md``). Takes a few
minutes on 2 cores. Every figure is measured here, on held-out digits that were never trained or
calibrated on.

Sections:
1. ``edgekit demo`` (train -> prune 80 % -> PQAT -> int8) for seeds 0, 1, 2.
2. The same float model put through the recipe of tfmot's own guides by hand (prune 2 epochs at
   batch 128 with PolynomialDecay 0.5 -> 0.8, strip, PQAT 1 epoch, full-int8 conversion).
3. device_bench's p50 against a plain interpreter loop timed in one process (same model).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def demo_recipe(seed: int) -> Any:
    """The demo recipe with every seed (weights, batches, split of calibration) set to ``seed``."""
    from edgekit.recipe import Recipe

    raw = Recipe.demo().to_dict()
    raw["seed"] = seed
    raw["train"]["seed"] = seed
    for stage in raw["stages"]:
        stage["config"]["seed"] = seed
    return Recipe.from_dict(raw)


def run_demo(seed: int, out: Path) -> dict[str, Any]:
    """Runs the demo pipeline for one seed and returns its report."""
    from edgekit.pipeline import run_pipeline

    t0 = time.perf_counter()
    report = run_pipeline(demo_recipe(seed), out, log=lambda m: None)
    report["wall_s"] = time.perf_counter() - t0
    return report


def guide_baseline(float_model_path: Path, out: Path) -> dict[str, Any]:
    """tfmot's guide recipe (pruning guide + PQAT guide), by hand, on a trained float model.

    Pruning guide: ``prune_low_magnitude`` on the whole model, PolynomialDecay 0.50 -> 0.80 from
    step 0 to the end of 2 epochs, batch 128, ``validation_split=0.1``, Adam, ``strip_pruning``.
    PQAT guide: ``quantize_annotate_model`` + ``quantize_apply`` with
    ``Default8BitPrunePreserveQuantizeScheme``, 1 epoch, batch 128, ``validation_split=0.1``.
    Then full-integer conversion with the same calibration as the demo.
    """
    from edgekit.compress.training import accuracy
    from edgekit.converters import (
        ConversionConfig,
        Mode,
        convert_keras,
        select_calibration,
        verify_tflite,
        weight_sparsity,
    )
    from edgekit.core._keras import keras, tfmot
    from edgekit.core.model_io import load_model
    from edgekit.data import load_digits

    mot = tfmot
    data = load_digits()
    keras.utils.set_random_seed(0)
    model = load_model(float_model_path)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    float_acc = accuracy(model, data.x_test, data.y_test)

    epochs, batch = 2, 128
    n = int(len(data.x_train) * 0.9)
    end_step = int(np.ceil(n / batch)) * epochs
    schedule = mot.sparsity.keras.PolynomialDecay(0.50, 0.80, begin_step=0, end_step=end_step)
    pruned = mot.sparsity.keras.prune_low_magnitude(model, pruning_schedule=schedule)
    pruned.compile(optimizer="adam", loss=loss, metrics=["accuracy"])
    pruned.fit(data.x_train, data.y_train, batch_size=batch, epochs=epochs, verbose=0,
               validation_split=0.1, callbacks=[mot.sparsity.keras.UpdatePruningStep()])
    stripped = mot.sparsity.keras.strip_pruning(pruned)
    pruned_acc = accuracy(stripped, data.x_test, data.y_test)

    annotated = mot.quantization.keras.quantize_annotate_model(stripped)
    pqat = mot.quantization.keras.quantize_apply(
        annotated, mot.experimental.combine.Default8BitPrunePreserveQuantizeScheme())
    pqat.compile(optimizer="adam", loss=loss, metrics=["accuracy"])
    pqat.fit(data.x_train, data.y_train, batch_size=batch, epochs=1, verbose=0,
             validation_split=0.1)
    pqat_acc = accuracy(pqat, data.x_test, data.y_test)

    rep, _ = select_calibration(data.x_train, num_samples=200, seed=0)
    path = out / "guide_int8.tflite"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(convert_keras(pqat, ConversionConfig(mode=Mode.INT8), representative=rep))
    v = verify_tflite(path, data.x_test, data.y_test)
    ws = weight_sparsity(path)
    return {"float": float_acc, "pruned": pruned_acc, "pqat": pqat_acc, "int8": v.accuracy,
            "min_sparsity": min(w["sparsity"] for w in ws),
            "max_sparsity": max(w["sparsity"] for w in ws), "end_step": end_step,
            "frequency": schedule.get_config()["config"]["frequency"]}


def plain_loop_p50(model_path: Path, runs: int = 2000) -> float:
    """Median of ``runs`` bare ``invoke()`` calls in this process (ms), after 200 warm-up calls."""
    from device_bench.interpreter import load_interpreter

    loaded = load_interpreter(model_path)
    interp = loaded.interpreter
    detail = interp.get_input_details()[0]
    rng = np.random.default_rng(0)
    x = rng.integers(-128, 128, size=detail["shape"]).astype(detail["dtype"])
    interp.set_tensor(detail["index"], x)
    for _ in range(200):
        interp.invoke()
    times = []
    for _ in range(runs):
        t = time.perf_counter_ns()
        interp.invoke()
        times.append(time.perf_counter_ns() - t)
    return float(np.median(times) / 1e6)


def _stage(report: dict[str, Any], name: str) -> dict[str, Any]:
    return next(e for e in report["stages"] if e["name"] == name)


def render(reports: dict[int, dict[str, Any]], guide: dict[str, Any], loop_p50: float,
           elapsed: float) -> str:
    """Builds the Markdown text."""
    r0 = reports[0]
    bench0 = _stage(r0, "model_int8")["bench"]["local"]
    t = bench0["target"]
    lines = [
        "## Demo pipeline (issue 2)",
        "",
        f"Made by `make bench` (`python bench/run_benchmarks.py --out BENCHMARKS.md`) on "
        f"{dt.date.today().isoformat()}: {t['cpu']}, {t['cores']} cores, {t['os']}, "
        f"Python {platform.python_version()}, {bench0['runtime']['interpreter']} "
        f"{bench0['runtime']['version']}. Whole script: {elapsed:.0f} s.",
        "",
        "Data: scikit-learn's bundled digits (real scans), 32x32x1, stratified split seed 0: "
        "1437 training / 360 held-out samples. Accuracy is always on the 360 held-out samples; the "
        "int8 figure is the `.tflite` itself run in the LiteRT interpreter.",
        "",
        "### 1. `edgekit demo`: train -> prune 80 % (PolynomialDecay) -> PQAT -> full int8",
        "",
        "Recipe: train 30 epochs (Adam 2e-3, cosine, shifts of up to 2 px); prune 20 epochs "
        "(Adam 1e-3 cosine, sparsity 0 -> 80 % over the first 60 %, then 8 epochs of recovery); "
        "PQAT 10 epochs (Adam 1e-4 cosine); int8 with int8 I/O, 200 calibration samples.",
        "",
        "| seed | float | pruned | PQAT | int8 .tflite | drop (points) | min zeros per layer "
        "in .tflite | int8 KiB / gzip KiB | float32 KiB | p50 int8 / float32 (ms) | wall s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for seed, r in sorted(reports.items()):
        f, p, q = _stage(r, "float"), _stage(r, "prune"), _stage(r, "qat")
        i8, f32 = _stage(r, "model_int8"), _stage(r, "float32")
        ms = min(w["sparsity"] for w in i8["weight_sparsity"])
        lines.append(
            f"| {seed} | {100 * f['accuracy']:.2f} % | {100 * p['accuracy']:.2f} % | "
            f"{100 * q['accuracy']:.2f} % | {100 * i8['accuracy']:.2f} % | "
            f"{r['final']['accuracy_drop_points']:.2f} | {100 * ms:.2f} % | "
            f"{i8['bytes'] / 1024:.1f} / {i8['gzip_bytes'] / 1024:.1f} | "
            f"{f32['bytes'] / 1024:.1f} | {i8['bench']['local']['latency_ms']['p50']:.4f} / "
            f"{f32['bench']['local']['latency_ms']['p50']:.4f} | {r['wall_s']:.0f} |"
        )
    lines += [
        "",
        "Goals (issue #2): float >= 98.5 %, int8 within 1.0 point of float, pruned layers >= 79 % "
        "zeros in the `.tflite`, `make demo` under 10 minutes on 2 cores.",
        "",
        "### 2. The same float model through tfmot's guide recipe, by hand",
        "",
        "Seed 0's trained `float.keras`, then the recipe of the tfmot pruning and PQAT guides "
        "verbatim: `prune_low_magnitude` on the whole model, PolynomialDecay 0.50 -> 0.80 over 2 "
        "epochs at batch 128 (Adam, `validation_split=0.1`), `strip_pruning`, PQAT 1 epoch at "
        "batch 128; converted with the same full-int8 converter and calibration.",
        "",
        "| recipe | float | pruned | PQAT | int8 .tflite | drop (points) | zeros per layer in "
        ".tflite (min-max) |",
        "|---|---:|---:|---:|---:|---:|---:|",
        f"| tfmot guides | {100 * guide['float']:.2f} % | {100 * guide['pruned']:.2f} % | "
        f"{100 * guide['pqat']:.2f} % | {100 * guide['int8']:.2f} % | "
        f"{100 * (guide['float'] - guide['int8']):.2f} | {100 * guide['min_sparsity']:.2f} - "
        f"{100 * guide['max_sparsity']:.2f} % |",
        f"| edgekit demo | {100 * _stage(r0, 'float')['accuracy']:.2f} % | "
        f"{100 * _stage(r0, 'prune')['accuracy']:.2f} % | "
        f"{100 * _stage(r0, 'qat')['accuracy']:.2f} % | "
        f"{100 * _stage(r0, 'model_int8')['accuracy']:.2f} % | "
        f"{r0['final']['accuracy_drop_points']:.2f} | "
        f"{100 * min(w['sparsity'] for w in _stage(r0, 'model_int8')['weight_sparsity']):.2f} - "
        f"{100 * max(w['sparsity'] for w in _stage(r0, 'model_int8')['weight_sparsity']):.2f} % |",
        "",
        f"The guide recipe loses {100 * (guide['float'] - guide['int8']):.2f} points *and does not "
        f"prune*: its schedule ends at step {guide['end_step']} (2 epochs at batch 128 on 1293 "
        f"samples), but PolynomialDecay's default mask-update `frequency` is "
        f"{guide['frequency']} steps, and tfmot's wrapper increments its step before the mask "
        "check (checks run at steps 1, 2, ...), so no mask update ever runs, not even the "
        "initial 50 %. Nothing warns; the model simply ships dense. edgekit's `Prune` sets "
        "the update interval from the "
        "fine-tune's length (4 per epoch), ends the ramp on an update step, refuses a schedule "
        "that cannot reach its target, and reports each layer's measured sparsity.",
        "",
        "What recovers the accuracy: a sparsity ramp that starts at 0 and ends early (so the net "
        "retrains at full sparsity), enough fine-tuning steps (batch 32, 20 epochs), random "
        "shifts, and a cosine-decayed learning rate; PQAT then keeps every pruned zero.",
        "",
        "### 3. device_bench against a plain interpreter loop",
        "",
        f"`model_int8.tflite` of seed 0: device_bench p50 "
        f"{bench0['latency_ms']['p50']:.4f} ms ({bench0['runs']} runs in "
        f"{bench0['options']['windows']} windows after "
        f"{bench0['warmup']} warm-up, fresh process, XNNPACK, default threads), window-median CV "
        f"{bench0['latency_ms']['cv']:.4f}; a bare `invoke()` loop in this process: median "
        f"{loop_p50:.4f} ms (2000 runs after 200 warm-up), ratio "
        f"{bench0['latency_ms']['p50'] / loop_p50:.3f}. Peak RSS of the benchmark process: "
        f"{bench0['memory']['peak_rss_mb']:.1f} MB.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Runs every benchmark and writes the Markdown file atomically."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "BENCHMARKS.md"))
    parser.add_argument("--work", default=str(REPO / "runs" / "bench"))
    parser.add_argument("--seeds", default="0,1,2")
    args = parser.parse_args(argv)

    from device_bench.atomicio import write_json

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from sections import write_section

    t0 = time.perf_counter()
    work = Path(args.work)
    reports: dict[int, dict[str, Any]] = {}
    for seed in (int(s) for s in args.seeds.split(",")):
        print(f"bench: demo seed {seed}", file=sys.stderr, flush=True)
        reports[seed] = run_demo(seed, work / f"demo_seed{seed}")
    print("bench: tfmot guide baseline", file=sys.stderr, flush=True)
    guide = guide_baseline(work / "demo_seed0" / "float.keras", work / "guide")
    loop = plain_loop_p50(work / "demo_seed0" / "model_int8.tflite")
    write_json(work / "summary.json", {"guide": guide, "plain_loop_p50_ms": loop})
    write_section(args.out, "demo", render(reports, guide, loop, time.perf_counter() - t0))
    print(f"bench: wrote {args.out}", file=sys.stderr)
    print(json.dumps({"guide": guide, "plain_loop_p50_ms": loop}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
