"""report.json and the bench JSON of a real run keep the key structure scripts rely on.

The golden structures (``tests/edgekit/data/report_keys.json``,
``tests/device_bench/data/bench_keys.json``) were derived with :mod:`json_keys` from a run of
the code before the typed results, on this same tiny recipe. The run here goes through the typed
pipeline; its files must have exactly those keys, in that order, with those JSON types, and
read back into the types without a difference.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from json_keys import (
    BENCH_KEYS,
    BENCH_MACHINE_FACTS,
    BENCH_OPAQUE,
    REPORT_KEYS,
    REPORT_OPAQUE,
    bench_paths_in_report,
    key_structure,
    ordered,
    relax,
)

from device_bench.result import BenchResult
from edgekit.report_types import KerasEntry, Report, TfliteEntry

TINY_RECIPE = {
    "model": "tiny_cnn",
    "data": "digits",
    "train": {"epochs": 1},
    "stages": [
        {"class_name": "Prune", "config": {"final_sparsity": 0.5, "epochs": 1}},
        {"class_name": "QAT", "config": {"epochs": 1}},
    ],
    "convert": {"mode": "int8", "io": "int8", "calibration_samples": 20,
                "debug_layers": False},
    "bench": {"targets": ["local"], "runs": 20, "warmup": 2, "min_seconds": 0.1},
    "budgets": {"max_accuracy_drop": 50.0, "max_size_kb": 640,
                "max_latency_ms": {"local": 500.0}, "require_int8": True},
}
REPORT_OPAQUE_ALL = REPORT_OPAQUE + bench_paths_in_report(BENCH_OPAQUE)
REPORT_MACHINE_FACTS = bench_paths_in_report(BENCH_MACHINE_FACTS)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny recipe run through the pipeline (about half a minute)."""
    from edgekit.pipeline import run_pipeline
    from edgekit.recipe import Recipe

    out = tmp_path_factory.mktemp("golden") / "run"
    run_pipeline(Recipe.from_dict(TINY_RECIPE), out, log=lambda _msg: None)
    return out


def _json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _report_shape(report: dict) -> list:
    return ordered(relax(key_structure(report, REPORT_OPAQUE_ALL), REPORT_MACHINE_FACTS))


def _bench_shape(bench: dict) -> list:
    return ordered(relax(key_structure(bench, BENCH_OPAQUE), BENCH_MACHINE_FACTS))


def test_report_json_has_the_golden_key_structure(tiny_run: Path) -> None:
    golden = relax(_json(REPORT_KEYS), REPORT_MACHINE_FACTS)
    assert _report_shape(_json(tiny_run / "report.json")) == ordered(golden)


def test_bench_json_has_the_golden_key_structure(tiny_run: Path) -> None:
    golden = ordered(relax(_json(BENCH_KEYS), BENCH_MACHINE_FACTS))
    files = sorted((tiny_run / "bench").glob("*.json"))
    assert [f.name for f in files] == ["float32.local.json", "int8_dense.local.json",
                                       "model_int8.local.json"]
    for f in files:
        assert _bench_shape(_json(f)) == golden, f.name


def test_report_json_reads_back_into_the_types_unchanged(tiny_run: Path) -> None:
    text = (tiny_run / "report.json").read_text(encoding="utf-8")
    j = json.loads(text)
    report = Report.from_dict(j)
    assert report.to_dict() == j
    # Same keys in the same order, same values: the file itself comes back.
    assert json.dumps(report.to_dict(), indent=2) + "\n" == text
    assert [type(e) for e in report.stages] == [KerasEntry] * 3 + [TfliteEntry] * 3
    assert report.final_entry is report.stages[-1] and report.final_entry.final
    assert not report.stages[3].final and not report.stages[4].final


def test_bench_json_reads_back_unchanged_and_matches_the_report(tiny_run: Path) -> None:
    report = Report.from_dict(_json(tiny_run / "report.json"))
    for entry in report.tflite_entries:
        path = tiny_run / "bench" / f"{Path(entry.artefact).stem}.local.json"
        text = path.read_text(encoding="utf-8")
        b = json.loads(text)
        result = BenchResult.from_dict(b)
        assert result.to_dict() == b
        assert json.dumps(result.to_dict(), indent=2) + "\n" == text
        assert entry.bench["local"] == result
        assert result.model.bytes == entry.bytes


def test_markdown_and_html_come_from_the_same_report(tiny_run: Path) -> None:
    from edgekit.report import render_markdown
    from edgekit.report_html import render_html

    report = Report.from_dict(_json(tiny_run / "report.json"))
    assert render_markdown(report) == (tiny_run / "report.md").read_text(encoding="utf-8")
    assert render_html(report) == (tiny_run / "report.html").read_text(encoding="utf-8")


def test_every_entry_counts_its_work(tiny_run: Path) -> None:
    report = Report.from_dict(_json(tiny_run / "report.json"))
    by_name = {e.name: e for e in report.stages}
    # BN folds into the convs, so parameters differ; the MACs are the same count.
    assert by_name["float"].macs == by_name["float32"].macs > 0
    assert by_name["qat"].macs == by_name["model_int8"].macs == by_name["float"].macs
    assert by_name["float32"].macs == by_name["float32"].inspection.macs
    assert report.final.macs == report.final_entry.macs
    assert report.final.params == report.final_entry.params > 0
    assert all(isinstance(e.slower_than, tuple) for e in report.tflite_entries)


def test_a_reused_stage_keeps_its_work(tiny_run: Path, tmp_path: Path) -> None:
    """Stage records written before the work was counted: the MACs come from the saved model."""
    from edgekit.pipeline import run_pipeline
    from edgekit.recipe import Recipe

    out = tmp_path / "run"
    shutil.copytree(tiny_run, out)
    before = [e["macs"] for e in _json(out / "report.json")["stages"][:3]]
    for record in (out / "stages").glob("*.json"):
        data = _json(record)
        del data["entry"]["macs"]
        record.write_text(json.dumps(data), encoding="utf-8")
    report = run_pipeline(Recipe.from_dict(TINY_RECIPE), out, log=lambda _msg: None, resume=True)
    assert [e.get("reused") is not None for e in report["stages"][:3]] == [True] * 3
    assert [e["macs"] for e in report["stages"][:3]] == before


def test_a_changed_key_is_caught_by_the_structure() -> None:
    """The comparison is strict about order and names (a guard on the guard)."""
    golden = _json(REPORT_KEYS)
    swapped = dict(reversed(list(golden.items())))
    assert ordered(swapped) != ordered(golden)
    renamed = {("passed_" if k == "passed" else k): v for k, v in golden.items()}
    assert ordered(renamed) != ordered(golden)
