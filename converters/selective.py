"""Selective quantization: keep the fewest worst layers in float until an accuracy budget holds.

Given an accuracy budget in points (``max_accuracy_drop=0.5``: the int8 model may lose at most
0.5 points of top-1 accuracy against the float Keras model on the evaluation data):

1. calibrate once and build the plain int8 model; if it meets the budget, it is the answer;
2. rank the quantized ops by their own quantization error (:mod:`.quant_debug`);
3. keep the ``k`` worst ops in float (MLIR quantizer ``denylisted_nodes``; the calibrated model is
   re-quantized, not re-calibrated) for k = 1, 2, 4, ... until the budget holds, then bisect
   down to the smallest such k. This assumes that keeping more of the worst layers in float
   never hurts, which holds in practice; every model tried is listed in ``trials``.

The result says which ops stayed float, and what that costs in size (bytes, gzip) and latency
(median of a quick local interpreter loop) against the plain int8 model. A model with float ops
is not full-integer: ``inspect --require-int8`` refuses it.

The budget is checked on the evaluation data given (the pipeline and ``edgekit convert`` use the
held-out split, the same data the report's accuracy budget is judged on): the search picks one
number, k, on it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from device_bench.sizes import gzip_size
from edgekit.core._native import quiet_native_stderr
from edgekit.core.errors import InputError

from .inspection import inspect_tflite
from .modes import ConversionConfig
from .quant_debug import QuantDebugResult, _check_debuggable, calibrate, debug_layers
from .quant_debug import quantize_calibrated as _quantize
from .result import JsonResult
from .verify import _labels, _top1, run_tflite

__all__ = ["SelectiveResult", "format_selective", "quick_latency_ms", "selective_quantize"]

SELECTIVE_SCHEMA = "edgekit.selective/1"


def quick_latency_ms(blob: bytes, *, runs: int = 200, warmup: int = 20) -> float:
    """Median latency of ``invoke()`` in the local LiteRT interpreter (default threads).

    A quick relative figure for comparing two variants of one model on this machine, not a
    benchmark (``edgekit bench`` is).

    Args:
        blob: The ``.tflite`` bytes.
        runs: Timed invocations.
        warmup: Untimed invocations first.

    Returns:
        The median in milliseconds.
    """
    with quiet_native_stderr():
        interpreter = Interpreter(model_content=blob)
        interpreter.allocate_tensors()
    rng = np.random.default_rng(0)
    for detail in interpreter.get_input_details():
        dtype = np.dtype(detail["dtype"])
        if np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            value = rng.integers(info.min, info.max, size=detail["shape"], endpoint=True)
        else:
            value = rng.random(detail["shape"])
        interpreter.set_tensor(detail["index"], value.astype(dtype))
    for _ in range(warmup):
        interpreter.invoke()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        interpreter.invoke()
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1000.0)


def _accuracy(blob: bytes, x: np.ndarray, labels: np.ndarray) -> float:
    pred = _top1(run_tflite(blob, x, progress=False))
    if pred is None:
        raise InputError("selective quantization needs a classifier (several outputs per sample) "
                         "to measure accuracy")
    return float(np.mean(pred == labels))


def _facts(blob: bytes, accuracy: float, float_accuracy: float, runs: int) -> dict[str, Any]:
    return {
        "accuracy": round(accuracy, 6),
        "drop_points": round(100.0 * (float_accuracy - accuracy), 4),
        "bytes": len(blob),
        "gzip_bytes": gzip_size(blob),
        "latency_ms": round(quick_latency_ms(blob, runs=runs), 5) if runs else None,
    }


@dataclass(frozen=True)
class SelectiveResult(JsonResult):
    """What :func:`selective_quantize` chose and what it cost.

    Attributes:
        budget_points: The allowed accuracy drop, points.
        eval_samples: Samples the accuracy was measured on.
        float_accuracy: Accuracy of the float Keras model on them.
        int8: The plain int8 model: ``{"accuracy", "drop_points", "bytes", "gzip_bytes",
            "latency_ms"}``.
        selected: The chosen model: the same keys plus ``"kept_float"`` (rows of the debug
            ranking: ``{"rank", "tensor", "op", "layer"}``) and ``"float_ops"`` (ops that read or
            write float tensors).
        met: Whether the chosen model meets the budget (False: even the best trial did not).
        trials: Every model tried: ``{"kept_float", "accuracy", "drop_points"}``.
    """

    budget_points: float
    eval_samples: int
    float_accuracy: float
    int8: dict[str, Any]
    selected: dict[str, Any]
    met: bool
    trials: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data with ``schema`` and the size/latency cost against plain int8."""
        cost_bytes = self.selected["bytes"] - self.int8["bytes"]
        lat_a, lat_b = self.int8.get("latency_ms"), self.selected.get("latency_ms")
        return {
            "schema": SELECTIVE_SCHEMA,
            "budget_points": self.budget_points,
            "eval_samples": self.eval_samples,
            "float_accuracy": self.float_accuracy,
            "met": self.met,
            "int8": dict(self.int8),
            "selected": {**self.selected, "kept_float": [dict(r) for r in
                                                          self.selected["kept_float"]]},
            "cost": {
                "bytes": cost_bytes,
                "latency_ratio": round(lat_b / lat_a, 3) if lat_a and lat_b else None,
            },
            "trials": [dict(t) for t in self.trials],
        }


def selective_quantize(
    model: Any,
    config: ConversionConfig,
    representative: Any,
    x_eval: np.ndarray,
    y_eval: np.ndarray,
    max_accuracy_drop: float,
    *,
    ranking: QuantDebugResult | None = None,
    calibrated: bytes | None = None,
    latency_runs: int = 200,
    log: Any = None,
) -> tuple[bytes, SelectiveResult, QuantDebugResult]:
    """Finds the fewest worst-ranked ops to keep in float so the accuracy budget holds.

    Args:
        model: The float tf_keras model (single input, classifier).
        config: The int8 config (I/O type and per-channel apply to every model tried).
        representative: Calibration samples.
        x_eval: Evaluation samples (float, as the model takes them).
        y_eval: Their integer labels (or one-hot rows).
        max_accuracy_drop: Allowed loss against the float model, in points (0.5 = half a point).
        ranking: A :func:`~.quant_debug.debug_layers` result to reuse.
        calibrated: A :func:`~.quant_debug.calibrate` output to reuse.
        latency_runs: Timed runs of the quick latency figure (0 skips it).
        log: Optional ``log(str)`` progress sink.

    Returns:
        ``(tflite bytes, SelectiveResult, ranking)``; the bytes are the plain int8 model when it
        meets the budget, else the chosen model (or, when none meets it, the most accurate one
        tried).

    Raises:
        InputError: A budget that is not a number >= 0, not int8, a QAT model, data that does
            not fit, or a model without class outputs.
    """
    if isinstance(max_accuracy_drop, bool) or not isinstance(max_accuracy_drop, (int, float)) \
            or not math.isfinite(max_accuracy_drop) or max_accuracy_drop < 0:
        raise InputError(f"max_accuracy_drop must be a number of points >= 0, got "
                         f"{max_accuracy_drop!r}")
    _check_debuggable(model, config)
    say = log or (lambda _msg: None)
    x = np.asarray(x_eval, np.float32)
    labels = _labels(y_eval, len(x))
    ref = np.asarray(model.predict(x, verbose=0), np.float32).reshape(len(x), -1)
    float_acc = float(np.mean(ref.argmax(axis=1) == labels))
    if calibrated is None:
        calibrated = calibrate(model, config, representative)
    blobs: dict[int, bytes] = {}
    trials: dict[int, dict[str, Any]] = {}

    def trial(k: int) -> bool:
        if k not in trials:
            blobs[k] = _quantize(calibrated, config, ranking.worst(k) if k else ())
            acc = _accuracy(blobs[k], x, labels)
            trials[k] = {"kept_float": k, "accuracy": round(acc, 6),
                         "drop_points": round(100.0 * (float_acc - acc), 4)}
            say(f"selective: {k} op(s) in float -> accuracy {acc:.2%} "
                f"(drop {trials[k]['drop_points']:.2f} points, budget {max_accuracy_drop})")
        return trials[k]["drop_points"] <= max_accuracy_drop

    ok0 = trial(0)
    if ranking is None:
        ranking = debug_layers(model, config, representative, calibrated=calibrated)
    chosen: int | None = 0 if ok0 else None
    n = len(ranking.layers)
    if chosen is None:
        failing, k = 0, 1
        while chosen is None and failing < n:
            k = min(k, n)
            if trial(k):
                chosen = k
            else:
                failing, k = k, k * 2
        if chosen is not None:
            while chosen - failing > 1:  # bisect: smallest passing k
                mid = (failing + chosen) // 2
                if trial(mid):
                    chosen = mid
                else:
                    failing = mid
    met = chosen is not None
    if chosen is None:
        chosen = max(trials, key=lambda kk: (trials[kk]["accuracy"], -kk))
    plain = _facts(blobs[0], trials[0]["accuracy"], float_acc, latency_runs)
    picked = plain if chosen == 0 else _facts(blobs[chosen], trials[chosen]["accuracy"],
                                               float_acc, latency_runs)
    kept = [{k: r[k] for k in ("rank", "tensor", "op", "layer")} for r in ranking.layers[:chosen]]
    selected = {**picked, "kept_float": kept,
                "float_ops": len(inspect_tflite(blobs[chosen]).float_ops)}
    result = SelectiveResult(
        budget_points=float(max_accuracy_drop), eval_samples=len(x),
        float_accuracy=round(float_acc, 6), int8=plain, selected=selected, met=met,
        trials=[trials[k] for k in sorted(trials)],
    )
    return blobs[chosen], result, ranking


def format_selective(result: SelectiveResult | dict[str, Any]) -> str:
    """A few lines for the terminal: budget, plain int8, what stayed float and its cost.

    Args:
        result: From :func:`selective_quantize`, or its ``to_dict()``.

    Returns:
        Text (no trailing newline).
    """
    d = result.to_dict() if isinstance(result, SelectiveResult) else result
    p, s = d["int8"], d["selected"]
    lines = [
        f"selective quantization: budget {d['budget_points']} points on {d['eval_samples']} "
        f"samples, float accuracy {100 * d['float_accuracy']:.2f} %",
        f"  plain int8     {100 * p['accuracy']:.2f} % (drop {p['drop_points']:.2f}), "
        f"{p['bytes']} bytes, {p['latency_ms']} ms",
    ]
    if not s["kept_float"]:
        lines.append("  plain int8 meets the budget: nothing kept in float")
        return "\n".join(lines)
    names = ", ".join(f"{r['layer'] or r['tensor']} ({r['op']})" for r in s["kept_float"])
    lines += [
        f"  kept in float  {names}",
        f"  selected       {100 * s['accuracy']:.2f} % (drop {s['drop_points']:.2f}), "
        f"{s['bytes']} bytes ({d['cost']['bytes']:+d}), {s['latency_ms']} ms "
        f"(x{d['cost']['latency_ratio']}), {s['float_ops']} float op(s): not full-integer",
        f"  budget         {'met' if d['met'] else 'NOT met (most accurate model kept)'}",
    ]
    return "\n".join(lines)
