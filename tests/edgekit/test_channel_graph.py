"""Channel dependency groups and channel removal on real tf_keras graphs (exactness checks)."""

from __future__ import annotations

import numpy as np
import pytest

from edgekit.compress.channel_graph import build_channel_graph
from edgekit.compress.channel_surgery import check_removal, mask_channels, remove_channels
from edgekit.compress.layer_support import flatten_model
from edgekit.core._keras import keras
from edgekit.core.errors import InputError

L = keras.layers


def _bn_relu(x, name):
    return L.ReLU(name=f"{name}_relu")(L.BatchNormalization(name=f"{name}_bn")(x))


def residual() -> keras.Model:
    """Two residual stages: an identity Add and a projection Add (one group each)."""
    inp = keras.Input((12, 12, 3))
    x = _bn_relu(L.Conv2D(8, 3, padding="same", use_bias=False, name="stem")(inp), "stem")
    y = _bn_relu(L.Conv2D(8, 3, padding="same", name="a1")(x), "a1")
    y = L.BatchNormalization(name="a2_bn")(L.Conv2D(8, 3, padding="same", name="a2")(y))
    x = L.ReLU(name="add1_relu")(L.Add(name="add1")([x, y]))
    y = _bn_relu(L.Conv2D(12, 3, strides=2, padding="same", name="b1")(x), "b1")
    y = L.Conv2D(12, 3, padding="same", name="b2")(y)
    s = L.Conv2D(12, 1, strides=2, name="short")(x)
    x = L.ReLU(name="add2_relu")(L.Add(name="add2")([y, s]))
    x = L.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inp, L.Dense(5, name="logits")(x), name="residual")


def concatenated() -> keras.Model:
    """Concatenate on the channel axis (segments), then a 1x1 conv, Flatten and Dense."""
    inp = keras.Input((8, 8, 2))
    a = _bn_relu(L.Conv2D(6, 3, padding="same", name="ca")(inp), "ca")
    b = _bn_relu(L.Conv2D(10, 1, name="cb")(inp), "cb")
    b = L.MaxPooling2D(1, name="pool")(b)
    x = L.Concatenate(name="cat")([a, b])
    x = _bn_relu(L.Conv2D(8, 1, name="mix")(x), "mix")
    x = L.ZeroPadding2D(1, name="pad")(x)
    x = L.AveragePooling2D(2, name="avg")(x)
    x = L.Dropout(0.3, name="drop")(L.Flatten(name="flat")(x))
    return keras.Model(inp, L.Dense(4, name="logits")(x), name="concatenated")


def depthwise() -> keras.Model:
    """Depthwise (ties channels), SeparableConv2D with depth_multiplier 2, Sequential."""
    return keras.Sequential([
        keras.Input((10, 10, 3)),
        L.Conv2D(8, 3, padding="same", name="c1"),
        L.BatchNormalization(name="c1_bn"), L.ReLU(6.0, name="c1_relu"),
        L.DepthwiseConv2D(3, padding="same", name="dw"),
        L.BatchNormalization(name="dw_bn"), L.ReLU(name="dw_relu"),
        L.SeparableConv2D(12, 3, depth_multiplier=2, padding="same", name="sep"),
        L.BatchNormalization(name="sep_bn"), L.Activation("swish", name="sep_act"),
        L.GlobalAveragePooling2D(name="gap"),
        L.Dense(16, activation="relu", name="fc"),
        L.Dense(3, name="logits"),
    ], name="depthwise")


def squeeze_excite() -> keras.Model:
    """GAP -> Dense -> Dense -> Reshape -> Multiply: the expand Dense joins the block's group."""
    inp = keras.Input((8, 8, 3))
    x = _bn_relu(L.Conv2D(16, 3, padding="same", name="conv")(inp), "conv")
    s = L.GlobalAveragePooling2D(name="se_gap")(x)
    s = L.Dense(4, activation="relu", name="se_reduce")(s)
    s = L.Dense(16, activation="sigmoid", name="se_expand")(s)
    s = L.Reshape((1, 1, 16), name="se_reshape")(s)
    x = L.Multiply(name="se_scale")([x, s])
    x = _bn_relu(L.Conv2D(8, 1, name="proj")(x), "proj")
    x = L.GlobalMaxPooling2D(name="gmp")(x)
    return keras.Model(inp, L.Dense(3, name="logits")(x), name="se")


def sequence_1d() -> keras.Model:
    """Conv1D and DepthwiseConv1D (kernels [k, C, ...]: the channel axis is -2 there too)."""
    inp = keras.Input((20, 4))
    x = _bn_relu(L.Conv1D(8, 3, padding="same", name="c1")(inp), "c1")
    x = _bn_relu(L.DepthwiseConv1D(3, padding="same", name="dw")(x), "dw")
    x = _bn_relu(L.Conv1D(6, 1, name="c2")(x), "c2")
    x = L.GlobalAveragePooling1D(name="gap")(x)
    return keras.Model(inp, L.Dense(3, name="logits")(x), name="sequence")


def mobilenet_v3() -> keras.Model:
    """keras.applications MobileNetV3Small (hard-swish as TFOpLambda, SE blocks, residuals)."""
    return keras.applications.MobileNetV3Small(input_shape=(32, 32, 3), weights=None,
                                               classes=5, minimalistic=False,
                                               include_preprocessing=False)


ARCHITECTURES = [residual, concatenated, depthwise, squeeze_excite, sequence_1d, mobilenet_v3]


def _random_statistics(model: keras.Model, rng: np.random.Generator) -> None:
    """Gives every BatchNormalization non-trivial gamma, beta and moving statistics."""
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, n), rng.normal(0, 0.3, n),
                               rng.normal(0, 0.3, n), rng.uniform(0.5, 1.5, n)])


def _half_plan(graph, rng) -> dict[str, list[int]]:
    return {g.name: sorted(rng.choice(g.size, g.size // 2, replace=False).tolist())
            for g in graph.prunable()}


@pytest.mark.parametrize("build", ARCHITECTURES, ids=lambda b: b.__name__)
def test_removing_masked_channels_changes_no_output(build, rng):
    keras.utils.set_random_seed(0)
    model = flatten_model(build())
    _random_statistics(model, rng)
    graph = build_channel_graph(model)
    plan = _half_plan(graph, rng)
    assert plan, "every architecture here has groups to cut"
    masked = mask_channels(model, graph, plan)
    shrunk, report = remove_channels(masked, graph, plan)
    assert shrunk.count_params() < model.count_params() * 0.6
    assert report["groups"] == {n: {"before": graph.group(n).size,
                                    "after": graph.group(n).size - len(c)}
                                for n, c in plan.items()}
    x = rng.normal(size=(3, *model.input_shape[1:])).astype(np.float32)
    want = masked(x, training=False).numpy()
    got = shrunk(x, training=False).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    assert not np.allclose(want, model(x, training=False).numpy(), atol=1e-3), \
        "the mask must change the model, or the comparison proves nothing"


@pytest.mark.parametrize("build", ARCHITECTURES[:4], ids=lambda b: b.__name__)
def test_removing_nothing_keeps_the_model(build, rng):
    model = build()
    graph = build_channel_graph(model)
    same, report = remove_channels(model, graph, {g.name: [] for g in graph.prunable()})
    assert report["groups"] == {} and same.count_params() == model.count_params()
    x = rng.normal(size=(2, *model.input_shape[1:])).astype(np.float32)
    np.testing.assert_array_equal(same(x).numpy(), model(x).numpy())


def test_a_constant_channel_folds_into_the_next_bias(rng):
    """Zero kernel, non-zero BN beta: act(beta...) reaches 1x1 conv and Flatten->Dense."""
    inp = keras.Input((6, 6, 3))
    x = _bn_relu(L.Conv2D(8, 3, use_bias=False, name="c1")(inp), "c1")
    y = L.BatchNormalization(name="c2_bn")(L.Conv2D(5, 1, use_bias=False, name="c2")(x))
    y = L.Activation("sigmoid", name="c2_sigmoid")(y)
    out = L.Dense(3, name="logits")(L.Flatten(name="flat")(y))
    model = keras.Model(inp, out)
    _random_statistics(model, rng)
    for bn in ("c1_bn", "c2_bn"):  # beta > 0: relu(beta - gamma*mean/sd) is not zero
        w = model.get_layer(bn).get_weights()
        w[1] = np.abs(w[1]) + 0.5
        model.get_layer(bn).set_weights(w)
    plan = {"c1": [1, 4], "c2": [0, 3]}
    for name, channels in plan.items():
        w = model.get_layer(name).get_weights()
        w[0][..., channels] = 0.0
        model.get_layer(name).set_weights(w)
    graph = build_channel_graph(model)
    shrunk, report = remove_channels(model, graph, plan)
    assert report["folded"] == ["c2", "logits"]
    assert shrunk.get_layer("c2").use_bias  # made a bias to carry the fold
    x = rng.normal(size=(4, 6, 6, 3)).astype(np.float32)
    np.testing.assert_allclose(shrunk(x).numpy(), model(x).numpy(), atol=1e-5, rtol=0)
    # Without the fold the outputs would differ: the constants are not small.
    dropped = keras.Model.from_config(shrunk.get_config())
    dropped.set_weights(shrunk.get_weights())
    w = dropped.get_layer("logits").get_weights()
    w[1] = model.get_layer("logits").get_weights()[1]
    dropped.get_layer("logits").set_weights(w)
    assert np.abs(dropped(x).numpy() - model(x).numpy()).max() > 1e-2


def test_groups_follow_adds_concatenates_and_flatten_rows():
    graph = build_channel_graph(residual())
    names = {g.name: g for g in graph.groups if g.producers}
    assert names["stem+1"].producers == ["stem", "a2"]  # identity Add: one group
    assert names["b2+1"].producers == ["b2", "short"]  # projection Add: one group
    assert names["stem+1"].consumers == ["a1", "b1", "short"]
    assert [g.name for g in graph.refused()] == ["logits"]
    assert graph.refused()[0].refused == ["the model's output channels"]

    cat = build_channel_graph(concatenated())
    mix = next(g for g in cat.groups if g.name == "mix")
    rows = next(r for r in mix.refs if r.layer == "logits" and r.weight == "kernel")
    # ZeroPadding(1) of 8x8 -> 10x10, avg pool 2 -> 5x5: 25 repeats of 8 channels.
    assert (rows.repeat, rows.stride) == (25, 8)
    assert rows.indices([1]) == [1 + 8 * s for s in range(25)]
    mix_in = {g.name: r.offset for g in cat.groups for r in g.refs
              if r.layer == "mix" and r.role == "in"}
    assert mix_in == {"ca": 0, "cb": 6}  # segment offsets of the Concatenate


def test_separable_depth_multiplier_indexes_the_pointwise_rows_in_pairs():
    graph = build_channel_graph(depthwise())
    group = graph.group("c1")
    pw = next(r for r in group.refs if r.weight == "pointwise_kernel")
    assert (pw.width, pw.indices([3])) == (2, [6, 7])
    assert {r.layer for r in group.refs if r.role == "channelwise"} == {"c1_bn", "dw",
                                                                       "dw_bn"}


def test_what_cannot_be_kept_consistent_is_refused_and_named():
    inp = keras.Input((8, 8, 4))
    a = L.Conv2D(8, 3, padding="same", name="grouped", groups=2)(inp)
    b = L.DepthwiseConv2D(3, depth_multiplier=2, padding="same", name="dw2")(a)
    c = L.Conv2D(6, 1, name="c")(b)
    d = L.Lambda(lambda t: t * 2.0, name="lam")(c)
    e = L.Conv2D(6, 1, name="e")(d)
    shared = L.Conv2D(6, 1, name="shared")
    f = L.Add(name="add")([shared(e), shared(e)])
    g = L.Activation("softmax", name="soft")(L.Conv2D(4, 1, name="h")(f))
    out = L.Dense(3, name="logits")(L.Flatten()(g))
    graph = build_channel_graph(keras.Model(inp, out))
    why = {g.name: " ".join(g.refused) for g in graph.groups if g.producers}
    assert "grouped convolution (groups=2)" in why["grouped"]
    assert "depth_multiplier=2" in why["grouped"]
    assert "Lambda layer" in why["c"]
    assert "called 2 times" in why["e"]
    assert "softmax mixes the channels" in why["h"]
    assert graph.prunable() == []


def test_bad_plans_are_refused_with_one_line():
    model = residual()
    graph = build_channel_graph(model)
    with pytest.raises(InputError, match="no channel group 'nope'; groups: stem\\+1"):
        check_removal(graph, {"nope": [0]})
    with pytest.raises(InputError, match="channel group 'logits' cannot be cut: the model's "
                                         "output channels"):
        check_removal(graph, {"logits": [0]})
    with pytest.raises(InputError, match=r"has channels 0\.\.7, got 8"):
        check_removal(graph, {"stem+1": [8]})
    with pytest.raises(InputError, match="would empty it"):
        check_removal(graph, {"a1": list(range(8))})


def test_a_subclassed_model_is_refused():
    class Sub(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(InputError, match="subclassed Keras model; channel pruning needs"):
        build_channel_graph(Sub())
