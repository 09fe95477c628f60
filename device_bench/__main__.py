"""``python -m device_bench MODEL.tflite [--json [OUT]] ...``: benchmark a model on this machine.

Runs on the device with only numpy and a TFLite interpreter (argparse, not fire). Exit codes:
0 ok; 1 the interpreter failed while running the model; 2 bad input (one line on stderr, no
traceback); 130 / 143 interrupted by SIGINT / SIGTERM (one line, see device_bench.interrupts).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from device_bench.atomicio import check_parent, write_json
from device_bench.errors import BenchInputError, TargetError
from device_bench.interrupts import (
    exit_code_of,
    interrupt_message,
    interrupts_as_exceptions,
    raise_if_interrupted,
)
from device_bench.runner import BenchOptions, run_benchmark

__all__ = ["build_parser", "format_summary", "main", "options_from_args"]

PROG = "device_bench"
# What --target-kind accepts: a kind's name (each target module declares its own; the device
# side does not import them). See device_bench.targets.base.TargetKind.
_KIND_RE = re.compile(r"^[a-z][a-z0-9-]*$")


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line as one ``device_bench: error: ...`` line."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _target_kind(text: str) -> str:
    if not _KIND_RE.match(text):
        raise argparse.ArgumentTypeError(
            f"target kind must be a name such as local or ssh (lower-case letters, digits, "
            f"'-'), got {text!r}")
    return text


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser (its options mirror :class:`BenchOptions`).

    Returns:
        The parser.
    """
    d = BenchOptions()
    p = _Parser(
        prog=PROG,
        description="Benchmark a .tflite model on this machine (edgekit.bench/1 result).",
    )
    p.add_argument("model", help="the .tflite file")
    p.add_argument("--json", nargs="?", const="-", default=None, metavar="OUT",
                   help="print the JSON result, or write it atomically to OUT")
    p.add_argument("--threads", type=int, default=d.threads,
                   help="interpreter threads (default: the interpreter's own)")
    p.add_argument("--warmup", type=int, default=d.warmup,
                   help=f"minimum warm-up inferences (default {d.warmup})")
    p.add_argument("--warmup-seconds", type=float, default=d.warmup_seconds,
                   help=f"minimum warm-up seconds (default {d.warmup_seconds})")
    p.add_argument("--runs", type=int, default=d.runs,
                   help=f"minimum timed inferences (default {d.runs})")
    p.add_argument("--min-seconds", type=float, default=d.min_seconds,
                   help=f"minimum total timed seconds (default {d.min_seconds})")
    p.add_argument("--windows", type=int, default=d.windows,
                   help=f"measurement windows for the cv (default {d.windows})")
    p.add_argument("--seed", type=int, default=d.seed,
                   help=f"seed of the random input (default {d.seed})")
    p.add_argument("--no-xnnpack", action="store_true",
                   help="built-in kernels only, without the XNNPACK delegate")
    p.add_argument("--input", default=None, metavar="FILE",
                   help=".npy/.npz input data (default: seeded random)")
    p.add_argument("--energy", default=d.energy, metavar="SPEC",
                   help="energy per inference: none, auto, rapl, hwmon[:NAME], pi5-pmic, "
                        f"android, meter:CMD, profile[:BOARD] (default {d.energy})")
    p.add_argument("--energy-seconds", type=float, default=d.energy_seconds,
                   help=f"minimum energy window in seconds (default {d.energy_seconds:g})")
    p.add_argument("--target-kind", default="local", type=_target_kind, metavar="KIND",
                   help="target.kind to report (set by remote targets)")
    return p


def options_from_args(args: argparse.Namespace) -> BenchOptions:
    """Builds options from parsed arguments.

    Args:
        args: From :func:`build_parser`.

    Returns:
        The options.

    Raises:
        BenchInputError: A value is out of range.
    """
    return BenchOptions(
        threads=args.threads,
        warmup=args.warmup,
        warmup_seconds=args.warmup_seconds,
        runs=args.runs,
        min_seconds=args.min_seconds,
        windows=args.windows,
        seed=args.seed,
        xnnpack=not args.no_xnnpack,
        input_path=args.input,
        energy=args.energy,
        energy_seconds=args.energy_seconds,
    )


def _fmt(value: Any, unit: str = " ms") -> str:
    return "n/a" if value is None else f"{value:.4g}{unit}"


def format_summary(result: dict[str, Any]) -> str:
    """A short human summary of a bench result.

    Args:
        result: An ``edgekit.bench/1`` dict.

    Returns:
        A few lines of text (no trailing newline).
    """
    lat = result["latency_ms"]
    rt = result["runtime"]
    tgt = result["target"]
    cv = lat.get("cv")
    threads = rt["threads"] if rt["threads"] is not None else "default"
    return "\n".join([
        f"{result['model']['path']}  ({result['model']['bytes']} bytes, "
        f"{result['model']['gzip_bytes']} gzipped)",
        f"{rt['interpreter']} {rt['version'] or ''}  delegate {rt['delegate']}  "
        f"threads {threads}  on {tgt['cpu'] or tgt['machine'] or 'unknown cpu'}",
        f"runs {result['runs']} (warm-up {result['warmup']})",
        f"p50 {_fmt(lat['p50'])}  p90 {_fmt(lat['p90'])}  mean {_fmt(lat['mean'])}  "
        f"cv {'n/a' if cv is None else f'{cv * 100:.1f}%'}",
        f"init {_fmt(lat['init'])}  first {_fmt(lat['first'])}  "
        f"peak RSS {_fmt(result['memory']['peak_rss_mb'], ' MB')}",
        *_energy_line(result.get("energy")),
    ])


def _energy_line(energy: dict[str, Any] | None) -> list[str]:
    if not energy:
        return []
    kind = "measured" if energy["measured"] else "ESTIMATE"
    return [f"energy {_fmt(energy['mj_per_inference'], ' mJ')}/inference "
            f"({_fmt(energy['mj_per_inference_above_idle'], ' mJ')} above idle; idle "
            f"{_fmt(energy['idle_w'], ' W')}, active {_fmt(energy['active_w'], ' W')}; "
            f"{kind}, {energy['source']})"]


def _one_line(err: BaseException) -> str:
    return " ".join(line.strip() for line in str(err).splitlines() if line.strip())


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line.

    Args:
        argv: Arguments without the program name; None reads ``sys.argv``.

    Returns:
        The exit code: 0 ok, 1 the model failed to run, 2 bad input, 130 / 143 interrupted
        by SIGINT / SIGTERM (one line; a --json file is never half-written).
    """
    with interrupts_as_exceptions():
        try:
            args = build_parser().parse_args(argv)
            options = options_from_args(args)
            if args.json not in (None, "-"):
                check_parent(args.json)  # before the run, not after it
            result = run_benchmark(args.model, options, target_kind=args.target_kind)
            raise_if_interrupted()  # a signal the interpreter's C code swallowed: no result
            if args.json == "-":
                sys.stdout.write(json.dumps(result, indent=2) + "\n")
            elif args.json is not None:
                write_json(args.json, result)
            else:
                print(format_summary(result))
        except BenchInputError as e:
            print(f"{PROG}: error: {_one_line(e)}", file=sys.stderr)
            return 2
        except TargetError as e:
            print(f"{PROG}: error: {_one_line(e)}", file=sys.stderr)
            return 1
        except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM turned into Interrupted
            print(interrupt_message(e, PROG), file=sys.stderr, flush=True)
            return exit_code_of(e)
    return 0


if __name__ == "__main__":
    sys.exit(main())
