"""Work accounting: MACs and parameters per op from the .tflite and per layer from Keras.

Every figure here is worked out by hand from the layer shapes (the formulas in
``converters/work.py``), and the Keras count must equal the count read back from the converted
``.tflite``, exactly, for float32 and int8.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgekit.converters import (
    ConversionConfig,
    Mode,
    convert_keras,
    format_inspection,
    format_macs,
    inspect_tflite,
    keras_work,
    tflite_work,
)
from edgekit.core._keras import keras
from edgekit.core.errors import InputError

L = keras.layers

# The mixed model's layers and their MACs (batch 1), worked out by hand.
MIXED_MACS = {
    "conv": 10 * 10 * 16 * 3 * 3 * 8,  # 10x10 'same', 8 -> 16 channels: 115200
    "bn": 0,  # folds into conv in the .tflite
    "relu": 0,
    "dw": 5 * 5 * 32 * 3 * 3,  # 3x3, depth_multiplier 2, stride 2: 10x10x16 -> 5x5x32
    "sep": 3 * 3 * 32 * 3 * 3 + 3 * 3 * 12 * 32,  # valid 3x3: depthwise + pointwise 32 -> 12
    "grouped": 3 * 3 * 8 * 1 * 1 * (12 // 4),  # 1x1, groups 4: 12 -> 8 channels
    "deconv": 3 * 3 * 8 * 3 * 3 * 6,  # transpose 3x3 stride 2: every input pixel x KH x KW x OC
    "dense3d": 6 * 6 * 6 * 5,  # Dense(5) on a 6x6x6 map: 36 rows x 6 in x 5 units
    "flat": 0,
    "logits": 180 * 4,
}


def _mixed() -> keras.Model:
    """The model of :data:`MIXED_MACS`, every weight random (no zero bias to fold away)."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        L.Input((10, 10, 8)),
        L.Conv2D(16, 3, padding="same", name="conv"),
        L.BatchNormalization(name="bn"),
        L.ReLU(name="relu"),
        L.DepthwiseConv2D(3, depth_multiplier=2, strides=2, padding="same", name="dw"),
        L.SeparableConv2D(12, 3, name="sep"),
        L.Conv2D(8, 1, groups=4, name="grouped"),
        L.Conv2DTranspose(6, 3, strides=2, padding="same", name="deconv"),
        L.Dense(5, name="dense3d"),
        L.Flatten(name="flat"),
        L.Dense(4, name="logits"),
    ])
    rng = np.random.default_rng(0)
    model.set_weights([rng.uniform(0.5, 1.5, w.shape).astype(np.float32)
                       for w in model.get_weights()])
    return model


@pytest.fixture(scope="module")
def mixed() -> keras.Model:
    return _mixed()


@pytest.fixture(scope="module")
def mixed_blobs(mixed: keras.Model) -> dict[str, bytes]:
    x = np.random.default_rng(0).normal(size=(16, 10, 10, 8)).astype(np.float32)
    return {"float32": convert_keras(mixed, ConversionConfig(mode=Mode.FLOAT32)),
            "int8": convert_keras(mixed, ConversionConfig(mode=Mode.INT8), x)}


def test_one_conv2d_counts_exactly() -> None:
    model = keras.Sequential([L.Input((10, 10, 8)), L.Conv2D(16, 3, padding="same")])
    work = keras_work(model)
    assert work["macs"] == 115200 == 10 * 10 * 16 * 9 * 8
    assert work["params"] == 16 * 9 * 8 + 16 == 1168
    assert work["layers"] == [{"name": model.layers[0].name, "type": "Conv2D", "macs": 115200,
                               "params": 1168}]
    tfl = tflite_work(convert_keras(model, ConversionConfig(mode=Mode.FLOAT32)))
    assert tfl == {"macs": 115200, "params": 1168,
                   "ops": [{"index": 0, "op": "CONV_2D", "macs": 115200, "params": 1168}]}


def test_keras_counts_each_layer_by_hand(mixed: keras.Model) -> None:
    work = keras_work(mixed)
    assert {r["name"]: r["macs"] for r in work["layers"]} == MIXED_MACS
    assert work["macs"] == sum(MIXED_MACS.values()) == 134352
    assert work["params"] == mixed.count_params()
    assert [r["params"] for r in work["layers"]] == [lay.count_params() for lay in mixed.layers]
    types = {r["name"]: r["type"] for r in work["layers"]}
    assert types["sep"] == "SeparableConv2D" and types["deconv"] == "Conv2DTranspose"


@pytest.mark.parametrize("mode", ["float32", "int8"])
def test_tflite_agrees_with_keras_exactly(mixed: keras.Model, mixed_blobs, mode: str) -> None:
    tfl = tflite_work(mixed_blobs[mode])
    assert tfl["macs"] == keras_work(mixed)["macs"] == 134352
    working = [(o["op"], o["macs"]) for o in tfl["ops"] if o["macs"]]
    assert working == [
        ("CONV_2D", MIXED_MACS["conv"]), ("DEPTHWISE_CONV_2D", MIXED_MACS["dw"]),
        ("DEPTHWISE_CONV_2D", 3 * 3 * 32 * 9), ("CONV_2D", 3 * 3 * 12 * 32),  # separable
        ("CONV_2D", MIXED_MACS["grouped"]), ("TRANSPOSE_CONV", MIXED_MACS["deconv"]),
        ("FULLY_CONNECTED", MIXED_MACS["dense3d"]), ("FULLY_CONNECTED", MIXED_MACS["logits"]),
    ]
    # Every op of the main subgraph is listed, in graph order; elementwise ones count 0.
    assert [o["index"] for o in tfl["ops"]] == list(range(len(tfl["ops"])))
    assert all(o["macs"] == 0 for o in tfl["ops"] if o["op"] in {"RESHAPE", "SHAPE", "PACK"})
    # Parameters are the counted ops' weights and biases: BN folded into the conv (its 4 x 16
    # values are gone), the separable conv's depthwise step has its own zero bias in the .tflite
    # (32 values the Keras layer does not have), and the Dense on the 3-D map adds its bias (5)
    # in a separate ADD, which counts no parameters.
    folded = mixed.count_params() - 4 * 16 + 32 - 5
    assert tfl["params"] == folded == sum(o["params"] for o in tfl["ops"])


def test_float16_weights_are_found_behind_their_dequantize(mixed: keras.Model,
                                                          mixed_blobs) -> None:
    tfl = tflite_work(convert_keras(mixed, ConversionConfig(mode=Mode.FLOAT16)))
    assert tfl["macs"] == 134352
    assert tfl["params"] == tflite_work(mixed_blobs["float32"])["params"] == 3428


def test_1d_and_3d_layers_agree() -> None:
    conv1d = keras.Sequential([
        L.Input((20, 3)), L.Conv1D(4, 5), L.DepthwiseConv1D(3), L.SeparableConv1D(5, 3),
        L.Dense(7),
    ])
    by_hand = [16 * 4 * 5 * 3, 14 * 4 * 3, 12 * 4 * 3 + 12 * 5 * 4, 12 * 5 * 7]
    assert [r["macs"] for r in keras_work(conv1d)["layers"]] == by_hand
    conv3d = keras.Sequential([
        L.Input((6, 6, 6, 2)), L.Conv3D(4, 3, padding="same"),
        L.Conv3DTranspose(3, 2, strides=2),
    ])
    assert [r["macs"] for r in keras_work(conv3d)["layers"]] == [6**3 * 4 * 27 * 2,
                                                                 6**3 * 4 * 8 * 3]
    for model, ops in ((conv1d, {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"}),
                       (conv3d, {"CONV_3D", "CONV_3D_TRANSPOSE"})):
        tfl = tflite_work(convert_keras(model, ConversionConfig(mode=Mode.FLOAT32)))
        assert tfl["macs"] == keras_work(model)["macs"]
        assert {o["op"] for o in tfl["ops"] if o["macs"]} == ops


def test_batch_matmul_counts_its_contracted_dimension() -> None:
    a, b = L.Input((4, 6)), L.Input((6, 3))
    model = keras.Model([a, b], L.Dot(axes=(2, 1))([a, b]))
    tfl = tflite_work(convert_keras(model, ConversionConfig(mode=Mode.FLOAT32)))
    assert tfl == {"macs": 4 * 3 * 6, "params": 0,
                   "ops": [{"index": 0, "op": "BATCH_MATMUL", "macs": 72, "params": 0}]}


def test_nested_models_and_qat_wrappers(float_model, qat_model, int8_path) -> None:
    # conftest's CNN: Conv2D(8, 3, same) on 8x8x1, Flatten, Dense(3).
    by_hand = 8 * 8 * 8 * 9 * 1 + 512 * 3
    assert keras_work(float_model)["macs"] == by_hand == 6144
    qat = keras_work(qat_model)
    assert qat["macs"] == by_hand and qat["params"] == qat_model.count_params()
    assert [r["type"] for r in qat["layers"] if r["macs"]] == ["Conv2D", "Dense"]
    assert tflite_work(int8_path)["macs"] == by_hand
    assert tflite_work(int8_path)["params"] == 8 * 9 + 8 + 512 * 3 + 3 == 1619
    inp = L.Input((8, 8, 1))
    nested = keras.Model(inp, L.Dense(2, name="head")(float_model(inp)))
    rows = keras_work(nested)["layers"]
    assert sum(r["macs"] for r in rows) == by_hand + 3 * 2
    assert rows[-1]["name"] == "head" and rows[1]["name"].startswith(f"{float_model.name}/")


def test_inspect_carries_the_work(int8_path) -> None:
    result = inspect_tflite(int8_path)
    assert (result.macs, result.params) == (6144, 1619)
    assert [(o["op"], o["macs"], o["params"]) for o in result.op_work] == [
        ("CONV_2D", 4608, 80), ("FULLY_CONNECTED", 1536, 1539)]
    data = result.to_dict()
    assert data["macs"] == 6144 and data["params"] == 1619 and len(data["op_work"]) == 2
    json.dumps(data)
    text = format_inspection(result)
    assert "work       6.14 k MACs (6,144), 1,619 params" in text
    assert "work per op" in text and "4,608 MACs   75.0%" in text


@pytest.mark.parametrize(("macs", "text"), [
    (0, "0"), (999, "999"), (115200, "115 k"), (5_619_712, "5.62 M"), (999_999, "1 M"),
    (1_200_000_000, "1.2 G"), (None, "—"),
])
def test_format_macs(macs: int | None, text: str) -> None:
    assert format_macs(macs) == text


def test_not_a_model_is_an_input_error(tmp_path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        tflite_work(tmp_path / "missing.tflite")
    with pytest.raises(InputError, match="not a TFLite flatbuffer"):
        tflite_work(b"not a model at all")
