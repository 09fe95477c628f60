"""Mode/IOType/ConversionConfig validation and real conversions in every mode."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgekit.converters import (
    ConversionConfig,
    IOType,
    Mode,
    convert_keras,
    inspect_tflite,
    run_tflite,
    verify_tflite,
    weight_sparsity,
)
from edgekit.core._keras import keras, tf, tfmot
from edgekit.core.errors import InputError

VALID_COMBOS = [
    ("float32", None), ("float16", None), ("dynamic", None),
    ("int8", None), ("int8", "uint8"), ("int8", "float32"),
    ("int16x8", None), ("int16x8", "int16"),
]


# --- enums and config -------------------------------------------------------------------------

def test_mode_parse_accepts_names_case_insensitively() -> None:
    assert Mode.parse("INT8") is Mode.INT8
    assert Mode.parse(" int16x8 ") is Mode.INT16X8
    assert Mode.parse(Mode.FLOAT16) is Mode.FLOAT16
    assert IOType.parse("uint8") is IOType.UINT8


def test_mode_parse_lists_choices() -> None:
    with pytest.raises(InputError) as e:
        Mode.parse("int4")
    assert str(e.value) == (
        "mode must be one of float32, float16, dynamic, int8, int16x8; got 'int4'"
    )


def test_iotype_parse_lists_choices() -> None:
    with pytest.raises(InputError, match="io must be one of int8, uint8, float32, int16; got 'x'"):
        IOType.parse("x")


@pytest.mark.parametrize(("mode", "io"), [("int8", "int8"), ("float32", "float32"),
                                          ("float16", "float32"), ("dynamic", "float32"),
                                          ("int16x8", "float32")])
def test_config_default_io(mode: str, io: str) -> None:
    assert ConversionConfig(mode=Mode(mode)).io is IOType(io)


def test_config_default_is_full_int8() -> None:
    config = ConversionConfig()
    assert (config.mode, config.io, config.per_channel) == (Mode.INT8, IOType.INT8, True)


@pytest.mark.parametrize(("mode", "io"), VALID_COMBOS)
@pytest.mark.parametrize("per_channel", [True, False])
def test_config_round_trips_through_json(mode: str, io: str | None, per_channel: bool) -> None:
    config = ConversionConfig(mode=Mode(mode), io=None if io is None else IOType(io),
                              per_channel=per_channel)
    back = ConversionConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert back == config


def test_config_accepts_strings() -> None:
    assert ConversionConfig(mode="int8", io="uint8") == ConversionConfig(Mode.INT8, IOType.UINT8)


@pytest.mark.parametrize(("mode", "io", "needs"), [
    ("float16", "uint8", "int8/uint8 I/O needs mode int8"),
    ("dynamic", "int8", "int8/uint8 I/O needs mode int8"),
    ("int16x8", "int8", "int8/uint8 I/O needs mode int8"),
    ("int8", "int16", "int16 I/O needs mode int16x8"),
])
def test_config_rejects_io_that_does_not_fit_mode(mode: str, io: str, needs: str) -> None:
    with pytest.raises(InputError, match=needs):
        ConversionConfig(mode=Mode(mode), io=IOType(io))


def test_config_rejects_unknown_keys_and_bad_values() -> None:
    with pytest.raises(InputError, match="known keys: mode, io, per_channel"):
        ConversionConfig.from_dict({"mode": "int8", "bits": 4})
    with pytest.raises(InputError, match="per_channel must be true or false"):
        ConversionConfig(per_channel="yes")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="mode must be one of"):
        ConversionConfig.from_dict({"mode": "int4"})


# --- conversions ------------------------------------------------------------------------------

@pytest.mark.parametrize(("mode", "io"), VALID_COMBOS)
def test_every_mode_converts_and_runs(convert, data, mode: str, io: str | None) -> None:
    blob = convert(mode, io)
    out = run_tflite(blob, data["x_test"][:20])
    assert out.shape == (20, 3) and out.dtype == np.float32
    assert np.isfinite(out).all()


def test_int8_is_full_integer_with_int8_io(convert) -> None:
    result = inspect_tflite(convert("int8"))
    assert result.full_integer
    assert result.float_ops == [] and result.float_io == []
    assert [t["dtype"] for t in result.inputs + result.outputs] == ["int8", "int8"]
    assert all(isinstance(t["scale"], float) for t in result.inputs + result.outputs)


def test_uint8_io_end_to_end(convert, data, float_model) -> None:
    blob = convert("int8", "uint8")
    result = inspect_tflite(blob)
    assert result.full_integer
    assert [t["dtype"] for t in result.inputs + result.outputs] == ["uint8", "uint8"]
    check = verify_tflite(blob, data["x_test"], data["y_test"], reference=float_model)
    assert check.top1_agreement >= 0.9


def test_int8_with_float_io_is_not_full_integer(convert) -> None:
    result = inspect_tflite(convert("int8", "float32"))
    assert not result.full_integer
    assert len(result.float_io) == 2
    assert {o["op"] for o in result.float_ops} == {"QUANTIZE", "DEQUANTIZE"}


def test_float32_is_not_full_integer(convert) -> None:
    result = inspect_tflite(convert("float32"))
    assert not result.full_integer
    assert {o["op"] for o in result.float_ops} >= {"CONV_2D", "FULLY_CONNECTED"}
    assert result.tensors.get("int8", 0) == 0


def test_float16_stores_float16_weights(convert) -> None:
    result = inspect_tflite(convert("float16"))
    assert result.tensors["float16"] >= 2
    assert any(o["op"] == "DEQUANTIZE" for o in result.ops)
    assert {w["dtype"] for w in weight_sparsity(convert("float16"))} == {"float16"}


def test_dynamic_keeps_float_io_and_int8_weights(convert) -> None:
    blob = convert("dynamic")
    result = inspect_tflite(blob)
    assert [t["dtype"] for t in result.inputs + result.outputs] == ["float32", "float32"]
    assert not result.full_integer
    # the dense kernel (1536 weights) is quantized; the converter leaves tensors under 1024
    # elements (the 72-weight conv kernel) in float32
    dense = [w for w in weight_sparsity(blob) if w["op"] == "FULLY_CONNECTED"]
    assert dense[0]["dtype"] == "int8"


def test_int16x8_uses_int16_activations(convert) -> None:
    float_io = inspect_tflite(convert("int16x8"))
    assert float_io.tensors["int16"] >= 2 and float_io.float_io
    int_io = inspect_tflite(convert("int16x8", "int16"))
    assert int_io.full_integer
    assert [t["dtype"] for t in int_io.inputs + int_io.outputs] == ["int16", "int16"]


def test_per_channel_off_gives_one_scale_per_weight(convert) -> None:
    per_channel = {w["op"]: w["scales"] for w in weight_sparsity(convert("int8"))}
    per_tensor = {w["op"]: w["scales"] for w in weight_sparsity(convert("int8", per_channel=False))}
    assert per_channel["CONV_2D"] == 8
    assert per_tensor == {"CONV_2D": 1, "FULLY_CONNECTED": 1}


@pytest.mark.parametrize("mode", ["int8", "int16x8"])
def test_calibrated_modes_need_representative(float_model, mode: str) -> None:
    with pytest.raises(InputError, match=f"mode {mode} needs calibration data"):
        convert_keras(float_model, ConversionConfig(mode=Mode(mode)))


def test_calibration_shape_mismatch_names_both_shapes(float_model) -> None:
    wrong = np.zeros((4, 28, 28, 1), np.float32)
    with pytest.raises(InputError) as e:
        convert_keras(float_model, ConversionConfig(), wrong)
    assert str(e.value) == (
        "calibration data has sample shape (28, 28, 1) but the model input 'image' "
        "expects (8, 8, 1)"
    )


def test_non_finite_calibration_is_rejected(float_model) -> None:
    bad = np.full((2, 8, 8, 1), np.nan, np.float32)
    with pytest.raises(InputError, match="NaN"):
        convert_keras(float_model, ConversionConfig(), bad)


def test_uncalibrated_modes_need_no_data(float_model) -> None:
    blob = convert_keras(float_model, ConversionConfig(mode=Mode.DYNAMIC))
    assert blob[4:8] == b"TFL3"


@pytest.mark.parametrize("with_data", [True, False], ids=["calibrated", "qat-ranges-only"])
def test_qat_model_converts_to_full_int8(qat_model, calibration, data, with_data: bool) -> None:
    blob = convert_keras(qat_model, ConversionConfig(), calibration if with_data else None)
    result = inspect_tflite(blob)
    assert result.full_integer
    assert [t["dtype"] for t in result.inputs + result.outputs] == ["int8", "int8"]
    check = verify_tflite(blob, data["x_test"], data["y_test"], reference=qat_model)
    assert check.top1_agreement >= 0.95
    assert check.snr_db > 20


def test_pruned_then_stripped_model_keeps_sparsity(data, calibration, helpers) -> None:
    sparsity = tfmot.sparsity.keras
    keras.utils.set_random_seed(1)
    pruned = sparsity.prune_low_magnitude(
        helpers["build_cnn"](),
        pruning_schedule=sparsity.ConstantSparsity(0.75, begin_step=0, frequency=1),
    )
    helpers["fit"](pruned, data["x_train"], data["y_train"], epochs=1, lr=0.01,
                    callbacks=[sparsity.UpdatePruningStep()])
    stripped = sparsity.strip_pruning(pruned)
    blob = convert_keras(stripped, ConversionConfig(), calibration)
    assert inspect_tflite(blob).full_integer
    dense = next(w for w in weight_sparsity(blob) if w["op"] == "FULLY_CONNECTED")
    assert dense["sparsity"] == pytest.approx(0.75, abs=0.01)


def test_converter_failure_is_one_line_input_error() -> None:
    inp = keras.layers.Input((4,))
    det = keras.layers.Lambda(lambda t: tf.linalg.det(tf.reshape(t, (-1, 2, 2))))(inp)
    with pytest.raises(InputError) as e:
        convert_keras(keras.Model(inp, det), ConversionConfig(mode=Mode.FLOAT32))
    message = str(e.value)
    assert message.startswith("the model could not be converted in mode float32 (io float32): ")
    assert "MatrixDeterminant" in message and "\n" not in message
