"""The ``edgekit`` command line (python-fire): one method per command.

Exit codes: 0 ok; 1 a budget or check failed; 2 bad input (one line on stderr, no traceback);
130 / 143 interrupted by SIGINT (Ctrl-C) / SIGTERM (one line, temp files removed, no traceback).
"""

from __future__ import annotations

import inspect
import json
import sys
from pathlib import Path
from typing import Any

import fire

from device_bench.interrupts import (
    exit_code_of,
    interrupt_message,
    interrupts_as_exceptions,
    raise_if_interrupted,
)
from edgekit.core.errors import INPUT_ERRORS, CheckFailed, InputError

EXIT_OK, EXIT_CHECK_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f} ms"


def _print(text: str) -> None:
    raise_if_interrupted()  # a progress line is a safe point (device_bench.interrupts)
    print(text, flush=True)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f} %"


def _summary(report: Any, out: Path) -> str:
    """The run's result in a few lines (``report``: a ``Report`` or its dict)."""
    from edgekit.report_types import as_report

    report = as_report(report)
    final = report.final
    drop = "n/a" if final.accuracy_drop_points is None else f"{final.accuracy_drop_points:.2f}"
    lines = [
        f"final model   {out / final.artefact}",
        f"accuracy      {_pct(final.accuracy)} int  vs  {_pct(final.float_accuracy)} float  "
        f"(drop {drop} points)",
        f"size          {final.bytes} bytes, {final.gzip_bytes} gzipped",
        f"full integer  {'yes' if final.full_integer else 'NO'}",
    ]
    for b in report.budgets:
        verdict = "ok" if b.passed else "FAILED"
        if b.name == "require_int8":
            lines.append(f"budget        require_int8: {verdict}")
        else:
            lines.append(f"budget        {b.name} <= {b.limit} {b.unit}: {b.value} {verdict}")
    lines.append(f"report        {out / 'report.md'}")
    return "\n".join(lines)


def _finish_run(outcome: Any) -> None:
    """Prints the outcome of ``run``/``demo``; raises CheckFailed when a budget failed."""
    if outcome.sweep is not None:
        sweep = outcome.sweep
        _print(f"sweep         {len(sweep['candidates'])} candidates, Pareto front: "
               f"{', '.join(sweep['pareto_front'])}")
        for c in sweep["candidates"]:
            if c.get("status") == "failed":
                _print(f"  x {c['name']}: FAILED in {c['failed_phase']}: {c['error']}")
                continue
            mark = "*" if c["pareto"] else " "
            _print(f"  {mark} {c['name']}: {100 * c['accuracy']:.2f} %, {c['bytes']} bytes, "
                   f"{'pass' if c['passed'] else 'FAIL ' + ', '.join(c['failed_budgets'])}")
        _print(f"report        {outcome.out / 'report.html'}")
    else:
        _print(_summary(outcome.typed_report, outcome.out))
    if outcome.junit is not None:
        _print(f"junit         {outcome.junit}")
    if not outcome.passed:
        failed = (outcome.sweep or {}).get("failed") or []
        what = [f"candidate(s) failed: {', '.join(failed)}"] if failed else []
        if outcome.failed_budgets or not failed:
            what.append(f"budget(s) failed: {', '.join(outcome.failed_budgets)}")
        raise CheckFailed(f"{'; '.join(what)} (see {outcome.out / 'report.md'})")


class DataCLI:
    """Data sets edgekit makes on this machine (``edgekit data kws``)."""

    def kws(self, out: str = "kws.npz", wav_dir: str | None = None, seed: int = 0,
            takes: int | None = None, test_takes: int | None = None) -> None:
        """Writes the keyword-spotting set (espeak-ng speech, 49x10 MFCC) as one .npz.

        Made on first use and cached (see edgekit.data.kws); the held-out split speaks with
        voices training never hears.

        Args:
            out: The .npz to write.
            wav_dir: Also write every clip as DIR/<split>/<class>/<voice>_<take>.wav.
            seed: Seed of every draw.
            takes: Takes per training speaker (each: every keyword, an unknown word, silence).
            test_takes: Takes per held-out speaker.
        """
        from edgekit import api

        r = api.kws_data(out, wav_dir=wav_dir, seed=seed, takes=takes, test_takes=test_takes)
        how = "from the cache" if r["cached"] else f"made in {r['seconds']:.0f} s"
        _print(f"wrote {r['out']}: {r['train_samples']} training and {r['test_samples']} "
               f"held-out clips, {len(r['class_names'])} classes ({how}; cache {r['cache']})")


class EdgekitCLI:
    """edgekit: Keras model -> small, fast, full-integer TFLite, verified and benchmarked."""

    data = DataCLI()

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
            junit: str | None = None, plan: bool = False, unsafe_load: bool = False,
            executor: str | None = None) -> None:
        """Runs the pipeline a recipe file describes (every candidate, if it has a sweep).

        Args:
            recipe: A .yaml / .json recipe.
            out: The run folder.
            resume: Reuse the stages an earlier run in --out finished.
            junit: Also write JUnit XML with one test case per budget (per candidate).
            plan: Print what the run would do (stages, fingerprints, conversions, the stages
                candidates share) as JSON, and run nothing.
            unsafe_load: Trust the Python code (Lambda layers) in the model files the recipe
                names, which loading runs (as the recipe's unsafe_load: true); without it such
                a model is refused (exit 2).
            executor: Where a sweep's candidates run: local (this process), ray (the Ray
                cluster at RAY_ADDRESS or on this machine) or ray:HOST:PORT; over the recipe's
                executor. Ray needs `pip install 'edgekit[ray]'`.
        """
        from edgekit import api

        if plan:
            _print(json.dumps(api.plan(recipe), indent=2))
            return
        _finish_run(api.run(recipe, out, resume=resume, junit=junit, unsafe_load=unsafe_load,
                            executor=None if executor is None else str(executor)))

    def compress(self, model: str, data: str = "digits", out: str = "",
                 prune: float | None = None, qat: bool = False, epochs: int | None = None,
                 teacher: str | None = None, temperature: float = 4.0,
                 distill_alpha: float = 0.9, lowrank: float | None = None,
                 channels: float | None = None, importance: str = "l1", scope: str = "layer",
                 round_to: int | None = None, target_latency_ms: float | None = None,
                 target_latency_ratio: float | None = None,
                 target_instructions_ratio: float | None = None,
                 target_macs_ratio: float | None = None, on: str | None = None,
                 stat: str = "p50", threads: int = 1, unsafe_load: bool = False) -> None:
        """Channel-prunes, factorizes, prunes, distils and/or quantization-aware-trains a model.

        Args:
            model: A .keras / .h5 / SavedModel path (Keras 3 files are bridged to tf_keras).
            data: "digits", an .npz with x and y, or an image folder.
            out: Output model path (.keras; .h5 when --qat: tf_keras reloads QAT models only
                from .h5).
            prune: Final sparsity in [0, 1) (PolynomialDecay schedule); omit to skip pruning.
            qat: Quantization-aware training (prune-preserving when the model is sparse).
            epochs: Fine-tuning epochs of each stage (default: each stage's own).
            teacher: A model whose softened outputs guide every fine-tune (distillation); alone,
                it distils into MODEL.
            temperature: Distillation temperature T.
            distill_alpha: Weight of the soft (KL) term; 1 - alpha weighs the labels.
            lowrank: SVD-factorize Dense / 1x1 Conv2D kernels keeping this energy share (0, 1].
            channels: Remove this share of channels in [0, 1) (whole filters: a smaller dense
                model), then fine-tune; runs before the other stages.
            importance: Channel criterion: l1, l2, bn_gamma, taylor, fisher, snip, hessian,
                activation, apoz.
            scope: Channel cut per group ("layer") or one threshold over all ("global").
            round_to: Keep channel counts at multiples of this (default: the stage's).
            target_latency_ms: Instead of --channels, search per-group channel counts until
                the int8 model runs within this many ms on --on (measured there).
            target_latency_ratio: ... within this share of the dense int8 model's latency.
            target_instructions_ratio: ... within this share of its guest instructions on
                --on qemu-aarch64[:CPU] (instructions, not time).
            target_macs_ratio: ... within this share of its MACs (counted; no device).
            on: The device_bench target the search measures on (local, ssh://USER@HOST,
                adb://SERIAL, qemu-aarch64[:CPU]).
            stat: Latency statistic of the target: p50, p90, p99, mean.
            threads: Interpreter threads of the latency measurements.
            unsafe_load: Trust the Python code (Lambda layers) in the model files (MODEL,
                --teacher), which loading runs; without it such a model is refused (exit 2).
        """
        from edgekit import api

        if not out:
            raise InputError("--out is required: the path of the compressed model")
        budgets = {k: v for k, v in (("latency_ms", target_latency_ms),
                                     ("latency_ratio", target_latency_ratio),
                                     ("instructions_ratio", target_instructions_ratio),
                                     ("macs_ratio", target_macs_ratio)) if v is not None}
        target = None
        if budgets:
            if len(budgets) > 1:
                raise InputError(f"give one --target-... flag, got "
                                 f"{', '.join('--target-' + k.replace('_', '-') for k in budgets)}")
            target = {**budgets, **({"on": on} if on is not None else {})}
            if "macs_ratio" not in budgets and "instructions_ratio" not in budgets:
                target.update(stat=stat, threads=threads)
        elif on is not None:
            raise InputError("--on names the device of a --target-... budget; give one")
        result = api.compress(model, out=out, data=data, prune=prune, qat=qat, epochs=epochs,
                              teacher=teacher, temperature=temperature,
                              distill_alpha=distill_alpha, lowrank=lowrank, channels=channels,
                              importance=importance, scope=scope, round_to=round_to,
                              target=target, log=_print, unsafe_load=unsafe_load)
        _print(f"wrote {result['out']}")

    def convert(self, model: str, data: str = "digits", out: str = "", mode: str = "int8",
                io: str | None = None, samples: int = 200, seed: int = 0,
                per_channel: bool = True, calibration: str | None = None,
                max_accuracy_drop: float | None = None, debug_layers: bool = False,
                unsafe_load: bool = False) -> None:
        """Converts a Keras model to TFLite and verifies it on the held-out split.

        Args:
            model: A .keras / .h5 / SavedModel path.
            data: Calibration and verification data ("digits", .npz, image folder).
            out: Output .tflite path.
            mode: int8 | int16x8 | float16 | dynamic | float32.
            io: Input/output type: int8 | uint8 | float32 (int8 mode; default int8).
            samples: Calibration samples drawn from the training split (or --calibration).
            seed: Seed of the calibration draw (indices saved beside the model).
            per_channel: Per-channel weight quantization.
            calibration: Calibrate on this instead of the training split: a .npy/.npz file
                (arrays named after the model inputs, or x) or an image folder (resized to the
                model input, scaled to [0, 1]).
            max_accuracy_drop: int8: keep the fewest worst layers in float until the held-out
                accuracy drop is at most this many points (the model is then not full-integer).
            debug_layers: int8: rank the layers by quantization error; saved beside the model
                as <name>.layers.json.
            unsafe_load: Trust the Python code (Lambda layers) in the model file, which
                loading runs; without it such a model is refused (exit 2).
        """
        from edgekit import api
        from edgekit.converters import format_quant_debug, format_selective

        result = api.convert(model, out=out, data=data, mode=mode, io=io, samples=samples,
                             seed=seed, per_channel=per_channel, calibration=calibration,
                             max_accuracy_drop=max_accuracy_drop, debug_layers=debug_layers,
                             log=_print, unsafe_load=unsafe_load)
        if result["calibration_record"] is not None:
            _print(f"calibration: {samples} samples max, seed {seed} -> "
                   f"{result['calibration_record']}")
        if result["quant_debug"] is not None:
            _print(format_quant_debug(result["quant_debug"]))
            _print(f"layers: {Path(out).parent / result['quant_debug']['record']}")
        if result["selective"] is not None:
            _print(format_selective(result["selective"]))
        _print(f"wrote {result['out']}")
        _print(json.dumps(result["verification"].to_dict(), indent=2))

    def inspect(self, model: str, require_int8: bool = False, json_out: str | None = None
                ) -> None:
        """Lists the op histogram, tensor dtypes and float tensors, I/O quantization, size
        raw/gzip, weight sparsity, and whether XNNPACK's sparse inference applies.

        Args:
            model: A .tflite file.
            require_int8: Exit 1 when any float op or float input/output remains.
            json_out: Also write the inspection as JSON to this path.
        """
        from device_bench.atomicio import write_json
        from edgekit import api
        from edgekit.converters import format_inspection, format_xnnpack_sparse

        found = api.inspect(model)
        result, sparsity = found["inspection"], found["weight_sparsity"]
        _print(format_inspection(result, sparsity))
        _print("")
        _print(format_xnnpack_sparse(found["xnnpack_sparse"]))
        if json_out:
            write_json(json_out, {**result.to_dict(), "weight_sparsity": sparsity,
                                  "xnnpack_sparse": found["xnnpack_sparse"].to_dict()})
        if require_int8 and not result.full_integer:
            ops = sorted({o["op"] for o in result.float_ops})
            raise CheckFailed(
                f"{model} is not full-integer: float ops {ops or 'none'}, "
                f"float inputs/outputs {list(result.float_io) or 'none'}"
            )

    def bench(self, model: str, target: str = "local", threads: int | None = None,
              warmup: int = 20, runs: int = 200, min_seconds: float = 1.0, windows: int = 5,
              energy: str = "none", energy_seconds: float = 10.0,
              json: str | None = None) -> None:
        """Benchmarks a .tflite on one or several targets (latency, memory, energy).

        Several targets (``--target=local,qemu-aarch64``, a repeated ``--target``, or a list
        ``--target='[local,x]'``) run in turn and print one comparison table. A target that
        fails is marked FAILED with its reason, the others still run, and the exit code is 1.

        Args:
            model: The .tflite file.
            target: local | ssh://USER@HOST[:PORT] | adb://SERIAL | qemu-aarch64[:CPU], or
                several, comma-separated.
            threads: Interpreter threads.
            warmup: Warm-up runs.
            runs: Timed runs (at least).
            min_seconds: Minimum timed seconds.
            windows: Measurement windows (CV over their medians).
            energy: none | auto | rapl | hwmon[:NAME] | pi5-pmic | android | meter:CMD |
                profile[:BOARD] (auto falls back to a board estimate, marked measured: false).
            energy_seconds: Minimum energy window in seconds (after an idle baseline).
            json: Write the JSON here: for one target the edgekit.bench/1 dict; for several
                the edgekit.bench-comparison/1 object keyed by target (edgekit.bench_table).
        """
        from device_bench.atomicio import check_parent, write_json
        from device_bench.errors import TargetError
        from edgekit import api
        from edgekit.bench_table import (
            TargetOutcome,
            format_table,
            outcomes_from_dict,
            parse_targets,
        )

        specs = parse_targets(target)
        if json:
            check_parent(json)  # a bad --json path fails before the benchmark, not after it
        options = {"threads": threads, "warmup": warmup, "runs": runs,
                   "min_seconds": min_seconds, "windows": windows, "energy": energy,
                   "energy_seconds": energy_seconds}
        if len(specs) > 1:
            comparison = api.bench(model, target=specs, **options)
            outcomes = outcomes_from_dict(comparison)
            _print(format_table(outcomes))
            if json:
                write_json(json, comparison)
            failed = [o.target for o in outcomes if not o.ok]
            if failed:
                raise CheckFailed(f"{len(failed)} of {len(outcomes)} targets failed: "
                                  f"{', '.join(failed)}")
            return
        try:
            result = api.bench(model, target=specs[0], **options)
        except TargetError as e:
            raise CheckFailed(f"target {specs[0]} failed: {e}") from e
        _print(format_table([TargetOutcome(specs[0], result)]))
        _print(f"{model}: {result['runs']} runs (warm-up {result['warmup']}), first "
               f"{_ms(result['latency_ms']['first'])}")
        en = result.get("energy")
        if en:
            kind = "measured" if en["measured"] else "estimate, not measured"
            _print(f"energy {en['mj_per_inference']:.4g} mJ/inference "
                   f"({en['mj_per_inference_above_idle']:.4g} mJ above idle; idle "
                   f"{en['idle_w']:.3g} W, active {en['active_w']:.3g} W; {kind}: "
                   f"{en['source']})")
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
        from edgekit.models.registry import model_info

        infos = [model_info(name) for name in available_models()]
        width = max(len(i.name) for i in infos)
        _print("\n".join(f"{i.name:<{width}}  {i.task.value:<14}  {i.summary}" for i in infos))


def merge_repeated_flag(argv: list[str], flag: str) -> list[str]:
    """Joins every ``FLAG V`` / ``FLAG=V`` into one ``FLAG=V1,V2`` (fire keeps only the last).

    Args:
        argv: The command line without the program name.
        flag: The flag that may repeat, e.g. ``--target``.

    Returns:
        ``argv`` unchanged when the flag appears at most once, else with one merged flag placed
        where the first one was.
    """
    values: list[str] = []
    rest: list[str] = []
    first = -1
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            rest += argv[i:]
            break
        if arg == flag and i + 1 < len(argv):
            value, i = argv[i + 1], i + 2
        elif arg.startswith(flag + "="):
            value, i = arg[len(flag) + 1:], i + 1
        else:
            rest.append(arg)
            i += 1
            continue
        first = len(rest) if first < 0 else first
        values.append(value)
    if len(values) < 2:
        return argv
    rest.insert(first, f"{flag}={','.join(values)}")
    return rest


def _is_flag(token: str) -> bool:
    """fire's rule: a token starting with '-' that is not a number is a flag."""
    if not token.startswith("-"):
        return False
    try:
        float(token)
    except ValueError:
        return True
    return False


def check_arguments(argv: list[str]) -> None:
    """Refuses an unknown command or option, a missing or an extra argument, before anything runs.

    fire reads a command line only as far as it can, *runs* the command, and only then reports
    what it could not use (``edgekit run r.yaml --resum`` would run the whole pipeline, then
    exit 2 with a usage screen). This walks the line the way fire does (``--name value``,
    ``--name=value``, a flag followed by a flag or nothing is boolean, ``--noNAME``) against the
    command's signature. Help (``-h``, ``--help``), fire's own flags after ``--``, short flags
    and chained calls (``-``) are left to fire.

    Args:
        argv: The command line without the program name.

    Raises:
        InputError: An unknown command or option, a required argument missing, or one too many.
    """
    words = argv[: argv.index("--")] if "--" in argv else list(argv)
    if not words or words[0].startswith("-") or {"-h", "--help", "-"} & set(words):
        return
    target: Any = EdgekitCLI
    command = []
    while True:
        word = words[len(command)] if len(command) < len(words) else None
        names = sorted(n for n in vars(target) if not n.startswith("_"))
        if word is None or word.startswith("-"):
            raise InputError(f"`{' '.join(['edgekit', *command])}` needs a command: "
                             f"{', '.join(names)}")
        if word not in names:
            raise InputError(f"unknown command {' '.join(['edgekit', *command, word])!r}; "
                             f"expected one of: {', '.join(names)}")
        command.append(word)
        target = getattr(target, word)
        if not isinstance(target, DataCLI):
            break
        target = type(target)
    params = inspect.signature(target).parameters
    params = {k: v for k, v in params.items() if k != "self"}
    shown = f"`edgekit {' '.join(command)}`"
    given: set[str] = set()
    positional: list[str] = []
    rest = words[len(command):]
    i = 0
    while i < len(rest):
        token = rest[i]
        if not _is_flag(token):
            positional.append(token)
            i += 1
            continue
        if not token.startswith("--"):
            return  # a short flag (fire's first-letter shortcut): fire decides
        key = token.lstrip("-").split("=", 1)[0].replace("-", "_")
        boolean = "=" not in token and (i + 1 == len(rest) or _is_flag(rest[i + 1]))
        if key not in params and not (boolean and key.startswith("no") and key[2:] in params):
            known = ", ".join("--" + k.replace("_", "-") for k in params)
            raise InputError(f"unknown option {token.split('=', 1)[0]!r} for {shown}; known "
                             f"options: {known}")
        given.add(key if key in params else key[2:])
        i += 1 if "=" in token or boolean else 2
    free = [k for k in params if k not in given]
    if len(positional) > len(free):
        raise InputError(f"unexpected argument {positional[len(free)]!r} for {shown}; it "
                         f"takes {', '.join(k.upper() for k in params) or 'no arguments'}")
    missing = [k for k in free[len(positional):] if params[k].default is inspect.Parameter.empty]
    if missing:
        raise InputError(f"{shown} needs {', '.join(k.upper() for k in missing)} "
                         f"(see `edgekit {' '.join(command)} --help`)")


def main(argv: list[str] | None = None) -> int:
    """Console entry point.

    Args:
        argv: Arguments (default: sys.argv[1:]).

    Returns:
        The exit code (also raised as SystemExit by the console script wrapper).
    """
    args = merge_repeated_flag(list(argv if argv is not None else sys.argv[1:]), "--target")
    with interrupts_as_exceptions():
        try:
            check_arguments(args)  # fire would run the command first, then refuse a typo
            fire.Fire(EdgekitCLI(), command=args, name="edgekit")
            raise_if_interrupted()  # a signal whose exception was swallowed on the way
        except INPUT_ERRORS as e:
            print(f"edgekit: error: {e}", file=sys.stderr)
            return EXIT_BAD_INPUT
        except CheckFailed as e:
            print(f"edgekit: check failed: {e}", file=sys.stderr)
            return EXIT_CHECK_FAILED
        except fire.core.FireExit as e:
            return int(e.code or 0)
        except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM turned into Interrupted
            # On a terminal a progress bar may be mid-line: start a fresh one.
            fresh = "\n" if sys.stderr.isatty() else ""
            print(f"{fresh}{interrupt_message(e, 'edgekit', _resume_hint(args))}",
                  file=sys.stderr, flush=True)
            return exit_code_of(e)
    return EXIT_OK


def _resume_hint(args: list[str]) -> str:
    """What continues an interrupted command (``run`` resumes; the rest start over)."""
    if args[:1] == ["run"]:
        return "`edgekit run --resume` continues from the last finished stage"
    return ""


if __name__ == "__main__":
    sys.exit(main())
