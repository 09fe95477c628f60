"""edgekit.report_types / report_tflite: every report block reads back typed and writes the same.

The reports are real: a pipeline run on a model built to need selective quantization (so the
``.tflite`` entry has ``quant_debug`` and ``selective``, and the bench has an energy estimate),
and the checked-in demo report (written before ``inspection.float_tensors`` and
``calibration.source/selection`` were recorded). Variants of them cover the optional keys.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from device_bench.json_record import JsonRecord
from device_bench.result import BenchResult, Energy
from edgekit import report_tflite, report_types
from edgekit.core.errors import InputError
from edgekit.report_tflite import KeptFloat, QuantDebug, Selective, SelectiveSkipped
from edgekit.report_types import (
    BudgetResult,
    KerasEntry,
    Report,
    TfliteEntry,
    as_report,
)

DEMO = Path(__file__).parent / "data" / "demo_report.json"


def assert_round_trip(report: dict[str, Any]) -> Report:
    """The report reads back into the types and writes the same JSON, key order included."""
    typed = Report.from_dict(report)
    assert typed.to_dict() == report
    assert json.dumps(typed.to_dict()) == json.dumps(report)
    assert Report.from_dict(json.loads(json.dumps(typed.to_dict()))) == typed
    return typed


@pytest.fixture(scope="module")
def outlier_keras(digits8, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLP on 8x8 digits with one huge weight per unit of ``fc_outlier`` on a pixel that is
    always 0: the float model is fine, plain int8 collapses, so selective quantization keeps
    ``fc_outlier`` in float."""
    from edgekit.compress.training import fit
    from edgekit.core._keras import keras
    from edgekit.core.model_io import save_model

    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.layers.Input(digits8.x_train.shape[1:], name="image"),
        keras.layers.Flatten(name="flat"),
        keras.layers.Dense(32, activation="relu", name="fc_outlier"),
        keras.layers.Dense(10, name="logits"),
    ])
    fit(model, digits8.x_train, digits8.y_train, epochs=8, learning_rate=0.01, augment_shift=0)
    x = digits8.x_train.reshape(len(digits8.x_train), -1)
    dead = np.flatnonzero(x.max(axis=0) == 0)
    kernel, bias = model.get_layer("fc_outlier").get_weights()
    kernel[dead[0], :] = 1000.0 * np.abs(kernel).max() * np.where(np.arange(32) % 2, 1.0, -1.0)
    model.get_layer("fc_outlier").set_weights([kernel, bias])
    return save_model(model, tmp_path_factory.mktemp("outlier") / "outlier.keras")


@pytest.fixture(scope="module")
def selective_run(outlier_keras: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """report.json of a real run: loaded model, int8 with debug_layers and max_accuracy_drop,
    benched locally with a power-profile energy estimate."""
    from edgekit.pipeline import run_pipeline
    from edgekit.recipe import Recipe

    recipe = Recipe.from_dict({
        "model": str(outlier_keras), "data": "digits",
        "convert": {"mode": "int8", "calibration_samples": 50, "float32_baseline": False,
                    "max_accuracy_drop": 2.0, "debug_layers": True},
        "bench": {"targets": ["local"], "runs": 10, "warmup": 1, "min_seconds": 0.02,
                  "energy": "profile:rpi4b", "energy_seconds": 0.05},
        "budgets": {"max_accuracy_drop": 2.0, "max_energy_mj": {"local": 100.0},
                    "require_int8": True},
    })
    out = tmp_path_factory.mktemp("selective") / "run"
    run_pipeline(recipe, out, log=lambda _msg: None)
    return json.loads((out / "report.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def demo() -> dict:
    return json.loads(DEMO.read_text(encoding="utf-8"))


def _records(value: Any) -> list[JsonRecord]:
    """Every record inside a typed value."""
    if isinstance(value, JsonRecord):
        found = [value]
        for f in dataclasses.fields(value):  # type: ignore[arg-type]
            found += _records(getattr(value, f.name))
        return found
    if isinstance(value, (tuple, list)):
        return [r for v in value for r in _records(v)]
    if isinstance(value, dict):
        return [r for v in value.values() for r in _records(v)]
    return []


# ---- real reports ---------------------------------------------------------------------------


def test_selective_run_round_trips_with_quant_debug_selective_and_energy(selective_run) -> None:
    report = assert_round_trip(selective_run)
    final = report.final_entry
    assert isinstance(final, TfliteEntry) and final.final
    assert isinstance(final.quant_debug, QuantDebug) and final.quant_debug.layers
    assert [r.rank for r in final.quant_debug.layers] == list(
        range(1, len(final.quant_debug.layers) + 1))
    assert isinstance(final.selective, Selective) and final.selective.met
    assert [k.layer for k in final.selective.selected.kept_float] == ["fc_outlier"]
    assert not final.inspection.full_integer  # the kept op computes in float
    energy = final.bench["local"].energy
    assert isinstance(energy, Energy) and energy.measured is False
    names = [b.name for b in report.budgets]
    assert names == ["max_accuracy_drop", "max_energy_mj[local]", "require_int8"]
    assert report.budgets[1].value == energy.mj_per_inference
    assert report.budgets[2].float_ops and report.failed_budgets == ("require_int8",)


def test_a_real_run_counts_the_work_of_every_entry(selective_run) -> None:
    report = Report.from_dict(selective_run)
    float_entry, final = report.stages[0], report.final_entry
    # The outlier MLP: Flatten 64 -> Dense 32 -> Dense 10; the .tflite counts the same MACs.
    assert float_entry.macs == final.macs == final.inspection.macs == 64 * 32 + 32 * 10
    assert final.params == final.inspection.params == float_entry.params == 64 * 32 + 32 + 330
    assert report.final.macs == final.macs and report.final.params == final.params
    assert [(w.op, w.macs) for w in final.inspection.op_work] == [
        ("FULLY_CONNECTED", 2048), ("FULLY_CONNECTED", 320)]
    assert final.slower_than == ()  # no float32 baseline in this run: nothing to be slower than


def test_every_record_type_is_in_the_real_reports(selective_run, demo) -> None:
    variants = [selective_run, demo, _skipped(selective_run), _reused(demo), _slower(demo)]
    seen = {type(r) for v in variants for r in _records(Report.from_dict(v))}
    declared = {cls for module in (report_types, report_tflite)
                for _, cls in inspect.getmembers(module, inspect.isclass)
                if issubclass(cls, JsonRecord) and dataclasses.is_dataclass(cls)}
    assert declared - seen == set()
    assert KeptFloat in seen and SelectiveSkipped in seen


def test_old_demo_report_round_trips_without_the_newer_keys(demo) -> None:
    report = assert_round_trip(demo)
    final = report.final_entry
    assert final is not None and final.inspection.float_tensors is None
    assert final.calibration is not None and final.calibration.source is None
    assert "float_tensors" not in report.to_dict()["stages"][-1]["inspection"]


def _skipped(report: dict) -> dict:
    """The .tflite entry as a QAT source gives it: selective skipped, no quant_debug."""
    out = copy.deepcopy(report)
    entry = out["stages"][-1]
    del entry["quant_debug"]
    entry["selective"] = {"skipped": "per-layer debugging / selective quantization skipped: "
                                     "'qat' is a QAT model (it converts with its learned ranges)"}
    return out


def _slower(report: dict) -> dict:
    """The final .tflite flagged slower than the float32 one (as build_report records it)."""
    out = copy.deepcopy(report)
    out["stages"][-1]["slower_than"] = [{"than": "float32", "target": "local", "p50_ms": 0.05,
                                         "than_p50_ms": 0.030005, "ratio": 1.6664}]
    return out


def _reused(report: dict) -> dict:
    """Keras entries reused from the stage cache (``reused`` after ``seconds``)."""
    out = copy.deepcopy(report)
    for entry in out["stages"]:
        if entry["kind"] != "tflite":
            entry["reused"] = entry["artefact"]
    return out


def test_optional_keys_absent_and_present(selective_run, demo) -> None:
    skipped = assert_round_trip(_skipped(selective_run)).final_entry
    assert isinstance(skipped.selective, SelectiveSkipped) and skipped.quant_debug is None
    assert "quant_debug" not in skipped.to_dict()
    reused = assert_round_trip(_reused(demo))
    keras_entries = [e for e in reused.stages if isinstance(e, KerasEntry)]
    assert all(e.reused == e.artefact for e in keras_entries)
    assert all(list(e.to_dict())[-2:] == ["seconds", "reused"] for e in keras_entries)
    plain = assert_round_trip(demo)
    assert all(e.reused is None and "reused" not in e.to_dict()
               for e in plain.stages if isinstance(e, KerasEntry))
    no_calibration = copy.deepcopy(demo)
    no_calibration["stages"][-1]["calibration"] = None
    assert assert_round_trip(no_calibration).final_entry.calibration is None
    entries = [e.to_dict() for e in plain.tflite_entries]
    assert ["final" in e for e in entries] == [False, True]


def test_the_markdown_tells_what_selective_quantization_did(selective_run) -> None:
    from edgekit.report import render_markdown

    text = render_markdown(selective_run)
    assert "### model_int8.tflite (selective quantization)" in text
    assert "| fc_outlier | FULLY_CONNECTED |" in text
    assert "(per-layer quantization error)" in text
    skipped = render_markdown(_skipped(selective_run))
    assert "- Skipped: per-layer debugging" in skipped


# ---- the report's own functions on types ------------------------------------------------------


def test_evaluate_budgets_on_dicts_is_check_budgets_on_types(demo) -> None:
    from edgekit.recipe import Budgets
    from edgekit.report import check_budgets, evaluate_budgets

    report = Report.from_dict(demo)
    budgets = Budgets(max_accuracy_drop=0.1, max_size_kb=64, max_latency_ms={"local": 5.0,
                      "adb://x": 1.0}, max_energy_mj={"local": 1.0}, require_int8=True)
    typed = check_budgets(budgets, report.stages[0], report.final_entry)
    assert all(isinstance(b, BudgetResult) for b in typed)
    assert evaluate_budgets(budgets, demo["stages"][0], demo["stages"][-1]) == [
        b.to_dict() for b in typed]
    by_name = {b.name: b for b in typed}
    assert by_name["max_latency_ms[adb://x]"].value is None
    assert not by_name["max_latency_ms[adb://x]"].passed
    assert by_name["max_energy_mj[local]"].value is None  # no energy asked: not measured
    with pytest.raises(InputError, match=r"final must be a \.tflite entry"):
        evaluate_budgets(budgets, demo["stages"][0], demo["stages"][0])


def test_readers_take_the_report_or_its_dict(demo) -> None:
    from edgekit.comparison import compare_reports
    from edgekit.junit import budget_testcases
    from edgekit.report_html import render_html

    report = Report.from_dict(demo)
    assert as_report(report) is report
    assert compare_reports(report, demo) == compare_reports(demo, copy.deepcopy(demo))
    assert budget_testcases(report, "s") == budget_testcases(demo, "s")
    assert render_html(report) == render_html(demo)


# ---- errors -----------------------------------------------------------------------------------


def test_wrong_schema_is_one_line() -> None:
    with pytest.raises(InputError) as err:
        Report.from_dict({"schema": "edgekit.bench/1"})
    assert str(err.value) == ("report must have schema 'edgekit.report/1', got "
                              "'edgekit.bench/1'")
    with pytest.raises(InputError, match="run A must have schema"):
        as_report([], "run A")


@pytest.mark.parametrize(("change", "message"), [
    (lambda r: r["stages"][-1]["bench"]["local"]["latency_ms"].update(p50="fast"),
     "report.stages[4].bench['local'].latency_ms.p50 must be a number or null, got 'fast'"),
    (lambda r: r["stages"][-1]["bench"]["local"].update(schema="edgekit.bench/0"),
     "report.stages[4].bench['local'] must have schema 'edgekit.bench/1', got 'edgekit.bench/0'"),
    (lambda r: r["stages"][0].update(colour="red"),
     "unknown key(s) ['colour'] in report.stages[0]; known keys: name, kind, artefact"),
    (lambda r: r["stages"][3].pop("inspection"),
     "missing key(s) ['inspection'] in report.stages[3]; expected keys: name, kind"),
    (lambda r: r["budgets"][0].update(passed="yes"),
     "report.budgets[0].passed must be true or false, got 'yes'"),
    (lambda r: r["final"].update(bytes=None), "report.final.bytes must be an integer, got None"),
    (lambda r: r["stages"][-1]["inspection"]["ops"].append({"op": "ADD"}),
     "missing key(s) ['count'] in report.stages[4].inspection.ops[4]"),
    (lambda r: r["stages"][-1].update(selective={"skipped": 3}),
     "report.stages[4].selective.skipped must be a string, got 3"),
])
def test_bad_reports_name_the_path(demo, change, message: str) -> None:
    bad = copy.deepcopy(demo)
    change(bad)
    with pytest.raises(InputError) as err:
        Report.from_dict(bad)
    assert str(err.value).startswith(message)
    assert "\n" not in str(err.value)


def test_constructors_check_their_values(demo) -> None:
    report = Report.from_dict(demo)
    entry = report.stages[0]
    with pytest.raises(InputError, match="Keras stage entry: accuracy must be a number or null"):
        dataclasses.replace(entry, accuracy="high")
    with pytest.raises(InputError, match="kind must be 'tflite', got 'float'"):
        dataclasses.replace(report.final_entry, kind="float")
    with pytest.raises(InputError, match="bench must be a mapping of names"):
        dataclasses.replace(report.final_entry, bench={"local": demo["stages"][-1]["bench"]})
    with pytest.raises(InputError, match="stages must be a list"):
        dataclasses.replace(report, stages=list(report.stages))
    bench = report.final_entry.bench["local"]
    assert isinstance(bench, BenchResult)
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.passed = False  # type: ignore[misc]
