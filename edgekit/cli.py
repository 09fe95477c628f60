"""The ``edgekit`` command line (python-fire): one method per command.

Exit codes: 0 ok; 1 a budget or check failed; 2 bad input (one line on stderr, no traceback).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import fire

from edgekit.errors import INPUT_ERRORS, CheckFailed, InputError

EXIT_OK, EXIT_CHECK_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def _print(text: str) -> None:
    print(text, flush=True)


def _summary(report: dict[str, Any], out: Path) -> str:
    final = report["final"]
    lines = [
        f"final model   {out / final['artefact']}",
        f"accuracy      {100 * final['accuracy']:.2f} % int  vs  "
        f"{100 * final['float_accuracy']:.2f} % float  "
        f"(drop {final['accuracy_drop_points']:.2f} points)",
        f"size          {final['bytes']} bytes, {final['gzip_bytes']} gzipped",
        f"full integer  {'yes' if final['full_integer'] else 'NO'}",
    ]
    for b in report["budgets"]:
        verdict = "ok" if b["passed"] else "FAILED"
        if b["name"] == "require_int8":
            lines.append(f"budget        require_int8: {verdict}")
        else:
            lines.append(f"budget        {b['name']} <= {b['limit']} {b['unit']}: "
                         f"{b['value']} {verdict}")
    lines.append(f"report        {out / 'report.md'}")
    return "\n".join(lines)


def _finish_run(outcome: Any) -> None:
    """Prints the outcome of ``run``/``demo``; raises CheckFailed when a budget failed."""
    if outcome.sweep is not None:
        sweep = outcome.sweep
        _print(f"sweep         {len(sweep['candidates'])} candidates, Pareto front: "
               f"{', '.join(sweep['pareto_front'])}")
        for c in sweep["candidates"]:
            mark = "*" if c["pareto"] else " "
            _print(f"  {mark} {c['name']}: {100 * c['accuracy']:.2f} %, {c['bytes']} bytes, "
                   f"{'pass' if c['passed'] else 'FAIL ' + ', '.join(c['failed_budgets'])}")
        _print(f"report        {outcome.out / 'report.html'}")
    else:
        _print(_summary(outcome.report, outcome.out))
    if outcome.junit is not None:
        _print(f"junit         {outcome.junit}")
    if not outcome.passed:
        raise CheckFailed(f"budget(s) failed: {', '.join(outcome.failed_budgets)} "
                          f"(see {outcome.out / 'report.md'})")


class EdgekitCLI:
    """edgekit: Keras model -> small, fast, full-integer TFLite, verified and benchmarked."""

    def demo(self, out: str = "runs/demo", junit: str | None = None) -> None:
        """Runs the whole pipeline on the embedded default (demo CNN on scikit-learn's digits).

        Train -> prune 80 % -> PQAT -> full int8 -> verify -> bench local -> report.

        Args:
            out: The run folder.
            junit: Also write JUnit XML with one test case per budget.
        """
        from edgekit import api

        _finish_run(api.demo(out, junit=junit))

    def run(self, recipe: str, out: str = "runs/run", resume: bool = False,
            junit: str | None = None) -> None:
        """Runs the pipeline a recipe file describes (every candidate, if it has a sweep).

        Args:
            recipe: A .yaml / .json recipe.
            out: The run folder.
            resume: Reuse the stages an earlier run in --out finished.
            junit: Also write JUnit XML with one test case per budget (per candidate).
        """
        from edgekit import api

        _finish_run(api.run(recipe, out, resume=resume, junit=junit))

    def compress(self, model: str, data: str = "digits", out: str = "",
                 prune: float | None = None, qat: bool = False, epochs: int | None = None) -> None:
        """Prunes and/or quantization-aware-trains a Keras model.

        Args:
            model: A .keras / .h5 / SavedModel path.
            data: "digits", an .npz with x and y, or an image folder.
            out: Output model path (.keras; .h5 when --qat: tf_keras reloads QAT models only
                from .h5).
            prune: Final sparsity in [0, 1) (PolynomialDecay schedule); omit to skip pruning.
            qat: Quantization-aware training (prune-preserving when the model is sparse).
            epochs: Fine-tuning epochs of each stage (default: each stage's own).
        """
        from edgekit import api

        if not out:
            raise InputError("--out is required: the path of the compressed model")
        result = api.compress(model, out=out, data=data, prune=prune, qat=qat, epochs=epochs,
                              log=_print)
        _print(f"wrote {result['out']}")

    def convert(self, model: str, data: str = "digits", out: str = "", mode: str = "int8",
                io: str | None = None, samples: int = 200, seed: int = 0,
                per_channel: bool = True) -> None:
        """Converts a Keras model to TFLite and verifies it on the held-out split.

        Args:
            model: A .keras / .h5 / SavedModel path.
            data: Calibration and verification data ("digits", .npz, image folder).
            out: Output .tflite path.
            mode: int8 | int16x8 | float16 | dynamic | float32.
            io: Input/output type: int8 | uint8 | float32 (int8 mode; default int8).
            samples: Calibration samples drawn from the training split.
            seed: Seed of the calibration draw (indices saved beside the model).
            per_channel: Per-channel weight quantization.
        """
        from edgekit import api

        result = api.convert(model, out=out, data=data, mode=mode, io=io, samples=samples,
                             seed=seed, per_channel=per_channel)
        if result["calibration_record"] is not None:
            _print(f"calibration: {samples} samples max, seed {seed} -> "
                   f"{result['calibration_record']}")
        _print(f"wrote {result['out']}")
        _print(json.dumps(result["verification"].to_dict(), indent=2))

    def inspect(self, model: str, require_int8: bool = False, json_out: str | None = None
                ) -> None:
        """Lists ops, tensor dtypes, I/O quantization, size raw/gzip, weight sparsity.

        Args:
            model: A .tflite file.
            require_int8: Exit 1 when any float op or float input/output remains.
            json_out: Also write the inspection as JSON to this path.
        """
        from device_bench.atomicio import write_json
        from edgekit import api
        from edgekit.converters import format_inspection

        found = api.inspect(model)
        result, sparsity = found["inspection"], found["weight_sparsity"]
        _print(format_inspection(result, sparsity))
        if json_out:
            write_json(json_out, {**result.to_dict(), "weight_sparsity": sparsity})
        if require_int8 and not result.full_integer:
            ops = sorted({o["op"] for o in result.float_ops})
            raise CheckFailed(
                f"{model} is not full-integer: float ops {ops or 'none'}, "
                f"float inputs/outputs {list(result.float_io) or 'none'}"
            )

    def bench(self, model: str, target: str = "local", threads: int | None = None,
              warmup: int = 20, runs: int = 200, min_seconds: float = 1.0, windows: int = 5,
              energy: str = "none", json: str | None = None) -> None:
        """Benchmarks a .tflite on a target (latency, memory).

        Args:
            model: The .tflite file.
            target: local (ssh/adb/qemu targets arrive later).
            threads: Interpreter threads.
            warmup: Warm-up runs.
            runs: Timed runs (at least).
            min_seconds: Minimum timed seconds.
            windows: Measurement windows (CV over their medians).
            energy: none (energy sources arrive later).
            json: Write the edgekit.bench/1 JSON to this path.
        """
        from device_bench.atomicio import write_json
        from edgekit import api

        if energy not in ("none", "auto"):
            raise InputError(f"--energy must be none or auto in this version, got {energy!r}")
        result = api.bench(model, target=target, threads=threads, warmup=warmup, runs=runs,
                           min_seconds=min_seconds, windows=windows)
        lat = result["latency_ms"]
        _print(f"{model} on {target}: p50 {lat['p50']:.3f} ms  p90 {lat['p90']:.3f} ms  "
               f"p99 {lat['p99']:.3f} ms  mean {lat['mean']:.3f} ± {lat['std']:.3f} ms  "
               f"cv {lat['cv']}  init {lat['init']:.2f} ms  first {lat['first']:.3f} ms  "
               f"peak RSS {result['memory']['peak_rss_mb']} MB  ({result['runs']} runs)")
        if json:
            write_json(json, result)

    def compare(self, run_a: str, run_b: str) -> None:
        """Shows what changed between two runs: accuracy, size, latency, ops, budgets.

        Args:
            run_a: A run folder (or its report.json): before.
            run_b: The same: after.
        """
        from edgekit import api
        from edgekit.comparison import format_comparison

        _print(format_comparison(api.compare(run_a, run_b), str(run_a), str(run_b)))

    def models(self) -> None:
        """Lists the reference models that recipes and `run` can name."""
        from edgekit.models import available_models

        _print("\n".join(available_models()))


def main(argv: list[str] | None = None) -> int:
    """Console entry point.

    Args:
        argv: Arguments (default: sys.argv[1:]).

    Returns:
        The exit code (also raised as SystemExit by the console script wrapper).
    """
    try:
        fire.Fire(EdgekitCLI(), command=argv if argv is not None else sys.argv[1:],
                  name="edgekit")
    except INPUT_ERRORS as e:
        print(f"edgekit: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except CheckFailed as e:
        print(f"edgekit: check failed: {e}", file=sys.stderr)
        return EXIT_CHECK_FAILED
    except fire.core.FireExit as e:
        return int(e.code or 0)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
