"""Keras 3 files -> tf_keras: real Keras 3 models, saved by Keras 3 in a separate process.

The models are made by a ``python -c`` child that imports Keras 3 with the legacy switch removed
from its environment, trains the digits model for a few epochs, saves ``.keras`` and ``.h5``
files and the Keras 3 outputs on fixed inputs; this process (tf_keras) only reads the files.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgekit.core._keras import keras
from edgekit.core.errors import InputError
from edgekit.core.keras3_bridge import (
    bridge_keras3,
    check_same_outputs,
    is_keras3_file,
    translate_model_config,
)
from edgekit.core.model_io import load_model, save_model

MAKE_MODELS = r"""
import sys
import numpy as np
import keras
from sklearn.datasets import load_digits

assert keras.__version__.startswith("3."), keras.__version__
out = sys.argv[1]
keras.utils.set_random_seed(0)
rng = np.random.default_rng(0)
refs = {}

def save(model, name, suffixes=(".keras", ".h5")):
    for s in suffixes:
        model.save(f"{out}/{name}{s}")
    x = rng.random((5, *model.input_shape[1:])).astype("float32")
    refs[name + "_x"] = x
    refs[name + "_y"] = np.asarray(model(x, training=False))

# Functional: Rescaling, Conv, BN, ReLU, DepthwiseConv, SeparableConv, Add, Concatenate,
# ZeroPadding, pooling, LeakyReLU, Activation, Dropout, Flatten, Dense; trained on 8x8 digits.
digits = load_digits()
xd = (digits.images / 16.0).astype("float32")[..., None]
yd = digits.target
inp = keras.Input((8, 8, 1), name="image")
x = keras.layers.Rescaling(2.0, offset=-1.0, name="scale")(inp)
x = keras.layers.Conv2D(8, 3, padding="same", use_bias=False, name="conv")(x)
x = keras.layers.BatchNormalization(name="bn")(x)
x = keras.layers.ReLU(name="relu")(x)
a = keras.layers.DepthwiseConv2D(3, padding="same", name="dw")(x)
b = keras.layers.Conv2D(8, 1, name="pw")(x)
x = keras.layers.Add(name="add")([a, b])
c = keras.layers.SeparableConv2D(4, 3, padding="same", name="sep")(x)
x = keras.layers.Concatenate(name="cat")([x, c])
x = keras.layers.ZeroPadding2D(1, name="pad")(x)
x = keras.layers.MaxPooling2D(2, name="maxpool")(x)
x = keras.layers.AveragePooling2D(2, name="avgpool")(x)
x = keras.layers.LeakyReLU(negative_slope=0.1, name="leaky")(x)
x = keras.layers.Flatten(name="flat")(x)
x = keras.layers.Dropout(0.2, name="drop")(x)
x = keras.layers.Dense(24, name="fc")(x)
x = keras.layers.Activation("tanh", name="tanh")(x)
outp = keras.layers.Dense(10, name="logits")(x)
func = keras.Model(inp, outp, name="k3_functional")
func.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
func.fit(xd, yd, epochs=4, batch_size=32, verbose=0)
save(func, "func")

seq = keras.Sequential([
    keras.Input((6,)),
    keras.layers.Dense(5, activation="relu", name="d1"),
    keras.layers.BatchNormalization(name="bn1"),
    keras.layers.Dense(3, activation="softmax", name="d2"),
], name="k3_sequential")
seq.get_layer("bn1").set_weights([rng.random(5) + 0.5, rng.random(5), rng.random(5),
                                  rng.random(5) + 0.5])
save(seq, "seq")

block = keras.Sequential([keras.layers.Conv2D(4, 3, padding="same", name="inner_conv"),
                          keras.layers.ReLU(name="inner_relu")], name="block")
inp = keras.Input((8, 8, 1), name="img")
x = block(inp)
x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
nested = keras.Model(inp, keras.layers.Dense(3, name="head")(x), name="k3_nested")
save(nested, "nested", (".keras",))

inp = keras.Input((6,))
k3only = keras.Model(inp, keras.layers.RMSNormalization(name="rms")(keras.layers.Dense(4)(inp)))
k3only.save(f"{out}/k3only.keras")

@keras.saving.register_keras_serializable(package="demo")
class Scale(keras.layers.Layer):
    def call(self, x):
        return 2.0 * x

inp = keras.Input((6,))
custom = keras.Model(inp, Scale(name="scale2")(keras.layers.Dense(4, name="d")(inp)))
custom.save(f"{out}/custom.keras")

inp = keras.Input((6,))
lam = keras.Model(inp, keras.layers.Lambda(lambda t: t * 2.0, name="double")(inp))
lam.save(f"{out}/lambda.keras")
np.savez(f"{out}/refs.npz", **refs)
"""


@pytest.fixture(scope="module")
def k3(tmp_path_factory) -> Path:
    """A folder of Keras 3 model files (and refs.npz) written by a Keras 3 child process."""
    out = tmp_path_factory.mktemp("keras3")
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    proc = subprocess.run([sys.executable, "-c", MAKE_MODELS, str(out)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def refs(k3) -> dict[str, np.ndarray]:
    return dict(np.load(k3 / "refs.npz"))


@pytest.mark.parametrize("name", ["func.keras", "func.h5", "seq.keras", "seq.h5", "nested.keras"])
def test_bridged_model_reproduces_the_keras3_outputs(k3, refs, name):
    path = k3 / name
    assert is_keras3_file(path)
    result = bridge_keras3(path)
    assert isinstance(result.model, keras.Model)  # a tf_keras model, usable by tfmot
    assert result.keras_version.startswith("3.")
    assert result.max_abs_diff <= 1e-5
    # Independent of the bridge's own check: the outputs Keras 3 computed in the child process.
    stem = name.split(".")[0]
    got = result.model(refs[f"{stem}_x"], training=False).numpy()
    np.testing.assert_allclose(got, refs[f"{stem}_y"], rtol=0, atol=1e-5)
    assert result.weights == sum(len(layer.weights) for layer in result.model.layers)


def test_functional_bridge_keeps_every_layer_and_weight(k3):
    model = bridge_keras3(k3 / "func.keras").model
    classes = {type(layer).__name__ for layer in model.layers}
    assert {"Rescaling", "Conv2D", "BatchNormalization", "ReLU", "DepthwiseConv2D",
            "SeparableConv2D", "Add", "Concatenate", "ZeroPadding2D", "MaxPooling2D",
            "AveragePooling2D", "LeakyReLU", "Flatten", "Dropout", "Dense",
            "Activation"} <= classes
    assert model.get_layer("leaky").get_config()["alpha"] == pytest.approx(0.1)
    # BN moving statistics came over (training moved them away from 0 / 1).
    mean = model.get_layer("bn").moving_mean.numpy()
    assert np.abs(mean).max() > 1e-3
    # The nested Sequential stays a nested model with its own weights.
    nested = bridge_keras3(k3 / "nested.keras").model
    assert isinstance(nested.get_layer("block"), keras.Sequential)
    assert nested.get_layer("block").get_layer("inner_conv").kernel.shape == (3, 3, 1, 4)


def test_load_model_bridges_and_the_result_round_trips_in_tf_keras(k3, refs, tmp_path):
    model = load_model(k3 / "seq.h5")
    again = load_model(save_model(model, tmp_path / "bridged.keras"))
    assert not is_keras3_file(tmp_path / "bridged.keras")
    np.testing.assert_allclose(again.predict(refs["seq_x"], verbose=0), refs["seq_y"],
                               rtol=0, atol=1e-5)


@pytest.mark.parametrize("name, layer, cls", [
    ("k3only.keras", "rms", "RMSNormalization"),
    ("custom.keras", "scale2", "Scale"),
    ("lambda.keras", "double", "Lambda"),
])
def test_layer_without_tf_keras_equivalent_is_named(k3, name, layer, cls):
    with pytest.raises(InputError, match=rf"layer '{layer}' \({cls}\)"):
        load_model(k3 / name)


def test_option_without_tf_keras_equivalent_is_named():
    entry = {"class_name": "Sequential", "config": {"name": "s", "layers": [
        {"module": "keras.layers", "class_name": "InputLayer",
         "config": {"batch_shape": [None, 4], "dtype": "float32", "name": "in"}},
        {"module": "keras.layers", "class_name": "Dense",
         "config": {"name": "fc", "units": 3, "lora_rank": 4}},
    ]}}
    with pytest.raises(InputError, match=r"layer 'fc' \(Dense\): option lora_rank=4"):
        translate_model_config(entry)
    entry["config"]["layers"][1]["config"]["lora_rank"] = None  # neutral: dropped
    built = keras.layers.deserialize(translate_model_config(entry))
    assert built.output_shape == (None, 3)


def test_outputs_that_differ_are_refused(k3, refs):
    bridged = bridge_keras3(k3 / "seq.keras").model
    moved = keras.models.clone_model(bridged)
    moved.set_weights([w + 1e-3 for w in bridged.get_weights()])
    x = [refs["seq_x"]]
    assert check_same_outputs(bridged, bridged, x) == 0.0
    with pytest.raises(InputError, match=r"differs from the Keras 3 model by"):
        check_same_outputs(bridged, moved, x, name="model seq.keras")


def test_subclassed_keras3_model_is_refused():
    with pytest.raises(InputError, match=r"subclassed"):
        translate_model_config({"class_name": "MyNet", "config": {"name": "net"}})


def test_bridged_keras3_model_goes_through_compress_and_convert(k3, tmp_path):
    from edgekit import api

    compressed = api.compress(k3 / "func.keras", out=tmp_path / "pruned.keras", data="digits",
                              prune=0.5, epochs=2, log=lambda m: None)
    assert compressed["float_accuracy"] > 0.7  # the Keras 3 model's training carried over
    details = compressed["stages"][0]["details"]
    assert set(details["pruned_layers"]) >= {"conv", "pw", "fc", "logits"}
    converted = api.convert(tmp_path / "pruned.keras", out=tmp_path / "model.tflite",
                            data="digits", mode="int8", samples=32)
    verification = converted["verification"]
    # The int8 model does what the pruned Keras model does (well above the 10 % of chance).
    assert verification.accuracy > 0.4
    assert verification.accuracy >= compressed["stages"][0]["accuracy"] - 0.05
    assert verification.top1_agreement > 0.9
    inspection = api.inspect(tmp_path / "model.tflite")["inspection"]
    assert inspection.full_integer
