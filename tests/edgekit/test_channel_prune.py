"""ChannelPrune: criteria, where to cut, the stage end to end (QAT, full int8), bad input."""

from __future__ import annotations

import numpy as np
import pytest

from edgekit.compress import QAT, ChannelPrune
from edgekit.compress.channel_graph import ChannelGroup, build_channel_graph
from edgekit.compress.channel_prune import plan_cut, rounded_keep
from edgekit.compress.importance import CRITERIA, ScoringContext, parse_importance, score_groups
from edgekit.compress.training import accuracy
from edgekit.core._keras import keras
from edgekit.core.errors import InputError

L = keras.layers


def _group(name: str, size: int) -> ChannelGroup:
    return ChannelGroup(id=0, name=name, size=size, producers=[name])


@pytest.mark.parametrize("size, remove, round_to, keep", [
    (64, 32, 1, 32), (64, 30, 8, 40), (64, 33, 8, 32), (64, 60, 8, 8), (64, 64, 1, 1),
    (6, 5, 8, 6), (12, 6, 4, 8), (16, 0, 8, 16),
])
def test_rounded_keep_rounds_the_kept_count_up(size, remove, round_to, keep):
    assert rounded_keep(size, remove, round_to) == keep


def test_layer_scope_cuts_the_lowest_scores_of_every_group():
    groups = [_group("a", 8), _group("b", 4)]
    scores = {"a": np.array([5, 1, 7, 0, 3, 9, 2, 8.0]), "b": np.array([4, 3, 2, 1.0])}
    plan = plan_cut(groups, scores, ratio=0.5, scope="layer", max_layer_ratio=0.8, round_to=1)
    assert plan == {"a": [1, 3, 4, 6], "b": [2, 3]}
    # Kept 4 of 8, rounded up to a multiple of 8: nothing is cut from a.
    plan = plan_cut(groups, scores, ratio=0.5, scope="layer", max_layer_ratio=0.8, round_to=8)
    assert plan == {}


def test_global_scope_normalizes_per_group_and_caps_each_group():
    groups = [_group("a", 4), _group("b", 4)]
    # b's scores are 100x a's: without normalizing, a global threshold would empty a.
    scores = {"a": np.array([1.0, 2.0, 3.0, 4.0]), "b": np.array([100.0, 400.0, 300.0, 200.0])}
    plan = plan_cut(groups, scores, ratio=0.5, scope="global", max_layer_ratio=0.8, round_to=1)
    assert plan == {"a": [0, 1], "b": [0, 3]}
    uneven = {"a": np.array([0.0, 0.0, 0.0, 4.0]), "b": np.array([1.0, 1.0, 1.0, 1.0])}
    plan = plan_cut(groups, uneven, ratio=0.5, scope="global", max_layer_ratio=0.5, round_to=1)
    assert plan == {"a": [0, 1], "b": [0]}  # a has three of the 4 lowest; the cap keeps two


def _scored_model() -> keras.Model:
    keras.utils.set_random_seed(3)
    inp = keras.Input((6, 6, 2))
    x = L.Conv2D(6, 3, padding="same", name="conv")(inp)
    x = L.ReLU(name="relu")(L.BatchNormalization(name="bn")(x))
    x = L.Conv2D(4, 1, name="pw")(x)
    out = L.Dense(3, name="logits")(L.Flatten(name="flat")(L.ReLU(name="relu2")(x)))
    model = keras.Model(inp, out)
    w = model.get_layer("conv").get_weights()
    w[0][..., 2], w[1][2] = 0.0, 0.0  # channel 2 of conv does nothing through its kernel
    model.get_layer("conv").set_weights(w)
    bn = model.get_layer("bn").get_weights()
    bn[0][2], bn[1][2] = 0.0, -1.0  # ... and is zero after BN + ReLU
    model.get_layer("bn").set_weights(bn)
    return model


@pytest.mark.parametrize("name", CRITERIA.names())
def test_every_criterion_scores_every_group_and_finds_the_dead_channel(name, rng):
    model = _scored_model()
    graph = build_channel_graph(model)
    x = rng.normal(size=(24, 6, 6, 2)).astype(np.float32)
    y = rng.integers(0, 3, 24)
    ctx = ScoringContext(model, graph, x, y, batch_size=8)
    scores = score_groups(ctx, graph.prunable(), {name: 1.0})
    assert set(scores) == {"conv", "pw"}
    for group in graph.prunable():
        s = scores[group.name]
        assert s.shape == (group.size,) and np.all(np.isfinite(s)) and np.all(s >= 0)
    conv = scores["conv"]
    # A dead channel is the least important by every criterion except the ones that do not
    # look at what the channel carries: l1/l2 see the consumer rows it still has.
    if name in ("l1", "l2"):
        assert conv[2] < np.median(conv)
    else:
        assert conv[2] == pytest.approx(conv.min(), abs=1e-12)
        assert conv[2] < conv[np.arange(6) != 2].min()


def test_a_combination_weights_normalized_scores(rng):
    model = _scored_model()
    graph = build_channel_graph(model)
    ctx = ScoringContext(model, graph, rng.normal(size=(8, 6, 6, 2)).astype(np.float32),
                         rng.integers(0, 3, 8))
    groups = graph.prunable()
    l1 = score_groups(ctx, groups, {"l1": 1.0})
    both = score_groups(ctx, groups, {"l1": 1.0, "bn_gamma": 3.0})
    gamma = score_groups(ctx, groups, {"bn_gamma": 1.0})
    want = l1["conv"] / l1["conv"].mean() + 3.0 * gamma["conv"] / gamma["conv"].mean()
    np.testing.assert_allclose(both["conv"], want)
    # pw has no BatchNormalization: bn_gamma falls back to l1 and says so.
    assert any("group 'pw' has no BatchNormalization, scored by l1" in n for n in ctx.notes)


def test_importance_names_are_checked():
    assert parse_importance("fisher") == {"fisher": 1.0}
    with pytest.raises(InputError, match="unknown importance criterion 'l3'; expected one of: "
                                         "l1, l2, bn_gamma, taylor"):
        parse_importance("l3")
    with pytest.raises(InputError, match="importance weight of 'l1' must be a number > 0"):
        parse_importance({"l1": -1})


@pytest.mark.parametrize("config, message", [
    ({"ratio": 1.0}, r"ratio must be in \[0, 1\) \(the share of channels removed\), got 1.0"),
    ({"ratio": -0.1}, r"ratio must be in \[0, 1\)"),
    ({"ratio": "half"}, r"ratio must be in \[0, 1\)"),
    ({"importance": "nope"}, "unknown importance criterion 'nope'"),
    ({"scope": "model"}, "scope must be one of layer, global, got 'model'"),
    ({"max_layer_ratio": 1.0}, r"max_layer_ratio must be in \(0, 1\)"),
    ({"round_to": 0}, "round_to must be an integer >= 1"),
    ({"importance": "taylor", "batches": 0}, "reads training batches; batches must be >= 1"),
])
def test_bad_configs_are_one_line_errors(config, message):
    with pytest.raises(InputError, match=message) as err:
        ChannelPrune.from_config(config)
    assert "\n" not in str(err.value)


def test_a_layer_name_that_does_not_exist_is_named(tiny_trained_model, digits8):
    stage = ChannelPrune.from_config({"layers": {"names": ["convv"]}, "epochs": 0})
    with pytest.raises(InputError, match="convv"):
        stage.apply(tiny_trained_model, digits8)


def test_a_subclassed_model_is_refused(digits8):
    class Sub(keras.Model):
        def __init__(self):
            super().__init__()
            self.d = L.Dense(10)

        def call(self, x):
            return self.d(keras.layers.Flatten()(x))

    model = Sub()
    model(digits8.x_train[:1])
    with pytest.raises(InputError, match="subclassed Keras model; channel pruning needs"):
        ChannelPrune.from_config({"epochs": 0}).apply(model, digits8)


def test_selection_picks_groups_by_their_producers(tiny_trained_model, digits8):
    stage = ChannelPrune.from_config({"ratio": 0.5, "epochs": 0, "round_to": 1,
                                      "layers": {"exclude": {"names": ["fc"]}}})
    out = stage.apply(tiny_trained_model, digits8)
    d = out.details
    assert d["groups"] == {"conv": {"producers": ["conv"], "before": 16, "after": 8}}
    assert d["left"]["fc"].startswith("excluded by selection (layers.exclude")
    assert d["left"]["logits"] == "the model's output channels"
    assert out.model.get_layer("conv").filters == 8
    assert out.model.get_layer("fc").kernel.shape == (8 * 8 * 8, 32)  # Flatten rows cut too


def test_ratio_zero_changes_nothing(tiny_trained_model, digits8):
    out = ChannelPrune.from_config({"ratio": 0.0, "epochs": 0}).apply(tiny_trained_model,
                                                                       digits8)
    x = digits8.x_test[:16]
    np.testing.assert_allclose(out.model(x).numpy(), tiny_trained_model(x).numpy(), atol=1e-6)
    assert out.details["work"]["after"] == out.details["work"]["before"]


def test_cut_then_fine_tune_then_qat_then_full_int8(tiny_trained_model, digits8):
    """The stage composes: ChannelPrune -> QAT -> int8 stays full integer with fewer MACs."""
    from edgekit.converters import inspect_tflite
    from edgekit.converters.modes import ConversionConfig, convert_keras
    from edgekit.converters.work import tflite_work

    stage = ChannelPrune.from_config({"ratio": 0.5, "importance": "taylor", "batches": 4,
                                      "epochs": 3, "learning_rate": 3e-3, "augment_shift": 0,
                                      "round_to": 4})
    out = stage.apply(tiny_trained_model, digits8)
    d = out.details
    assert d["groups"]["conv"]["after"] == 8 and d["groups"]["fc"]["after"] == 16
    assert d["batches"] == 4 and d["samples"] == 128
    assert d["work"]["after"]["macs"] < 0.55 * d["work"]["before"]["macs"]
    assert d["train_accuracy"] > d["train_accuracy_before_fine_tune"]
    held_out = accuracy(out.model, digits8.x_test, digits8.y_test)
    dense = accuracy(tiny_trained_model, digits8.x_test, digits8.y_test)
    assert held_out > dense - 0.08, (held_out, dense)
    qat = QAT.from_config({"epochs": 1, "augment_shift": 0}).apply(out.model, digits8)
    calib = digits8.x_train[:64]
    cut = convert_keras(qat.model, ConversionConfig(mode="int8"), calib)
    base = convert_keras(tiny_trained_model, ConversionConfig(mode="int8"), calib)
    assert inspect_tflite(cut).full_integer
    assert tflite_work(cut)["macs"] < 0.55 * tflite_work(base)["macs"]


def test_distilled_fine_tune_uses_the_model_before_the_cut(tiny_trained_model, digits8):
    stage = ChannelPrune.from_config({"ratio": 0.5, "epochs": 1, "augment_shift": 0,
                                      "distill": {"teacher": "float", "temperature": 2.0}})
    out = stage.apply(tiny_trained_model, digits8)
    assert len(out.details["history"]["loss"]) == 1
    assert out.model.get_layer("conv").filters == 8


def _last_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


def test_cli_compress_channels_writes_a_smaller_model(tmp_path, cli, capsys,
                                                      tiny_trained_model):
    from edgekit.converters.work import keras_work
    from edgekit.core.model_io import load_model, save_model

    src = save_model(tiny_trained_model, tmp_path / "float.keras")
    dest = tmp_path / "cut.keras"
    code = cli(["compress", str(src), "--data", "digits", "--channels", "0.5",
                "--importance", "bn_gamma", "--scope", "global", "--round-to", "4",
                "--epochs", "1", "--out", str(dest)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "ChannelPrune: held-out accuracy" in printed and "MACs " in printed
    cut = load_model(dest)
    assert keras_work(cut)["macs"] < 0.75 * keras_work(tiny_trained_model)["macs"]
    assert cut.get_layer("conv").filters % 4 == 0 and cut.get_layer("fc").units % 4 == 0


@pytest.mark.parametrize("flags, message", [
    (["--channels", "1.5"], "ratio must be in [0, 1)"),
    (["--channels", "0.5", "--importance", "magic"], "unknown importance criterion 'magic'"),
    (["--channels", "0.5", "--scope", "net"], "scope must be one of layer, global"),
    (["--channels", "0.5", "--round-to", "0"], "round_to must be an integer >= 1"),
])
def test_cli_bad_channel_options_exit_2_and_write_nothing(flags, message, tmp_path, cli,
                                                          capsys, tiny_trained_model):
    from edgekit.core.model_io import save_model

    src = save_model(tiny_trained_model, tmp_path / "float.keras")
    dest = tmp_path / "out" / "cut.keras"
    dest.parent.mkdir()
    assert cli(["compress", str(src), "--out", str(dest), *flags]) == 2
    assert message in _last_error_line(capsys)
    assert list(dest.parent.iterdir()) == []


def test_unstructured_pruning_runs_on_what_is_left(tiny_trained_model, digits8):
    from edgekit.compress import Prune, kernel_sparsity

    cut = ChannelPrune.from_config({"ratio": 0.5, "epochs": 0}).apply(tiny_trained_model,
                                                                       digits8)
    pruned = Prune.from_config({"final_sparsity": 0.5, "epochs": 1, "augment_shift": 0}).apply(
        cut.model, digits8)
    assert pruned.model.get_layer("conv").filters == 8
    sparsity = kernel_sparsity(pruned.model)
    assert min(sparsity.values()) == pytest.approx(0.5, abs=0.02)
