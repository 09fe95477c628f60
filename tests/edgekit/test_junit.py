"""Budgets as JUnit XML, parsed back with ElementTree."""

from __future__ import annotations

import copy
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from edgekit.core.errors import InputError
from edgekit.junit import budget_testcases, junit_xml, write_junit

DEMO = Path(__file__).parent / "data" / "demo_report.json"


@pytest.fixture(scope="module")
def demo() -> dict:
    """The demo report (read-only: tests copy it before changing it)."""
    return json.loads(DEMO.read_text())


@pytest.fixture
def failing(demo) -> dict:
    """The demo report with a size budget over, a latency not measured and a float model."""
    r = copy.deepcopy(demo)
    r["budgets"][1].update(value=False, passed=False, float_ops=["CONV_2D", "RESHAPE"],
                           float_io=["serving_default_image:0"])
    r["budgets"] += [
        {"name": "max_size_kb", "limit": 64, "value": 95.547, "unit": "KiB", "passed": False},
        {"name": "max_latency_ms[local]", "limit": 5.0, "value": None, "unit": "ms (p50)",
         "passed": False}]
    r["passed"] = False
    return r


def cases_by_name(suite: ET.Element) -> dict[str, ET.Element]:
    return {c.get("name"): c for c in suite.findall("testcase")}


def test_passing_report_is_a_passing_suite(demo):
    root = ET.fromstring(junit_xml([("demo", budget_testcases(demo, "demo"))]))
    assert root.tag == "testsuites"
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("2", "0", "0")
    (suite,) = root.findall("testsuite")
    assert suite.attrib == {"name": "demo", "tests": "2", "failures": "0", "errors": "0",
                            "skipped": "0", "time": "0.000"}
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == ["max_accuracy_drop", "require_int8"]
    assert {c.get("classname") for c in cases} == {"edgekit.budgets.demo"}
    assert all(len(c) == 0 for c in cases)  # no <failure>


def test_failures_name_limit_and_value(failing):
    cases = budget_testcases(failing, "demo")
    assert [c["passed"] for c in cases] == [True, False, False, False]
    root = ET.fromstring(junit_xml([("demo", cases)]))
    suite = root.find("testsuite")
    assert (suite.get("tests"), suite.get("failures")) == ("4", "3")
    by_name = cases_by_name(suite)
    assert by_name["max_accuracy_drop"].find("failure") is None
    size = by_name["max_size_kb"].find("failure")
    assert size.get("message") == "max_size_kb: measured 95.547 KiB, limit 64 KiB"
    assert size.get("type") == "BudgetExceeded"
    assert "limit: 64 KiB" in size.text and "measured: 95.547 KiB" in size.text
    latency = by_name["max_latency_ms[local]"].find("failure")
    assert latency.get("message") == ("max_latency_ms[local]: not measured, "
                                      "limit 5.0 ms (p50)")
    assert latency.get("type") == "NotMeasured"
    int8 = by_name["require_int8"].find("failure").get("message")
    assert "limit full integer" in int8 and "not full integer" in int8
    assert "CONV_2D, RESHAPE" in int8 and "serving_default_image:0" in int8


def test_special_characters_are_escaped(demo):
    r = copy.deepcopy(demo)
    odd = 'size<&>"\' budget'
    r["budgets"] = [{"name": odd, "limit": "<1>", "value": "&2", "unit": 'K"B',
                     "passed": False}]
    suite_name = 'c1 <&> "quoted"'
    text = junit_xml([(suite_name, budget_testcases(r, suite_name))])
    assert odd not in text and "&lt;&amp;&gt;" in text
    case = ET.fromstring(text).find("testsuite/testcase")
    assert case.get("name") == odd
    assert case.get("classname") == f"edgekit.budgets.{suite_name}"
    assert ET.fromstring(text).find("testsuite").get("name") == suite_name
    assert case.find("failure").get("message") == f'{odd}: measured &2 K"B, limit <1> K"B'


def test_control_characters_do_not_break_the_xml(demo):
    r = copy.deepcopy(demo)
    r["budgets"][0].update(name="drop\x00\x1b[31m", passed=False)
    case = ET.fromstring(junit_xml([("s", budget_testcases(r, "s"))])).find("testsuite/testcase")
    assert case.get("name") == "drop\ufffd\ufffd[31m"


def test_a_sweep_gives_one_suite_per_candidate(demo, failing):
    suites = [("c0-final_sparsity=0.5", budget_testcases(demo, "c0-final_sparsity=0.5")),
              ("c1-final_sparsity=0.9", budget_testcases(failing, "c1-final_sparsity=0.9"))]
    root = ET.fromstring(junit_xml(suites))
    assert (root.get("tests"), root.get("failures")) == ("6", "3")
    got = [(s.get("name"), s.get("tests"), s.get("failures")) for s in root.findall("testsuite")]
    assert got == [("c0-final_sparsity=0.5", "2", "0"), ("c1-final_sparsity=0.9", "4", "3")]
    for s in root.findall("testsuite"):
        # Dots in the suite part would split the classname into packages in Jenkins.
        expected = f"edgekit.budgets.{s.get('name').replace('.', '_')}"
        assert {c.get("classname") for c in s} == {expected}


def test_no_budgets_is_an_empty_suite(demo):
    r = copy.deepcopy(demo)
    r["budgets"] = []
    assert budget_testcases(r, "demo") == []
    root = ET.fromstring(junit_xml([("demo", [])]))
    suite = root.find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), len(suite)) == ("0", "0", 0)
    assert ET.fromstring(junit_xml([])).get("tests") == "0"


def test_write_junit_is_atomic(tmp_path, failing):
    path = write_junit(tmp_path / "ci" / "budgets.xml",
                       [("demo", budget_testcases(failing, "demo"))])
    assert path == tmp_path / "ci" / "budgets.xml"
    assert path.read_text(encoding="utf-8").startswith('<?xml version="1.0" encoding="UTF-8"?>')
    assert ET.parse(path).getroot().get("failures") == "3"
    assert [p.name for p in path.parent.iterdir()] == ["budgets.xml"]


@pytest.mark.parametrize("suites, match", [
    ("demo", "list of"),
    ([("demo",)], "pair"),
    ([(1, [])], "pair"),
    ([("demo", [{"name": "x"}])], "'name' and 'passed'"),
    ([("demo", ["x"])], "'name' and 'passed'"),
])
def test_malformed_suites_are_input_errors(suites, match):
    with pytest.raises(InputError, match=match):
        junit_xml(suites)


def test_budget_testcases_checks_its_inputs(demo):
    with pytest.raises(InputError, match=r"edgekit\.report/1"):
        budget_testcases({"schema": "edgekit.sweep/1"}, "s")
    with pytest.raises(InputError, match="suite"):
        budget_testcases(demo, "")
