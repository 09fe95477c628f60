"""Walks the stage registry: every registered stage round-trips its config, runs the one way
(edgekit.stage_runner) and has a report section for what it did.

A new stage must add a small config to SAMPLES below, so this walk trains it for real once.
"""

from __future__ import annotations

import dataclasses
import json

import pytest

from edgekit.compress import get_stage, stage_from_dict, stage_infos, stage_names
from edgekit.compress.stage_notes import StageNotes
from edgekit.core.errors import InputError

# One cheap, real config per registered stage (one epoch on 8x8 digits).
SAMPLES = {
    "Prune": {"final_sparsity": 0.5, "epochs": 1, "augment_shift": 0},
    "QAT": {"epochs": 1, "augment_shift": 0},
    "Distill": {"epochs": 1, "augment_shift": 0, "temperature": 2.0},
    "LowRank": {"rank": 4, "energy": None, "min_params": 64, "epochs": 1, "augment_shift": 0},
    "ChannelPrune": {"ratio": 0.5, "importance": "taylor", "batches": 2, "epochs": 1,
                     "augment_shift": 0},
}


def test_every_registered_stage_has_a_sample() -> None:
    assert sorted(stage_names()) == sorted(SAMPLES)


@pytest.mark.parametrize("name", list(SAMPLES))
def test_config_round_trips_through_json(name: str) -> None:
    info = get_stage(name)
    stage = info.cls.from_config(SAMPLES[name])
    entry = json.loads(json.dumps(stage.to_dict()))
    assert entry["class_name"] == name and stage_from_dict(entry) == stage
    # The default config round-trips too, and declares what the registry says it supports.
    default = stage_from_dict({"class_name": name})
    assert stage_from_dict(default.to_dict()) == default
    fields = {f.name for f in dataclasses.fields(info.cls)}
    assert info.fine_tunes == ("epochs" in fields) and info.distills == ("distill" in fields)
    assert info.summary and info.artefact_suffix in (".keras", ".h5")
    with pytest.raises(InputError, match=r"unknown key\(s\) \['nope'\]"):
        stage_from_dict({"class_name": name, "config": {"nope": 1}})


def test_the_registry_describes_itself_and_names_the_known_on_a_miss() -> None:
    described = [info.to_dict() for info in stage_infos()]
    assert [d["name"] for d in described] == stage_names()
    assert [d["name"] for d in described if d["quantized_ranges"]] == ["QAT"]
    with pytest.raises(InputError, match="unknown stage 'Nope'; known stages: ") as err:
        get_stage("Nope")
    assert str(err.value).endswith(", ".join(stage_names()))


@pytest.fixture(scope="module")
def float_file(tmp_path_factory, tiny_trained_model):
    from edgekit.core.model_io import save_model

    return save_model(tiny_trained_model, tmp_path_factory.mktemp("float") / "float.keras")


@pytest.mark.parametrize("name", list(SAMPLES))
def test_each_stage_runs_and_its_report_section_reads_its_details(
        name, tmp_path, tiny_trained_model, digits8, float_file) -> None:
    from edgekit.stage_runner import run_stage

    info = get_stage(name)
    stage = info.cls.from_config(SAMPLES[name])
    dest = tmp_path / f"{name.lower()}{info.artefact_suffix}"
    out = run_stage(stage, tiny_trained_model, digits8, dest, float_file)
    assert out.path == dest and dest.is_file()
    assert out.model.output_shape == tiny_trained_model.output_shape
    json.dumps(out.details)  # the details go into report.json as they are
    assert info.notes is not None
    notes = info.notes(name.lower(), out.details)
    assert isinstance(notes, StageNotes)
    assert (notes.stage, notes.kind) == (name.lower(), name) and notes.facts
    assert all(isinstance(f, str) and f for f in notes.facts)
    assert all(len(row) == len(notes.headers) for row in notes.rows)
