"""bench/sections.py: one section rewritten, the others kept, the file's mode from the umask."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from sections import write_section


def test_a_section_is_replaced_and_the_others_kept(tmp_path: Path) -> None:
    md = tmp_path / "BENCHMARKS.md"
    write_section(md, "a", "## A\n\none")
    write_section(md, "b", "## B\n\ntwo")
    write_section(md, "a", "## A\n\nthree")
    text = md.read_text()
    assert text.startswith("# edgekit benchmarks")
    assert "three" in text and "one" not in text and "two" in text
    assert text.index("section:a") < text.index("section:b")  # rewritten in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["BENCHMARKS.md"]  # no temp file left


def test_the_file_gets_the_mode_of_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        write_section(tmp_path / "B.md", "a", "## A")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "B.md").stat().st_mode) == 0o644


def test_a_bad_section_name_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="section name"):
        write_section(tmp_path / "B.md", "a b", "## A")
    assert not (tmp_path / "B.md").exists()


@pytest.mark.parametrize(("value", "goal", "sign", "text"), [
    (0.498, 0.5, "+", "+0.498"),   # two decimals would print +0.50 beside "missed"
    (1.4951, 1.5, "", "1.495"),
    (0.5, 0.5, "", "0.50"),        # exactly on the goal: two decimals are exact
    (0.4849, 0.5, "", "0.48"),
    (89.996, 90.0, "", "89.996"),
    (1.234, 1.5, "+", "+1.23"),
])
def test_a_goal_figure_never_rounds_onto_its_goal(value: float, goal: float, sign: str,
                                                  text: str) -> None:
    from sections import goal_figure

    assert goal_figure(value, goal, sign) == text
