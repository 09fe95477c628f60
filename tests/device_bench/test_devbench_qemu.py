"""The ``qemu-aarch64`` target: the real aarch64 LiteRT interpreter under real qemu-user.

Set-up (once per machine, then cached): qemu-user and gcc are installed with apt-get when missing
(root), the arm64 sysroot is built into the user's cache (``~/.cache/edgekit/arm-sysroot``) and
the instruction-count plugin is compiled. With ``CI=true`` a set-up that cannot be done fails the
tests; otherwise they skip and say why.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from qemu_fixture import prepare_qemu, unavailable

from device_bench import sysinfo
from device_bench.arm_boards import BOARDS, write_board_tree
from device_bench.arm_sysroot import (
    SysrootVersions,
    ensure_sysroot,
    find_qemu,
    install_host_tools,
)
from device_bench.errors import BenchInputError, TargetError
from device_bench.insn_plugin import ensure_plugin
from device_bench.insn_probe import main as probe_main
from device_bench.runner import BenchOptions, run_benchmark
from device_bench.targets import QemuTarget, Target, get_target
from device_bench.targets.qemu import compare_outputs, per_inference

FAST = BenchOptions(runs=20, min_seconds=0.05, warmup=2, warmup_seconds=0.0, windows=2)


@pytest.fixture(scope="session")
def qemu_setup() -> dict:
    """qemu-user + gcc installed, the sysroot built and the plugin compiled (or why not)."""
    return prepare_qemu()


@pytest.fixture(scope="session")
def plugin(qemu_setup: dict) -> str:
    """The compiled instruction-count plugin."""
    if qemu_setup["plugin"] is None:
        unavailable(f"the instruction-count plugin cannot be built: {qemu_setup['plugin_error']}")
    return qemu_setup["plugin"]


# ----------------------------------------------------------------------------- no qemu needed


def test_spec_picks_the_board() -> None:
    default = get_target("qemu-aarch64")
    assert isinstance(default, QemuTarget) and isinstance(default, Target)
    assert (default.kind, default.cpu) == ("qemu", "cortex-a72")
    assert default.board.model == "Raspberry Pi 4 Model B Rev 1.1"
    pi3 = QemuTarget.from_spec("qemu-aarch64:cortex-a53")
    assert (pi3.cpu, pi3.board.core) == ("cortex-a53", "Cortex-A53")
    assert QemuTarget.from_spec("qemu-aarch64:cortex-a76").board.model.startswith("Raspberry Pi 5")


@pytest.mark.parametrize("spec", ["qemu-aarch64:cortex-x9", "qemu-aarch64:", "qemu-aarch64:max"])
def test_unknown_cpu_is_a_one_line_error_listing_the_accepted(spec: str) -> None:
    with pytest.raises(BenchInputError) as err:
        get_target(spec)
    message = str(err.value)
    assert "\n" not in message
    assert spec in message
    assert "cortex-a53, cortex-a72, cortex-a76" in message


@pytest.mark.parametrize("kwargs", [{"timeout_s": 0}, {"count_runs": 0},
                                    {"count_segments": 63}, {"cpu": "cortex-a57"}])
def test_constructor_rejects_bad_arguments(kwargs: dict) -> None:
    with pytest.raises(BenchInputError) as err:
        QemuTarget(**kwargs)
    assert "\n" not in str(err.value)


def test_compare_outputs_is_bytewise() -> None:
    same = compare_outputs({"out0": np.array([[1, -2]], np.int8)},
                           {"out0": np.array([[1, -2]], np.int8)})
    assert (same.match, same.max_abs_diff, same.integer) == (True, 0.0, True)
    one_step = compare_outputs({"out0": np.array([[1, -128]], np.int8)},
                               {"out0": np.array([[1, 127]], np.int8)})
    # Compared in float64: int8 subtraction would wrap around to 1.
    assert (one_step.match, one_step.max_abs_diff, one_step.integer) == (False, 255.0, True)
    floats = compare_outputs({"out0": np.array([0.5, np.nan], np.float32)},
                             {"out0": np.array([0.5 + 2**-24, np.nan], np.float32)})
    assert floats.match is False and floats.integer is False
    assert floats.max_abs_diff == pytest.approx(2**-24)
    reshaped = compare_outputs({"out0": np.zeros((1, 4), np.int8)},
                               {"out0": np.zeros((4,), np.int8)})
    assert (reshaped.match, reshaped.max_abs_diff) == (False, None)


def test_per_inference_subtracts_the_empty_segment() -> None:
    lines = [{"tag": 63, "instructions": 10**9, "vcpus": 1},  # the warm-up: ignored
             {"tag": 0, "instructions": 4000, "vcpus": 1},
             {"tag": 1, "instructions": 4000 + 10 * 1200, "vcpus": 1},
             {"tag": 2, "instructions": 4000 + 10 * 1000, "vcpus": 1},
             {"tag": 3, "instructions": 4000 + 10 * 1001, "vcpus": 1}]
    assert per_inference(lines, runs=10, segments=3) == (1001, [1200, 1000, 1001])
    with pytest.raises(TargetError, match=r"segment\(s\) \[3\]"):
        per_inference(lines[:-1], runs=10, segments=3)


def test_board_tree_reads_as_the_board(tmp_path: Path) -> None:
    sysroot = tmp_path / "root"
    for name in ("usr", "lib", "etc"):
        (sysroot / name).mkdir(parents=True)
    prefix = write_board_tree(tmp_path / "boards" / "cortex-a72", "cortex-a72", sysroot)
    # The same reader the guest uses sees the Pi 4, not this x86 host.
    assert sysinfo.cpu_model(str(prefix)) == "Raspberry Pi 4 Model B Rev 1.1 (ARM Cortex-A72)"
    cpuinfo = sysinfo.parse_cpuinfo((prefix / "proc" / "cpuinfo").read_text())
    assert [b["processor"] for b in cpuinfo[:4]] == ["0", "1", "2", "3"]
    cpu = prefix / "sys" / "devices" / "system" / "cpu"
    assert (cpu / "possible").read_text() == "0-3\n"
    assert (cpu / "cpu3" / "cpufreq" / "cpuinfo_max_freq").read_text() == "1500000\n"
    assert sysinfo.read_temperature_c(str(prefix)) is None  # the host's zones are hidden
    link = prefix / "usr"
    assert link.is_symlink() and not os.path.isabs(os.readlink(link))
    assert link.resolve() == (sysroot / "usr").resolve()
    a76 = BOARDS["cortex-a76"].cpuinfo()
    assert "asimddp" in a76 and "0xd0b" in a76  # dotprod: XNNPACK picks other int8 kernels


def test_probe_marker_is_harmless_outside_qemu(tiny, tmp_path: Path) -> None:
    # On the host the marker syscall fails with ENOSYS and the model runs as usual.
    out, npz = tmp_path / "probe.json", tmp_path / "out.npz"
    assert probe_main([str(tiny.int8), "--json", str(out), "--outputs", str(npz),
                       "--runs", "3", "--segments", "2", "--warmup", "1"]) == 0
    record = json.loads(out.read_text())
    assert record["marker_errno"] == "ENOSYS"
    assert record["threads"] == 1 and record["segments"] == 2
    with np.load(npz) as saved:
        assert saved["out0"].dtype == np.int8 and saved["out0"].shape == (1, 4)


def test_runner_marks_qemu_results_emulated(tiny) -> None:
    assert run_benchmark(tiny.int8, FAST, target_kind="qemu")["emulated"] is True
    assert run_benchmark(tiny.int8, FAST, target_kind="local")["emulated"] is False


# ----------------------------------------------------------------------------- real qemu


def test_int8_model_runs_on_emulated_pi4_bit_identical(qemu_setup, plugin, tiny) -> None:
    result = QemuTarget().bench(str(tiny.int8), FAST)
    assert result["schema"] == "edgekit.bench/1"
    assert result["model"]["path"] == str(tiny.int8)
    assert result["model"]["sha256"] == hashlib.sha256(tiny.int8.read_bytes()).hexdigest()
    assert result["emulated"] is True
    target = result["target"]
    assert target["kind"] == "qemu"
    assert target["cpu"] == f"Cortex-A72 (emulated, qemu-aarch64 {qemu_setup['qemu_version']})"
    # platform.machine() and uname inside the guest: it really ran as aarch64, on a 4-core board.
    assert target["machine"] == "aarch64" and "aarch64" in target["os"]
    assert target["cores"] == 4
    assert (target["governor"], target["temperature_c"], target["throttled"]) == (None,) * 3
    assert result["runtime"]["interpreter"] == "ai_edge_litert"
    assert result["latency_ms"]["p50"] > 0 and result["runs"] >= 20
    assert result["memory"]["peak_rss_mb"] is None
    arm = result["arm"]
    assert arm["outputs_match_host"] is True
    assert arm["max_abs_diff"] == 0.0 and arm["integer_outputs"] is True
    assert arm["qemu_cpu"] == "cortex-a72"
    assert arm["board"] == "Raspberry Pi 4 Model B Rev 1.1 (emulated)"
    assert isinstance(arm["instructions_per_inference"], int)
    assert arm["instructions_per_inference"] > 0
    assert arm["instruction_threads"] == 1
    assert arm["emulator_peak_rss_mb"] > 0


def test_instruction_count_repeats_and_tells_int8_from_float(qemu_setup, plugin, tiny) -> None:
    target = QemuTarget()
    first = target.check(str(tiny.int8))
    second = target.check(str(tiny.int8))
    a, b = first["instructions_per_inference"], second["instructions_per_inference"]
    assert abs(a - b) <= 0.005 * a, (first, second)
    flt = target.check(str(tiny.float32))
    assert flt["integer_outputs"] is False
    # x86 and ARM float kernels may differ in the last bits; it is reported, not an error.
    assert flt["max_abs_diff"] is not None and flt["max_abs_diff"] < 1e-5
    assert flt["instructions_per_inference"] != a


@pytest.mark.parametrize("name", ["uint8", "int16"])
def test_other_integer_models_bit_identical(qemu_setup, tiny, name: str) -> None:
    arm = QemuTarget(cpu="cortex-a53").check(str(getattr(tiny, name)), BenchOptions(seed=3))
    assert (arm["outputs_match_host"], arm["max_abs_diff"]) == (True, 0.0)


def test_input_file_reaches_the_guest(qemu_setup, tiny, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # a relative path must work although the guest runs elsewhere
    np.save(tmp_path / "x.npy", tiny.x[:1])
    arm = QemuTarget().check(str(tiny.int8), BenchOptions(input_path="x.npy"))
    assert (arm["outputs_match_host"], arm["max_abs_diff"]) == (True, 0.0)
    np.save(tmp_path / "bad.npy", np.zeros((3, 5), np.float32))
    with pytest.raises(BenchInputError, match=r"bad\.npy.*shape \[3, 5\]"):
        QemuTarget().check(str(tiny.int8), BenchOptions(input_path="bad.npy"))


def test_second_use_reuses_the_cache(qemu_setup) -> None:
    entry = Path(qemu_setup["sysroot"])
    manifest = entry / "manifest.json"
    before = (entry.stat().st_ino, manifest.stat().st_mtime_ns, manifest.read_text())
    again = QemuTarget(cpu="cortex-a76").prepare()
    assert again["sysroot"] == qemu_setup["sysroot"]
    assert again["plugin"] == qemu_setup["plugin"]
    assert (entry.stat().st_ino, manifest.stat().st_mtime_ns, manifest.read_text()) == before
    assert not list(entry.parent.glob(".build-*"))


def test_qemu_without_plugin_support_gives_null_count_and_says_why(qemu_setup, tiny,
                                                                   capsys) -> None:
    if shutil.which("qemu-aarch64-static") is None:
        try:
            install_host_tools(["qemu-user-static"])
        except TargetError as e:
            unavailable(f"qemu-user-static is missing and cannot be installed: {e}")
    arm = QemuTarget(qemu="qemu-aarch64-static").check(str(tiny.int8))
    assert arm["outputs_match_host"] is True
    assert arm["instructions_per_inference"] is None
    assert "no -plugin option" in arm["instructions_note"]
    assert "instructions_per_inference is null" in capsys.readouterr().err


def test_corrupt_model_is_bad_input_from_the_guest(qemu_setup, corrupt_model) -> None:
    with pytest.raises(BenchInputError) as err:
        QemuTarget().bench(str(corrupt_model), FAST)
    assert "not a valid TFLite flatbuffer" in str(err.value)
    with pytest.raises(BenchInputError, match="does not exist"):
        QemuTarget().bench(str(corrupt_model) + ".missing", FAST)


@pytest.mark.slow
def test_fresh_build_is_atomic_and_built_once(qemu_setup, tmp_path: Path) -> None:
    # Two builders at once on an empty cache: one builds, the other waits and reuses it.
    versions = SysrootVersions.for_host(find_qemu())
    results: list = []

    def build() -> None:
        results.append(ensure_sysroot(versions, tmp_path))

    threads = [threading.Thread(target=build) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 2 and results[0].path == results[1].path
    assert results[0].manifest == results[1].manifest  # the second waited and reused the first
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [versions.key(), f".{versions.key()}.lock"])
    assert (results[0].python).is_file()
    # The plugin from scratch too: qemu-plugin.h from the Debian source package, then gcc.
    plugin = ensure_plugin(find_qemu(), tmp_path)
    assert plugin.reason is None and plugin.path.is_file()
    assert plugin.path.is_relative_to(tmp_path)
