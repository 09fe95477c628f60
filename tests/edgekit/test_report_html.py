"""The self-contained HTML report, checked at parse level on the real demo report."""

from __future__ import annotations

import copy
import json
import re
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from edgekit.core.errors import InputError
from edgekit.report_html import render_html, write_html

DEMO = Path(__file__).parent / "data" / "demo_report.json"
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
        "track", "wbr"}


@pytest.fixture(scope="module")
def demo() -> dict:
    """The demo report (read-only: tests copy it before changing it)."""
    return json.loads(DEMO.read_text())


def make_sweep(report: dict) -> dict:
    """A 6-candidate ``edgekit.sweep/1`` built around the demo's final model."""
    final = report["final"]
    base_p50 = report["stages"][-1]["bench"]["local"]["latency_ms"]["p50"]
    cands = []
    for i, (sparsity, mode) in enumerate([(s, m) for s in (0.5, 0.8, 0.9)
                                          for m in ("int8", "int16x8")]):
        name = f"c{i}-final_sparsity={sparsity}-mode={mode}"
        acc = final["accuracy"] - 0.02 * sparsity - (0.005 if mode == "int8" else 0.0)
        cands.append({
            "name": name,
            "params": {"stages.0.config.final_sparsity": sparsity, "convert.mode": mode},
            "run": f"candidates/{name}", "accuracy": acc, "float_accuracy": 1.0,
            "accuracy_drop_points": round(100 * (1.0 - acc), 4),
            "bytes": int(final["bytes"] * (1 - 0.5 * sparsity) * (1.8 if mode != "int8" else 1)),
            "gzip_bytes": int(final["gzip_bytes"] * (1 - sparsity)),
            "latency_ms": {"local": None if i == 5 else
                           base_p50 * (1.6 if mode != "int8" else 1) * (1 - 0.2 * sparsity)},
            "full_integer": mode == "int8", "passed": i != 3, "pareto": i in (0, 1, 4),
            "failed_budgets": ["max_size_kb"] if i == 3 else []})
    return {"schema": "edgekit.sweep/1",
            "axes": {"stages.0.config.final_sparsity": [0.5, 0.8, 0.9],
                     "convert.mode": ["int8", "int16x8"]},
            "targets": ["local"], "candidates": cands,
            "pareto_front": [c["name"] for c in cands if c["pareto"]], "passed": True}


@pytest.fixture(scope="module")
def sweep(demo) -> dict:
    return make_sweep(demo)


@pytest.fixture(scope="module")
def page(demo, sweep) -> str:
    return render_html(demo, sweep)


class _Doc(HTMLParser):
    """Collects ids, unbalanced tags and tag counts of a page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.ids: list[str] = []
        self.counts: dict[str, int] = {}

    def handle_starttag(self, tag, attrs):
        self.counts[tag] = self.counts.get(tag, 0) + 1
        self.ids += [v for k, v in attrs if k == "id"]
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.counts[tag] = self.counts.get(tag, 0) + 1
        self.ids += [v for k, v in attrs if k == "id"]

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()


def parse(page: str) -> _Doc:
    doc = _Doc()
    doc.feed(page)
    doc.close()
    return doc


def figure(page: str, fig_id: str) -> str:
    m = re.search(rf'<figure id="{re.escape(fig_id)}">(.*?)</figure>', page, re.S)
    assert m, f"no figure {fig_id}"
    return m.group(1)


def section(page: str, title: str) -> str:
    m = re.search(rf"<h2>{re.escape(title)}</h2>(.*?)(?=<h2>|</main>)", page, re.S)
    assert m, f"no section {title}"
    return m.group(1)


def svg_texts(fragment: str) -> list[str]:
    return re.findall(r"<text\b[^>]*>([^<]*)</text>", fragment)


def test_page_is_one_well_formed_document(page):
    assert page.startswith("<!DOCTYPE html>") and page.count("<!DOCTYPE") == 1
    doc = parse(page)
    assert doc.counts["html"] == doc.counts["head"] == doc.counts["body"] == 1
    assert doc.errors == [] and doc.stack == []
    assert len(doc.ids) == len(set(doc.ids)), "ids must be unique across the inline SVGs"
    assert "<?xml" not in page and "<!DOCTYPE svg" not in page


@pytest.mark.parametrize("fig_id", ["plot-accuracy-size", "plot-accuracy-latency-local",
                                    "plot-latency-local", "plot-pareto"])
def test_each_plot_is_an_inline_svg_with_caption(page, fig_id):
    body = figure(page, fig_id)
    assert body.count("<svg") == 1 and "</svg>" in body
    assert re.search(r"<figcaption>[^<]+</figcaption>", body)


def test_page_is_self_contained(page):
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", page, re.I)
    assert not re.search(r"<script|<link|<iframe|<img|@import|url\(\s*['\"]?http", page, re.I)


def test_header_names_final_artefact_accuracy_and_result(page, demo):
    header = page[page.index("<header>"):page.index("</header>")]
    assert demo["final"]["artefact"] in header
    assert "99.72 %" in header and "100.00 %" in header and "0.28 points" in header
    assert "97840 bytes" in header and "31495 bytes" in header
    assert "PASS" in header


def test_stage_and_model_tables(page, demo):
    facts = section(page, "Model facts")
    for e in demo["stages"]:
        assert f"<td>{e['artefact']}</td>" in facts
    assert "p50 ms [local]" in facts and "0.01254" in facts
    for op in ("CONV_2D", "MAX_POOL_2D", "FULLY_CONNECTED", "RESHAPE"):
        assert f"<td>{op}</td>" in facts
    assert "0.00392157" in facts and "<td>int8</td>" in facts  # input scale, dtype
    assert "demo_cnn/quant_fc1/MatMul" in facts and "80.00 %" in facts


def test_null_figures_read_not_measured(page):
    device = section(page, "Device facts")
    assert re.search(r"<td>governor</td>(<td>not measured</td>){2}</tr>", device)
    assert re.search(r"<td>energy / inference</td>(<td>not measured</td>){2}</tr>", device)
    assert "<td>threads</td><td>default</td>" in device  # null threads = interpreter default


def test_budgets_table_lists_every_budget(demo):
    report = copy.deepcopy(demo)
    report["budgets"] += [
        {"name": "max_size_kb", "limit": 64, "value": 95.547, "unit": "KiB", "passed": False},
        {"name": "max_latency_ms[local]", "limit": 5.0, "value": None, "unit": "ms (p50)",
         "passed": False}]
    report["passed"] = False
    budgets = section(render_html(report), "Budgets")
    rows = re.findall(r"<tr><td>([^<]+)</td>(.*?)</tr>", budgets)
    assert [r[0] for r in rows] == [b["name"] for b in report["budgets"]]
    cells = dict(rows)
    assert ">full integer<" in cells["require_int8"] and ">yes<" in cells["require_int8"]
    assert ">64 KiB<" in cells["max_size_kb"] and ">FAIL<" in cells["max_size_kb"]
    assert ">not measured<" in cells["max_latency_ms[local]"]
    assert 'Overall: <span class="fail">FAIL</span>' in budgets


def test_no_budgets_and_no_bench(demo):
    report = copy.deepcopy(demo)
    report["budgets"] = []
    for e in report["stages"]:
        e.pop("bench", None)
    page = render_html(report)
    assert "No budgets set." in page
    assert "No bench results" in page
    assert "<svg" in figure(page, "plot-accuracy-size")
    assert "plot-latency-" not in page


def test_latency_plot_marks_missing_stats(demo):
    report = copy.deepcopy(demo)
    report["stages"][3]["bench"]["local"]["latency_ms"]["p50"] = None
    page = render_html(report)
    assert "Not measured: float32.tflite." in figure(page, "plot-latency-local")
    assert "Not measured: float32.tflite." in figure(page, "plot-accuracy-latency-local")


def test_sweep_pareto_labels_every_candidate(page, sweep):
    texts = svg_texts(figure(page, "plot-pareto"))
    for c in sweep["candidates"]:
        assert c["name"] in texts, c["name"]
    # c5 has no latency: labelled in the size panel only, and named in the caption
    assert texts.count(sweep["candidates"][5]["name"]) == 1
    assert texts.count(sweep["candidates"][0]["name"]) == 2


def test_sweep_table_marks_front_rows(page, sweep):
    part = section(page, "Sweep")
    rows = re.findall(r'<tr(?: class="([^"]*)")?><td>([^<]+)</td>(.*?)</tr>', part)
    assert [r[1] for r in rows] == [c["name"] for c in sweep["candidates"]]
    front = {name for cls, name, _ in rows if cls == "front"}
    assert front == set(sweep["pareto_front"])
    by_name = {name: cells for _, name, cells in rows}
    for name in front:
        assert ">yes ★<" in by_name[name]
    last = sweep["candidates"][5]["name"]
    assert ">not measured<" in by_name[last] and ">no<" in by_name[last]
    assert ">FAIL: max_size_kb<" in by_name[sweep["candidates"][3]["name"]]


def test_rendering_leaves_inputs_and_matplotlib_state_unchanged(demo, sweep):
    import matplotlib as mpl

    report_before, sweep_before = copy.deepcopy(demo), copy.deepcopy(sweep)
    rc_before = dict(mpl.rcParams)
    render_html(demo, sweep)
    assert demo == report_before and sweep == sweep_before
    assert dict(mpl.rcParams) == rc_before
    assert "matplotlib.pyplot" not in sys.modules or mpl.pyplot.get_fignums() == []


def test_output_is_deterministic(demo):
    assert render_html(demo) == render_html(demo)


def test_report_text_is_escaped(demo):
    report = copy.deepcopy(demo)
    evil = '<script>alert("x")</script>&'
    report["final"]["artefact"] = report["stages"][-1]["artefact"] = evil
    report["stages"][0]["name"] = "$x$ <b>"  # not mathtext, not markup
    res = report["stages"][-1]["bench"].pop("local")
    report["stages"][-1]["bench"]["ssh://pi@host:22"] = res
    page = render_html(report)
    assert "<script" not in page and "<b>" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;" in page
    assert "$x$ &lt;b&gt;" in svg_texts(figure(page, "plot-accuracy-size"))
    assert "<svg" in figure(page, "plot-latency-ssh-pi-host-22")
    assert parse(page).errors == []


def test_each_target_gets_its_own_figures(demo):
    report = copy.deepcopy(demo)
    for e in report["stages"][3:]:
        res = e["bench"].pop("local")
        e["bench"].update({"board a": res, "board-a": copy.deepcopy(res)})
    page = render_html(report)
    for fig_id in ("plot-latency-board-a", "plot-latency-board-a-2",
                   "plot-accuracy-latency-board-a", "plot-accuracy-latency-board-a-2"):
        assert "<svg" in figure(page, fig_id)
    assert "p50 ms [board a]" in page and "p90 ms [board-a]" in page
    assert "<h3>Target board a</h3>" in page and "<h3>Target board-a</h3>" in page


@pytest.mark.parametrize("bad", [{}, {"schema": "edgekit.bench/1"}, [1, 2], None])
def test_wrong_input_is_an_input_error(demo, bad):
    with pytest.raises(InputError, match=r"edgekit\.report/1"):
        render_html(bad)
    with pytest.raises(InputError, match=r"edgekit\.sweep/1"):
        render_html(demo, bad if bad is not None else {"schema": "x"})


def test_write_html_is_atomic_and_complete(tmp_path, demo):
    out = write_html(tmp_path / "sub" / "report.html", demo)
    assert out == tmp_path / "sub" / "report.html"
    assert out.read_text(encoding="utf-8") == render_html(demo)
    assert [p.name for p in out.parent.iterdir()] == ["report.html"]
