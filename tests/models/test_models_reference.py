"""The MLPerf Tiny-like reference models, the tiny student and the registry's task metadata.

Parameter counts are the ones the MLPerf Tiny reference definitions give (see each module's
docstring for the source file); the int8 checks convert with the real TFLite converter and run the
result in the real LiteRT interpreter.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgekit.converters import ConversionConfig, convert_keras, inspect_tflite, run_tflite
from edgekit.core._keras import keras
from edgekit.core.errors import InputError
from edgekit.models import Task, available_models, build_model, model_info, register

DIGITS = (32, 32, 1)

# name: (reference input shape, output shape, parameters, trainable parameters)
REFERENCE = {
    "ds_cnn": ((49, 10, 1), (12,), 24_908, 23_756),
    "resnet8": ((32, 32, 3), (10,), 78_666, 78_186),
    "mobilenet_v1": ((96, 96, 3), (2,), 221_794, 216_322),
    "fc_autoencoder": ((640,), (640,), 269_992, 267_928),
    "tiny_cnn": ((32, 32, 1), (10,), 3_858, 3_778),
}

# name: (conversion input shape, op counts the int8 graph must have)
INT8_GRAPH = {
    "ds_cnn": (DIGITS, {"CONV_2D": 5, "DEPTHWISE_CONV_2D": 4, "AVERAGE_POOL_2D": 1,
                        "FULLY_CONNECTED": 1}),
    "resnet8": (DIGITS, {"CONV_2D": 9, "ADD": 3, "AVERAGE_POOL_2D": 1, "FULLY_CONNECTED": 1}),
    "mobilenet_v1": (DIGITS, {"CONV_2D": 14, "DEPTHWISE_CONV_2D": 13, "AVERAGE_POOL_2D": 1,
                              "FULLY_CONNECTED": 1}),
    "fc_autoencoder": ((640,), {"FULLY_CONNECTED": 10}),
    "tiny_cnn": (DIGITS, {"CONV_2D": 3, "MAX_POOL_2D": 2, "FULLY_CONNECTED": 1}),
}


# Lowest acceptable SNR (dB) of the int8 outputs against Keras, on untrained seeded weights.
# Untrained MobileNetV1 is the ill-conditioned case: its deep depthwise outputs have a mean far
# above their spread, so BN folding turns the int8 rounding of the depthwise weights into errors of
# ~25 % of the normalized output (the depthwise+BN problem: arXiv:1803.08607, arXiv:1906.04721);
# float32 TFLite agrees to 1e-4, and trained weights do not have this problem. The autoencoder
# re-quantizes its activations after each of ten Dense+BN layers, and the errors add up (20 dB
# measured at seed 0; the classifiers measure 36-40 dB).
MIN_SNR_DB = {"mobilenet_v1": 3.0, "fc_autoencoder": 17.0}


def _trainable(model) -> int:
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def _estimate_bn_statistics(model, x: np.ndarray) -> None:
    """Sets every BatchNormalization's moving mean/variance to the statistics of ``x``.

    What training leaves behind, without training: an untrained model keeps mean 0 / variance 1,
    with which deep depthwise stacks (MobileNetV1) shrink activations to ~1e-14, below what int8
    scales can represent. One forward pass in training mode with momentum 0 sets the statistics.
    """
    from edgekit.core._keras import keras

    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.momentum = 0.0
    model(x, training=True)
    for bn, momentum in zip(bns, momenta, strict=True):
        bn.momentum = momentum


def _digits_kwargs(name: str) -> dict:
    """Arguments the pipeline would pass for 32x32x1 digits (no classes for an autoencoder)."""
    num_classes = None if model_info(name).task is Task.RECONSTRUCTION else 10
    return {"input_shape": DIGITS, "num_classes": num_classes}


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_reference_shape_and_parameter_count(name):
    shape, out, params, trainable = REFERENCE[name]
    model = build_model(name)  # no arguments: the reference shape and class count
    assert model.input_shape == (None, *shape)
    assert model.output_shape == (None, *out)
    assert model.count_params() == params
    assert _trainable(model) == trainable
    assert model.name == name
    x = np.random.default_rng(0).normal(size=(2, *shape)).astype(np.float32)
    y = model(x, training=False).numpy()
    assert y.shape == (2, *out) and np.isfinite(y).all()
    # The output depends on the input (relative test: untrained MobileNetV1 outputs are ~1e-14).
    assert not np.allclose(y[0], y[1], rtol=1e-3, atol=0.0)


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_builds_on_digits_and_layer_names_are_stable(name):
    a = build_model(name, **_digits_kwargs(name))
    b = build_model(name, **_digits_kwargs(name))
    assert a.input_shape == (None, *DIGITS)
    expected_out = DIGITS if model_info(name).task is Task.RECONSTRUCTION else (10,)
    assert a.output_shape == (None, *expected_out)
    assert [layer.name for layer in a.layers] == [layer.name for layer in b.layers]


@pytest.mark.parametrize("name", sorted(INT8_GRAPH))
def test_converts_to_full_int8(name):
    shape, op_counts = INT8_GRAPH[name]
    kwargs = _digits_kwargs(name) if shape == DIGITS else {}
    keras.utils.set_random_seed(0)  # the weights, whatever ran before this test
    model = build_model(name, **kwargs)
    rng = np.random.default_rng(1)
    calibration = rng.uniform(0.0, 1.0, size=(8, *shape)).astype(np.float32)
    _estimate_bn_statistics(model, rng.uniform(0.0, 1.0, size=(32, *shape)).astype(np.float32))
    blob = convert_keras(model, ConversionConfig(mode="int8", io="int8"), calibration)
    inspection = inspect_tflite(blob)
    assert inspection.full_integer, inspection.float_ops
    assert inspection.float_ops == [] and inspection.float_io == []
    ops = {o["op"]: o["count"] for o in inspection.ops}
    assert {op: ops.get(op, 0) for op in op_counts} == op_counts
    # The int8 model computes what the Keras model computes, within quantization error.
    want = model(calibration, training=False).numpy()
    got = run_tflite(blob, calibration)
    assert got.shape == want.shape
    snr_db = 10 * np.log10(np.mean(want**2) / np.mean((got - want) ** 2))
    assert snr_db >= MIN_SNR_DB.get(name, 30.0)


def test_every_model_is_listed_with_its_task():
    assert available_models() == ["demo_cnn", "ds_cnn", "fc_autoencoder", "mobilenet_v1",
                                  "resnet8", "tiny_cnn"]
    assert available_models(Task.RECONSTRUCTION) == ["fc_autoencoder"]
    assert "fc_autoencoder" not in available_models("classification")
    info = model_info("ds_cnn").to_dict()
    assert info == {"name": "ds_cnn", "task": "classification",
                    "summary": "DS-CNN (small): the MLPerf Tiny keyword-spotting reference model."}
    with pytest.raises(ValueError, match="'regression' is not a valid Task"):
        available_models("regression")


def test_autoencoder_refuses_classes():
    with pytest.raises(InputError, match=r"model 'fc_autoencoder' is a reconstruction model, not a "
                                         r"classifier: it takes no num_classes \(got 10\); "
                                         r"classification models: demo_cnn, ds_cnn, mobilenet_v1"):
        build_model("fc_autoencoder", input_shape=DIGITS, num_classes=10)


def test_pipeline_refuses_the_autoencoder_with_a_clear_error(tmp_path):
    from edgekit.pipeline import Pipeline
    from edgekit.recipe import Recipe

    recipe = Recipe.from_dict({"model": "fc_autoencoder", "data": "digits"})
    with pytest.raises(InputError, match="'fc_autoencoder' is a reconstruction model; the "
                                         "pipeline trains and scores classifiers"):
        Pipeline(recipe, tmp_path / "run").resolve_inputs()
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("name", "shape", "message"), [
    ("ds_cnn", (49, 10), r"ds_cnn needs an \(H, W, C\) input shape with H, W >= 2, got \(49, 10\)"),
    ("resnet8", (2, 2, 3), r"resnet8 needs .* H, W >= 4, got \(2, 2, 3\)"),
    ("mobilenet_v1", (640,), r"mobilenet_v1 needs an \(H, W, C\) input shape, got \(640,\)"),
    ("tiny_cnn", (3, 3, 1), r"tiny_cnn needs .* H, W >= 4, got \(3, 3, 1\)"),
    ("fc_autoencoder", (0,), r"fc_autoencoder needs a non-empty input shape, got \(0,\)"),
])
def test_bad_input_shape_is_a_one_line_input_error(name, shape, message):
    with pytest.raises(InputError, match=message):
        build_model(name, input_shape=shape)


def test_a_name_cannot_be_registered_twice():
    with pytest.raises(ValueError, match="model name 'resnet8' is already registered"):
        register("resnet8")(lambda **_: None)


def test_cli_models_lists_every_model(capsys):
    from edgekit.cli import main

    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == available_models()
    assert [line.split()[1] for line in lines] == [model_info(n).task.value
                                                   for n in available_models()]
