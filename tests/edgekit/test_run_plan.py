"""Planning apart from running (edgekit.run_plan) and the per-fingerprint stage cache."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from edgekit.core.errors import InputError
from edgekit.recipe import Recipe
from edgekit.run_plan import plan_run, plan_sweep, shared_stages
from edgekit.stage_cache import StageCache

REPO = Path(__file__).resolve().parents[2]


def _recipe(**changes) -> Recipe:
    raw = {"model": "demo_cnn", "data": "digits",
           "stages": [{"class_name": "Prune", "config": {"final_sparsity": 0.5, "epochs": 2}},
                      {"class_name": "QAT", "config": {"epochs": 1}}],
           "convert": {"mode": "int8"}}
    raw.update(changes)
    return Recipe.from_dict(raw)


def test_a_plan_names_every_stage_its_fingerprint_and_artefact() -> None:
    plan = plan_run(_recipe())
    assert [(s.name, s.kind, s.artefact) for s in plan.stages] == [
        ("float", "float", "float.keras"), ("prune", "Prune", "prune.keras"),
        ("qat", "QAT", "qat.h5")]
    assert plan.needs_training is True
    assert [(c.name, c.source, c.mode, c.final) for c in plan.conversions] == [
        ("float32", "float", "float32", False), ("int8_dense", "float", "int8", False),
        ("model_int8", "qat", "int8", True)]
    assert len(set(plan.fingerprints)) == 3
    # JSON-ready, and the same recipe plans to the same fingerprints.
    assert json.loads(json.dumps(plan.to_dict()))["stages"][1]["stage"]["class_name"] == "Prune"
    assert plan_run(_recipe()).fingerprints == plan.fingerprints


def test_fingerprints_chain_a_change_reaches_only_what_follows() -> None:
    base = plan_run(_recipe()).fingerprints
    later = plan_run(_recipe(stages=[
        {"class_name": "Prune", "config": {"final_sparsity": 0.5, "epochs": 2}},
        {"class_name": "QAT", "config": {"epochs": 3}}])).fingerprints
    earlier = plan_run(_recipe(stages=[
        {"class_name": "Prune", "config": {"final_sparsity": 0.6, "epochs": 2}},
        {"class_name": "QAT", "config": {"epochs": 1}}])).fingerprints
    seed = plan_run(_recipe(seed=1)).fingerprints
    assert later[:2] == base[:2] and later[2] != base[2]
    assert earlier[0] == base[0] and earlier[1] != base[1] and earlier[2] != base[2]
    assert all(a != b for a, b in zip(seed, base, strict=True))


def test_a_mode_other_than_int8_converts_the_stage_before_qat_and_says_so() -> None:
    plan = plan_run(_recipe(convert={"mode": "float16"}))
    final = plan.conversions[-1]
    assert (final.name, final.source, final.mode) == ("model_float16", "prune", "float16")
    assert plan.notes == ("mode float16: converting 'prune' (QAT ranges are int8-only)",)
    assert plan_run(_recipe()).notes == ()


def test_repeated_stages_get_numbered_names() -> None:
    plan = plan_run(_recipe(stages=[{"class_name": "Prune", "config": {"epochs": 1}},
                                    {"class_name": "Prune", "config": {"epochs": 2}}]))
    assert [s.name for s in plan.stages] == ["float", "prune", "prune2"]


def test_a_sweep_shows_which_stages_its_candidates_share() -> None:
    recipe = _recipe(sweep={"stages.1.config.epochs": [1, 2, 3]})
    plans = plan_sweep(recipe)
    assert len(plans) == 3
    shared = shared_stages(plans)
    first = next(iter(plans.values()))
    # float and prune are computed once for all three; each QAT is its own.
    assert set(shared) == {first.stage("float").fingerprint, first.stage("prune").fingerprint}
    assert all(names == list(plans) for names in shared.values())
    with pytest.raises(InputError, match="has a sweep"):
        plan_run(recipe)


def test_a_model_file_is_fingerprinted_by_its_content(tmp_path) -> None:
    model = tmp_path / "m.keras"
    model.write_bytes(b"one")
    one = plan_run(_recipe(model=str(model)))
    model.write_bytes(b"two")
    two = plan_run(_recipe(model=str(model)))
    assert one.needs_training is False and one.fingerprints[0] != two.fingerprints[0]
    with pytest.raises(InputError, match=r"model '.*nope.keras' does not exist"):
        plan_run(_recipe(model=str(tmp_path / "nope.keras")))


def test_planning_loads_no_tensorflow() -> None:
    code = textwrap.dedent("""\
        import sys
        from edgekit.recipe import Recipe
        from edgekit.run_plan import plan_sweep
        plans = plan_sweep(Recipe.demo())
        print(len(plans), "tensorflow" in sys.modules)
        """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["1", "False"]


_WRITER = """
import sys
from pathlib import Path
from edgekit.stage_cache import StageCache
root, tag = Path(sys.argv[1]), sys.argv[2]
cache = StageCache(root, resume=True)
for i in range(40):
    art = root / f"{tag}{i}.bin"
    art.write_bytes(f"{tag}{i}".encode())
    cache.record(f"{tag}{i}", art, {"name": f"{tag}{i}"})
"""


def test_two_processes_share_one_cache_without_losing_a_record(tmp_path) -> None:
    writers = [subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path), tag], cwd=REPO)
               for tag in ("a", "b")]
    assert [w.wait(timeout=120) for w in writers] == [0, 0]
    cache = StageCache(tmp_path, resume=True)
    found = {f"{t}{i}": cache.lookup(f"{t}{i}") for t in "ab" for i in range(40)}
    assert all(hit is not None for hit in found.values())
    assert found["b7"]["entry"] == {"name": "b7"} and found["b7"]["path"] == tmp_path / "b7.bin"
    # One file per record, and no temp file left behind.
    assert sorted(p.name for p in (tmp_path / "stages").iterdir()) == sorted(
        f"{fp}.json" for fp in found)


def test_a_record_is_ignored_when_unreadable_or_of_another_schema(tmp_path) -> None:
    art = tmp_path / "prune.keras"
    art.write_bytes(b"model")
    cache = StageCache(tmp_path, resume=True)
    cache.record("abc", art, {"name": "prune"})
    record = tmp_path / "stages" / "abc.json"
    assert json.loads(record.read_text())["schema"] == "edgekit.stage/1"
    record.write_text("{half")
    assert StageCache(tmp_path, resume=True).lookup("abc") is None
    record.write_text(json.dumps({"schema": "edgekit.stage/0", "artefact": "prune.keras"}))
    assert StageCache(tmp_path, resume=True).lookup("abc") is None
    record.unlink()
    cache.record("abc", art, {"name": "prune"})
    art.write_bytes(b"changed")  # the artefact was overwritten since
    assert cache.lookup("abc") is None
    # A fingerprint is a plain token: nothing outside stages/ is read or written.
    assert cache.lookup("../x") is None
    with pytest.raises(ValueError, match="not a plain token"):
        cache.record("../x", art, {"name": "prune"})


def test_run_plan_prints_the_plan_and_runs_nothing(tmp_path, capsys) -> None:
    import yaml

    from edgekit.cli import main

    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({
        "model": "demo_cnn", "data": "digits",
        "stages": [{"class_name": "Prune", "config": {"epochs": 1}}],
        "sweep": {"stages.0.config.final_sparsity": [0.5, 0.7]}}))
    out = tmp_path / "run"
    assert main(["run", str(recipe), "--out", str(out), "--plan"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert len(shown["candidates"]) == 2 and not out.exists()
    first = next(iter(shown["candidates"].values()))
    assert list(shown["shared"]) == [first["stages"][0]["fingerprint"]]  # the float model
    assert [s["name"] for s in first["stages"]] == ["float", "prune"]
