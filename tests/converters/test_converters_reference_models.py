"""Every mode on a reference model from ``models/`` (demo_cnn) and on a keras.applications model.

demo_cnn is trained briefly on digits at 16x16 (fast; runs in ``make test``). MobileNet (v1,
alpha 0.25, 32x32x3, no pretrained weights: nothing is downloaded) takes 10-20 s per conversion
on 2 cores, so its suite is marked slow (``make test-all``). Its BatchNormalization statistics
are re-estimated on the calibration data first: with untrained statistics the activations shrink
~3x per block, and by block 5 an int16x8 activation scale is ~1e-10, so the RELU6 clamp (6 /
scale) overflows int32 and the interpreter refuses the model (kernel_util.cc
``no_integer_overflow_from_quantization``) -- an artefact of an untrained net, not of the
converter.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgekit.cli import main as cli
from edgekit.compress.training import fit
from edgekit.converters import (
    ConversionConfig,
    IOType,
    Mode,
    convert_keras,
    inspect_tflite,
    keras_work,
    run_tflite,
    select_calibration,
    verify_tflite,
)
from edgekit.core._keras import keras
from edgekit.data import load_digits
from edgekit.models import build_model

MODES = [("float32", None), ("float16", None), ("dynamic", None), ("int8", None),
         ("int8", "uint8"), ("int8", "float32"), ("int16x8", None), ("int16x8", "int16")]


def estimate_bn(model: keras.Model, x: np.ndarray) -> keras.Model:
    """Sets every BatchNormalization's moving mean/variance to the statistics of its input on
    ``x``, layer by layer in graph order (each estimate sees the earlier corrected layers)."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            a = keras.Model(model.input, layer.input).predict(x, verbose=0)
            gamma, beta, _, _ = layer.get_weights()
            layer.set_weights([gamma, beta, a.mean(axis=(0, 1, 2)), a.var(axis=(0, 1, 2))])
    return model


def config(mode: str, io: str | None) -> ConversionConfig:
    return ConversionConfig(mode=Mode(mode), io=None if io is None else IOType(io))


def check_mode(blob: bytes, mode: str, io: str | None, x: np.ndarray, tmp_path) -> None:
    """What every mode must give: a model that runs; int8/int16 I/O full-integer models pass
    ``edgekit inspect --require-int8``; float models fail it."""
    out = run_tflite(blob, x)
    assert out.shape[0] == len(x) and np.isfinite(out).all()
    result = inspect_tflite(blob)
    path = tmp_path / f"{mode}-{io}.tflite"
    path.write_bytes(blob)
    full_integer = (mode == "int8" and io != "float32") or (mode == "int16x8" and io == "int16")
    assert result.full_integer is full_integer
    assert cli(["inspect", str(path), "--require-int8"]) == (0 if full_integer else 1)


@pytest.fixture(scope="module")
def digits16():
    return load_digits(16)


@pytest.fixture(scope="module")
def demo(digits16) -> keras.Model:
    keras.utils.set_random_seed(0)
    model = build_model("demo_cnn", input_shape=(16, 16, 1), num_classes=10)
    fit(model, digits16.x_train, digits16.y_train, epochs=6, learning_rate=3e-3,
        augment_shift=0, desc="demo_cnn")
    # Six short epochs leave the BatchNormalization moving statistics behind the weights.
    return estimate_bn(model, digits16.x_train[:512])


@pytest.fixture(scope="module")
def demo_calibration(digits16) -> np.ndarray:
    return select_calibration(digits16.x_train, num_samples=64, seed=0)[0]


@pytest.mark.parametrize(("mode", "io"), MODES)
def test_demo_cnn_every_mode(demo, demo_calibration, digits16, mode, io, tmp_path, capsys):
    blob = convert_keras(demo, config(mode, io), demo_calibration)
    check_mode(blob, mode, io, digits16.x_test[:16], tmp_path)
    capsys.readouterr()
    # Every mode computes the same convolutions: the .tflite counts the Keras model's MACs.
    assert inspect_tflite(blob).macs == keras_work(demo)["macs"] > 0


def test_demo_cnn_uint8_end_to_end(demo, demo_calibration, digits16):
    blob = convert_keras(demo, config("int8", "uint8"), demo_calibration)
    io = inspect_tflite(blob)
    assert [t["dtype"] for t in io.inputs + io.outputs] == ["uint8", "uint8"]
    assert io.inputs[0]["zero_point"] == 0  # [0, 1] pixels map to 0..255
    check = verify_tflite(blob, digits16.x_test, digits16.y_test, reference=demo)
    assert check.reference_accuracy > 0.8
    assert check.top1_agreement >= 0.97 and check.snr_db > 15


def test_demo_cnn_int16x8_runs_and_is_closer_than_int8(demo, demo_calibration, digits16):
    int8 = verify_tflite(convert_keras(demo, config("int8", "float32"), demo_calibration),
                         digits16.x_test, reference=demo)
    int16 = verify_tflite(convert_keras(demo, config("int16x8", None), demo_calibration),
                          digits16.x_test, reference=demo)
    # 16-bit activations remove the activation rounding noise; int8 weights remain, so the gain
    # is a few dB (2.7 dB when written), not the 48 dB of 8 more bits.
    assert int16.snr_db > int8.snr_db and int16.top1_agreement >= 0.97


def mobilenet_with_estimated_bn(x: np.ndarray) -> keras.Model:
    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNet(input_shape=(32, 32, 3), alpha=0.25, weights=None,
                                         classes=10)
    return estimate_bn(model, x)


@pytest.fixture(scope="module")
def mobilenet() -> tuple[keras.Model, np.ndarray]:
    x = np.random.default_rng(0).random((32, 32, 32, 3)).astype(np.float32)
    return mobilenet_with_estimated_bn(x), x


@pytest.mark.slow
@pytest.mark.parametrize(("mode", "io"), [m for m in MODES if m != ("int8", "float32")])
def test_keras_applications_mobilenet_every_mode(mobilenet, mode, io, tmp_path, capsys):
    model, x = mobilenet
    blob = convert_keras(model, config(mode, io), x[:16])
    check_mode(blob, mode, io, x[16:24], tmp_path)
    capsys.readouterr()
    assert inspect_tflite(blob).macs == keras_work(model)["macs"] == 834688
    if mode in ("float32", "float16"):  # softmax outputs; float16 weights drift a little
        np.testing.assert_allclose(run_tflite(blob, x[16:24]), model.predict(x[16:24], verbose=0),
                                   atol=1e-4 if mode == "float32" else 0.05)
