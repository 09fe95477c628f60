"""Seeded calibration sample selection and its JSON record."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from edgekit.converters import (
    CALIBRATION_SCHEMA,
    calibration_record_path,
    load_calibration_record,
    save_calibration_record,
    select_calibration,
)
from edgekit.core.errors import InputError

X = np.arange(500 * 4, dtype=np.float64).reshape(500, 2, 2)


def test_same_seed_same_indices() -> None:
    a_samples, a = select_calibration(X, 50, seed=7)
    b_samples, b = select_calibration(X, 50, seed=7)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a_samples, b_samples)


def test_different_seed_different_indices() -> None:
    _, a = select_calibration(X, 50, seed=0)
    _, b = select_calibration(X, 50, seed=1)
    assert not np.array_equal(a, b)


def test_indices_are_sorted_distinct_int64_and_samples_float32() -> None:
    samples, idx = select_calibration(X, 100, seed=3)
    assert idx.dtype == np.int64 and samples.dtype == np.float32
    assert len(np.unique(idx)) == 100 and np.all(np.diff(idx) > 0)
    np.testing.assert_array_equal(samples, X[idx].astype(np.float32))


def test_matches_default_rng_choice() -> None:
    _, idx = select_calibration(X, 10, seed=5)
    expected = np.sort(np.random.default_rng(5).choice(500, size=10, replace=False))
    np.testing.assert_array_equal(idx, expected)


def test_num_samples_larger_than_data_clips() -> None:
    samples, idx = select_calibration(X[:30], 200, seed=0)
    assert len(samples) == 30
    np.testing.assert_array_equal(idx, np.arange(30))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"num_samples": 0}, "num_samples must be >= 1, got 0"),
    ({"num_samples": 2.5}, "num_samples must be an integer >= 1"),
    ({"num_samples": True}, "num_samples must be an integer >= 1"),
    ({"seed": -1}, "seed must be >= 0, got -1"),
])
def test_bad_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        select_calibration(X, **kwargs)


def test_empty_data_is_rejected() -> None:
    with pytest.raises(InputError, match="at least one sample"):
        select_calibration(np.zeros((0, 8, 8, 1)), 10)


def test_record_round_trips(tmp_path) -> None:
    _, idx = select_calibration(X, 20, seed=11)
    path = calibration_record_path(tmp_path / "model_int8.tflite")
    assert path.name == "model_int8.calibration.json"
    written = save_calibration_record(path, indices=idx, seed=11, num_samples=20,
                                      source="digits:train")
    assert written == path
    raw = json.loads(path.read_text())
    assert raw == {
        "schema": CALIBRATION_SCHEMA, "source": "digits:train", "seed": 11, "num_samples": 20,
        "indices": [int(i) for i in idx],
    }
    record = load_calibration_record(path)
    _, again = select_calibration(X, record["num_samples"], seed=record["seed"])
    assert record["indices"] == again.tolist()
    assert not list(tmp_path.glob(".*tmp*"))  # the atomic write left no temp file


def test_record_rejects_bad_fields_and_files(tmp_path) -> None:
    with pytest.raises(InputError, match="source must be a non-empty string"):
        save_calibration_record(tmp_path / "c.json", indices=[1], seed=0, num_samples=1, source="")
    with pytest.raises(InputError, match="does not exist"):
        load_calibration_record(tmp_path / "missing.json")
    other = tmp_path / "other.json"
    other.write_text('{"schema": "something/1"}')
    with pytest.raises(InputError, match=r"not an edgekit\.calibration/1 record"):
        load_calibration_record(other)


def test_record_names_its_model_and_a_mismatch_is_refused(tmp_path) -> None:
    model = tmp_path / "m.tflite"
    model.write_bytes(b"model bytes")
    path = save_calibration_record(calibration_record_path(model), indices=[3, 5], seed=0,
                                   num_samples=2, source="digits:train", model=b"model bytes")
    raw = json.loads(path.read_text())
    assert raw["model_sha256"] == hashlib.sha256(b"model bytes").hexdigest()
    assert load_calibration_record(path, model=model)["indices"] == [3, 5]
    model.write_bytes(b"another model")  # the pair a crash between the two renames leaves
    with pytest.raises(InputError, match=r"belongs to another model than .*m\.tflite"):
        load_calibration_record(path, model=model)
    old = save_calibration_record(tmp_path / "old.calibration.json", indices=[1], seed=0,
                                  num_samples=1, source="digits:train")
    assert "model_sha256" not in json.loads(old.read_text())
    assert load_calibration_record(old, model=model)["seed"] == 0  # an older record: unchecked
    with pytest.raises(InputError, match=r"model .*missing\.tflite.* is not readable"):
        load_calibration_record(path, model=tmp_path / "missing.tflite")
