"""Pruning options: schedules, per-layer selection, 2:4 sparsity, the XNNPack policy, recipes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from edgekit.compress import QAT, Prune, stage_from_dict
from edgekit.compress.layer_support import flatten_model
from edgekit.compress.structured import m_by_n_violations, parse_m_by_n
from edgekit.core._keras import keras
from edgekit.core.errors import InputError
from edgekit.data import Dataset


def _plan(stage, model):
    return {d.name: (d.action, d.reason) for _, d in stage.plan(flatten_model(model))}


# -- selection --------------------------------------------------------------------------


def test_selection_by_names_regex_types_and_exclude(tiny_trained_model):
    by_name = _plan(Prune(layers={"names": ["fc"]}), tiny_trained_model)
    assert [n for n, (a, _) in by_name.items() if a == "pruned"] == ["fc"]
    assert by_name["conv"] == ("left", "excluded by selection (not matched by "
                                       "layers.names/regex/types)")
    by_regex = _plan(Prune(layers={"regex": "^(conv|logits)$"}), tiny_trained_model)
    assert {n for n, (a, _) in by_regex.items() if a == "pruned"} == {"conv", "logits"}
    by_type = _plan(Prune(layers={"types": ["Dense"]}), tiny_trained_model)
    assert {n for n, (a, _) in by_type.items() if a == "pruned"} == {"fc", "logits"}
    excluded = _plan(Prune(layers={"exclude": {"types": ["Conv2D"], "names": ["logits"]}}),
                     tiny_trained_model)
    assert {n for n, (a, _) in excluded.items() if a == "pruned"} == {"fc"}
    assert excluded["conv"] == ("left", "excluded by selection (layers.exclude types: Conv2D)")
    # A selected layer tfmot cannot prune is still left, with tfmot's reason.
    bn = _plan(Prune(layers={"names": ["bn", "fc"]}), tiny_trained_model)
    assert bn["bn"] == ("left", "BatchNormalization: tfmot prunes none of its weights")


def test_selection_prunes_only_the_selected_layer(tiny_trained_model, digits8):
    result = Prune(final_sparsity=0.7, epochs=1, augment_shift=0,
                   layers={"types": ["Dense"], "exclude": {"names": ["logits"]}}
                   ).apply(tiny_trained_model, digits8)
    assert set(result.details["pruned_layers"]) == {"fc"}
    assert float(np.mean(result.model.get_layer("fc").kernel.numpy() == 0)) == pytest.approx(
        0.7, abs=0.01)
    for name in ("conv", "logits"):
        assert float(np.mean(result.model.get_layer(name).kernel.numpy() == 0)) < 0.05


def test_unknown_names_and_types_are_errors_with_suggestions(tiny_trained_model):
    with pytest.raises(InputError, match=r"layers\.names: no layer named 'fc1'.*similar names: fc"):
        _plan(Prune(layers={"names": ["fc1"]}), tiny_trained_model)
    with pytest.raises(InputError, match=r"layers\.exclude\.types: unknown layer type 'Conv2d'; "
                                         r"did you mean Conv2D"):
        _plan(Prune(layers={"exclude": {"types": ["Conv2d"]}}), tiny_trained_model)
    with pytest.raises(InputError, match=r"layers\.regex '\^dense' matches no layer name"):
        _plan(Prune(layers={"regex": "^dense"}), tiny_trained_model)


def test_bad_selection_config_is_refused_when_built():
    with pytest.raises(InputError, match=r"unknown key\(s\) \['name'\] in layers; known keys: "
                                         r"names, regex, types, exclude"):
        Prune(layers={"name": ["fc"]})
    with pytest.raises(InputError, match=r"regex '\(' is not a valid regular expression"):
        Prune(layers={"regex": "("})
    with pytest.raises(InputError, match=r"layers\.types must be a list of strings"):
        QAT(layers={"types": [1]})
    with pytest.raises(InputError, match=r"policy must be one of PruneForLatencyOnXNNPack"):
        Prune(policy="xnnpack")


def test_qat_selection_leaves_the_excluded_layers(tiny_trained_model):
    flat = flatten_model(tiny_trained_model)
    plan = {d.name: d for d in QAT(layers={"exclude": {"names": ["fc"]}}).plan(flat, False)}
    assert plan["fc"].action == "left" and "excluded by selection" in plan["fc"].reason
    assert plan["logits"].action == "quantized"


# -- serialization ----------------------------------------------------------------------


@pytest.mark.parametrize("stage", [
    Prune(final_sparsity=0.6, schedule="ConstantSparsity",
          layers={"types": ["Conv2D", "Dense"], "exclude": {"regex": "^logits$"}}),
    Prune(sparsity_m_by_n=[2, 4], layers={"names": ["fc"]}),
    Prune(policy="PruneForLatencyOnXNNPack"),
    QAT(layers={"regex": "conv"}),
    QAT(),
])
def test_stages_round_trip_as_class_name_and_config(stage):
    entry = stage.to_dict()
    text = yaml.safe_dump(entry)  # the resolved recipe is written as YAML
    again = stage_from_dict(yaml.safe_load(text))
    assert again == stage
    assert again.to_dict() == entry == json.loads(json.dumps(entry))


def test_recipe_entry_with_pruning_options():
    stage = stage_from_dict({"class_name": "Prune", "config": {
        "sparsity_m_by_n": "2:4", "layers": {"types": ["Dense"]}, "policy": None}})
    assert stage.m_by_n == (2, 4)
    assert stage.to_dict()["config"]["layers"] == {"types": ["Dense"]}


# -- schedules and structure ------------------------------------------------------------


def test_constant_sparsity_reaches_its_target(tiny_trained_model, digits8):
    result = Prune(final_sparsity=0.6, schedule="ConstantSparsity", epochs=1,
                   augment_shift=0).apply(tiny_trained_model, digits8)
    assert result.details["schedule"]["class_name"] == "ConstantSparsity"
    assert result.details["target_reached"] is True
    for name, s in result.details["pruned_layers"].items():
        assert s == pytest.approx(0.6, abs=0.01), name


def test_parse_m_by_n():
    assert parse_m_by_n("2:4") == (2, 4) and parse_m_by_n([1, 2]) == (1, 2)
    assert parse_m_by_n(None) is None
    for bad in ("4:2", "2-4", [2], "0:4", [True, 4]):
        with pytest.raises(InputError, match="sparsity_m_by_n"):
            parse_m_by_n(bad)


def test_m_by_n_checker_counts_groups_along_the_input_channel():
    dense = np.ones((8, 3), np.float32)  # [in, out]
    dense[[0, 1, 4, 5], :] = 0.0  # two zeros in each group of 4 inputs, for every output
    assert m_by_n_violations(dense, 2, 4) == 0
    dense[1, 2] = 0.5  # output 2, inputs 0-3: one zero only
    assert m_by_n_violations(dense, 2, 4) == 1
    # Zeros laid out along the output axis do not make the pattern: outputs 2, 3, 6, 7 keep
    # all four of their inputs.
    by_output = np.ones((4, 8), np.float32)
    by_output[:, [0, 1, 4, 5]] = 0.0
    assert m_by_n_violations(by_output, 2, 4) == 4
    conv = np.ones((3, 3, 6, 2), np.float32)  # [h, w, in, out]; 6 inputs: groups of 4 and 2
    conv[:, :, [0, 1], :] = 0.0
    assert m_by_n_violations(conv, 2, 4) == 0  # a trailing group of 2 may keep both
    conv[:, :, 0, 0] = 1.0
    assert m_by_n_violations(conv, 2, 4) == 9  # every (h, w) position of output 0


def test_two_four_sparsity_holds_in_every_pruned_kernel(tiny_trained_model, digits8):
    result = Prune(sparsity_m_by_n="2:4", epochs=1, augment_shift=0).apply(
        tiny_trained_model, digits8)
    assert result.details["m_by_n"] == {"pattern": "2:4", "holds": {"fc": True, "logits": True}}
    conv = {e["name"]: e for e in result.details["layers"]}["conv"]
    assert conv["reason"] == "Conv2D: 1 input channel(s), 2:4 sparsity would zero nothing"
    for name in ("fc", "logits"):
        kernel = result.model.get_layer(name).kernel.numpy()
        assert m_by_n_violations(kernel, 2, 4) == 0, name
        assert float(np.mean(kernel == 0)) >= 0.5, name
    assert result.details["target_reached"] is True


def test_two_four_leaves_kernels_that_are_not_2d_or_4d():
    inp = keras.Input((16, 4))
    x = keras.layers.Conv1D(8, 3, name="c1d")(inp)
    out = keras.layers.Dense(2, name="fc")(keras.layers.Flatten()(x))
    plan = _plan(Prune(sparsity_m_by_n="2:4"), keras.Model(inp, out))
    assert plan["c1d"] == ("left", "Conv1D: 2:4 sparsity needs 2-D or 4-D kernels, this "
                                   "layer's are [3]-D")
    assert plan["fc"][0] == "pruned"


# -- PruneForLatencyOnXNNPack -----------------------------------------------------------


def _xnnpack_model() -> keras.Model:
    inp = keras.Input((8, 8, 3))
    x = keras.layers.ZeroPadding2D(1, name="pad")(inp)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="valid", name="stem")(x)
    x = keras.layers.ReLU(name="r0")(x)
    x = keras.layers.Conv2D(16, 1, name="expand")(x)
    x = keras.layers.ReLU(name="r1")(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same", name="dw")(x)
    x = keras.layers.ReLU(name="r2")(x)
    x = keras.layers.Conv2D(16, 1, name="project")(x)
    x = keras.layers.GlobalAveragePooling2D(keepdims=True, name="gap")(x)
    out = keras.layers.Dense(10, name="logits")(keras.layers.Flatten(name="flat")(x))
    return keras.Model(inp, out)


def test_xnnpack_policy_prunes_the_1x1_convs_of_a_fitting_model(digits8):
    rgb = Dataset(name="digits-rgb", x_train=np.repeat(digits8.x_train, 3, axis=-1),
                  y_train=digits8.y_train, x_test=np.repeat(digits8.x_test, 3, axis=-1),
                  y_test=digits8.y_test, train_indices=digits8.train_indices,
                  heldout_indices=digits8.heldout_indices, num_classes=10)
    keras.utils.set_random_seed(0)
    result = Prune(policy="PruneForLatencyOnXNNPack", final_sparsity=0.5, epochs=1,
                   augment_shift=0).apply(_xnnpack_model(), rgb)
    assert set(result.details["pruned_layers"]) == {"expand", "project"}
    actions = {e["name"]: e for e in result.details["layers"]}
    assert actions["stem"]["reason"] == ("Conv2D: PruneForLatencyOnXNNPack prunes only "
                                         "1x1 Conv2D")
    assert actions["logits"]["action"] == "left"
    assert result.details["policy"] == "PruneForLatencyOnXNNPack"


def test_xnnpack_policy_rejects_a_model_that_does_not_fit(tiny_trained_model, digits8):
    with pytest.raises(InputError, match=r"does not fit the PruneForLatencyOnXNNPack policy: "
                                         r"Could not find `Conv2D 3x3` layer"):
        Prune(policy="PruneForLatencyOnXNNPack", epochs=1).apply(tiny_trained_model, digits8)
