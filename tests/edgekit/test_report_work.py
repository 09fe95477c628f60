"""Where the speed went: MACs and p50 of each .tflite against float32 and dense int8, and the
slower-than flags, in report.json, report.md and report.html.

Built on the checked-in demo report (written before the work was counted) with the work and
latencies set by hand, so every ratio is known exactly.
"""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from pathlib import Path

import pytest

from edgekit.report import render_markdown
from edgekit.report_html import render_html
from edgekit.report_types import KerasEntry, Report, SlowerThan, TfliteEntry
from edgekit.report_work import references, speed_notes, with_slower_than

DEMO = Path(__file__).parent / "data" / "demo_report.json"
FLOAT32_P50 = 0.030005  # the demo's float32.tflite on local
FLOAT_MACS = 100_000


@pytest.fixture(scope="module")
def demo() -> dict:
    return json.loads(DEMO.read_text(encoding="utf-8"))


def _report(demo: dict, final_p50: float | None = None, final_source: str | None = None,
            final_macs: int = 50_000) -> Report:
    """The demo with MACs set (float chain 100 k, final ``final_macs``), flags computed."""
    d = copy.deepcopy(demo)
    for e in d["stages"]:
        e["macs"] = final_macs if e["name"] == "model_int8" else FLOAT_MACS
        if e["kind"] == "tflite":
            e["params"] = 1000
    final = d["stages"][-1]
    if final_p50 is not None:
        final["bench"]["local"]["latency_ms"]["p50"] = final_p50
    if final_source is not None:
        final["source"] = final_source
    report = Report.from_dict(d)
    return replace(report, stages=with_slower_than(report.stages))


def test_a_slower_tflite_is_recorded_in_report_json(demo) -> None:
    report = _report(demo, final_p50=0.045)
    float32, final = report.tflite_entries
    assert float32.slower_than == ()
    assert final.slower_than == (SlowerThan(than="float32", target="local", p50_ms=0.045,
                                            than_p50_ms=FLOAT32_P50, ratio=1.4998),)
    data = report.to_dict()
    entry = data["stages"][-1]
    assert entry["slower_than"] == [{"than": "float32", "target": "local", "p50_ms": 0.045,
                                     "than_p50_ms": FLOAT32_P50, "ratio": 1.4998}]
    keys = list(entry)
    assert keys[keys.index("gzip_bytes") + 1:keys.index("gzip_bytes") + 3] == ["macs", "params"]
    assert keys[keys.index("bench") + 1] == "slower_than"
    assert data["stages"][3]["slower_than"] == []  # checked, nothing slower
    assert all("slower_than" not in e for e in data["stages"][:3])  # Keras stages: no bench
    assert Report.from_dict(data).to_dict() == data


def test_faster_is_not_flagged_and_old_reports_have_no_flags(demo) -> None:
    report = _report(demo)  # the demo's int8 model is faster: 0.0125 ms against 0.030 ms
    assert [e.slower_than for e in report.tflite_entries] == [(), ()]
    old = Report.from_dict(demo)
    assert all(e.slower_than is None and "slower_than" not in e.to_dict()
               for e in old.tflite_entries)
    assert all(e.macs is None for e in old.stages)


def test_only_models_made_from_the_same_chain_are_compared(demo) -> None:
    report = _report(demo, final_p50=0.045)
    # A third .tflite, converted from ``prune``: model_int8 (from qat, later in the chain) was
    # not made before it, so only float32 counts; the float32 entry is compared with nothing.
    extra = replace(report.tflite_entries[-1], name="model_prune", source="prune",
                    final=False, slower_than=None)
    extra = replace(extra, bench={"local": replace(
        extra.bench["local"], latency_ms=replace(extra.bench["local"].latency_ms, p50=0.06))})
    stages = with_slower_than([*report.stages, extra])
    assert [f.than for f in stages[-1].slower_than] == ["float32"]
    assert stages[-1].slower_than[0].ratio == round(0.06 / FLOAT32_P50, 4)


def test_markdown_says_where_the_speed_went(demo) -> None:
    md = render_markdown(_report(demo, final_p50=0.045))
    assert "## Where the speed went" in md
    assert ("| model_int8.tflite | qat | 50 k | ×0.50 | n/a | local | 0.045 | ×1.50 | n/a | "
            "SLOWER than float32 |") in md
    assert ("| float32.tflite | float | 100 k | ×1.00 | n/a | local | 0.03001 | ×1.00 | n/a |  |"
            in md)
    assert ("- model_int8.tflite is SLOWER than float32.tflite on `local`: p50 0.045 ms against "
            "0.03001 ms (×1.50), with ×0.50 the MACs; between them: stages prune, qat and the int8 "
            "conversion (instead of float32).") in md
    assert "dense int8 = n/a (this run converted no uncompressed model to int8)" in md
    assert "MACs per inference along the stages: float 100 k → prune 100 k → qat 100 k" in md
    # The stage table gains MACs and params.
    assert "| sparsity | MACs | params | p50 ms |" in md
    assert "| float | `float.keras` |" in md and "| 100 k | 89,882 |" in md


def test_dense_int8_reference_when_the_run_made_one(demo) -> None:
    report = _report(demo, final_p50=0.045, final_source="float", final_macs=FLOAT_MACS)
    refs = references(report.stages)
    assert refs["float32"].name == "float32" and refs["dense int8"].name == "model_int8"
    notes = speed_notes(report)
    row = notes.rows[-1]
    assert row[:5] == ["model_int8.tflite", "float", "100 k", "×1.00", "×1.00"]
    assert row[6:] == ["0.045", "×1.50", "×1.00", "SLOWER than float32"]
    assert "between them: the int8 conversion (instead of float32)." in notes.facts[-1]
    assert "dense int8 = `model_int8.tflite`" in notes.facts[0]


def test_no_bench_and_old_reports(demo) -> None:
    d = copy.deepcopy(demo)
    for e in d["stages"]:
        if e["kind"] == "tflite":
            e["bench"] = {}
    notes = speed_notes(Report.from_dict(d))
    assert [r[5:7] for r in notes.rows] == [["—", "not benchmarked"]] * 2
    assert notes.facts[-1] == "Nothing was benchmarked: no latency to compare."
    old = render_markdown(demo)  # no MACs recorded: shown as unknown, never as 0
    assert "| float32.tflite | float | — | n/a | n/a | local |" in old
    assert "along the stages" not in old


def test_html_has_the_section_and_the_flag(demo) -> None:
    page = render_html(_report(demo, final_p50=0.045))
    section = page[page.index("<h2>Where the speed went</h2>"):]
    section = section[:section.index("<h2>", 5)]
    assert "<td>SLOWER than float32</td>" in section
    assert "model_int8.tflite is SLOWER than float32.tflite on local" in section
    assert "<th>p50 ÷ dense int8</th>" in section
    facts = page[page.index("<h2>Model facts</h2>"):]
    assert "<th>MACs</th><th>params</th>" in facts and '<td class="num">100,000</td>' in facts


def test_entries_keep_their_types(demo) -> None:
    report = _report(demo, final_p50=0.045)
    assert [type(e) for e in report.stages] == [KerasEntry] * 3 + [TfliteEntry] * 2
    assert report.stages[:3] == Report.from_dict(report.to_dict()).stages[:3]
