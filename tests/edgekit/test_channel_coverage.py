"""ChannelPrune coverage of the registry models: cut 50 %, QAT, full int8 with fewer MACs.

The small sibling of ``bench/channel_coverage.py`` (section ``channel-prune-coverage`` of
BENCHMARKS.md): tiny inputs, random weights, random samples and labels. Nothing is trained to an
accuracy; what is checked is that the chain goes through and the shipped model is smaller.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgekit.compress import QAT, ChannelPrune
from edgekit.core._keras import keras
from edgekit.data import Dataset

CLASSES = 10
TRAIN, CALIB, BATCH = 64, 4, 32
# The smallest input each builder accepts that still leaves every layer some spatial extent.
CASES = {
    "demo_cnn": (16, 16, 1),  # H, W divisible by 8
    "ds_cnn": (10, 6, 1),  # H, W >= 2; stride-2 stem, pool of (H // 2, W // 2)
    "resnet8": (16, 16, 3),  # two stride-2 stacks
    "mobilenet_v1": (16, 16, 3),  # five stride-2 stages; about 60 s: make test-all only
}


def _random_data(shape: tuple[int, ...]) -> Dataset:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(TRAIN + CALIB, *shape)).astype(np.float32)
    y = rng.integers(0, CLASSES, size=len(x))
    return Dataset(name="random", x_train=x[:TRAIN], y_train=y[:TRAIN], x_test=x[TRAIN:],
                   y_test=y[TRAIN:], train_indices=np.arange(TRAIN),
                   heldout_indices=np.arange(TRAIN, len(x)), num_classes=CLASSES)


@pytest.mark.parametrize("name", [
    pytest.param(n, marks=pytest.mark.slow) if n == "mobilenet_v1" else n for n in CASES])
def test_cut_half_then_qat_then_full_int8_with_fewer_macs(name):
    from edgekit.converters import inspect_tflite
    from edgekit.converters.modes import ConversionConfig, convert_keras
    from edgekit.converters.verify import run_tflite
    from edgekit.converters.work import tflite_work
    from edgekit.models.registry import build_model

    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    model = build_model(name, input_shape=CASES[name], num_classes=CLASSES)
    data = _random_data(CASES[name])
    calib = data.x_test
    config = ConversionConfig(mode="int8", io="int8")
    dense_macs = tflite_work(convert_keras(model, config, calib))["macs"]

    new, details = ChannelPrune.from_config({"ratio": 0.5, "importance": "l1",
                                             "epochs": 0}).cut(model, data)
    assert details["groups"], "no group was cut"
    assert any(g["after"] < g["before"] for g in details["groups"].values())
    for group, why in details["left"].items():
        assert isinstance(why, str) and why.strip(), f"group {group!r} left without a reason"
    assert details["work"]["after"]["macs"] < details["work"]["before"]["macs"]

    qat = QAT.from_config({"epochs": 1, "augment_shift": 0, "batch_size": BATCH}).apply(new, data)
    blob = convert_keras(qat.model, config, calib)
    inspection = inspect_tflite(blob)
    assert inspection.full_integer, inspection.float_io
    assert not inspection.float_ops, [o["op"] for o in inspection.float_ops]
    macs = tflite_work(blob)["macs"]
    assert macs < 0.6 * dense_macs, (macs, dense_macs)

    out = run_tflite(blob, calib[:2], progress=False)
    assert out.shape == (2, CLASSES) and np.all(np.isfinite(out))
