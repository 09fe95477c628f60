"""Prune and QAT on a tiny model with the layers that break tfmot in real architectures.

The model has what MobileNetV3 / EfficientNet / DenseNet / ConvNeXt have: a Rescaling layer, a
TFOpLambda (``tf.nn.relu6`` on a tensor), a standalone BatchNormalization (after a ReLU) and a
nested functional sub-model. tfmot's whole-model calls fail on it; edgekit's stages must not.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgekit.compress import QAT, Prune
from edgekit.compress.layer_support import flatten_model
from edgekit.compress.training import accuracy, fit
from edgekit.converters import ConversionConfig, convert_keras, inspect_tflite, verify_tflite
from edgekit.core._keras import keras, tf, tfmot
from edgekit.core.errors import InputError
from edgekit.core.model_io import load_model, save_model


def _block() -> keras.Model:
    inp = keras.Input((8, 8, 8))
    x = keras.layers.Conv2D(8, 3, padding="same", use_bias=False, name="b_conv")(inp)
    x = keras.layers.BatchNormalization(name="b_bn")(x)
    x = keras.layers.ReLU(name="b_relu")(x)
    return keras.Model(inp, x, name="block")


def build_awkward_model() -> keras.Model:
    """Rescaling -> Conv -> TFOpLambda(relu6) -> nested block -> standalone BN -> Dense x2."""
    inp = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Rescaling(2.0, offset=-1.0, name="rescale")(inp)
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv")(x)
    x = tf.nn.relu6(x)
    x = _block()(x)
    x = keras.layers.BatchNormalization(name="bn_alone")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(32, activation="relu", name="fc")(x)
    out = keras.layers.Dense(10, name="logits")(x)
    return keras.Model(inp, out, name="awkward")


@pytest.fixture(scope="module")
def awkward(digits8):
    keras.utils.set_random_seed(0)
    model = build_awkward_model()
    fit(model, digits8.x_train, digits8.y_train, epochs=5, learning_rate=3e-3, augment_shift=0)
    return model


@pytest.fixture(scope="module")
def pruned(awkward, digits8):
    return Prune(final_sparsity=0.5, epochs=2, augment_shift=0).apply(awkward, digits8)


@pytest.fixture(scope="module")
def quantized(pruned, digits8):
    return QAT(epochs=1, augment_shift=0).apply(pruned.model, digits8)


@pytest.fixture(scope="module")
def tflite(quantized, digits8):
    return convert_keras(quantized.model, ConversionConfig(mode="int8"),
                         representative=digits8.x_train[:100])


def _actions(details):
    return {e["name"]: (e["action"], e["reason"]) for e in details["layers"]}


def test_plain_tfmot_fails_on_this_model(awkward):
    # The model reproduces the real failures, so the tests below mean something.
    with pytest.raises(ValueError, match="Please initialize `Prune` with a supported layer"):
        tfmot.sparsity.keras.prune_low_magnitude(awkward)
    with pytest.raises(ValueError, match="inside another"):
        tfmot.quantization.keras.quantize_model(awkward)


def test_flatten_inlines_the_nested_model_with_identical_outputs(awkward, digits8):
    flat = flatten_model(awkward)
    assert not any(isinstance(layer, keras.Model) for layer in flat.layers)
    assert {"b_conv", "b_bn", "b_relu", "rescale", "fc"} <= {layer.name for layer in flat.layers}
    x = digits8.x_test[:32]
    np.testing.assert_array_equal(flat.predict(x, verbose=0), awkward.predict(x, verbose=0))


def test_flatten_keeps_a_frozen_backbone_in_inference_mode(rng):
    keras.utils.set_random_seed(1)
    backbone = _block()
    backbone.get_layer("b_bn").set_weights(
        [np.full(8, 2.0), np.full(8, 0.5), np.full(8, 0.3), np.full(8, 4.0)])
    inp = keras.Input((8, 8, 8))
    out = keras.layers.Dense(3, name="head")(backbone(inp, training=False))
    model = keras.Model(inp, out)
    flat = flatten_model(model)
    x = rng.normal(size=(4, 8, 8, 8)).astype(np.float32)
    # In training mode BN would use batch statistics; training=False must survive flattening.
    np.testing.assert_allclose(flat(x, training=True), model(x, training=True), atol=1e-6)
    np.testing.assert_allclose(flat(x, training=True), model(x, training=False), atol=1e-6)


def test_flatten_renames_an_inner_layer_whose_name_clashes():
    inner_in = keras.Input((4,))
    inner = keras.Model(inner_in, keras.layers.Dense(4, name="fc")(inner_in), name="inner")
    inp = keras.Input((4,))
    model = keras.Model(inp, keras.layers.Dense(2, name="fc")(inner(inp)))
    names = [layer.name for layer in flatten_model(model).layers]
    assert names.count("fc") == 1 and "inner_fc" in names


def test_nested_subclassed_model_gets_a_clear_error(digits8):
    class Sub(keras.Model):
        def __init__(self):
            super().__init__(name="sub")
            self.d = keras.layers.Dense(10)

        def call(self, x):
            return self.d(x)

    inp = keras.Input((8, 8, 1))
    model = keras.Model(inp, Sub()(keras.layers.Flatten()(inp)))
    with pytest.raises(InputError, match=r"nested model 'sub' is a subclassed Keras model.*"
                                         r"functional API"):
        Prune(epochs=1).apply(model, digits8)


def test_prune_wraps_supported_layers_and_leaves_the_rest_with_reasons(pruned):
    actions = _actions(pruned.details)
    for name in ("conv", "b_conv", "fc", "logits"):
        assert actions[name][0] == "pruned", name
    assert actions["rescale"] == ("left", "Rescaling: no weights")
    assert actions["tf.nn.relu6"][0] == "left"
    assert actions["b_bn"] == ("left", "BatchNormalization: tfmot prunes none of its weights")
    assert pruned.details["counts"] == {"pruned": 4, "quantized": 0, "left": 6}
    for name, s in pruned.details["pruned_layers"].items():
        assert s == pytest.approx(0.5, abs=0.01), name


def test_prune_reports_weight_shares_and_sizes(pruned):
    model = pruned.model
    kernels = {n: model.get_layer(n).kernel.numpy() for n in ("conv", "b_conv", "fc", "logits")}
    total = model.count_params()
    in_kernels = sum(k.size for k in kernels.values())
    zeros = sum(int(np.sum(k == 0)) for k in kernels.values())
    assert pruned.details["weights_share_pruned"] == pytest.approx(in_kernels / total, abs=1e-6)
    assert pruned.details["zeros_share"] == pytest.approx(zeros / total, abs=1e-6)
    size = pruned.details["size"]
    assert size["after"]["bytes"] == size["before"]["bytes"] == total * 4
    assert size["after"]["gzip_bytes"] < 0.8 * size["before"]["gzip_bytes"]


def test_qat_annotates_what_the_8bit_scheme_supports_and_leaves_the_rest(quantized):
    actions = _actions(quantized.details)
    for name in ("conv", "b_conv", "b_bn", "b_relu", "flatten", "fc", "logits"):
        assert actions[name][0] == "quantized", name
    assert actions["rescale"][0] == "left" and "Rescaling: not supported" in actions["rescale"][1]
    assert actions["tf.nn.relu6"][0] == "left"
    assert actions["bn_alone"][0] == "left" and "standalone" in actions["bn_alone"][1]
    assert quantized.details["calibration_needed"] is True
    assert quantized.details["prune_preserving"] is True
    params = {e["name"]: e["params"] for e in quantized.details["layers"]}
    expected = 1 - params["bn_alone"] / sum(params.values())
    assert quantized.details["weights_share_quantized"] == pytest.approx(expected, abs=1e-6)


def test_qat_keeps_the_pruned_zeros(quantized):
    for name, s in quantized.details["sparsity_after"].items():
        assert s >= quantized.details["sparsity_before"][name] - 1e-6, name


def test_result_is_full_int8_and_agrees_with_keras(tflite, quantized, digits8):
    inspection = inspect_tflite(tflite)
    assert inspection.full_integer, inspection.float_ops
    assert inspection.float_ops == [] and inspection.float_io == []
    check = verify_tflite(tflite, digits8.x_test, digits8.y_test, reference=quantized.model)
    assert check.top1_agreement >= 0.95
    assert check.snr_db is not None and check.snr_db > 15.0
    assert check.accuracy > 0.8
    assert check.accuracy >= check.reference_accuracy - 0.03


def test_stage_outputs_round_trip_through_their_files(pruned, quantized, digits8, tmp_path):
    x = digits8.x_test[:16]
    for result, suffix in ((pruned, Prune.artefact_suffix), (quantized, QAT.artefact_suffix)):
        again = load_model(save_model(result.model, tmp_path / f"m{suffix}"))
        np.testing.assert_allclose(again.predict(x, verbose=0),
                                   result.model.predict(x, verbose=0), atol=1e-5)


def test_sequential_with_a_nested_sequential_is_pruned(digits8):
    keras.utils.set_random_seed(0)
    inner = keras.Sequential([keras.layers.Dense(16, activation="relu", name="inner_fc")],
                             name="inner")
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), inner,
                              keras.layers.Dense(10, name="out")])
    result = Prune(final_sparsity=0.5, epochs=1, learning_rate=1e-2,
                   augment_shift=0).apply(model, digits8)
    assert set(result.details["pruned_layers"]) == {"inner_fc", "out"}
    assert not any(isinstance(layer, keras.Model) for layer in result.model.layers)
    # The fine-tune trained through the inlined layers (an untrained net scores about 10 %).
    assert accuracy(result.model, digits8.x_test, digits8.y_test) > 0.5


def test_densenet_transition_converts_to_full_int8(digits8):
    # Conv -> AveragePooling2D -> Concatenate (DenseNet's transition): with tfmot's own output
    # range on the pooling, the converter stops ("same scale constraint").
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(8, 3, padding="same", name="c0")(inp)
    x = keras.layers.BatchNormalization(name="bn0")(x)
    x = keras.layers.Activation("relu", name="act0")(x)
    x = keras.layers.Conv2D(8, 1, use_bias=False, name="c1")(x)
    x = keras.layers.AveragePooling2D(2, name="pool")(x)
    y = keras.layers.BatchNormalization(name="bn1")(x)
    y = keras.layers.Activation("relu", name="act1")(y)
    y = keras.layers.Conv2D(4, 3, padding="same", use_bias=False, name="c2")(y)
    x = keras.layers.Concatenate(name="cat")([x, y])
    out = keras.layers.Dense(10, name="logits")(keras.layers.Flatten()(x))
    result = QAT(epochs=1, augment_shift=0).apply(keras.Model(inp, out), digits8)
    assert _actions(result.details)["pool"][0] == "quantized"
    blob = convert_keras(result.model, ConversionConfig(mode="int8"),
                         representative=digits8.x_train[:64])
    assert inspect_tflite(blob).full_integer
    check = verify_tflite(blob, digits8.x_test[:100], reference=result.model)
    assert check.snr_db is not None and check.snr_db > 15.0


class Scale(keras.layers.Layer):
    """A custom layer with a weight, like ConvNeXt's LayerScale (not registered with Keras)."""

    def build(self, input_shape):
        self.gamma = self.add_weight(name="gamma", shape=(input_shape[-1],), initializer="ones")

    def call(self, x):
        return x * self.gamma


def test_custom_layer_is_left_by_both_stages(digits8):
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv")(inp)
    x = Scale(name="scale")(x)
    out = keras.layers.Dense(10, name="logits")(keras.layers.Flatten()(x))
    model = keras.Model(inp, out)
    pruned = Prune(final_sparsity=0.5, epochs=1, augment_shift=0).apply(model, digits8)
    assert _actions(pruned.details)["scale"] == (
        "left", "Scale: not supported by tfmot pruning (not in its registry, no "
                "get_prunable_weights)")
    assert pruned.details["skipped_layers"] == {"scale": _actions(pruned.details)["scale"][1]}
    result = QAT(epochs=1, augment_shift=0).apply(pruned.model, digits8)
    assert _actions(result.details)["scale"][0] == "left"
    blob = convert_keras(result.model, ConversionConfig(mode="int8"),
                         representative=digits8.x_train[:64])
    assert inspect_tflite(blob).full_integer


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_convnext_layerscale_round_trips_through_the_stage_files(tmp_path, suffix):
    # The pipeline hands stages files; keras.applications' ConvNeXt uses LayerScale, which tf_keras
    # does not register ("'str' object is not callable" on reload without it).
    from tf_keras.src.applications.convnext import LayerScale

    inputs = keras.Input((4, 4, 8))
    x = keras.layers.Conv2D(8, 1, name="pw")(inputs)
    outputs = LayerScale(0.5, 8, name="scale")(x)
    model = keras.Model(inputs, outputs)
    path = save_model(model, tmp_path / f"m{suffix}")
    loaded = load_model(path)
    x = np.random.default_rng(0).normal(size=(2, 4, 4, 8)).astype(np.float32)
    np.testing.assert_allclose(loaded(x).numpy(), model(x).numpy(), atol=1e-6)


def test_user_custom_layers_load_when_named(tmp_path):
    class Doubler(keras.layers.Layer):
        def call(self, x):
            return 2.0 * x

    inputs = keras.Input((3,))
    model = keras.Model(inputs, Doubler(name="double")(keras.layers.Dense(3)(inputs)))
    path = save_model(model, tmp_path / "m.keras")
    with pytest.raises(InputError, match="could not be loaded as a Keras model"):
        load_model(path)
    loaded = load_model(path, custom_objects={"Doubler": Doubler})
    assert [type(layer).__name__ for layer in loaded.layers][-1] == "Doubler"
