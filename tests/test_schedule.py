"""The xdist schedule's list of long files names files that exist (a stale name would silently
stop ordering them)."""

from __future__ import annotations

from pathlib import Path

from module_by_path import load_module

TESTS = Path(__file__).resolve().parent


def _root_conftest():  # by path: several conftest modules share the name "conftest"
    return load_module("root_conftest", TESTS / "conftest.py")


def test_every_longest_first_file_exists_once() -> None:
    names = _root_conftest().LONGEST_FIRST
    assert [name for name in names if not (TESTS / name).is_file()] == []
    assert len(set(names)) == len(names) >= 1
