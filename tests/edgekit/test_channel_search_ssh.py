"""The channel search measured through a remote target: a real sshd on 127.0.0.1 as the board.

The "board" is this machine reached over SSH (``tests/device_bench/sshd_fixture.py``: throwaway
keys, strict host-key checking); ``ssh`` on ``PATH`` is a shim that adds the test's client
config, so the stage is configured exactly as a user would (``target: {latency_ratio, on:
ssh://user@host:port}``) and every cost (whole models, the per-layer table) is a benchmark run
on the board by device_bench over SSH. Slow (about a minute of SSH round trips): `make test-all`.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "device_bench"))
from sshd_fixture import start_sshd, write_ssh_shim

from edgekit.compress import ChannelPrune
from edgekit.converters.work import keras_work

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def board_spec(tmp_path_factory):
    """The ``ssh://`` spec of the real sshd board, with an ``ssh`` shim first on PATH."""
    work = tmp_path_factory.mktemp("sshd")
    with start_sshd(work) as server:
        shim, spec = write_ssh_shim(server, work / "bin")
        before = os.environ["PATH"]
        os.environ["PATH"] = f"{shim}{os.pathsep}{before}"
        try:
            yield spec
        finally:
            os.environ["PATH"] = before


def test_a_latency_budget_is_met_on_a_board_over_ssh(board_spec: str, wide_stack, digits8,
                                                     tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("EDGEKIT_CACHE", str(tmp_path))
    config = {"target": {"latency_ratio": 0.7, "on": board_spec}, "round_to": 32,
              "search_steps": 1, "proposal_batches": 2, "epochs": 0, "augment_shift": 0}
    out = ChannelPrune.from_config(config).apply(wide_stack, digits8)
    search = out.details["search"]
    assert search["target"]["on"] == board_spec
    assert search["steps"], "a 0.7 budget needs at least one cut"
    for step in search["steps"]:
        assert step["pair"]["child"] < step["pair"]["parent"]  # measured on the board
    last = search["confirmations"][-1]
    assert last["final"] / last["dense"] <= 0.7 and search["searched_figure"] <= search["budget"]
    assert keras_work(out.model)["macs"] < keras_work(wide_stack)["macs"]
    # the per-layer costs were measured on the board, and the table is keyed on it
    table = json.loads(Path(search["cost_table"]["path"]).read_text())
    assert table["key"]["on"] == board_spec and table["key"]["runtime"]["interpreter"]
    assert search["cost_table"]["misses"] == len(table["entries"]) > 0
