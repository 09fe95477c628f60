"""XNNPACK sparse-inference rules on real converted models.

The eligible model follows the Fast Sparse ConvNets shape: ZeroPadding2D(1) + 3x3 stride-2 conv
on 3 channels, depthwise + 80 %-zero 1x1 convs, global average pooling, converted with
``Optimize.EXPERIMENTAL_SPARSITY`` (sparse weights behind DENSIFY ops). Each other model breaks
exactly one rule, and the verdict must name it.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgekit.converters import (
    ConversionConfig,
    Mode,
    check_xnnpack_sparse,
    convert_keras,
    format_xnnpack_sparse,
    run_tflite,
)
from edgekit.core._keras import keras, tf


def sparse_cnn(*, stem_same: bool = False, zero_fraction: float = 0.8,
               wide: int = 32) -> keras.Model:
    keras.utils.set_random_seed(0)
    inp = keras.layers.Input((32, 32, 3), name="rgb")
    if stem_same:
        x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(inp)
    else:
        x = keras.layers.ZeroPadding2D(1)(inp)
        x = keras.layers.Conv2D(8, 3, strides=2, padding="valid", activation="relu")(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu")(x)
    x = keras.layers.Conv2D(16, 1, activation="relu", name="pw1")(x)
    x = keras.layers.ZeroPadding2D(1)(x)
    x = keras.layers.DepthwiseConv2D(3, strides=2, padding="valid", activation="relu")(x)
    x = keras.layers.Conv2D(wide, 1, activation="relu", name="pw2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inp, keras.layers.Dense(10)(x))
    for name in ("pw1", "pw2"):
        layer = model.get_layer(name)
        kernel, bias = layer.get_weights()
        flat = kernel.reshape(-1)
        flat[np.argsort(np.abs(flat))[: int(zero_fraction * flat.size)]] = 0.0
        layer.set_weights([kernel, bias])
    return model


def to_tflite(model: keras.Model, *, sparse_storage: bool = True) -> bytes:
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if sparse_storage:
        converter.optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
    return bytes(converter.convert())


@pytest.fixture(scope="module")
def eligible() -> tuple[keras.Model, bytes]:
    model = sparse_cnn()
    return model, to_tflite(model)


def test_sparse_float_model_is_eligible(eligible) -> None:
    _, blob = eligible
    check = check_xnnpack_sparse(blob)
    assert check.eligible and check.reasons == []
    roles = [(r["op"], r["role"]) for r in check.ops if r["role"] not in ("weights",)]
    assert roles == [
        ("PAD", "fused pad"), ("CONV_2D", "stem"), ("DEPTHWISE_CONV_2D", "body"),
        ("CONV_2D", "body"), ("PAD", "fused pad"), ("DEPTHWISE_CONV_2D", "body"),
        ("CONV_2D", "body"), ("MEAN", "end"), ("FULLY_CONNECTED", "outside"),
    ]
    (part,) = check.clusters
    assert part["valid"] and part["sparse_weights"]
    # pw1 16x8 and pw2 32x16 kernels, 80 % of each set to zero: 102 + 409 of 640 weights.
    assert (part["params_1x1"], part["zeros_1x1"]) == (640, 511)
    assert "ELIGIBLE" in format_xnnpack_sparse(check)


def test_sparse_storage_computes_the_same_outputs(eligible) -> None:
    model, blob = eligible
    x = np.random.default_rng(0).random((4, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(run_tflite(blob, x), model.predict(x, verbose=0), atol=1e-4)


def test_dense_storage_is_not_eligible(eligible) -> None:
    model, _ = eligible
    check = check_xnnpack_sparse(to_tflite(model, sparse_storage=False))
    assert not check.eligible
    assert any("stored dense" in r and "EXPERIMENTAL_SPARSITY" in r for r in check.reasons)
    assert check.clusters[0]["sparsity_1x1"] == pytest.approx(511 / 640, abs=1e-4)


def test_int8_model_is_not_eligible(eligible) -> None:
    model, _ = eligible
    calib = np.random.default_rng(0).random((8, 32, 32, 3)).astype(np.float32)
    check = check_xnnpack_sparse(convert_keras(model, ConversionConfig(), calib))
    assert not check.eligible and check.clusters == []
    assert any("int8/QS8 is not supported" in r for r in check.reasons)
    conv = next(r for r in check.ops if r["op"] == "CONV_2D")
    assert "int8 tensors" in conv["reason"]


def test_dynamic_range_weights_are_named() -> None:
    # pw2 with 128 filters has 2048 weights: the dynamic-range converter quantizes tensors of
    # 1024+ elements to int8 and leaves the smaller ones float.
    model = sparse_cnn(wide=128)
    check = check_xnnpack_sparse(convert_keras(model, ConversionConfig(mode=Mode.DYNAMIC)))
    assert not check.eligible
    pw2 = [r for r in check.ops if r["op"] == "CONV_2D"][-1]
    assert pw2["role"] == "outside" and "dynamic-range" in pw2["reason"]


def test_same_padding_stride_2_stem_is_named() -> None:
    check = check_xnnpack_sparse(to_tflite(sparse_cnn(stem_same=True)))
    assert not check.eligible
    stem = next(r for r in check.ops if r["op"] == "CONV_2D")
    assert stem["role"] == "outside" and "SAME padding with stride 2" in stem["reason"]
    assert any("reads #0 CONV_2D, which is not in the sparse part" in r for r in check.reasons)


def test_too_few_zeros_is_named() -> None:
    check = check_xnnpack_sparse(to_tflite(sparse_cnn(zero_fraction=0.5)))
    assert not check.eligible
    assert any("weights are zero; XNNPACK needs more than 2/3" in r for r in check.reasons)


def test_plain_cnn_has_no_sparse_pattern(int8_path, convert) -> None:
    check = check_xnnpack_sparse(convert("float32"))
    assert not check.eligible
    conv = next(r for r in check.ops if r["op"] == "CONV_2D")
    assert "3x3 conv needs stride 2" in conv["reason"]
    assert "not eligible" in format_xnnpack_sparse(check)
    assert check.to_dict()["eligible"] is False
