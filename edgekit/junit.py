"""Budgets as JUnit XML, so CI systems (GitLab, Jenkins, GitHub test reporters) show each budget.

One ``<testsuite>`` per run (a sweep writes one per candidate), one ``<testcase>`` per budget:

```xml
<testsuites name="edgekit" tests="2" failures="1" errors="0" skipped="0" time="0.000">
  <testsuite name="demo" tests="2" failures="1" errors="0" skipped="0" time="0.000">
    <testcase classname="edgekit.budgets.demo" name="max_size_kb" time="0.000">
      <failure message="max_size_kb: measured 95.547 KiB, limit 64 KiB" type="BudgetExceeded">
      ...</failure>
    </testcase>
    <testcase classname="edgekit.budgets.demo" name="require_int8" time="0.000" />
  </testsuite>
</testsuites>
```

A report that sets no budgets gives a suite with ``tests="0"`` (no invented testcase): CI shows an
empty suite, which is what happened. Budgets are checked after the run, so testcase times are 0.
The XML is built with ``xml.etree.ElementTree``; text is escaped by it, and characters that XML
1.0 cannot hold (control characters) are replaced by U+FFFD first.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from device_bench.atomicio import write_text
from edgekit.core.errors import InputError
from edgekit.report_types import BudgetResult, Report, as_report

REPORT_SCHEMA = "edgekit.report/1"  # same as edgekit.report_types.SCHEMA
CLASSNAME_PREFIX = "edgekit.budgets"
NOT_MEASURED = "not measured"
_XML_INVALID = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml_text(value: Any) -> str:
    return _XML_INVALID.sub("\ufffd", str(value))


def _describe(budget: BudgetResult) -> tuple[str, str]:
    """(failure type, one-line message naming the limit and the measured value) of a budget."""
    name, unit = budget.name, budget.unit
    if name == "require_int8":
        parts = []
        if budget.float_ops:
            parts.append(f"float ops: {', '.join(budget.float_ops)}")
        if budget.float_io:
            parts.append(f"float I/O: {', '.join(budget.float_io)}")
        value = "full integer" if budget.value else "not full integer"
        if budget.value is None:
            value = NOT_MEASURED
        detail = f" ({'; '.join(parts)})" if parts else ""
        return "BudgetExceeded", f"{name}: measured {value}{detail}, limit full integer"
    limit = f"{budget.limit} {unit}".strip()
    if budget.value is None:
        return "NotMeasured", f"{name}: {NOT_MEASURED}, limit {limit}"
    return "BudgetExceeded", f"{name}: measured {budget.value} {unit}".rstrip() + \
        f", limit {limit}"


def _classname(suite: str) -> str:
    """``edgekit.budgets.<suite>`` with the suite's dots replaced: CI tools (Jenkins) split the
    classname into package and class at dots, and candidate names hold ``=0.5``."""
    return f"{CLASSNAME_PREFIX}.{suite.replace('.', '_')}"


def budget_testcases(report: Report | dict[str, Any], suite: str) -> list[dict[str, Any]]:
    """One JUnit testcase per budget of a report.

    Args:
        report: The report, or its ``edgekit.report/1`` dict.
        suite: The suite name (the run, or a sweep candidate); the classname is
            ``edgekit.budgets.<suite>``.

    Returns:
        ``[{"classname", "name", "passed", "message", "type", "details", "limit", "value",
        "unit", "time"}]`` in the report's budget order; ``message`` (one line), ``type`` and
        ``details`` (the failure's text) are None for a budget that held. An empty list when the
        report sets no budgets.

    Raises:
        InputError: ``report`` is not an ``edgekit.report/1`` report, or ``suite`` is empty.
    """
    if not isinstance(report, Report):
        if not isinstance(report, dict) or report.get("schema") != REPORT_SCHEMA:
            got = report.get("schema") if isinstance(report, dict) else type(report).__name__
            raise InputError(f"report must be an {REPORT_SCHEMA!r} dict, got schema {got!r}")
        report = as_report(report)
    if not isinstance(suite, str) or not suite:
        raise InputError(f"suite must be a non-empty string, got {suite!r}")
    cases = []
    for b in report.budgets:
        kind, message = (None, None) if b.passed else _describe(b)
        details = None
        if not b.passed:
            value = NOT_MEASURED if b.value is None else f"{b.value} {b.unit}".strip()
            details = (message if b.name == "require_int8" else
                       f"{message}\nlimit: {b.limit} {b.unit}".rstrip()
                       + f"\nmeasured: {value}")
        cases.append({"classname": _classname(suite), "name": b.name,
                      "passed": b.passed, "message": message, "type": kind, "details": details,
                      "limit": b.limit, "value": b.value, "unit": b.unit, "time": 0.0})
    return cases


def _check_case(case: Any, suite: str) -> None:
    if not isinstance(case, dict) or "name" not in case or "passed" not in case:
        raise InputError(f"testcases of suite {suite!r} must be dicts with 'name' and 'passed' "
                         f"(from budget_testcases), got {case!r}")


def junit_xml(suites: Sequence[tuple[str, Sequence[dict[str, Any]]]]) -> str:
    """Builds a JUnit XML document.

    Args:
        suites: ``(suite name, testcases)`` pairs, testcases as from :func:`budget_testcases`
            (``name`` and ``passed`` required; ``classname``, ``message``, ``type``,
            ``details``, ``time`` optional).

    Returns:
        The XML text (UTF-8 declaration, indented, ending in a newline).

    Raises:
        InputError: ``suites`` is not a list of ``(name, testcases)`` pairs, or a testcase lacks
            ``name`` or ``passed``.
    """
    if isinstance(suites, (str, bytes)) or not isinstance(suites, Sequence):
        raise InputError(f"suites must be a list of (name, testcases) pairs, got {suites!r}")
    root = ET.Element("testsuites", name="edgekit")
    total_tests = total_failures = 0
    total_time = 0.0
    for item in suites:
        if not (isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], str)):
            raise InputError(f"each suite must be a (name, testcases) pair, got {item!r}")
        name, cases = item
        for case in cases:
            _check_case(case, name)
        failures = sum(1 for c in cases if not c["passed"])
        seconds = sum(float(c.get("time") or 0.0) for c in cases)
        suite_el = ET.SubElement(root, "testsuite", name=_xml_text(name), tests=str(len(cases)),
                                 failures=str(failures), errors="0", skipped="0",
                                 time=f"{seconds:.3f}")
        for c in cases:
            case_el = ET.SubElement(
                suite_el, "testcase",
                classname=_xml_text(c.get("classname") or _classname(name)),
                name=_xml_text(c["name"]), time=f"{float(c.get('time') or 0.0):.3f}")
            if not c["passed"]:
                message = c.get("message") or f"{c['name']}: failed"
                failure = ET.SubElement(case_el, "failure", message=_xml_text(message),
                                        type=_xml_text(c.get("type") or "BudgetExceeded"))
                failure.text = _xml_text(c.get("details") or message)
        total_tests += len(cases)
        total_failures += failures
        total_time += seconds
    root.set("tests", str(total_tests))
    root.set("failures", str(total_failures))
    root.set("errors", "0")
    root.set("skipped", "0")
    root.set("time", f"{total_time:.3f}")
    ET.indent(root)
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            + ET.tostring(root, encoding="unicode") + "\n")


def write_junit(path: str | os.PathLike[str],
                suites: Sequence[tuple[str, Sequence[dict[str, Any]]]]) -> Path:
    """Writes :func:`junit_xml` of ``suites`` to ``path`` atomically.

    Args:
        path: Destination file (e.g. the ``--junit OUT.xml`` of ``edgekit run``).
        suites: ``(suite name, testcases)`` pairs.

    Returns:
        ``path`` as a Path.

    Raises:
        InputError: ``suites`` is malformed (see :func:`junit_xml`).
        BenchInputError: The destination folder cannot be written.
    """
    return write_text(path, junit_xml(suites))
