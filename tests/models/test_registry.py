import pytest

from edgekit.core.errors import InputError
from edgekit.models import available_models, build_model


def test_demo_cnn_is_registered_and_builds():
    assert "demo_cnn" in available_models()
    m = build_model("demo_cnn", input_shape=(32, 32, 1), num_classes=10)
    assert m.input_shape == (None, 32, 32, 1) and m.output_shape == (None, 10)
    kinds = [type(layer).__name__ for layer in m.layers]
    assert kinds.count("Conv2D") == 3 and kinds.count("BatchNormalization") == 3
    assert 50_000 < m.count_params() < 150_000


def test_unknown_model_lists_known():
    with pytest.raises(InputError, match=r"unknown model 'resnet1000'; known models: .*demo_cnn"):
        build_model("resnet1000")
