"""Writes the "channel-prune-coverage" section of BENCHMARKS.md: which models ChannelPrune cuts.

``nice -n 10 python bench/channel_coverage.py --out BENCHMARKS.md [--work DIR] [--models a,b]``
(about 30 min on 2 shared cores; per-model details in ``DIR/coverage.json``, by default
``/tmp/edgekit-channel-coverage``)

The question is coverage, not accuracy: does ``ChannelPrune`` (ratio 0.5, L1 importance, layer
scope, the stage's default ``round_to``, no fine-tune: :meth:`ChannelPrune.cut`) followed by
``QAT`` (1 epoch) and full-int8 conversion (int8 I/O) go through, with fewer MACs and no float op,
on the registry models and on ``keras.applications`` architectures? For each model, in a fresh
subprocess with a time limit (``--timeout``):

1. build it with random weights (Keras seed 0): registry models through
   ``edgekit.models.registry.build_model(name, input_shape=..., num_classes=10)`` at their
   reference input shape; ``keras.applications.<Arch>(weights=None, input_shape=(S, S, 3),
   classes=10, classifier_activation=None)`` with S from ``APPLICATIONS`` (32, the smallest they
   accept; 64 for MobileNetV3Small, see below) or ``--size``;
2. convert the uncut model to full int8 (int8 I/O, ``CALIB`` calibration samples) -> the dense
   MACs, counted from the ``.tflite`` (``tflite_work``);
3. ``ChannelPrune.cut`` -> groups cut, groups left dense with their reasons, Keras MACs and
   parameters before/after;
4. ``QAT`` for 1 epoch on ``TRAIN`` random samples (batch ``BATCH``, no augmentation);
5. full int8 of the QAT model -> MACs, ``full_integer`` and the float ops (``inspect_tflite``);
6. run the ``.tflite`` once in the LiteRT interpreter on ``RUN`` samples (``run_tflite``): are
   the outputs produced, of the Keras model's shape, and finite?
7. only when step 5 is not full int8: the control, ``QAT`` + full int8 of the *uncut* model,
   to tell a ChannelPrune problem from a QAT / converter one.

MobileNetV3Small runs at 64x64: at 32x32 its last squeeze-excite ``Multiply`` layers (on 1x1
maps) stay float MULs after QAT, with or without the cut. The default run adds that case as a
diagnostic row (``MobileNetV3Small@32``, with the control; not counted in the headline), and the
section's last paragraph is written from it. ``--models NAME@S`` runs any keras.applications
model at side S.

Inputs and labels are random (seeded): registry models get standard-normal samples,
``keras.applications`` random pixels in [0, 255] through the architecture's ``preprocess_input``.
BatchNormalization statistics are set from the training samples before anything else
(``arch_matrix.calibrate_batchnorm``: else a deep random net's outputs are ~0, and "the outputs
are produced" would say little).
Nothing here is trained to any accuracy. A failing step is recorded (where, the one-line error,
the traceback in the JSON) and the script goes on with the next model. Per-model details go to
``--work``/``coverage.json``.

One model, for debugging: ``python bench/channel_coverage.py --one resnet8 --result r.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

SECTION = "channel-prune-coverage"
COMMAND = "nice -n 10 python bench/channel_coverage.py --out BENCHMARKS.md"
SEED = 0
CLASSES = 10
TRAIN, CALIB, RUN, BATCH = 256, 32, 4, 16
RATIO = 0.5
CUT = {"ratio": RATIO, "importance": "l1", "epochs": 0, "seed": SEED}
QAT_CONFIG = {"epochs": 1, "augment_shift": 0, "batch_size": BATCH, "seed": SEED}

# Registry model -> input shape (their reference shapes).
REGISTRY: dict[str, tuple[int, ...]] = {
    "demo_cnn": (32, 32, 1),
    "ds_cnn": (49, 10, 1),
    "resnet8": (32, 32, 3),
    "mobilenet_v1": (96, 96, 3),
}
# keras.applications architecture -> (its module, for preprocess_input; input side).
APPLICATIONS: dict[str, tuple[str, int]] = {
    "MobileNet": ("mobilenet", 32),
    "MobileNetV2": ("mobilenet_v2", 32),
    "MobileNetV3Small": ("mobilenet_v3", 64),  # 32: QAT leaves float MULs (module docstring)
    "EfficientNetB0": ("efficientnet", 32),
    "ResNet50": ("resnet50", 32),
    "DenseNet121": ("densenet", 32),
}
# The code under test: a fingerprint per row shows whether it changed during a run.
CODE = ("edgekit/compress/channel_prune.py", "edgekit/compress/channel_graph.py",
        "edgekit/compress/channel_surgery.py", "edgekit/compress/importance.py",
        "edgekit/compress/qat.py", "converters/modes.py")
MODELS = [*REGISTRY, *APPLICATIONS]
# Run by default after MODELS, not counted in the headline: MobileNetV3Small where QAT alone
# leaves float ops (the section's last paragraph is computed from this row).
DIAGNOSTIC = "MobileNetV3Small@32"
STEPS = ("build", "dense int8", "cut", "qat", "int8", "run")


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:200] if text else ''}"


def code_fingerprint() -> str:
    """A short hash of the files of ``CODE`` as they are now."""
    import hashlib

    h = hashlib.sha256()
    for rel in CODE:
        h.update((REPO / rel).read_bytes())
    return h.hexdigest()[:12]


def build(name: str, size: int | None) -> tuple[Any, np.ndarray, np.ndarray, dict[str, Any]]:
    """The model (random weights), random samples and labels, and how it was built."""
    from arch_matrix import calibrate_batchnorm

    from edgekit.core._keras import keras
    from edgekit.models.registry import build_model

    keras.utils.set_random_seed(SEED)
    rng = np.random.default_rng(SEED)
    n = TRAIN + CALIB + RUN
    if name in REGISTRY:
        shape = REGISTRY[name]
        model = build_model(name, input_shape=shape, num_classes=CLASSES)
        x = rng.normal(size=(n, *shape)).astype(np.float32)
        how = f"build_model({name!r}, input_shape={shape}, num_classes={CLASSES})"
    else:
        side = size or APPLICATIONS[name][1]
        shape = (side, side, 3)
        model = getattr(keras.applications, name)(weights=None, input_shape=shape,
                                                   classes=CLASSES, classifier_activation=None)
        pixels = rng.integers(0, 256, size=(n, *shape)).astype(np.float32)
        x = getattr(keras.applications, APPLICATIONS[name][0]).preprocess_input(pixels)
        x = np.asarray(x, np.float32)
        how = (f"keras.applications.{name}(weights=None, input_shape={shape}, "
               f"classes={CLASSES}, classifier_activation=None)")
    y = rng.integers(0, CLASSES, size=n)
    calibrate_batchnorm(model, x[:TRAIN])
    return model, x, y, {"built": how, "input_shape": list(shape)}


def _strip_layer(reason: str, layers: set[str]) -> str:
    """``"block_3_add: broadcast over channels"`` -> ``"broadcast over channels"``."""
    head, sep, rest = reason.partition(": ")
    return rest if sep and head in layers else reason


def left_reasons(left: dict[str, str], layers: set[str]) -> dict[str, dict[str, Any]]:
    """Distinct reasons groups were left dense -> {count, groups (first few)}, most frequent first.

    A group's reason may join several (``"; "``); the leading layer name is taken off so that
    the same rule on different layers counts once.
    """
    out: dict[str, dict[str, Any]] = {}
    for group, why in left.items():
        for part in dict.fromkeys(p.strip() for p in (why or "").split("; ")):
            key = _strip_layer(part, layers) if part else "(no reason given)"
            entry = out.setdefault(key, {"count": 0, "groups": []})
            entry["count"] += 1
            if len(entry["groups"]) < 5:
                entry["groups"].append(group)
    return dict(sorted(out.items(), key=lambda kv: (-kv[1]["count"], kv[0])))


def _control(model: Any, data: Any, calib: np.ndarray, config: Any) -> dict[str, Any]:
    """QAT + full int8 of the uncut model: is a float op ChannelPrune's doing or not?"""
    from edgekit.compress import QAT
    from edgekit.converters import inspect_tflite
    from edgekit.converters.modes import convert_keras

    try:
        qat = QAT.from_config(QAT_CONFIG).apply(model, data)
        found = inspect_tflite(convert_keras(qat.model, config, calib))
        return {"full_integer": found.full_integer,
                "float_ops": [f"{o['op']} #{o['index']}" for o in found.float_ops]}
    except Exception as e:  # recorded, the row is already a failure
        return {"error": _first_line(e)}


def parse_entry(entry: str) -> tuple[str, int | None]:
    """``"MobileNetV3Small@32"`` -> ``("MobileNetV3Small", 32)``; ``"resnet8"`` -> (name, None)."""
    name, _, side = entry.partition("@")
    return name, (int(side) if side else None)


def run_one(entry: str, size: int | None) -> dict[str, Any]:
    """The whole chain on one model (``Name`` or ``Name@S``); a failing step is recorded."""
    from edgekit.compress import QAT, ChannelPrune
    from edgekit.compress.layer_support import flatten_model
    from edgekit.converters import inspect_tflite
    from edgekit.converters.modes import ConversionConfig, convert_keras
    from edgekit.converters.verify import run_tflite
    from edgekit.data import Dataset

    t0 = time.perf_counter()
    name, side = parse_entry(entry)
    size = side or size
    row: dict[str, Any] = {"model": entry, "source": "registry" if name in REGISTRY
                           else "keras.applications", "seconds": {},
                           "code": code_fingerprint()}
    config = ConversionConfig(mode="int8", io="int8")
    step = "build"
    t = time.perf_counter()
    try:
        model, x, y, how = build(name, size)
        row.update(how)
        row["layers"] = len(flatten_model(model).layers)
        train, calib, held = slice(0, TRAIN), slice(TRAIN, TRAIN + CALIB), slice(TRAIN + CALIB,
                                                                                  None)
        data = Dataset(name="random", x_train=x[train], y_train=y[train], x_test=x[held],
                       y_test=y[held], train_indices=np.arange(TRAIN),
                       heldout_indices=np.arange(TRAIN + CALIB, len(x)), num_classes=CLASSES)
        row["seconds"][step] = time.perf_counter() - t

        step, t = "dense int8", time.perf_counter()
        dense = inspect_tflite(convert_keras(model, config, x[calib]))
        row["dense_int8"] = {"macs": dense.macs, "params": dense.params, "bytes": dense.bytes,
                             "full_integer": dense.full_integer,
                             "float_ops": len(dense.float_ops)}
        row["seconds"][step] = time.perf_counter() - t

        step, t = "cut", time.perf_counter()
        new, details = ChannelPrune.from_config(CUT).cut(model, data)
        layers = {layer.name for layer in flatten_model(model).layers}
        row["cut"] = {
            "round_to": details["round_to"], "groups": details["groups"], "left": details["left"],
            "reasons": left_reasons(details["left"], layers),
            "channels": details["channels"], "work": details["work"],
            "folded": details["folded"],
        }
        row["seconds"][step] = time.perf_counter() - t

        step, t = "qat", time.perf_counter()
        qat = QAT.from_config(QAT_CONFIG).apply(new, data)
        row["qat"] = {k: qat.details[k] for k in ("scheme", "weights_share_quantized", "counts")
                      if k in qat.details}
        row["seconds"][step] = time.perf_counter() - t

        step, t = "int8", time.perf_counter()
        blob = convert_keras(qat.model, config, x[calib])
        cut = inspect_tflite(blob)
        row["int8"] = {"macs": cut.macs, "params": cut.params, "bytes": cut.bytes,
                       "full_integer": cut.full_integer,
                       "float_ops": [f"{o['op']} #{o['index']}" for o in cut.float_ops],
                       "float_op_tensors": [o["tensors"][-1] for o in cut.float_ops],
                       "float_io": cut.float_io,
                       "ops": {o["op"]: o["count"] for o in cut.ops}}
        row["seconds"][step] = time.perf_counter() - t
        if not cut.full_integer or cut.float_ops:
            t = time.perf_counter()
            row["control_without_cut"] = _control(model, data, x[calib], config)
            row["seconds"]["control"] = time.perf_counter() - t

        step, t = "run", time.perf_counter()
        out = run_tflite(blob, x[held], progress=False)
        want = tuple(int(d) for d in qat.model.output_shape[1:])
        keras_out = np.asarray(qat.model(x[held], training=False), np.float32)
        row["run"] = {"shape": list(out.shape), "expected": [RUN, *want],
                      "finite": bool(np.all(np.isfinite(out))),
                      "ok": tuple(out.shape) == (RUN, *want) and bool(np.all(np.isfinite(out))),
                      "abs_max": float(np.max(np.abs(out))),
                      "max_abs_diff_vs_keras": float(np.max(np.abs(out - keras_out))),
                      "keras_abs_max": float(np.max(np.abs(keras_out)))}
        row["seconds"][step] = time.perf_counter() - t
    except Exception as e:  # the row records which step failed and why
        row["failed"] = {"step": step, "error": _first_line(e),
                         "traceback": traceback.format_exc()}
    row["wall_s"] = time.perf_counter() - t0
    return row


def _child(entry: str, size: int | None, timeout: float) -> dict[str, Any]:
    """Runs one model in a fresh interpreter (its memory is returned when it exits)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "row.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--one", entry, "--result",
               str(result), *(["--size", str(size)] if size else [])]
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                                  check=False, cwd=REPO)
        except subprocess.TimeoutExpired:
            return {"model": entry, "failed": {"step": "?", "error": f"timed out after "
                                              f"{timeout:.0f} s"},
                    "wall_s": time.perf_counter() - t0}
        if result.exists():
            return json.loads(result.read_text())
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        return {"model": entry, "failed": {"step": "?", "error": f"exit {proc.returncode}: "
                                          f"{tail[0][:200]}", "stderr": proc.stderr[-4000:]},
                "wall_s": time.perf_counter() - t0}


def _n(v: int | None) -> str:
    """MACs / params in k or M."""
    if v is None:
        return "-"
    return f"{v / 1e6:.2f} M" if v >= 1e6 else f"{v / 1e3:.1f} k"


def row_ok(r: dict[str, Any]) -> bool:
    """Did the chain go through with fewer MACs, full int8 and outputs produced?"""
    if r.get("failed") or "run" not in r:
        return False
    return (r["int8"]["full_integer"] and not r["int8"]["float_ops"] and r["run"]["ok"]
            and r["int8"]["macs"] < r["dense_int8"]["macs"])


def _reasons(r: dict[str, Any]) -> str:
    reasons = r.get("cut", {}).get("reasons", {})
    if not reasons:
        return "none" if "cut" in r else "-"
    return "; ".join(f"{k.replace('|', '/')} ({v['count']})" for k, v in reasons.items())


def _diagnostic(rows: list[dict[str, Any]]) -> list[str]:
    """The paragraph on the diagnostic row (MobileNetV3Small at 32x32), from its figures."""
    r = next((r for r in rows if r["model"] == DIAGNOSTIC), None)
    if r is None:
        return []
    if r.get("failed") or "int8" not in r:
        why = r.get("failed", {}).get("error", "no result")
        return ["", f"Diagnostic row {DIAGNOSTIC}: did not finish ({why})."]
    q8, control = r["int8"], r.get("control_without_cut")
    if q8["full_integer"] and not q8["float_ops"]:
        return ["", f"Diagnostic row {DIAGNOSTIC} (not counted above): full int8 in this run too, "
                "so the 64x64 input of the main row is no longer needed."]
    muls = sorted({t.split("/")[-2] for o, t in zip(q8["float_ops"], q8["float_op_tensors"],
                                                    strict=True)
                   if o.startswith("MUL ") and "/" in t})
    ctl = ("the control without the cut is not full int8 either "
           f"({len(control['float_ops'])} float ops), so QAT + the converter cause it, not "
           "ChannelPrune" if control and control.get("float_ops")
           else f"the control without the cut: {control}")
    return ["", f"Diagnostic row {DIAGNOSTIC} (not counted above): at 32x32 the cut + QAT model "
            f"has {len(q8['float_ops'])} float ops: the MULs of "
            f"{', '.join(f'`{m}`' for m in muls) or 'no Multiply'} (squeeze-excite Multiply "
            "layers on 1x1 maps) stay float between DEQUANTIZE and QUANTIZE; "
            f"{ctl}. At 64x64 (the main row) the same chain is full int8."]


def render(rows: list[dict[str, Any]], wall: float, json_path: str, command: str) -> str:
    """The Markdown section for BENCHMARKS.md."""
    from importlib.metadata import version

    from sections import machine_line

    counted = [r for r in rows if r["model"] != DIAGNOSTIC]
    ok = [r["model"] for r in counted if row_ok(r)]
    failed = [r["model"] for r in counted if not row_ok(r)]
    load = " / ".join(f"{v:.2f}" for v in os.getloadavg())
    round_to = sorted({r["cut"]["round_to"] for r in rows if "cut" in r})
    codes = sorted({r["code"] for r in rows if r.get("code")})
    lines = [
        "## ChannelPrune coverage: cut, QAT and full int8 on registry and keras.applications "
        "models",
        "",
        f"Made by `{command}` on {dt.date.today().isoformat()}: {machine_line()}, TensorFlow "
        f"{version('tensorflow')}. Load average at the end {load} (the machine is shared). Whole "
        f"script: {wall:.0f} s. Per-model details (groups, reasons, float ops, step times, "
        f"tracebacks): `{json_path}`.",
        "",
        "**Coverage only, not accuracy**: weights are random (Keras seed 0) and so are the inputs "
        "and labels (registry models: standard-normal samples; keras.applications: random pixels "
        "through the architecture's `preprocess_input`), so no accuracy is measured; "
        "BatchNormalization statistics are set from one pass over the training samples first, "
        "so the random nets' outputs are not ~0. Each model, in its own subprocess: full int8 of "
        f"the uncut model (int8 I/O, {CALIB} calibration samples) -> `ChannelPrune.cut` (ratio "
        f"{RATIO}, `l1`, layer scope, `round_to` {' / '.join(map(str, round_to)) or '-'} (the "
        f"stage default), no fine-tune) -> `QAT` 1 epoch on {TRAIN} samples (batch {BATCH}, no "
        "augmentation) -> full int8 of the QAT model (int8 I/O, the same calibration samples) "
        f"-> {RUN} samples through the LiteRT interpreter (`run_tflite`). Registry models at "
        "their reference input shape; keras.applications as `<Arch>(weights=None, "
        f"input_shape=(S, S, 3), classes={CLASSES}, classifier_activation=None)` with S in the "
        "input column. MACs are counted from the `.tflite` files (`tflite_work`); parameters "
        "are the Keras models' (`details[\"work\"]`). \"Runs\": the interpreter produced "
        "outputs of the Keras model's shape, all finite (their largest magnitude in brackets).",
        *(["", f"**The code under test changed during this run** ({len(codes)} fingerprints "
            "of the ChannelPrune / QAT / converter files; the JSON has one per row)."]
          if len(codes) > 1 else []),
        "",
        f"**{len(ok)} of {len(counted)} models go through with fewer MACs, full int8 and no "
        "float op**" + (f"; not: {', '.join(failed)}." if failed else "."),
        "",
        "| model | input | int8 MACs dense -> cut (ratio) | params before -> after | groups cut "
        "/ left | full int8 | float ops | runs | why groups were left dense (groups) | s |",
        "|---|---|---|---|---:|---|---:|---|---|---:|",
    ]
    for r in rows:
        shape = "x".join(str(d) for d in r.get("input_shape", [])) or "-"
        fail = r.get("failed")
        d, c, q8, run = (r.get(k) for k in ("dense_int8", "cut", "int8", "run"))
        if d and q8:
            macs = (f"{_n(d['macs'])} -> {_n(q8['macs'])} "
                    f"({q8['macs'] / d['macs']:.2f})" if d["macs"] else "-")
        elif d:
            macs = f"{_n(d['macs'])} -> -"
        else:
            macs = "-"
        if c:
            w = c["work"]
            params = f"{_n(w['before']['params'])} -> {_n(w['after']['params'])}"
            groups = f"{len(c['groups'])} / {len(c['left'])}"
        else:
            params = groups = "-"
        full = ("yes" if q8["full_integer"] else "**no**") if q8 else "-"
        fops = str(len(q8["float_ops"])) if q8 else "-"
        control = r.get("control_without_cut")
        if control:
            fops += (f" (without the cut: {len(control['float_ops'])})" if "float_ops" in control
                     else f" (without the cut: {control['error'][:80]})")
        runs = ((f"yes (max abs {run['abs_max']:.2g})" if run["ok"] else
                 f"**no** ({run['shape']}, finite: {run['finite']})") if run else "-")
        if fail:
            runs = f"**failed at {fail['step']}**: {fail['error'][:160].replace('|', '/')}"
        label = f"{r['model']} (diagnostic)" if r["model"] == DIAGNOSTIC else r["model"]
        lines.append(f"| {label} | {shape} | {macs} | {params} | {groups} | {full} | "
                     f"{fops} | {runs} | {_reasons(r)} | {r.get('wall_s', 0):.0f} |")
    lines += [
        "",
        "Groups: dependency groups with producers (`details[\"groups\"]` cut, "
        "`details[\"left\"]` left dense); a reason's leading layer name is dropped to count the "
        "same rule once, the groups and full reasons are in the JSON. The output channels (the "
        "logits) always stay. \"s\" is the subprocess' time for the whole chain, both "
        "conversions included (and the control, where there is one). Float ops \"without the "
        "cut\": the control run (QAT + full int8 of the uncut model), made only for a row that "
        "is not full int8.",
        *_diagnostic(rows),
    ]
    return "\n".join(lines)


def _command(names: list[str], size: int | None) -> str:
    command = COMMAND
    if names != [*MODELS, DIAGNOSTIC]:
        command += f" --models {','.join(names)}"
    return command + (f" --size {size}" if size else "")


def main(argv: list[str] | None = None) -> int:
    """Command line; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "BENCHMARKS.md"))
    parser.add_argument("--work", default="/tmp/edgekit-channel-coverage",
                        help="folder for coverage.json")
    parser.add_argument("--models", default=",".join([*MODELS, DIAGNOSTIC]),
                        help=f"comma-separated subset of {', '.join(MODELS)}; NAME@S sets a "
                        "keras.applications model's input side")
    parser.add_argument("--size", type=int, default=None,
                        help="input side of every keras.applications model (default: per model)")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per model")
    parser.add_argument("--from-json", default=None,
                        help="rewrite the section from a coverage.json of an earlier run")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--result", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.one:
        row = run_one(args.one, args.size)
        Path(args.result).write_text(json.dumps(row, indent=1))
        return 0

    from sections import write_section

    if args.from_json:
        saved = json.loads(Path(args.from_json).read_text())
        command = _command([r["model"] for r in saved["rows"]], saved.get("size"))
        write_section(args.out, SECTION, render(saved["rows"], saved["wall_s"], args.from_json,
                                                command))
        return 0

    names = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in names if parse_entry(m)[0] not in MODELS]
    if unknown:
        parser.error(f"unknown model(s) {unknown}; known: {', '.join(MODELS)}")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    rows = []
    for name in names:
        print(f"{SECTION}: {name}", file=sys.stderr, flush=True)
        rows.append(_child(name, args.size, args.timeout))
        r = rows[-1]
        print(f"  ok={row_ok(r)} failed={r.get('failed', {}).get('error')} "
              f"wall={r.get('wall_s', 0):.0f}s", file=sys.stderr, flush=True)
    wall = time.perf_counter() - t0

    from device_bench.atomicio import write_json

    json_path = work / "coverage.json"
    write_json(json_path, {"command": sys.argv, "wall_s": wall, "size": args.size, "rows": rows})
    write_section(args.out, SECTION, render(rows, wall, str(json_path), _command(names, args.size)))
    print(f"{SECTION}: wrote {args.out} and {json_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
