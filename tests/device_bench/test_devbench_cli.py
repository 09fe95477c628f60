"""``python -m device_bench``: real child processes for the contract, in-process for the rest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from device_bench.__main__ import build_parser, main, options_from_args
from device_bench.runner import SCHEMA, BenchOptions

FAST = ["--runs", "20", "--min-seconds", "0.05", "--warmup", "3", "--warmup-seconds", "0.01"]


def test_cli_writes_json_file(tiny, tmp_path: Path, run_cli) -> None:
    out = tmp_path / "sub" / "out.json"
    proc = run_cli(str(tiny.int8), "--json", str(out), *FAST)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    result = json.loads(out.read_text())
    assert result["schema"] == SCHEMA
    assert result["model"]["path"] == str(tiny.int8)
    assert result["runs"] >= 20
    assert result["target"]["kind"] == "local"
    assert result["runtime"]["interpreter"] == "ai_edge_litert"
    assert not list(out.parent.glob(".out.json.*"))  # no temp file left behind


def test_cli_json_to_stdout(tiny, run_cli) -> None:
    proc = run_cli(str(tiny.uint8), "--json", *FAST, "--threads", "1", "--no-xnnpack")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)  # stdout holds the JSON and nothing else
    assert result["runtime"]["threads"] == 1
    assert result["runtime"]["delegate"] == "none"
    assert result["options"]["xnnpack"] is False


def test_cli_missing_model_exits_2_with_one_line(tmp_path: Path, run_cli, stderr_lines) -> None:
    out = tmp_path / "out.json"
    proc = run_cli(str(tmp_path / "missing.tflite"), "--json", str(out))
    assert proc.returncode == 2
    lines = stderr_lines(proc.stderr)
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("device_bench: error: model ")
    assert "does not exist" in lines[0]
    assert "Traceback" not in proc.stderr
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_cli_human_summary(tiny, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tiny.float32), *FAST]) == 0
    text = capsys.readouterr().out
    for word in ("p50", "p90", "mean", "cv", "init", "peak RSS", "ai_edge_litert"):
        assert word in text


def test_cli_corrupt_model_exits_2(corrupt_model: Path, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out.json"
    assert main([str(corrupt_model), "--json", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert captured.err.startswith(
        f"device_bench: error: model {str(corrupt_model)!r} is not a valid TFLite flatbuffer: "
    )
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--runs", "3"], "device_bench: error: runs must be >= windows (5), got 3"),
        (["--threads", "0"], "device_bench: error: threads must be >= 1, got 0"),
        (["--runs", "x"], "device_bench: error: argument --runs: invalid int value: 'x'"),
        (["--frobnicate"], "device_bench: error: unrecognized arguments: --frobnicate"),
        (["--target-kind", "Local Box"], "device_bench: error: argument --target-kind: target "
         "kind must be a name such as local or ssh (lower-case letters, digits, '-'), got "
         "'Local Box'"),
    ],
)
def test_cli_bad_options_exit_2(tiny, args: list[str], message: str,
                                capsys: pytest.CaptureFixture[str]) -> None:
    try:
        code = main([str(tiny.int8), *args])
    except SystemExit as e:  # argparse's own errors exit from parse_args
        code = e.code
    assert code == 2
    err = capsys.readouterr().err
    assert err == message + "\n"


def test_cli_no_model_argument(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("device_bench: error: the following arguments are required: model")
    assert err.count("\n") == 1


def test_cli_bad_input_file(tiny, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tiny.int8), "--input", str(tmp_path / "none.npy")]) == 2
    assert "input file" in capsys.readouterr().err


def test_cli_unwritable_output_folder(tiny, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main([str(tiny.int8), "--json", str(blocker / "out.json"), *FAST]) == 2
    assert capsys.readouterr().err.startswith("device_bench: error: output folder ")


def test_cli_defaults_are_the_bench_options_defaults() -> None:
    # One source of truth: the parser's defaults are read from BenchOptions.
    args = build_parser().parse_args(["m.tflite"])
    assert options_from_args(args) == BenchOptions()
    assert (args.warmup, args.runs, args.min_seconds, args.windows, args.energy,
            args.energy_seconds) == (20, 200, 1.0, 5, "none", 10.0)
