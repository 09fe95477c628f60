"""Labels outside the model's classes, and recipes that are empty or not a mapping: refused.

Each refusal is one line on stderr naming the input and what was expected, exit 2, and nothing
written (no model, no run folder). The label rule is ``edgekit.core.checks.check_labels``; the
data loader, the pipeline and ``verify_tflite`` all call it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from edgekit.core.checks import check_labels
from edgekit.core.errors import InputError


def _one_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = [line for line in capsys.readouterr().err.strip().splitlines() if line.strip()]
    assert len(err) == 1, err
    assert "Traceback" not in err[0]
    return err[0]


@pytest.fixture(scope="module")
def bad_labels(tmp_path_factory: pytest.TempPathFactory, digits8, tiny_trained_model
               ) -> tuple[Path, Path]:
    """(a 10-class model file, an .npz of the same digits where every 3 is labelled 57)."""
    from edgekit.core.model_io import save_model

    root = tmp_path_factory.mktemp("labels")
    model = save_model(tiny_trained_model, root / "tiny.keras")
    x = np.concatenate([digits8.x_train, digits8.x_test])
    y = np.concatenate([digits8.y_train, digits8.y_test]).copy()
    y[y == 3] = 57
    np.savez(root / "bad.npz", x=x, y=y)
    return model, root / "bad.npz"


def _expected(npz: Path) -> str:
    return (f"edgekit: error: labels of {str(npz)!r} must be in [0, 10) for a model with 10 "
            "classes, got 57")


def test_convert_refuses_labels_outside_the_model_classes(bad_labels, tmp_path: Path, cli,
                                                          capsys) -> None:
    model, npz = bad_labels
    out = tmp_path / "out" / "m.tflite"
    assert cli(["convert", str(model), "--data", str(npz), "--out", str(out)]) == 2
    assert _one_line(capsys) == _expected(npz)
    assert not (tmp_path / "out").exists()


def test_compress_refuses_labels_outside_the_model_classes(bad_labels, tmp_path: Path, cli,
                                                           capsys) -> None:
    model, npz = bad_labels
    out = tmp_path / "m.keras"
    assert cli(["compress", str(model), "--data", str(npz), "--prune", "0.5",
                "--out", str(out)]) == 2
    assert _one_line(capsys) == _expected(npz)
    assert list(tmp_path.iterdir()) == []


def test_run_refuses_labels_outside_the_model_classes(bad_labels, tmp_path: Path, cli,
                                                      capsys) -> None:
    model, npz = bad_labels
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"model": str(model), "data": str(npz)}))
    assert cli(["run", str(recipe), "--out", str(tmp_path / "runs" / "r")]) == 2
    assert _one_line(capsys) == _expected(npz)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.yaml"]  # no run folder


def test_verify_refuses_labels_the_model_has_no_class_for(tiny_trained_model, digits8) -> None:
    from edgekit.converters import ConversionConfig, Mode, convert_keras, verify_tflite

    blob = convert_keras(tiny_trained_model, ConversionConfig(mode=Mode.FLOAT32))
    labels = digits8.y_test.copy()
    assert verify_tflite(blob, digits8.x_test, labels).accuracy > 0.5
    labels[:2] = [10, -1]
    with pytest.raises(InputError, match=r"labels of 'y' must be in \[0, 10\) for a model with "
                                         r"10 classes, got -1, 10$"):
        verify_tflite(blob, digits8.x_test, labels)


@pytest.mark.parametrize(("labels", "shown"), [
    ([0, 9, 10], "10"),
    ([-3, 4], "-3"),
    ([57, 57, 11, 12, 13, 0], r"11, 12, 13, \.\.\. \(4 distinct labels out of range\)"),
])
def test_check_labels_names_the_offending_labels(labels: list[int], shown: str) -> None:
    with pytest.raises(InputError, match=rf"^labels of 'x\.npz' must be in \[0, 10\) for a "
                                         rf"model with 10 classes, got {shown}$"):
        check_labels(np.asarray(labels), 10, "x.npz")
    check_labels(np.arange(10), 10, "x.npz")  # every class: fine
    check_labels(np.array([], np.int64), 10, "x.npz")


@pytest.mark.parametrize(("text", "suffix", "says"), [
    ("", ".yaml", "is empty; expected a mapping of recipe keys"),
    ("# only a comment\n", ".yml", "is empty; expected a mapping of recipe keys"),
    ("{}\n", ".yaml", "is empty; expected a mapping of recipe keys"),
    ("- model: demo_cnn\n", ".yaml", "got a list"),
    ("demo_cnn\n", ".yaml", "must be a mapping of recipe keys (model, data, train, stages"),
    ("42", ".json", "got a number"),
    ("null", ".json", "is empty"),
], ids=["empty", "comment", "braces", "list", "string", "json-number", "json-null"])
def test_an_empty_or_non_mapping_recipe_is_refused_before_anything_runs(
        tmp_path: Path, cli, capsys, text: str, suffix: str, says: str) -> None:
    recipe = tmp_path / f"r{suffix}"
    recipe.write_text(text)
    out = tmp_path / "out"
    assert cli(["run", str(recipe), "--out", str(out)]) == 2
    line = _one_line(capsys)
    assert line.startswith(f"edgekit: error: recipe {str(recipe)!r} ") and says in line, line
    assert not out.exists()
