"""Low-rank factorization of Dense / 1x1 Conv2D kernels (real tf_keras models, real SVD)."""

from __future__ import annotations

import numpy as np
import pytest

from edgekit.compress import LowRank, Prune
from edgekit.compress.lowrank import choose_rank, factorize, svd_factors
from edgekit.compress.training import accuracy
from edgekit.core._keras import keras
from edgekit.core.errors import InputError
from edgekit.core.model_io import load_model, save_model


def _functional() -> keras.Model:
    keras.utils.set_random_seed(1)
    inp = keras.Input((6, 6, 8), name="x")
    a = keras.layers.Conv2D(24, 1, strides=2, activation="relu", name="pw")(inp)
    b = keras.layers.Conv2D(12, 3, padding="same", name="conv3")(a)
    c = keras.layers.Conv2D(12, 1, name="pw2")(a)
    x = keras.layers.Add(name="add")([b, c])
    x = keras.layers.Flatten(name="flat")(x)
    x = keras.layers.Dense(40, activation="tanh", name="fc")(x)
    return keras.Model(inp, keras.layers.Dense(10, name="logits")(x), name="f")


def _sequential() -> keras.Model:
    keras.utils.set_random_seed(2)
    return keras.Sequential([keras.Input((30,)), keras.layers.Dense(50, activation="relu",
                                                                    name="d1"),
                             keras.layers.Dense(20, name="d2")], name="s")


@pytest.mark.parametrize("build", [_functional, _sequential])
def test_full_rank_reproduces_the_outputs(build, rng):
    model = build()
    full, report = factorize(model, rank=10_000, min_params=0, require_smaller=False)
    kinds = {name: r["kind"] for name, r in report["layers"].items()}
    if build is _functional:
        assert kinds == {"pw": "Conv2D 1x1", "pw2": "Conv2D 1x1", "fc": "Dense",
                         "logits": "Dense"}  # conv3 is 3x3: left alone
    else:
        assert kinds == {"d1": "Dense", "d2": "Dense"}
    for r in report["layers"].values():
        assert r["rank"] == r["max_rank"] and r["energy_kept"] == pytest.approx(1.0)
    x = rng.normal(size=(4, *model.input_shape[1:])).astype(np.float32)
    np.testing.assert_allclose(full(x).numpy(), model(x).numpy(), rtol=0, atol=1e-4)
    # Two layers per factorized one, the second keeps the name (and the activation).
    assert len(full.layers) == len(model.layers) + len(report["layers"])


def test_energy_picks_the_smallest_rank_that_keeps_it():
    s = np.array([4.0, 2.0, 1.0, 1.0])  # squares 16, 4, 1, 1 of 22: 0.727, 0.909, 0.955, 1
    assert [choose_rank(s, energy=e) for e in (0.5, 0.73, 0.9, 0.91, 0.95, 1.0)] == [
        1, 2, 2, 3, 3, 4]
    assert choose_rank(s, rank=3) == 3 and choose_rank(s, rank=99) == 4
    with pytest.raises(InputError, match="exactly one of rank and energy"):
        choose_rank(s, rank=2, energy=0.9)


def test_factorized_layer_has_the_rank_and_error_the_svd_predicts(rng):
    # A 64x48 kernel with known singular values 8, 4, 2, 1, then 0.1s.
    u, _ = np.linalg.qr(rng.normal(size=(64, 48)))
    v, _ = np.linalg.qr(rng.normal(size=(48, 48)))
    s = np.array([8.0, 4.0, 2.0, 1.0] + [0.1] * 44)
    w = (u * s) @ v.T
    inp = keras.Input((64,))
    model = keras.Model(inp, keras.layers.Dense(48, name="fc")(inp))
    model.get_layer("fc").set_weights([w.astype(np.float32), np.zeros(48, np.float32)])
    energy = np.cumsum(s**2) / np.sum(s**2)
    expected = int(np.argmax(energy >= 0.95)) + 1
    assert expected == 3
    new, report = factorize(model, energy=0.95)
    layer = report["layers"]["fc"]
    assert layer["rank"] == expected
    assert layer["energy_kept"] == pytest.approx(energy[expected - 1], abs=1e-6)
    assert layer["params_before"] == 64 * 48 and layer["params_after"] == 3 * (64 + 48)
    assert report["params_after"] == report["params_before"] - 64 * 48 + 3 * (64 + 48)
    a = new.get_layer("fc_lowrank").kernel.numpy()
    b = new.get_layer("fc").kernel.numpy()
    assert a.shape == (64, 3) and b.shape == (3, 48)
    # Eckart-Young: the spectral-norm error of the rank-3 approximation is the 4th value.
    assert np.linalg.norm(w - a @ b, 2) == pytest.approx(1.0, rel=1e-4)
    _, _, kept = svd_factors(w, 3)
    assert kept == pytest.approx(energy[2])


def test_layers_that_would_grow_are_left_and_say_why():
    model = _sequential()
    _, report = factorize(model, rank=15, min_params=0)
    assert set(report["layers"]) == {"d1"}  # 15 * (30 + 50) < 30 * 50
    assert "would not save parameters" in report["skipped"]["d2"]  # 15 * (50 + 20) >= 50 * 20
    assert report["params_after"] < report["params_before"]
    same, report = factorize(model, energy=0.9, min_params=10_000)
    assert same is model and "min_params" in report["skipped"]["d1"]


@pytest.fixture(scope="module")
def lowrank(tiny_trained_model, digits8):
    return LowRank(energy=0.9, epochs=1, augment_shift=0).apply(tiny_trained_model, digits8)


def test_stage_shrinks_the_model_and_keeps_accuracy(lowrank, tiny_trained_model, digits8,
                                                    tmp_path):
    details = lowrank.details
    assert set(details["layers"]) == {"fc"}  # logits (320 params) is under min_params
    fc = details["layers"]["fc"]
    assert fc["rank"] < fc["max_rank"] and fc["energy_kept"] >= 0.9
    assert details["params_after"] == lowrank.model.count_params() < details["params_before"]
    before = accuracy(tiny_trained_model, digits8.x_test, digits8.y_test)
    after = accuracy(lowrank.model, digits8.x_test, digits8.y_test)
    assert after >= before - 0.03
    assert "history" in details and details["train_accuracy"] > 0.9
    # Built-in layers only: it saves, reloads and prunes like any model.
    again = load_model(save_model(lowrank.model, tmp_path / "lowrank.keras"))
    np.testing.assert_allclose(again.predict(digits8.x_test[:8], verbose=0),
                               lowrank.model.predict(digits8.x_test[:8], verbose=0), atol=1e-6)
    pruned = Prune(final_sparsity=0.5, epochs=1, augment_shift=0).apply(again, digits8)
    assert {"fc_lowrank", "fc"} <= set(pruned.details["pruned_layers"])


def test_bad_input_is_refused(tiny_trained_model):
    with pytest.raises(InputError, match="exactly one of rank and energy"):
        LowRank(energy=None)
    with pytest.raises(InputError, match=r"energy must be in \(0, 1\], got 1.5"):
        LowRank(energy=1.5)
    with pytest.raises(InputError, match=r"rank must be an integer >= 1, got 0"):
        LowRank(rank=0, energy=None)
    with pytest.raises(InputError, match=r"LowRank layers \['nope'\] are not in model 'tiny'"):
        factorize(tiny_trained_model, energy=0.9, layers=["nope"])
    with pytest.raises(InputError, match=r"unknown key\(s\) \['tau'\] in LowRank distill"):
        LowRank(distill={"tau": 1})


def test_wrapped_model_is_refused(tiny_trained_model):
    from edgekit.core._keras import tfmot

    wrapped = tfmot.quantization.keras.quantize_model(
        keras.models.clone_model(tiny_trained_model))
    with pytest.raises(InputError, match="has tfmot wrappers"):
        factorize(wrapped, energy=0.9)
