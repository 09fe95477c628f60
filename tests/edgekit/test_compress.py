import numpy as np
import pytest

from edgekit.compress import QAT, Prune, kernel_sparsity
from edgekit.compress.training import accuracy
from edgekit.core._keras import keras
from edgekit.core.errors import InputError
from edgekit.core.model_io import load_model, save_model


@pytest.fixture(scope="module")
def pruned(tiny_trained_model, digits8):
    stage = Prune(final_sparsity=0.75, epochs=4, learning_rate=1e-3, augment_shift=0)
    return stage.apply(tiny_trained_model, digits8)


def test_prune_reaches_final_sparsity_in_every_prunable_layer(pruned):
    layers = pruned.details["pruned_layers"]
    assert set(layers) == {"conv", "fc", "logits"}
    for name, s in layers.items():
        assert s == pytest.approx(0.75, abs=0.01), name
    # Wrappers are stripped: a plain model comes out.
    assert not any("prune_low_magnitude" in layer.name for layer in pruned.model.layers)


def test_prune_keeps_accuracy_and_leaves_input_untouched(pruned, tiny_trained_model, digits8):
    before = accuracy(tiny_trained_model, digits8.x_test, digits8.y_test)
    after = accuracy(pruned.model, digits8.x_test, digits8.y_test)
    assert before > 0.85
    assert after > before - 0.05
    # The input model was not modified (pruning works on a copy).
    assert max(kernel_sparsity(tiny_trained_model).values()) < 0.05


def test_prune_reports_target_reached(pruned):
    assert pruned.details["target_reached"] is True and pruned.details["short_of_target"] == {}


def test_schedule_that_cannot_reach_the_target_is_refused():
    # tfmot's default frequency (100) over a 22-step fine-tune: the guide recipe's silent failure.
    with pytest.raises(InputError, match=r"update_every=100 is longer than the fine-tune"):
        Prune(epochs=2, update_every=100).pruning_schedule(steps=11)


def test_schedule_ends_on_a_mask_update_step():
    sched = Prune(epochs=3, ramp_fraction=0.5, update_every=7).pruning_schedule(steps=10)
    cfg = sched.get_config()["config"]
    assert cfg["end_step"] % cfg["frequency"] == 0
    assert cfg["end_step"] == 14
    const = Prune(schedule="ConstantSparsity", final_sparsity=0.5).pruning_schedule(steps=8)
    assert const.get_config()["class_name"] == "ConstantSparsity"


def test_pqat_preserves_sparsity_and_round_trips_through_h5(pruned, digits8, tmp_path):
    result = QAT(epochs=2, augment_shift=0).apply(pruned.model, digits8)
    assert result.details["prune_preserving"] is True
    assert QAT.artefact_suffix == ".h5"
    for name, s in result.details["sparsity_after"].items():
        assert s >= result.details["sparsity_before"][name] - 1e-6, name
    acc = accuracy(result.model, digits8.x_test, digits8.y_test)
    assert acc > 0.8
    path = save_model(result.model, tmp_path / "qat.h5")
    again = load_model(path)
    x = digits8.x_test[:16]
    np.testing.assert_allclose(again.predict(x, verbose=0), result.model.predict(x, verbose=0),
                               atol=1e-6)


def test_plain_qat_on_dense_model(tiny_trained_model, digits8):
    result = QAT(epochs=1, augment_shift=0).apply(tiny_trained_model, digits8)
    assert result.details["prune_preserving"] is False
    assert result.details["scheme"] == "Default8BitQuantizeScheme"


def test_subclassed_model_gets_a_clear_error(digits8):
    class Sub(keras.Model):
        def __init__(self):
            super().__init__()
            self.d = keras.layers.Dense(10)

        def call(self, x):
            return self.d(keras.layers.Flatten()(x))

    m = Sub()
    m(digits8.x_train[:1])
    with pytest.raises(InputError, match=r"subclassed Keras model; pruning needs"):
        Prune(epochs=1).apply(m, digits8)
    with pytest.raises(InputError, match=r"subclassed Keras model; QAT needs"):
        QAT(epochs=1).apply(m, digits8)


def test_save_model_rejects_other_suffixes(tiny_trained_model, tmp_path):
    with pytest.raises(InputError, match=r"must end in \.keras or \.h5"):
        save_model(tiny_trained_model, tmp_path / "m.pb")
    assert list(tmp_path.iterdir()) == []
