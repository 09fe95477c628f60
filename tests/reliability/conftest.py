"""The reliability suites' shared inputs: a tiny Keras model, its data, .tflite files, a run."""

from __future__ import annotations

import pytest
from cases import Assets, build_assets


@pytest.fixture(scope="session")
def assets(tmp_path_factory: pytest.TempPathFactory) -> Assets:
    """The valid inputs every case starts from (built once per session; never changed)."""
    return build_assets(tmp_path_factory.mktemp("reliability-assets"))
