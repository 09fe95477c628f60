"""Adaptive BatchNormalization after a cut: exact running statistics, momenta restored."""

from __future__ import annotations

import numpy as np
import pytest

from edgekit.compress import ChannelPrune
from edgekit.compress.bn_recalibration import batch_norm_layers, recalibrate_batch_norm
from edgekit.core._keras import keras
from edgekit.core.errors import InputError

L = keras.layers


def _bn_model() -> keras.Model:
    keras.utils.set_random_seed(1)
    inp = keras.Input((6, 6, 2))
    x = L.Conv2D(4, 3, padding="same", name="conv")(inp)
    x = L.BatchNormalization(name="bn1", momentum=0.9)(x)
    x = L.ReLU()(x)
    inner = keras.Sequential([L.Conv2D(3, 1, name="pw"), L.BatchNormalization(name="bn2")],
                             name="inner")
    x = inner(x)
    out = L.Dense(2)(L.GlobalAveragePooling2D()(x))
    return keras.Model(inp, out)


def test_first_bn_gets_the_exact_mean_of_its_inputs_and_momenta_come_back() -> None:
    model = _bn_model()
    assert [layer.name for layer in batch_norm_layers(model)] == ["bn1", "bn2"]
    x = np.random.default_rng(0).normal(3.0, 2.0, (96, 6, 6, 2)).astype(np.float32)
    got = recalibrate_batch_norm(model, x, batches=6, batch_size=16, seed=0)
    assert got == {"layers": 2, "batches": 6, "samples": 96}
    conv_out = keras.Model(model.input, model.get_layer("conv").output).predict(x, verbose=0)
    bn1 = model.get_layer("bn1")
    np.testing.assert_allclose(bn1.moving_mean.numpy(), conv_out.mean(axis=(0, 1, 2)),
                               rtol=1e-4, atol=1e-4)
    # the variance is the mean of the per-batch variances (each within-batch, possibly Bessel-
    # corrected), so it lies between the biased and the unbiased estimate of those batches
    per_batch = [conv_out[i:i + 16].var(axis=(0, 1, 2)) for i in range(0, 96, 16)]
    low = np.mean(per_batch, axis=0)
    n = 16 * 36
    np.testing.assert_array_less(low * (1 - 1e-4) - 1e-6, bn1.moving_variance.numpy())
    np.testing.assert_array_less(bn1.moving_variance.numpy(), low * n / (n - 1) * (1 + 1e-4) + 1e-6)
    assert bn1.momentum == pytest.approx(0.9)
    assert model.get_layer("inner").get_layer("bn2").momentum == pytest.approx(0.99)


def test_weights_other_than_bn_statistics_do_not_change() -> None:
    model = _bn_model()
    before = {w.name: w.numpy().copy() for w in model.weights}
    recalibrate_batch_norm(model, np.ones((32, 6, 6, 2), np.float32), batches=2, batch_size=16)
    for w in model.weights:
        if "moving_" not in w.name:
            np.testing.assert_array_equal(w.numpy(), before[w.name], err_msg=w.name)


def test_zero_batches_is_a_no_op_and_bad_counts_are_refused() -> None:
    model = _bn_model()
    mean = model.get_layer("bn1").moving_mean.numpy().copy()
    assert recalibrate_batch_norm(model, np.ones((8, 6, 6, 2)), batches=0, batch_size=4) == {
        "layers": 0, "batches": 0, "samples": 0}
    np.testing.assert_array_equal(model.get_layer("bn1").moving_mean.numpy(), mean)
    with pytest.raises(InputError, match=r"recalibrate_bn must be an integer >= 0"):
        recalibrate_batch_norm(model, np.ones((8, 6, 6, 2)), batches=-1, batch_size=4)
    with pytest.raises(InputError, match=r"recalibrate_bn must be an integer >= 0"):
        ChannelPrune.from_config({"recalibrate_bn": 1.5})


def test_the_stage_recalibrates_after_a_cut(tiny_trained_model, digits8) -> None:
    """The cut model's BN holds the statistics of the drawn batches, not the training run's."""
    config = {"ratio": 0.5, "epochs": 0, "round_to": 1, "importance": "l1"}
    stale, d0 = ChannelPrune.from_config({**config, "recalibrate_bn": 0}).cut(
        tiny_trained_model, digits8)
    fresh, d1 = ChannelPrune.from_config({**config, "recalibrate_bn": 16}).cut(
        tiny_trained_model, digits8)
    assert d0["bn_recalibration"]["layers"] == 0
    assert d1["bn_recalibration"] == {"layers": 1, "batches": 16, "samples": 512}
    assert d1["removed"] == d0["removed"]
    assert not np.allclose(stale.get_layer("bn").moving_mean.numpy(),
                           fresh.get_layer("bn").moving_mean.numpy())
    bn = fresh.get_layer("bn")
    conv = keras.Model(fresh.input, fresh.get_layer("conv").output)
    pick = np.sort(np.random.default_rng(0).choice(len(digits8.x_train), 512, replace=False))
    mean = conv.predict(digits8.x_train[pick], verbose=0).mean(axis=(0, 1, 2))
    np.testing.assert_allclose(bn.moving_mean.numpy(), mean, rtol=1e-3, atol=1e-4)
