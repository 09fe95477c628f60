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
