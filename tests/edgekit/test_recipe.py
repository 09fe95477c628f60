import json

import pytest
import yaml

from edgekit.compress import QAT, Prune, stage_from_dict
from edgekit.core.errors import InputError
from edgekit.recipe import Recipe


def test_demo_recipe_is_prune80_pqat_int8():
    r = Recipe.demo()
    assert r.model == "demo_cnn" and r.data == "digits"
    assert isinstance(r.stages[0], Prune) and r.stages[0].final_sparsity == 0.8
    assert r.stages[0].schedule == "PolynomialDecay"
    assert isinstance(r.stages[1], QAT)
    assert r.convert.mode == "int8" and r.convert.io == "int8"
    assert r.budgets.max_accuracy_drop == 1.0 and r.budgets.require_int8


def test_resolved_recipe_round_trips_through_yaml(tmp_path):
    r = Recipe.demo()
    p = tmp_path / "r.yaml"
    p.write_text(r.to_yaml())
    again = Recipe.load(p)
    assert again == r
    assert again.to_dict() == r.to_dict()


def test_json_recipe(tmp_path):
    p = tmp_path / "r.json"
    p.write_text(json.dumps({"model": "demo_cnn", "stages": [{"class_name": "QAT"}]}))
    r = Recipe.load(p)
    assert r.stages == (QAT(),)


@pytest.mark.parametrize("stage", [Prune(final_sparsity=0.5, schedule="ConstantSparsity"),
                                   QAT(epochs=2, preserve_sparsity="never")])
def test_stage_serialization_round_trip(stage):
    d = stage.to_dict()
    assert set(d) == {"class_name", "config"}
    assert stage_from_dict(json.loads(json.dumps(d))) == stage


def test_unknown_top_level_key_lists_known_ones():
    with pytest.raises(InputError, match=r"unknown key\(s\) \['budget'\].*known keys: model, data"):
        Recipe.from_dict({"budget": {}})


def test_unknown_stage_and_stage_key():
    known = r"known stages: ChannelPrune, Distill, LowRank, Prune, QAT"
    with pytest.raises(InputError, match=rf"unknown stage 'Distil'; {known}"):
        stage_from_dict({"class_name": "Distil"})
    with pytest.raises(InputError, match=r"unknown key\(s\) \['sparsity'\] in Prune config"):
        stage_from_dict({"class_name": "Prune", "config": {"sparsity": 0.5}})


@pytest.mark.parametrize(
    "raw, fragment",
    [
        ({"stages": [{"class_name": "Prune", "config": {"final_sparsity": 1.2}}]},
         r"final_sparsity must be in \[0, 1\), got 1.2"),
        ({"convert": {"mode": "int4"}}, "mode must be one of"),
        ({"budgets": {"latency_stat": "p95"}}, "latency_stat must be one of"),
        ({"budgets": {"max_size_kb": -1}}, "max_size_kb must be a number >= 0"),
        ({"train": {"epochs": 0}}, "epochs must be an integer >= 1"),
        ({"bench": {"targets": 3}}, "bench.targets must be a list"),
    ],
)
def test_invalid_values_are_named(raw, fragment):
    with pytest.raises(InputError, match=fragment):
        Recipe.from_dict(raw)


def test_bad_recipe_files(tmp_path):
    with pytest.raises(InputError, match=r"does not exist"):
        Recipe.load(tmp_path / "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(InputError, match=r"is not valid YAML"):
        Recipe.load(bad)
    bad.write_text("model: demo_cnn\nstages:\n  - class_name: Prune\n   config: {}\n")
    with pytest.raises(InputError, match=r"is not valid YAML: expected <block end>.* at line 4, "
                                         r"column 4$"):
        Recipe.load(bad)  # the line and column of the mis-indented key
    txt = tmp_path / "r.txt"
    txt.write_text(yaml.safe_dump({"model": "demo_cnn"}))
    with pytest.raises(InputError, match=r"must be \.yaml, \.yml or \.json"):
        Recipe.load(txt)


def test_a_stage_config_naming_class_name_is_an_unknown_key():
    from edgekit.compress import stage_from_dict
    from edgekit.core.errors import InputError

    with pytest.raises(InputError, match=r"unknown key\(s\) \['class_name'\] in Prune config"):
        stage_from_dict({"class_name": "Prune", "config": {"class_name": "QAT"}})


@pytest.mark.parametrize("stage", ["Prune", "QAT"])
def test_a_bad_distill_mapping_fails_when_the_recipe_loads(stage):
    from edgekit.core.errors import InputError

    raw = {"model": "demo_cnn", "data": "digits",
           "stages": [{"class_name": stage, "config": {"distill": {"temprature": 4}}}]}
    with pytest.raises(InputError, match=rf"{stage} distill"):
        Recipe.from_dict(raw)


def test_long_candidate_names_are_cut_with_a_hash_and_stay_unique() -> None:
    """A swept stage list makes a label of hundreds of characters; the name is a folder and part
    of file names (OUT/tasks/.<name>.<phase>.json.tmp), so it is cut to MAX_CANDIDATE_NAME."""
    from edgekit.recipe import MAX_CANDIDATE_NAME

    prune = {"class_name": "Prune", "config": {"final_sparsity": 0.8, "epochs": 15,
                                                "distill": {"teacher": "float",
                                                            "temperature": 4.0, "alpha": 0.5}}}
    qat = {"class_name": "QAT", "config": {"epochs": 5, "distill": {"teacher": "float"}}}
    recipe = Recipe.from_dict({"model": "demo_cnn", "sweep": {
        "stages": [[], [prune, qat], [dict(prune, config={**prune["config"], "epochs": 16}), qat]],
        "convert.mode": ["int8"]}})
    names = [name for name, _, _ in recipe.candidates()]
    assert names[0] == "c0-stages=_-mode=int8"  # short names are as before
    assert all(len(n) <= MAX_CANDIDATE_NAME for n in names) and len(set(names)) == 3
    assert names[1].startswith("c1-stages=_class_name_Prune_config_final_sparsity_0.8")
    assert names[1][-9] == "-" and names[1][-8:] != names[2][-8:]  # hashes of the labels
    assert [n for n, _, _ in recipe.candidates()] == names  # stable
