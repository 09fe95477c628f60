"""``edgekit convert`` / ``edgekit inspect`` / ``edgekit run`` with the new conversion options:
``--calibration``, ``--debug-layers``, ``--max-accuracy-drop``, and the grown inspection.

All in-process (python-fire), on the outlier model of conftest (one layer breaks in int8).
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest

from edgekit.cli import main as cli
from edgekit.core.errors import InputError
from edgekit.pipeline import run_pipeline
from edgekit.recipe import ConvertSpec, Recipe


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


@pytest.fixture(scope="module")
def converted(outlier_keras: Path, digits8, tmp_path_factory) -> tuple[Path, int, str]:
    """``edgekit convert`` with every new option: (out path, exit code, stdout)."""
    root = tmp_path_factory.mktemp("cli")
    np.savez(root / "calib.npz", image=digits8.x_train[:300])
    out = root / "m.tflite"
    buf = io.StringIO()  # module-scoped: capsys is function-scoped, so capture stdout here
    with contextlib.redirect_stdout(buf):
        code = cli(["convert", str(outlier_keras), "--out", str(out), "--calibration",
                    str(root / "calib.npz"), "--samples", "100", "--debug-layers",
                    "--max-accuracy-drop", "0.5"])
    return out, code, buf.getvalue()


def test_convert_with_calibration_file_debug_and_budget(converted):
    out, code, text = converted
    assert code == 0
    table = text[text.index("per-layer quantization error"):].splitlines()
    assert table[2].split()[-1] == "fc_outlier"  # ranked first
    assert "kept in float  fc_outlier (FULLY_CONNECTED)" in text and "budget         met" in text
    record = json.loads(out.with_name("m.calibration.json").read_text())
    assert record["source"].endswith("calib.npz") and record["num_samples"] == 100
    layers = json.loads(out.with_name("m.layers.json").read_text())
    assert layers["schema"] == "edgekit.quant_debug/1"
    assert layers["layers"][0]["layer"] == "fc_outlier"
    selective = json.loads(out.with_name("m.selective.json").read_text())
    assert selective["met"] and selective["int8"]["drop_points"] > 50
    assert selective["selected"]["drop_points"] <= 0.5
    verification = json.loads(text[text.index("{"):])
    assert verification["accuracy"] == pytest.approx(selective["selected"]["accuracy"], abs=1e-6)


def test_require_int8_still_refuses_the_selective_model(converted, capsys):
    out, _, _ = converted
    assert cli(["inspect", str(out), "--require-int8"]) == 1
    text = capsys.readouterr()
    assert "not full-integer" in text.err and "FULLY_CONNECTED" in text.err
    for needle in ("ops (histogram)", "float tensors", "xnnpack sparse  not eligible",
                   "int8/QS8 is not supported"):
        assert needle in text.out, needle


def test_inspect_json_has_float_tensors_and_sparse_verdict(converted, tmp_path):
    out, _, _ = converted
    dest = tmp_path / "i.json"
    assert cli(["inspect", str(out), "--json-out", str(dest)]) == 0
    data = json.loads(dest.read_text())
    assert data["xnnpack_sparse"]["eligible"] is False
    assert any("fc_outlier" in t for t in data["float_tensors"])


def test_budget_options_need_int8(outlier_keras, tmp_path, capsys):
    code = cli(["convert", str(outlier_keras), "--out", str(tmp_path / "f.tflite"), "--mode",
                "float16", "--max-accuracy-drop", "0.5"])
    assert code == 2
    assert one_line_error(capsys) == ("edgekit: error: --max-accuracy-drop and --debug-layers "
                                      "need mode int8, got mode float16")
    assert not (tmp_path / "f.tflite").exists()


def test_calibration_file_of_the_wrong_shape(outlier_keras, tmp_path, capsys):
    np.savez(tmp_path / "mnist.npz", x=np.zeros((10, 28, 28), np.float32))
    code = cli(["convert", str(outlier_keras), "--out", str(tmp_path / "w.tflite"),
                "--calibration", str(tmp_path / "mnist.npz")])
    assert code == 2
    assert one_line_error(capsys) == (
        f"edgekit: error: calibration data {str(tmp_path / 'mnist.npz')!r} has sample shape "
        "(28, 28) but the model input 'image' expects (8, 8, 1)"
    )


# --- recipe and pipeline ----------------------------------------------------------------------

def test_convert_spec_validates_the_new_keys():
    spec = ConvertSpec(calibration={"source": "imgs", "resize": [8, 8]}, max_accuracy_drop=0.5,
                       debug_layers=True)
    assert spec.calibration == {"source": "imgs", "resize": [8, 8], "normalize": None}
    with pytest.raises(InputError, match="need mode int8, got mode float16"):
        ConvertSpec(mode="float16", max_accuracy_drop=1)
    with pytest.raises(InputError, match="max_accuracy_drop must be a number of points >= 0"):
        ConvertSpec(max_accuracy_drop=-1)
    with pytest.raises(InputError, match="known keys: source, resize, normalize"):
        Recipe.from_dict({"convert": {"calibration": {"source": "x", "mean": 1}}})
    recipe = Recipe.from_dict({"convert": {"calibration": "c.npz", "debug_layers": True}})
    assert Recipe.from_dict(json.loads(json.dumps(recipe.to_dict()))) == recipe


def test_pipeline_runs_selective_quantization_and_reports_it(outlier_keras, tmp_path):
    recipe = Recipe.from_dict({
        "model": str(outlier_keras), "data": "digits",
        "convert": {"mode": "int8", "calibration_samples": 100, "float32_baseline": False,
                    "max_accuracy_drop": 0.5, "debug_layers": True},
        "bench": {"targets": []},
        "budgets": {"max_accuracy_drop": 0.5, "require_int8": True},
    })
    report = run_pipeline(recipe, tmp_path / "run", log=lambda _m: None)
    final = report["stages"][-1]
    assert final["selective"]["met"]
    assert [r["layer"] for r in final["selective"]["selected"]["kept_float"]] == ["fc_outlier"]
    assert final["quant_debug"]["layers"][0]["layer"] == "fc_outlier"
    budgets = {b["name"]: b["passed"] for b in report["budgets"]}
    assert budgets == {"max_accuracy_drop": True, "require_int8": False}
    md = (tmp_path / "run" / "report.md").read_text()
    page = (tmp_path / "run" / "report.html").read_text()
    assert "### model_int8.tflite (selective quantization)" in md
    assert "- Budget 0.5 points on 360 held-out samples" in md and ": met." in md
    assert "| fc_outlier | FULLY_CONNECTED | 1 |" in md  # kept in float, debugger rank 1
    assert "| 1 | fc_outlier | FULLY_CONNECTED |" in md  # the debug table's worst op
    # report.html shows both tables too.
    assert "<h2>Quantization</h2>" in page
    assert "<td>fc_outlier</td><td>FULLY_CONNECTED</td><td>1</td>" in page
    assert "<h3>model_int8.tflite (per-layer quantization error)</h3>" in page
    for name in ("model_int8.layers.json", "model_int8.selective.json",
                 "model_int8.calibration.json"):
        assert (tmp_path / "run" / name).is_file(), name


def test_api_convert_takes_a_tf_data_dataset(outlier_keras, digits8, tmp_path):
    import edgekit
    from edgekit.core._keras import tf

    ds = tf.data.Dataset.from_tensor_slices((digits8.x_train, digits8.y_train)).batch(32)
    result = edgekit.convert(outlier_keras, out=tmp_path / "d.tflite", calibration=ds,
                             samples=70)
    record = json.loads(result["calibration_record"].read_text())
    assert record["selection"] == "first" and record["indices"] == list(range(70))
    assert record["source"] == "_BatchDataset stream (first N elements)"
    assert result["selective"] is None and result["quant_debug"] is None
    assert result["verification"].samples == len(digits8.x_test)
