"""device_bench.runner: options, inputs and the edgekit.bench/1 result of a real measurement."""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from device_bench.__main__ import build_parser, options_from_args
from device_bench.errors import BenchInputError
from device_bench.interpreter import load_interpreter, quantize_input
from device_bench.runner import SCHEMA, BenchOptions, make_inputs, model_facts, run_benchmark

REPO = Path(__file__).resolve().parents[2]
FAST = BenchOptions(runs=20, min_seconds=0.05, warmup=3, warmup_seconds=0.01)

# Schema key -> allowed types (None allowed where the figure may be unmeasurable).
TARGET_TYPES: dict[str, tuple[type, ...]] = {
    "kind": (str,), "host": (str, type(None)), "machine": (str, type(None)),
    "cpu": (str, type(None)), "cores": (int, type(None)), "os": (str, type(None)),
    "governor": (str, type(None)), "temperature_c": (float, type(None)),
    "throttled": (bool, type(None)),
}
LATENCY_KEYS = ["init", "first", "mean", "std", "min", "p50", "p90", "p99", "max", "cv"]


# ---- BenchOptions -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"runs": 3}, "runs must be >= windows (5), got 3"),
        ({"runs": 0}, "runs must be >= 1, got 0"),
        ({"windows": 0}, "windows must be >= 1, got 0"),
        ({"warmup": -1}, "warmup must be >= 0, got -1"),
        ({"threads": 0}, "threads must be >= 1, got 0"),
        ({"min_seconds": -0.5}, "min_seconds must be a finite number of seconds >= 0, got -0.5"),
        ({"warmup_seconds": math.nan}, "warmup_seconds must be a finite number of seconds"),
        ({"seed": -1}, "seed must be >= 0, got -1"),
        ({"runs": 2.5}, "runs must be an integer >= 1, got 2.5"),
        ({"warmup": True}, "warmup must be an integer >= 0, got True"),
        ({"xnnpack": "no"}, "xnnpack must be true or false, got 'no'"),
        ({"input_path": 3}, "input_path must be a path to an .npy/.npz file or None, got 3"),
    ],
)
def test_options_validation_names_the_argument(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(BenchInputError) as err:
        BenchOptions(**kwargs)
    assert str(err.value).startswith(message)


def test_options_defaults_and_dict_round_trip() -> None:
    default = BenchOptions()
    # The one source of the bench defaults (the CLIs and recipes read them from here).
    assert (default.runs, default.windows, default.warmup, default.threads) == (200, 5, 20, None)
    assert (default.min_seconds, default.energy, default.energy_seconds) == (1.0, "none", 10.0)
    custom = BenchOptions(threads=2, runs=50, windows=2, min_seconds=0.5, seed=7, xnnpack=False,
                          input_path="in.npy", warmup=0, warmup_seconds=0.0)
    as_dict = custom.to_dict()
    assert json.loads(json.dumps(as_dict)) == as_dict
    assert BenchOptions.from_dict(as_dict) == custom
    assert BenchOptions.from_dict({}) == default
    assert BenchOptions(input_path=Path("in.npy")).input_path == "in.npy"  # paths become str


def test_options_from_dict_unknown_key_lists_known() -> None:
    with pytest.raises(BenchInputError) as err:
        BenchOptions.from_dict({"runs": 20, "repeats": 3})
    assert str(err.value) == (
        "unknown bench option(s) 'repeats'; expected any of: threads, warmup, warmup_seconds, "
        "runs, min_seconds, windows, seed, xnnpack, input_path, energy, energy_seconds"
    )


@pytest.mark.parametrize(
    "options",
    [BenchOptions(), FAST, BenchOptions(threads=3, xnnpack=False, input_path="x.npz", seed=4,
                                        windows=2, runs=2, min_seconds=0.0, warmup=0)],
)
def test_options_argv_round_trip(options: BenchOptions) -> None:
    args = build_parser().parse_args(["model.tflite", *options.to_argv()])
    assert options_from_args(args) == options


# ---- inputs -------------------------------------------------------------------------------------


def test_random_inputs_are_seeded_and_typed(tiny) -> None:
    interp = load_interpreter(tiny.int8).interpreter
    a = make_inputs(interp, BenchOptions(seed=1))
    b = make_inputs(interp, BenchOptions(seed=1))
    c = make_inputs(interp, BenchOptions(seed=2))
    assert len(a) == 1 and a[0].dtype == np.int8 and a[0].shape == (1, 8)
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[0], c[0])
    f = make_inputs(load_interpreter(tiny.float32).interpreter, BenchOptions())[0]
    assert f.dtype == np.float32 and f.min() >= 0.0 and f.max() < 1.0


def test_npy_batch_input_is_quantized_first_sample(tiny, tmp_path: Path) -> None:
    path = tmp_path / "in.npy"
    np.save(path, tiny.x[:5])
    interp = load_interpreter(tiny.int8).interpreter
    (got,) = make_inputs(interp, BenchOptions(input_path=str(path)))
    expected = quantize_input(tiny.x[:1], interp.get_input_details()[0])
    np.testing.assert_array_equal(got, expected)
    np.save(path, tiny.x[0])  # one sample without the batch dimension
    np.testing.assert_array_equal(make_inputs(interp, BenchOptions(input_path=str(path)))[0],
                                  expected)


def test_npz_inputs_by_name_for_two_inputs(tiny, tmp_path: Path) -> None:
    interp = load_interpreter(tiny.two_inputs).interpreter
    details = interp.get_input_details()
    arrays = {d["name"]: np.full((1, 3), i + 1, np.float32) for i, d in enumerate(details)}
    path = tmp_path / "in.npz"
    np.savez(path, **arrays)
    got = make_inputs(interp, BenchOptions(input_path=str(path)))
    for d, g in zip(details, got, strict=True):
        np.testing.assert_array_equal(g, arrays[d["name"]])


def test_bad_input_files(tiny, tmp_path: Path) -> None:
    interp = load_interpreter(tiny.int8).interpreter
    with pytest.raises(BenchInputError, match=r"input file .* does not exist"):
        make_inputs(interp, BenchOptions(input_path=str(tmp_path / "none.npy")))
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((2, 7), np.float32))
    with pytest.raises(BenchInputError, match=r"has shape \[2, 7\]; the model input"):
        make_inputs(interp, BenchOptions(input_path=str(wrong)))
    junk = tmp_path / "junk.npy"
    junk.write_bytes(b"not numpy")
    with pytest.raises(BenchInputError, match=r"is not a readable \.npy/\.npz file"):
        make_inputs(interp, BenchOptions(input_path=str(junk)))
    two = load_interpreter(tiny.two_inputs).interpreter
    with pytest.raises(BenchInputError, match="holds one array but the model has 2 inputs"):
        make_inputs(two, BenchOptions(input_path=str(wrong)))


# ---- run_benchmark ------------------------------------------------------------------------------


def test_model_facts_match_the_file(tiny) -> None:
    data = tiny.int8.read_bytes()
    facts = model_facts(tiny.int8)
    assert facts == {
        "path": str(tiny.int8),
        "sha256": hashlib.sha256(data).hexdigest(),
        "bytes": len(data),
        "gzip_bytes": len(gzip.compress(data, compresslevel=9, mtime=0)),  # sizes.py rule
    }
    assert facts["gzip_bytes"] < facts["bytes"]


def test_run_benchmark_result_follows_the_schema(tiny) -> None:
    result = run_benchmark(tiny.int8, FAST)
    schema_keys = ["schema", "model", "target", "runtime", "runs", "warmup", "emulated",
                   "latency_ms", "memory", "energy"]
    assert list(result)[:10] == schema_keys
    assert set(result) - set(schema_keys) == {"options", "window_medians_ms"}  # allowed extras
    assert result["schema"] == SCHEMA == "edgekit.bench/1"
    assert result["model"] == model_facts(tiny.int8)
    assert result["model"]["sha256"] == hashlib.sha256(tiny.int8.read_bytes()).hexdigest()
    assert set(result["target"]) == set(TARGET_TYPES)
    for key, types in TARGET_TYPES.items():
        assert isinstance(result["target"][key], types), key
    assert result["target"]["kind"] == "local"
    assert result["runtime"] == {"interpreter": "ai_edge_litert",
                                 "version": result["runtime"]["version"],
                                 "threads": None, "delegate": "xnnpack"}
    assert isinstance(result["runtime"]["version"], str)
    # at least ceil(20 / 5) = 4 runs in each of the 5 windows; at least 3 warm-up runs.
    assert isinstance(result["runs"], int) and result["runs"] >= 20
    assert isinstance(result["warmup"], int) and result["warmup"] >= 3
    assert result["emulated"] is False
    lat = result["latency_ms"]
    assert list(lat) == LATENCY_KEYS
    assert all(isinstance(lat[k], float) and lat[k] >= 0 for k in LATENCY_KEYS)
    assert lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    assert lat["min"] <= lat["mean"] <= lat["max"]
    assert lat["init"] > 0 and lat["first"] > 0
    medians = result["window_medians_ms"]
    assert len(medians) == 5 and all(lat["min"] <= m <= lat["max"] for m in medians)
    mean_m = sum(medians) / 5
    std_m = math.sqrt(sum((m - mean_m) ** 2 for m in medians) / 5)
    # the medians are reported rounded to 1e-6 ms: at a few microseconds per run that moves
    # their spread, and so the cv, by up to about 1e-6 / mean
    assert lat["cv"] == pytest.approx(std_m / mean_m, abs=2e-6 + 1e-6 / mean_m)
    assert isinstance(result["memory"]["peak_rss_mb"], float)
    assert result["memory"]["peak_rss_mb"] > 1.0
    assert result["energy"] is None
    assert BenchOptions.from_dict(result["options"]) == FAST
    json.dumps(result, allow_nan=False)  # valid JSON: no NaN or infinity


def test_run_benchmark_options_reach_the_runtime(tiny) -> None:
    options = BenchOptions(threads=1, xnnpack=False, runs=6, windows=3, min_seconds=0.0,
                           warmup=0, warmup_seconds=0.0)
    result = run_benchmark(tiny.float32, options, target_kind="qemu")
    assert result["runtime"]["threads"] == 1
    assert result["runtime"]["delegate"] == "none"
    assert result["target"]["kind"] == "qemu"
    assert len(result["window_medians_ms"]) == 3
    assert result["runs"] >= 6 and result["warmup"] == 0


def test_run_benchmark_one_window_has_no_cv(tiny) -> None:
    result = run_benchmark(tiny.float32, BenchOptions(runs=5, windows=1, min_seconds=0.0,
                                                      warmup=0, warmup_seconds=0.0))
    assert result["latency_ms"]["cv"] is None
    assert result["runs"] == 5


def test_run_benchmark_min_seconds_extends_runs(tiny) -> None:
    # The tiny model runs in microseconds: 0.1 s of windows takes far more than 5 runs.
    result = run_benchmark(tiny.float32, BenchOptions(runs=5, min_seconds=0.1, warmup=0,
                                                      warmup_seconds=0.0))
    assert result["runs"] > 50


def test_run_benchmark_bad_inputs(tiny, corrupt_model: Path, tmp_path: Path) -> None:
    with pytest.raises(BenchInputError, match="does not exist"):
        run_benchmark(tmp_path / "missing.tflite", FAST)
    with pytest.raises(BenchInputError, match="is not a valid TFLite flatbuffer"):
        run_benchmark(corrupt_model, FAST)
    with pytest.raises(BenchInputError, match="options must be BenchOptions or None"):
        run_benchmark(tiny.int8, {"runs": 20})  # type: ignore[arg-type]


def test_runner_never_imports_tensorflow(tiny) -> None:
    code = (
        "import sys\n"
        "import device_bench.runner, device_bench.__main__, device_bench.targets\n"
        "from device_bench.runner import BenchOptions, run_benchmark\n"
        f"run_benchmark({str(tiny.int8)!r}, BenchOptions(runs=5, min_seconds=0.0,"
        " warmup_seconds=0.0))\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in"
        " ('tensorflow', 'tf_keras', 'keras', 'edgekit'))\n"
        "assert not bad, bad\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
