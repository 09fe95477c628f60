"""The CLI in-process (fire), its exit codes and its bad-input messages."""

import json

import numpy as np
import pytest
import yaml


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "Traceback" not in err[0]
    return err[0]


def test_inspect_require_int8_passes_int8_and_fails_float(fast_run, capsys, cli):
    out, _ = fast_run
    assert cli(["inspect", str(out / "model_int8.tflite"), "--require-int8"]) == 0
    text = capsys.readouterr().out
    assert "CONV_2D" in text and "FULLY_CONNECTED" in text
    assert "\nwork       " in text and " MACs (" in text and "work per op" in text
    assert cli(["inspect", str(out / "float32.tflite"), "--require-int8"]) == 1
    err = capsys.readouterr().err
    assert "not full-integer" in err and "CONV_2D" in err


def test_inspect_json(fast_run, tmp_path, cli):
    out, report = fast_run
    dest = tmp_path / "i.json"
    assert cli(["inspect", str(out / "model_int8.tflite"), "--json-out", str(dest)]) == 0
    data = json.loads(dest.read_text())
    assert data["full_integer"] is True and data["inputs"][0]["dtype"] == "int8"
    assert len(data["weight_sparsity"]) == 5
    # The work: the same count the report has for the .tflite and for its Keras source (qat).
    final, qat = report["stages"][-1], report["stages"][2]
    assert data["macs"] == final["macs"] == qat["macs"] > 0
    assert data["macs"] == sum(o["macs"] for o in data["op_work"])
    assert data["params"] == final["params"] == sum(o["params"] for o in data["op_work"])
    assert {o["op"] for o in data["op_work"]} == {"CONV_2D", "FULLY_CONNECTED"}


def test_bench_writes_schema_json(fast_run, tmp_path, capsys, cli):
    out, _ = fast_run
    dest = tmp_path / "b.json"
    code = cli(
        [
            "bench",
            str(out / "model_int8.tflite"),
            "--runs",
            "10",
            "--warmup",
            "1",
            "--min-seconds",
            "0.02",
            "--json",
            str(dest),
        ]
    )
    assert code == 0
    result = json.loads(dest.read_text())
    assert result["schema"] == "edgekit.bench/1" and result["runs"] >= 10
    assert "p50" in capsys.readouterr().out


def test_bench_refuses_an_unwritable_json_path_before_running(fast_run, tmp_path, capsys, cli):
    out, _ = fast_run
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code = cli(["bench", str(out / "model_int8.tflite"), "--runs", "10", "--json",
                str(blocker / "b.json")])
    captured = capsys.readouterr()
    assert code == 2
    assert "output folder" in captured.err and str(blocker) in captured.err
    assert "p50" not in captured.out  # the benchmark never ran


def test_convert_writes_model_calibration_and_verification(fast_run, tmp_path, capsys, cli):
    out, _ = fast_run
    dest = tmp_path / "m.tflite"
    code = cli(
        [
            "convert",
            str(out / "float.keras"),
            "--data",
            "digits",
            "--out",
            str(dest),
            "--samples",
            "32",
            "--seed",
            "3",
        ]
    )
    assert code == 0
    record = json.loads((tmp_path / "m.calibration.json").read_text())
    assert record["seed"] == 3 and len(record["indices"]) == 32
    printed = capsys.readouterr().out
    verification = json.loads(printed[printed.index("{") :])
    assert verification["top1_agreement"] >= 0.9


def test_compress_prune(fast_run, tmp_path, cli):
    out, _ = fast_run
    dest = tmp_path / "p.keras"
    assert (
        cli(
            [
                "compress",
                str(out / "float.keras"),
                "--prune",
                "0.5",
                "--epochs",
                "1",
                "--out",
                str(dest),
            ]
        )
        == 0
    )
    from edgekit.compress import kernel_sparsity
    from edgekit.core.model_io import load_model

    sparsity = kernel_sparsity(load_model(dest))
    assert min(sparsity.values()) == pytest.approx(0.5, abs=0.01)


@pytest.mark.parametrize("case", ["missing", "corrupt", "wrong_suffix"])
def test_bad_model_exits_2_with_one_line_and_no_output(case, tmp_path, capsys, cli):
    model = {
        "missing": tmp_path / "nope.keras",
        "corrupt": tmp_path / "bad.keras",
        "wrong_suffix": tmp_path / "m.onnx",
    }[case]
    if case != "missing":
        model.write_bytes(b"\x00garbage" * 100)
    dest = tmp_path / "out" / "m.tflite"
    assert cli(["convert", str(model), "--out", str(dest)]) == 2
    line = _one_line_error(capsys)
    assert str(model) in line
    assert not dest.exists() and not dest.parent.exists()


def test_data_that_does_not_fit_the_model_exits_2(fast_run, tmp_path, capsys, cli):
    out, _ = fast_run
    npz = tmp_path / "d.npz"
    np.savez(npz, x=np.zeros((40, 28, 28, 1), np.float32), y=np.repeat(np.arange(4), 10))
    dest = tmp_path / "m.tflite"
    assert cli(["convert", str(out / "float.keras"), "--data", str(npz), "--out", str(dest)]) == 2
    line = _one_line_error(capsys)
    assert "(28, 28, 1)" in line and "(32, 32, 1)" in line
    assert not dest.exists()


def test_unwritable_output_folder_exits_2_before_any_work(
    fast_run, tmp_path, capsys, cli, fast_recipe
):
    out, _ = fast_run
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    assert (
        cli(["convert", str(out / "float.keras"), "--out", str(blocker / "sub" / "m.tflite")]) == 2
    )
    assert f"{str(blocker)!r} is a file; expected a folder" in _one_line_error(capsys)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(fast_recipe))
    assert cli(["run", str(recipe), "--out", str(blocker / "run")]) == 2
    assert f"{str(blocker)!r} is a file; expected a folder" in _one_line_error(capsys)


def test_run_with_a_bad_model_path_writes_nothing(tmp_path, capsys, cli, fast_recipe):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({**fast_recipe, "model": str(tmp_path / "missing.h5")}))
    out = tmp_path / "run"
    assert cli(["run", str(recipe), "--out", str(out)]) == 2
    assert "missing.h5" in _one_line_error(capsys)
    assert not out.exists()


def test_recipe_with_unknown_key_exits_2_listing_known_keys(tmp_path, capsys, cli):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"model": "demo_cnn", "budget": {}}))
    assert cli(["run", str(recipe), "--out", str(tmp_path / "o")]) == 2
    line = _one_line_error(capsys)
    assert "'budget'" in line and "known keys: model, data, train, stages" in line


def test_qat_output_must_be_h5(fast_run, tmp_path, capsys, cli):
    out, _ = fast_run
    assert (
        cli(["compress", str(out / "float.keras"), "--qat", "--out", str(tmp_path / "q.keras")])
        == 2
    )
    assert "must be saved as .h5" in _one_line_error(capsys)


def test_impossible_budget_exits_1_with_junit_and_a_loose_one_exits_0(tmp_path, capsys, cli,
                                                                      fast_recipe):
    import xml.etree.ElementTree as ET

    tight = {**fast_recipe, "train": {"epochs": 1},
             "stages": [{"class_name": "Prune", "config": {"final_sparsity": 0.5, "epochs": 1}}],
             "convert": {"mode": "int8", "calibration_samples": 16, "float32_baseline": False},
             "budgets": {"max_size_kb": 1.0, "require_int8": True}}
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(tight))
    out, junit = tmp_path / "run", tmp_path / "junit.xml"
    assert cli(["run", str(recipe), "--out", str(out), "--junit", str(junit)]) == 1
    err = capsys.readouterr().err
    assert "budget(s) failed: max_size_kb" in err
    report = json.loads((out / "report.json").read_text())
    assert report["passed"] is False
    failed = [b for b in report["budgets"] if not b["passed"]]
    assert [b["name"] for b in failed] == ["max_size_kb"] and failed[0]["value"] > 1.0
    suite = ET.parse(junit).getroot().find("testsuite")
    assert (suite.get("tests"), suite.get("failures")) == ("2", "1")
    failure = suite.find("testcase[@name='max_size_kb']/failure")
    assert failure is not None and "1.0" in failure.get("message")
    assert suite.find("testcase[@name='require_int8']/failure") is None
    # The same recipe with a loose budget passes (resumed: only the budgets changed).
    tight["budgets"]["max_size_kb"] = 4096.0
    recipe.write_text(yaml.safe_dump(tight))
    assert cli(["run", str(recipe), "--out", str(out), "--junit", str(junit), "--resume"]) == 0
    suite = ET.parse(junit).getroot().find("testsuite")
    assert (suite.get("tests"), suite.get("failures")) == ("2", "0")


def test_compare_prints_what_changed(fast_run, tmp_path, cli, capsys):
    out, report = fast_run
    changed = json.loads(json.dumps(report))
    changed["final"]["accuracy"] -= 0.05
    changed["final"]["bytes"] += 4096
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "report.json").write_text(json.dumps(changed))
    assert cli(["compare", str(out), str(tmp_path / "b")]) == 0
    text = capsys.readouterr().out
    assert "accuracy" in text and "-5.00" in text
    assert "+4.0" in text  # KiB
    assert cli(["compare", str(out), str(tmp_path / "missing")]) == 2
    assert "does not exist; expected an edgekit run folder" in _one_line_error(capsys)


def test_python_api_mirrors_the_cli(fast_run):
    import edgekit

    out, _ = fast_run
    found = edgekit.inspect(out / "model_int8.tflite")
    assert found["inspection"].full_integer and len(found["weight_sparsity"]) == 5
    diff = edgekit.compare(out, out)
    assert diff["final"]["accuracy"]["delta"] == 0
    result = edgekit.bench(out / "model_int8.tflite", runs=10, warmup=1, min_seconds=0.02)
    assert result["schema"] == "edgekit.bench/1"
    assert {"run", "demo", "compress", "convert"} <= set(edgekit.__all__)


def test_models_lists_demo_cnn(capsys, cli):
    assert cli(["models"]) == 0
    assert "demo_cnn" in capsys.readouterr().out


def test_help_lists_every_command(cli, capsys):
    assert cli(["--help"]) == 0
    captured = capsys.readouterr()
    text = captured.out + captured.err  # fire's help goes through its own console writer
    for command in ("demo", "run", "compress", "convert", "inspect", "bench", "models"):
        assert f"     {command}\n" in text, command


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["bench", "m.tflite", "--target", "local", "--target", "qemu-aarch64"],
         ["bench", "m.tflite", "--target=local,qemu-aarch64"]),
        (["bench", "--target=local", "m.tflite", "--target", "ssh://pi@b:22", "--runs", "5"],
         ["bench", "--target=local,ssh://pi@b:22", "m.tflite", "--runs", "5"]),
        (["bench", "m.tflite", "--target", "local"], ["bench", "m.tflite", "--target", "local"]),
        (["bench", "--target=a", "--", "--target=b"], ["bench", "--target=a", "--", "--target=b"]),
    ],
)
def test_repeated_target_flags_are_merged(argv, expected):
    from edgekit.cli import merge_repeated_flag

    assert merge_repeated_flag(argv, "--target") == expected
