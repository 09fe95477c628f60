"""Sweeps on a real local Ray cluster (ray_cluster.py): same results as the local executor, a
killed worker retried, a board never double-booked, failures and bad set-ups as one line.

One 2-CPU cluster on 127.0.0.1 serves the module. Its one custom resource is the board: the real
sshd of sshd_fixture.py, reached through a ``PATH`` whose ``ssh`` is the system client with the
test's config (OpenSSH reads ``~/.ssh/config`` from the passwd entry, not ``$HOME``, so a
config can only be given as ``-F``). The models are tiny (demo_cnn on 8x8 digits, 1-2 epochs).
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from ray_cluster import RayCluster, free_port, on_ci, start_cluster

# The real sshd helper lives beside the device_bench tests (on sys.path there, not here).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "device_bench"))
from sshd_fixture import start_sshd, write_ssh_shim

from edgekit.executor import board_resource, phase_file, read_record, schedule
from edgekit.executor_spec import ExecutorSpec
from edgekit.recipe import Recipe
from edgekit.sweep_progress import SweepProgress

REPO = Path(__file__).resolve().parents[2]
SPARSITY, MODE = "stages.0.config.final_sparsity", "convert.mode"


@pytest.fixture(scope="module")
def digits8(tmp_path_factory) -> Path:
    """The real digits at 8x8 as an .npz (x in [0, 1], y)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    path = tmp_path_factory.mktemp("data") / "digits8.npz"
    np.savez(path, x=(d.images / 16.0).astype(np.float32)[..., None], y=d.target)
    return path


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    """(target spec, ssh shim folder) of the real sshd board."""
    work = tmp_path_factory.mktemp("sshd")
    with start_sshd(work) as server:
        shim, spec = write_ssh_shim(server, work / "bin")
        yield spec, shim


@pytest.fixture(scope="module")
def path_with_shim(board):
    """This process's PATH with the shim first (the local executor benches on the board too)."""
    before = os.environ["PATH"]
    os.environ["PATH"] = f"{board[1]}{os.pathsep}{before}"
    yield os.environ["PATH"]
    os.environ["PATH"] = before


@pytest.fixture(scope="module")
def cluster(board, path_with_shim) -> RayCluster:
    with start_cluster(num_cpus=2, resources={board_resource(board[0]): 1},
                       env={"PATH": path_with_shim}) as c:
        yield c


def _recipe(digits8: Path, targets: list[str], **extra) -> dict:
    # Small batches: enough steps for BatchNormalization's moving statistics in 3 epochs.
    return {"model": "demo_cnn", "data": str(digits8),
            "train": {"epochs": 3, "learning_rate": 0.003, "batch_size": 8},
            "stages": [{"class_name": "Prune", "config": {"final_sparsity": 0.3, "epochs": 1,
                                                          "batch_size": 8}}],
            "convert": {"mode": "int8", "calibration_samples": 16, "float32_baseline": False,
                        "int8_baseline": False},
            "bench": {"targets": targets, "runs": 5, "warmup": 1, "min_seconds": 0.01,
                      "windows": 1},
            "budgets": {"max_accuracy_drop": 100.0},
            "sweep": {SPARSITY: [0.3, 0.6], MODE: ["int8", "int16x8"]}, **extra}


def _run(cli, recipe: dict, root: Path, *flags: str) -> tuple[int, str, dict | None]:
    """Runs ``edgekit run`` in-process; returns (exit code, stderr, sweep.json or None)."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))  # keep the sweep's axis order
    out = root / "out"
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = cli(["run", str(path), "--out", str(out), *flags])
    sweep = out / "sweep.json"
    return code, err.getvalue(), json.loads(sweep.read_text()) if sweep.exists() else None


def _kill_build_once(out: Path, candidate: str, killed: list[int], stop: threading.Event
                     ) -> None:
    """Kills (SIGKILL) the worker running ``candidate``'s build, half a second into it."""
    path = phase_file(out, candidate, "build")
    while not stop.is_set():
        rec = read_record(path)
        if rec and rec.get("finished") is None and time.time() - rec["started"] > 0.5:
            os.kill(int(rec["pid"]), signal.SIGKILL)
            killed.append(int(rec["pid"]))
            return
        time.sleep(0.02)


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory, cli, digits8, board, cluster):
    """The same 4-candidate sweep (benching on local and the board) on both executors; during
    the Ray run, the worker building c2 (which owns the 0.8 prune c3 reuses) is killed."""
    recipe = _recipe(digits8, ["local", board[0]])
    root = tmp_path_factory.mktemp("sweeps")
    local = _run(cli, recipe, root / "local")
    killed: list[int] = []
    stop = threading.Event()
    # The victim: the candidate that owns (computes first) the prune another one reuses.
    jobs = schedule(Recipe.from_dict(recipe).candidates())
    victim = next(o for j in jobs for o in j.needs.values() if o != jobs[0].name)
    watcher = threading.Thread(target=_kill_build_once,
                               args=(root / "ray" / "out", victim, killed, stop), daemon=True)
    watcher.start()
    try:
        ray = _run(cli, recipe, root / "ray", "--executor", f"ray:{cluster.address}")
    finally:
        stop.set()
        watcher.join(5)
    return {"local": local, "ray": ray, "root": root, "killed": killed, "victim": victim}


def _final(root: Path, c: dict) -> dict:
    report = json.loads((root / "out" / c["run"] / "report.json").read_text())
    return next(e for e in report["stages"] if e.get("final"))


def test_ray_sweep_gives_the_local_candidates_sizes_ops_and_accuracies(sweeps):
    (lcode, _, local), (rcode, _, ray) = sweeps["local"], sweeps["ray"]
    assert lcode == 0 and rcode == 0
    assert ray["executor"] == "ray" and local["executor"] == "local"
    assert [c["name"] for c in ray["candidates"]] == [c["name"] for c in local["candidates"]]
    assert len(ray["candidates"]) == 4
    for lc, rc in zip(local["candidates"], ray["candidates"], strict=True):
        assert rc["status"] == lc["status"] == "done"
        assert rc["params"] == lc["params"]
        # Same seeds, same stages before each one: the same figures, exactly (difference 0).
        for key in ("accuracy", "float_accuracy", "bytes", "gzip_bytes", "full_integer"):
            assert rc[key] == lc[key], (rc["name"], key)
        lf, rf = _final(sweeps["root"] / "local", lc), _final(sweeps["root"] / "ray", rc)
        assert rf["inspection"]["ops"] == lf["inspection"]["ops"]
        deliverable = Path(lf["artefact"]).name
        assert ((sweeps["root"] / "ray/out" / rc["run"] / deliverable).read_bytes()
                == (sweeps["root"] / "local/out" / lc["run"] / deliverable).read_bytes())
    # The Pareto front: the same without latency (accuracy, sizes); with it, each front is
    # consistent with its own measured latencies (two benchmark runs are never equal).
    from edgekit.sweep import pareto_front

    assert pareto_front(ray["candidates"], None) == pareto_front(local["candidates"], None)
    for sweep in (local, ray):
        assert sweep["pareto_front"] == pareto_front(sweep["candidates"], "local")


def test_shared_stages_run_once_then_the_candidates_fan_out(sweeps):
    _, _, ray = sweeps["ray"]
    root = sweeps["root"] / "ray" / "out"
    trained = {"float": 0, "prune": 0}
    for c in ray["candidates"]:
        report = json.loads((root / c["run"] / "report.json").read_text())
        for e in report["stages"][:2]:
            trained[e["name"]] += "reused" not in e
    assert trained == {"float": 1, "prune": 2}
    builds = sorted((c["timeline"]["build"]["started"], c["timeline"]["build"]["finished"])
                    for c in ray["candidates"])
    # Two candidates built at the same time (2 CPUs): the fan-out is real.
    assert any(b[0] < a[1] for a, b in itertools.pairwise(builds))


def test_a_killed_worker_is_retried_and_the_sweep_completes(sweeps):
    _, _, ray = sweeps["ray"]
    assert len(sweeps["killed"]) == 1, "the watcher never saw the build running"
    victim = next(c for c in ray["candidates"] if c["name"] == sweeps["victim"])
    assert victim["status"] == "done" and victim["timeline"]["build"]["attempts"] == 2
    rec = read_record(phase_file(sweeps["root"] / "ray" / "out", victim["name"], "build"))
    assert rec["pids"][0] == sweeps["killed"][0] and rec["pids"][1] != rec["pids"][0]
    assert all(c["status"] == "done" for c in ray["candidates"])


def _intervals(sweep: dict, phase: str) -> list[tuple[float, float]]:
    return sorted((c["timeline"][phase]["started"], c["timeline"][phase]["finished"])
                  for c in sweep["candidates"] if phase in c["timeline"])


def test_the_board_never_runs_two_benchmarks_and_local_benches_run_alone(sweeps, board):
    _, _, ray = sweeps["ray"]
    boards = _intervals(ray, f"bench {board[0]}")
    assert len(boards) == 4
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(boards)), boards
    # `local` benchmarks hold the whole (one) node: no build or report beside them.
    busy = _intervals(ray, "build") + _intervals(ray, "report")
    for start, end in _intervals(ray, "bench local"):
        assert not any(s < end and start < e for s, e in busy), (start, end)


def test_the_driver_shows_each_candidate_running_on_a_node_then_its_figures(sweeps):
    _, err, ray = sweeps["ray"]
    node = ray["candidates"][0]["timeline"]["build"]["node"]
    for c in ray["candidates"]:
        assert f"{c['name']}: running build on {node}" in err
        assert f"{c['name']}: done: {100 * c['accuracy']:.2f} %" in err
    assert f"{sweeps['victim']}: running build on {node} (attempt 2)" in err


def test_a_failing_candidate_is_marked_failed_while_the_others_finish(tmp_path, cli, digits8,
                                                                       cluster):
    recipe = _recipe(digits8, ["local"])
    recipe["stages"] = []
    recipe["train"] = {"epochs": 1, "batch_size": 64}
    recipe["sweep"] = {"convert.calibration": [None, str(tmp_path / "missing.npz")]}
    for flags in ((), ("--executor", f"ray:{cluster.address}")):
        code, err, sweep = _run(cli, recipe, tmp_path / (flags[1][:3] if flags else "local"),
                                *flags)
        assert code == 1, err
        good, bad = sweep["candidates"]
        assert good["status"] == "done" and good["pareto"] and sweep["pareto_front"] == [
            good["name"]]
        assert bad["status"] == "failed" and bad["failed_phase"] == "build"
        assert "missing.npz" in bad["error"] and sweep["failed"] == [bad["name"]]
        assert "candidate(s) failed: " + bad["name"] in err.strip().splitlines()[-1]
        md = (tmp_path / (flags[1][:3] if flags else "local") / "out" / "report.md").read_text()
        assert "FAILED (build)" in md


def test_a_bad_address_is_one_line_and_writes_nothing(tmp_path, cli, digits8):
    for flag, why in ((f"ray:127.0.0.1:{free_port()}", "no Ray cluster at '127.0.0.1:"),
                      ("ray:nohost", "expected auto or HOST:PORT"),
                      ("ray:127.0.0.1:99999", "the port must be a number")):
        code, err, _ = _run(cli, _recipe(digits8, ["local"]), tmp_path, "--executor", flag)
        assert code == 2 and len(err.strip().splitlines()) == 1 and why in err, err
        assert not (tmp_path / "out").exists()


def test_a_board_the_cluster_does_not_declare_is_one_line(tmp_path, cli, digits8, cluster):
    board = "ssh://pi@10.9.9.9:2222"
    code, err, _ = _run(cli, _recipe(digits8, ["local", board]), tmp_path, "--executor",
                        f"ray:{cluster.address}")
    last = err.strip().splitlines()[-1]
    assert code == 2 and last.startswith("edgekit: error: bench target 'ssh://pi@10.9.9.9:2222'")
    assert "--resources '{\"edgekit_board_ssh_10_9_9_9_2222\": 1}'" in last
    assert not (tmp_path / "out").exists()


def test_missing_ray_names_the_install_command(tmp_path, cli, digits8, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` meets without Ray
    code, err, _ = _run(cli, _recipe(digits8, ["local"]), tmp_path, "--executor", "ray")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "pip install 'edgekit[ray]'" in err and not (tmp_path / "out").exists()


_PRIVATE_DRIVER = textwrap.dedent("""\
    import subprocess, sys
    private, recipe, address = sys.argv[1:4]
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", private], check=True)
    from edgekit.cli import main
    sys.exit(main(["run", recipe, "--out", private + "/out", "--executor", "ray:" + address]))
""")


def test_a_sweep_folder_a_worker_cannot_see_is_one_line(tmp_path, digits8, cluster):
    # The driver's folder is a tmpfs in its own mount namespace: the cluster sees another
    # (empty) folder at that path, as a node without the shared mount would.
    private = tmp_path / "private"
    private.mkdir()
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(_recipe(digits8, ["local"])))
    cmd = ["unshare", "--mount", "--propagation", "private", "--", sys.executable, "-c",
           _PRIVATE_DRIVER, str(private), str(recipe), cluster.address]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=REPO,
                          env=cluster.env)
    if done.returncode != 2 and "unshare" in done.stderr and "Operation not permitted" in \
            done.stderr:
        (pytest.fail if on_ci() else pytest.skip)(f"cannot make a mount namespace: "
                                                  f"{done.stderr.strip()}")
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 2, done.stderr  # + the "N node(s)" line
    assert "is not usable on Ray node" in lines[-1] and "cannot read" in lines[-1]
    assert not (private / "out").exists()


def test_executor_spec_parsing_and_round_trip():
    spec = ExecutorSpec.from_value({"kind": "ray", "address": "10.0.0.1:6379",
                                    "cpus_per_candidate": 2})
    assert spec.to_value()["address"] == "10.0.0.1:6379"
    assert ExecutorSpec.from_value(spec.to_value()) == spec
    assert ExecutorSpec.from_cli("ray", spec) == spec
    assert ExecutorSpec.from_cli("ray:h:1", spec).cpus_per_candidate == 2
    assert ExecutorSpec.from_cli("local", spec) == ExecutorSpec()
    r = Recipe.from_dict({"executor": {"kind": "ray", "address": "auto"}})
    assert Recipe.from_dict(r.to_dict()).executor == r.executor
    assert "executor" not in Recipe.from_dict({}).to_dict()
    from edgekit.core.errors import InputError

    for bad, why in (({"kind": "ray", "adress": "auto"}, "unknown"),
                     ({"kind": "slurm"}, "expected one of local, ray"),
                     ({"kind": "ray", "cpus_per_candidate": 0}, "must be a number > 0"),
                     ({"address": "auto"}, "needs a kind"), ("rya", "must be 'local' or")):
        with pytest.raises(InputError, match=why):
            Recipe.from_dict({"executor": bad})
    assert board_resource("ssh://pi@10.0.0.7:2222?python=/usr/bin/python3") == \
        board_resource("ssh://root@10.0.0.7:2222") == "edgekit_board_ssh_10_0_0_7_2222"
    assert board_resource("local") is None and board_resource("qemu-aarch64") is None


def test_the_live_table_redraws_in_place_on_a_terminal():
    master, slave = os.openpty()
    with os.fdopen(slave, "w") as tty:
        progress = SweepProgress(["c0", "c1"], "local", stream=tty)
        assert progress.live
        progress.update("c0", "running", node="10.0.0.1", phase="build")
        progress.update("c1", "failed", error="build: boom")
        progress.close()
    text = b""
    with contextlib.suppress(OSError):
        while chunk := os.read(master, 65536):
            text += chunk
    os.close(master)
    screen = text.decode()
    assert "\x1b[4F" in screen  # cursor back up over the 4-line table, redrawn in place
    assert "c0  running   10.0.0.1         build" in screen.replace("\r", "")
    assert "build: boom" in screen and "1/2, 1 failed finished" in screen


@pytest.mark.slow
def test_an_interrupted_driver_resumes_from_the_stage_cache(tmp_path, cli, digits8, cluster):
    recipe = _recipe(digits8, ["local"])
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    out = tmp_path / "out"
    first = schedule(Recipe.from_dict(recipe).candidates())[0]
    driver = subprocess.Popen([sys.executable, "-m", "edgekit", "run", str(path), "--out",
                               str(out), "--executor", f"ray:{cluster.address}"], cwd=REPO,
                              env=cluster.env, stderr=subprocess.PIPE, text=True)
    try:
        record = phase_file(out, first.name, "build")
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not (read_record(record) or {}).get("stages"):
            assert driver.poll() is None, driver.stderr.read()
            time.sleep(0.05)
        driver.send_signal(signal.SIGINT)  # Ctrl-C once the float model is recorded
        _, err = driver.communicate(timeout=60)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    assert driver.returncode == 130, err
    assert "`edgekit run --resume` continues" in err.strip().splitlines()[-1]
    assert not (out / "sweep.json").exists()
    code, err, sweep = _run(cli, recipe, tmp_path, "--executor", f"ray:{cluster.address}",
                            "--resume")
    assert code == 0, err
    floats = [json.loads((out / c["run"] / "report.json").read_text())["stages"][0]
              for c in sweep["candidates"]]
    assert all("reused" in f for f in floats)  # nobody trained the float model again
