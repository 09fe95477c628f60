"""`edgekit bench` on several targets: parsing, real runs, failures kept, the comparison table."""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path

import pytest

from device_bench.errors import BenchInputError
from device_bench.runner import BenchOptions
from edgekit.bench_table import (
    COMPARISON_SCHEMA,
    HEADER,
    TargetOutcome,
    comparison_dict,
    format_table,
    outcomes_from_dict,
    parse_targets,
    run_targets,
)
from edgekit.core.errors import InputError
from edgekit.recipe import BenchSpec

# A port nothing listens on: the real ssh client fails to connect, quickly.
DEAD_SSH = "ssh://nobody@127.0.0.1:9"
FAST = ["--runs", "10", "--warmup", "1", "--min-seconds", "0.02"]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small float32 .tflite (8 -> 16 -> 4)."""
    from edgekit.core._keras import keras, tf

    keras.utils.set_random_seed(0)
    net = keras.Sequential([keras.layers.Input((8,)), keras.layers.Dense(16, activation="relu"),
                            keras.layers.Dense(4)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = tf.lite.TFLiteConverter.from_keras_model(net).convert()
    path = tmp_path_factory.mktemp("bench_table") / "mlp.tflite"
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(("given", "specs"), [
    ("local", ["local"]),
    ("local, qemu-aarch64", ["local", "qemu-aarch64"]),
    ("[local,ssh://pi@board:2222]", ["local", "ssh://pi@board:2222"]),  # fire leaves it a str
    (["local", "adb://R58M"], ["local", "adb://R58M"]),
    (("local",), ["local"]),
])
def test_parse_targets(given, specs) -> None:
    assert parse_targets(given) == specs


@pytest.mark.parametrize(("given", "message"), [
    ("", "--target names no target"),
    (" , ", "--target names no target"),
    ("local,local", "--target names 'local' more than once"),
    (3, "--target must be a target spec or a list of them, got 3"),
    (["local", 4], "--target entries must be target specs (strings), got 4"),
])
def test_parse_targets_rejects(given, message: str) -> None:
    with pytest.raises(InputError) as err:
        parse_targets(given)
    assert str(err.value).startswith(message)


def test_two_targets_one_fails_table_json_and_exit_1(model: Path, tmp_path: Path, cli,
                                                       capsys) -> None:
    out = tmp_path / "cmp.json"
    code = cli(["bench", str(model), f"--target=local,{DEAD_SSH}", *FAST, "--json", str(out)])
    captured = capsys.readouterr()
    assert code == 1
    lines = captured.out.strip().splitlines()
    assert lines[0].split() == ["target", "device", "interpreter", "threads", "p50", "ms", "p90",
                                "ms", "p99", "ms", "cv", "init", "ms", "peak", "RSS", "MB",
                                "mJ/inference", "notes"]
    local = next(ln for ln in lines if ln.startswith("local "))
    failed = next(ln for ln in lines if ln.startswith(DEAD_SSH))
    assert "FAILED: " in failed and "FAILED" not in local
    # a shared machine may add the documented noise warning; every other line is the one error
    errors = [ln for ln in captured.err.strip().splitlines()
              if not ln.startswith("device_bench: warning: latency cv")]
    assert errors == [f"edgekit: check failed: 1 of 2 targets failed: {DEAD_SSH}"]

    saved = json.loads(out.read_text())
    assert saved["schema"] == COMPARISON_SCHEMA and saved["model"] == str(model)
    assert list(saved["targets"]) == ["local", DEAD_SSH]
    ok, bad = saved["targets"]["local"], saved["targets"][DEAD_SSH]
    assert ok["ok"] is True and ok["error"] is None
    assert ok["result"]["schema"] == "edgekit.bench/1" and ok["result"]["runs"] >= 10
    assert bad == {"ok": False, "error": bad["error"], "result": None} and bad["error"]
    assert bad["error"] in failed  # the table shows the same one-line reason
    p50 = ok["result"]["latency_ms"]["p50"]
    assert (f"{p50:.3f}" if p50 >= 1 else f"{p50:.4g}") in local.split()


def test_one_target_keeps_the_plain_bench_json_and_shows_the_energy(model: Path, tmp_path: Path,
                                                                     cli, capsys) -> None:
    out = tmp_path / "one.json"
    code = cli(["bench", str(model), "--target", "local", *FAST, "--energy", "profile:rpi4b",
                "--energy-seconds", "0.1", "--json", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    assert result["schema"] == "edgekit.bench/1"
    energy = result["energy"]
    assert energy["source"] == "profile:rpi4b" and energy["measured"] is False
    printed = capsys.readouterr().out
    assert f"energy {energy['mj_per_inference']:.4g} mJ/inference" in printed
    assert "estimate, not measured: profile:rpi4b" in printed


def test_single_failing_target_is_one_line_exit_1(model: Path, cli, capsys) -> None:
    assert cli(["bench", str(model), "--target", DEAD_SSH, *FAST]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"edgekit: check failed: target {DEAD_SSH} failed")


def test_a_bad_spec_stops_before_anything_runs(model: Path, cli, capsys) -> None:
    assert cli(["bench", str(model), "--target=local,bogus://x", *FAST]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # local did not run
    assert captured.err.strip().startswith("edgekit: error: unknown target 'bogus://x'")
    assert cli(["bench", str(model), "--energy", "wattmeter"]) == 2
    assert "energy must be one of auto, none" in capsys.readouterr().err


def test_run_targets_keeps_a_target_input_error_as_a_failure(model: Path) -> None:
    import edgekit

    outcomes = run_targets(model, ["local"], BenchOptions(runs=10, min_seconds=0.02,
                                                          energy="hwmon:no-such-sensor"))
    assert [o.ok for o in outcomes] == [False]
    assert "energy source 'hwmon:no-such-sensor' is not available here" in outcomes[0].error
    # A list of targets always gives the comparison object, even with one entry.
    comparison = edgekit.bench(model, target=["local"], runs=10, min_seconds=0.02)
    assert comparison["schema"] == COMPARISON_SCHEMA
    assert outcomes_from_dict(comparison)[0].result["runtime"]["threads"] is None
    with pytest.raises(InputError, match=r"expected an edgekit\.bench-comparison/1 object"):
        outcomes_from_dict({"schema": "edgekit.bench/1"})


def test_table_marks_emulation_estimates_and_failures(model: Path) -> None:
    real = run_targets(model, ["local"], BenchOptions(runs=10, min_seconds=0.02))[0]
    emulated = copy.deepcopy(real.result)
    emulated["emulated"] = True
    emulated["target"]["cpu"] = "Raspberry Pi 4 Model B Rev 1.4 (ARM Cortex-A72) under qemu"
    emulated["energy"] = {"source": "profile:rpi4b", "measured": False,
                          "mj_per_inference": 0.0123456, "mj_per_inference_above_idle": 0.003,
                          "idle_w": 2.7, "active_w": 3.625}
    measured = copy.deepcopy(real.result)
    measured["energy"] = {"source": "rapl", "measured": True, "mj_per_inference": 0.5,
                          "mj_per_inference_above_idle": 0.25, "idle_w": 20.0, "active_w": 40.0}
    outcomes = [real, TargetOutcome("qemu-aarch64", emulated),
                TargetOutcome("ssh://pi@rpi5", measured),
                TargetOutcome("adb://R58M", error="adb: device 'R58M' not found")]
    table = format_table(outcomes).splitlines()
    assert len(table) == 6 and set(table[1]) == {"-", " "}
    header = table[0]
    end = header.index("p50 ms") + len("p50 ms")  # numbers are right-aligned under it
    for row in table[2:5]:
        assert row[end - 1].isdigit() and row[end] == " "
    assert table[2].split()[0] == "local" and "-" in table[2].split()  # no energy asked
    assert "~0.0123" in table[3] and "emulated: timings are not the board's" in table[3]
    assert "energy estimated (profile:rpi4b)" in table[3] and "..." in table[3]  # long cpu cut
    assert table[4].endswith(" 0.5") and "estimated" not in table[4]
    assert table[5].split() == ["adb://R58M", "FAILED:", "adb:", "device", "'R58M'", "not",
                                "found"]
    data = comparison_dict(model, outcomes)
    assert list(data["targets"]) == ["local", "qemu-aarch64", "ssh://pi@rpi5", "adb://R58M"]
    assert json.loads(json.dumps(data)) == data
    assert outcomes_from_dict(data) == outcomes
    assert HEADER[-2:] == ["mJ/inference", "notes"]


def test_recipe_bench_section_carries_energy() -> None:
    spec = BenchSpec(targets=["local", "qemu-aarch64"], energy="auto", energy_seconds=5)
    options = spec.options()
    assert (options.energy, options.energy_seconds) == ("auto", 5)
    assert BenchSpec().options().energy == "none"
    with pytest.raises(BenchInputError, match="energy must be one of"):
        BenchSpec(energy="joules")
