"""Running .tflite models on float data and comparing them with their Keras model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgekit.converters import (
    ConversionConfig,
    Mode,
    VerificationResult,
    convert_keras,
    run_tflite,
    verify_tflite,
)
from edgekit.core._keras import keras
from edgekit.core.errors import InputError


def test_int8_agrees_with_keras(int8_path, float_model, data) -> None:
    check = verify_tflite(int8_path, data["x_test"], data["y_test"], reference=float_model)
    assert check.samples == 300
    assert check.top1_agreement >= 0.9
    assert check.snr_db > 15
    assert check.accuracy > 0.8  # the rule was learned, so accuracy means something
    assert abs(check.accuracy - check.reference_accuracy) < 0.05
    assert 0 < check.mean_abs_error <= check.max_abs_error
    assert not check.identical


def test_float32_matches_keras_closely(convert, float_model, data) -> None:
    check = verify_tflite(convert("float32"), data["x_test"], reference=float_model)
    assert check.top1_agreement == 1.0
    assert check.max_abs_error < 1e-4
    assert check.snr_db is None or check.snr_db > 80
    assert check.accuracy is None and check.reference_accuracy is None


def test_run_tflite_dequantizes_to_keras_scale(int8_path, float_model, data) -> None:
    x = data["x_test"][:50]
    out = run_tflite(int8_path, x)
    ref = float_model.predict(x, verbose=0)
    assert out.dtype == np.float32 and out.shape == ref.shape
    assert np.abs(out - ref).mean() < 0.1 * np.abs(ref).mean()


def test_result_is_plain_json(int8_path, data, tmp_path) -> None:
    check = verify_tflite(int8_path, data["x_test"][:20], data["y_test"][:20])
    assert isinstance(check, VerificationResult)
    d = check.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert d["top1_agreement"] is None and d["snr_db"] is None and isinstance(d["accuracy"], float)
    saved = check.save(tmp_path / "verify.json")
    assert json.loads(saved.read_text()) == d


def test_identical_outputs_report_no_snr(convert, data) -> None:
    blob = convert("float32")

    class Replay:
        """Stands in for a Keras model whose outputs equal the TFLite outputs exactly."""

        def predict(self, x: np.ndarray, verbose: int = 0) -> np.ndarray:
            return run_tflite(blob, x)

    check = verify_tflite(blob, data["x_test"][:10], reference=Replay())
    assert check.identical and check.snr_db is None
    assert check.max_abs_error == 0.0 and check.top1_agreement == 1.0


def test_one_hot_labels(int8_path, data) -> None:
    y = data["y_test"][:40]
    a = verify_tflite(int8_path, data["x_test"][:40], y)
    b = verify_tflite(int8_path, data["x_test"][:40], np.eye(3)[y])
    assert a.accuracy == b.accuracy


def test_label_count_mismatch(int8_path, data) -> None:
    with pytest.raises(InputError, match="labels must be 10 integer class ids"):
        verify_tflite(int8_path, data["x_test"][:10], data["y_test"][:9])


def test_sample_shape_mismatch_names_both_shapes(int8_path) -> None:
    with pytest.raises(InputError) as e:
        run_tflite(int8_path, np.zeros((2, 28, 28, 1), np.float32))
    message = str(e.value)
    assert "sample shape (28, 28, 1)" in message and "expects (8, 8, 1)" in message


def test_multi_input_model_is_rejected(tmp_path) -> None:
    a = keras.layers.Input((4,), name="a")
    b = keras.layers.Input((4,), name="b")
    model = keras.Model([a, b], keras.layers.Dense(2)(keras.layers.Concatenate()([a, b])))
    blob = convert_keras(model, ConversionConfig(mode=Mode.FLOAT32))
    with pytest.raises(InputError, match="single-input, single-output models; this model has 2"):
        run_tflite(blob, np.zeros((1, 4), np.float32))


def test_missing_and_non_tflite_models(tmp_path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        run_tflite(tmp_path / "missing.tflite", np.zeros((1, 8, 8, 1), np.float32))
    text = tmp_path / "model.tflite"
    text.write_text("not a model at all")
    with pytest.raises(InputError, match="not a TFLite flatbuffer"):
        run_tflite(text, np.zeros((1, 8, 8, 1), np.float32))


def test_empty_data_is_rejected(int8_path) -> None:
    with pytest.raises(InputError, match="at least one sample"):
        run_tflite(int8_path, np.zeros((0, 8, 8, 1), np.float32))
