"""device_bench.energy and power_profiles on sysfs trees laid out as on real devices.

The trees and command outputs are in ``data/energy`` (see its README for where each comes from).
Tests that write counters copy a tree to a temporary folder first.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from device_bench import energy, energy_sources
from device_bench import power_profiles as profiles
from device_bench.__main__ import format_summary
from device_bench.errors import BenchInputError
from device_bench.runner import BenchOptions, run_benchmark

DATA = Path(__file__).parent / "data" / "energy"
REPO = Path(__file__).resolve().parents[2]
PKG_MAX = 262143328850  # max_energy_range_uj of the package zones in the trees
PMIC_LOAD = (DATA / "vcgencmd" / "pi5_pmic_read_adc_load.txt").read_text()


def _copy(tree: str, dest: Path) -> Path:
    root = dest / tree
    shutil.copytree(DATA / tree, root, symlinks=True)
    return root


def _zone(root: Path, zone: str) -> Path:
    return root / "sys" / "class" / "powercap" / zone / "energy_uj"


def _add(path: Path, microjoules: int, max_range: int = PKG_MAX) -> None:
    # The reader takes a counter that went down as one pass of max_energy_range_uj.
    path.write_text(f"{(int(path.read_text()) + microjoules) % max_range}\n")


def _script(path: Path, body: str) -> Path:
    path.write_text(f"#!{sys.executable}\n{body}")
    path.chmod(0o755)
    return path


# ---- RAPL -------------------------------------------------------------------------------------


def test_rapl_sums_packages_and_their_dram_not_core(tmp_path: Path) -> None:
    root = _copy("rapl-intel-2socket", tmp_path)
    src = energy_sources.RaplSource(str(root))
    assert src.available() and src.read() == 0.0
    assert src.detail()["zones"] == ["intel-rapl:0 package-0", "intel-rapl:0:1 dram",
                                     "intel-rapl:1 package-1", "intel-rapl:1:1 dram"]
    for zone, uj in [("intel-rapl:0", 1_000_000), ("intel-rapl:0:0", 700_000),
                     ("intel-rapl:0:1", 200_000), ("intel-rapl:1", 3_000_000),
                     ("intel-rapl:1:0", 2_500_000), ("intel-rapl:1:1", 50_000)]:
        dram = zone in ("intel-rapl:0:1", "intel-rapl:1:1")
        _add(_zone(root, zone), uj, 65712999613 if dram else PKG_MAX)
    assert src.read() == pytest.approx(4.25, abs=1e-12)  # 1 + 0.2 + 3 + 0.05 J; cores inside


def test_rapl_laptop_counts_package_once_not_psys_or_mmio(tmp_path: Path) -> None:
    root = _copy("rapl-intel-laptop", tmp_path)
    src = energy_sources.RaplSource(str(root))
    assert src.available() and src.read() == 0.0
    _add(_zone(root, "intel-rapl:0"), 2_000_000)
    _add(_zone(root, "intel-rapl:1"), 9_000_000)  # psys: the whole platform, includes package
    _add(_zone(root, "intel-rapl-mmio:0"), 2_000_000)  # the same package through MMIO
    assert src.read() == pytest.approx(2.0, abs=1e-12)


def test_rapl_amd_zen_package(tmp_path: Path) -> None:
    root = _copy("rapl-amd-zen", tmp_path)
    src = energy_sources.RaplSource(str(root))
    assert src.available() and src.read() == 0.0
    _add(_zone(root, "intel-rapl:0"), 1_234_567)
    _add(_zone(root, "intel-rapl:0:0"), 1_000_000)
    assert src.read() == pytest.approx(1.234567, abs=1e-12)


def test_rapl_counter_wraps_at_max_energy_range(tmp_path: Path) -> None:
    root = _copy("rapl-amd-zen", tmp_path)
    counter = _zone(root, "intel-rapl:0")
    counter.write_text(f"{PKG_MAX - 300_000}\n")
    src = energy_sources.RaplSource(str(root))
    assert src.available() and src.read() == 0.0
    counter.write_text("500000\n")  # 300000 uJ to the top, then 500000 after the wrap
    assert src.read() == pytest.approx(0.8, abs=1e-12)
    for _ in range(3):  # three more wraps, each read inside one counter range
        _add(counter, PKG_MAX // 2 + 1)
        src.read()
        _add(counter, PKG_MAX // 2)
        src.read()
    assert src.read() == pytest.approx(0.8 + 3 * PKG_MAX / 1e6 + 3 * 1e-6, rel=1e-12)


def _as_other_user(code: str) -> subprocess.CompletedProcess[str] | None:
    """Runs stdlib-only Python as ``nobody`` (root reads any file, so the denial needs a user)."""
    python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else shutil.which("python3")
    try:
        return subprocess.run([python, "-c", code], user="nobody", cwd="/", capture_output=True,
                              text=True, timeout=60, env={"PYTHONPATH": str(REPO)}, check=False)
    except (OSError, subprocess.SubprocessError, TypeError):
        return None


def test_rapl_root_only_counter_warns_in_auto_and_fails_when_named() -> None:
    shared = Path(tempfile.mkdtemp(prefix="rapl-perm-"))  # pytest's tmp_path is 0700
    try:
        shared.chmod(0o755)
        root = _copy("rapl-intel-laptop", shared)
        for dirpath, dirnames, _ in os.walk(shared):
            for d in dirnames:
                os.chmod(os.path.join(dirpath, d), 0o755)
        _zone(root, "intel-rapl:0").chmod(0o400)  # as the kernel does since 5.10
        code = (
            "import json; from device_bench import energy as e; from device_bench.errors import "
            f"BenchInputError\nsrc, warnings = e.resolve_source('auto', {str(root)!r})\n"
            f"try:\n    e.resolve_source('rapl', {str(root)!r}); named = None\n"
            "except BenchInputError as err:\n    named = str(err)\n"
            "print(json.dumps({'src': src and src.name, 'warnings': warnings, 'named': named}))"
        )
        if os.geteuid() != 0:
            proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                  env={**os.environ, "PYTHONPATH": str(REPO)}, check=False)
        else:
            proc = _as_other_user(code)
        if proc is None or proc.returncode != 0:
            reason = "cannot run Python as an unprivileged user here"
            if os.environ.get("CI") == "true":
                pytest.fail(f"{reason}: {proc and proc.stderr}")
            pytest.skip(reason)
        out = json.loads(proc.stdout)
    finally:
        shutil.rmtree(shared)
    assert out["src"] is None  # nothing else in the tree: auto falls back to the estimate
    assert len(out["warnings"]) == 1 and "CVE-2020-8694" in out["warnings"][0]
    assert out["named"].startswith("energy source 'rapl' is not available here: ")
    assert "not readable by this user" in out["named"]


def test_energy_module_needs_only_the_standard_library() -> None:
    code = ("import sys; import device_bench.energy, device_bench.power_profiles; "
            "bad = sorted(m for m in ('numpy', 'tensorflow', 'edgekit') if m in sys.modules); "
            "print(bad)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


# ---- measurement ------------------------------------------------------------------------------


class FakeClock:
    """Seconds that only move when the test says so."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_measure_counter_tree_exact_with_injected_clock(tmp_path: Path) -> None:
    root = _copy("rapl-intel-2socket", tmp_path)
    clock = FakeClock()
    idle_w, per_inference_j, step_s = 40.0, 0.025, 2.0**-9  # binary-exact clock steps
    pkg0, core0 = _zone(root, "intel-rapl:0"), _zone(root, "intel-rapl:0:0")
    pkg0.write_text(f"{PKG_MAX - 1_000_000}\n")  # wraps during the idle baseline

    def advance(seconds: float, extra_j: float = 0.0) -> None:
        clock.now += seconds
        _add(pkg0, round((idle_w * seconds + extra_j) * 1e6))
        _add(core0, round(0.9 * (idle_w * seconds + extra_j) * 1e6))  # must not count

    src = energy_sources.RaplSource(str(root))
    assert src.available()
    result = energy.measure(src, lambda: advance(step_s, per_inference_j), seconds=0.25,
                            idle_seconds=2.0, interval_s=0, clock=clock, sleep=advance)
    assert result["measured"] is True and result["source"] == "rapl"
    assert result["inferences"] == 128 and result["window_s"] == 0.25
    assert result["idle_w"] == pytest.approx(idle_w, rel=1e-9)
    assert result["active_w"] == pytest.approx(idle_w + per_inference_j / step_s, rel=1e-9)
    assert result["mj_per_inference"] == pytest.approx(
        (per_inference_j + idle_w * step_s) * 1e3, rel=1e-9)
    assert result["mj_per_inference_above_idle"] == pytest.approx(per_inference_j * 1e3, rel=1e-9)


def test_measure_rapl_tree_advanced_by_a_writer_thread_within_1_percent(tmp_path: Path) -> None:
    """A writer thread moves energy_uj at a known rate in real time; each inference adds a known
    cost. Like the kernel's counter (read fresh from the MSR), the file is brought up to date
    right before each window boundary (after the idle wait, by each inference), so a writer
    thread delayed on a loaded machine cannot skew the boundaries; between them it keeps the
    counter moving (and wrapping) for the background samples.
    """
    root = _copy("rapl-amd-zen", tmp_path)
    counter = _zone(root, "intel-rapl:0")
    idle_w, per_inference_j = 5.0, 0.100
    state = {"uj": PKG_MAX - 6_000_000.0, "last": time.perf_counter()}  # wraps in the idle wait
    lock, stop = threading.Lock(), threading.Event()

    def update(extra_j: float = 0.0) -> None:  # publishes atomically: no half-written value
        with lock:
            now = time.perf_counter()
            state["uj"] += idle_w * (now - state["last"]) * 1e6 + extra_j * 1e6
            state["last"] = now
            tmp = counter.with_suffix(".tmp")
            tmp.write_text(f"{int(state['uj']) % PKG_MAX}\n")
            os.replace(tmp, counter)

    def writer() -> None:
        while not stop.is_set():
            update()
            time.sleep(0.001)

    def idle_wait(seconds: float) -> None:
        time.sleep(seconds)
        update()

    def inference() -> None:
        time.sleep(0.002)
        update(per_inference_j)

    thread = threading.Thread(target=writer, daemon=True)
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)  # a thread waiting on the GIL would hold back a fresh counter
    thread.start()
    try:
        src = energy_sources.RaplSource(str(root))
        assert src.available()
        update()
        result = energy.measure(src, inference, seconds=1.0, idle_seconds=1.5, sleep=idle_wait)
    finally:
        stop.set()
        thread.join()
        sys.setswitchinterval(switch)
    n, window = result["inferences"], result["window_s"]
    assert n >= 20 and result["samples"] >= 5  # boundary samples plus background ones
    assert result["idle_w"] == pytest.approx(idle_w, rel=0.01)
    assert result["mj_per_inference_above_idle"] == pytest.approx(per_inference_j * 1e3, rel=0.01)
    truth = (per_inference_j + idle_w * window / n) * 1e3
    assert result["mj_per_inference"] == pytest.approx(truth, rel=0.01)


# ---- hwmon ------------------------------------------------------------------------------------


def test_hwmon_ina226_power_input_among_other_sensors() -> None:
    src = energy_sources.HwmonSource(str(DATA / "hwmon-pi4-ina226"))
    assert src.available() and src.detail()["driver"] == "ina226"
    assert src.read() == 2.625  # power1_input 2625000 uW; cpu_thermal and rpi_volt skipped


def test_hwmon_ina3221_voltage_times_current_channel_1() -> None:
    src = energy_sources.HwmonSource(str(DATA / "hwmon-jetson-ina3221"))
    assert src.available()
    assert src.read() == pytest.approx(5.064 * 1.040, rel=1e-12)  # VDD_IN only, no double count


def test_hwmon_select_by_driver_or_folder_and_unknown_names() -> None:
    root = str(DATA / "hwmon-pi4-ina226")
    assert energy_sources.HwmonSource(root, "hwmon2").available()
    assert energy_sources.HwmonSource(root, "ina226").available()
    assert not energy_sources.HwmonSource(root, "cpu_thermal").available()  # no power attributes
    with pytest.raises(BenchInputError, match=r"energy source 'hwmon:ina219' is not available "
                                              r"here: no readable hwmon sensor 'ina219'"):
        energy.resolve_source("hwmon:ina219", root)


# ---- Raspberry Pi 5 PMIC ----------------------------------------------------------------------


def test_parse_pmic_adc_pairs_rails_by_name() -> None:
    rails = energy_sources.parse_pmic_adc(PMIC_LOAD)
    assert len(rails) == 12 and "EXT5V" not in rails and "BATT" not in rails
    assert rails["VDD_CORE"] == pytest.approx(6.22421 * 0.861733, rel=1e-12)
    assert sum(rails.values()) == pytest.approx(7.2399, abs=1e-4)
    assert energy_sources.parse_pmic_adc(PMIC_LOAD.replace("\n", "\x00")) == rails
    pi4 = (DATA / "vcgencmd" / "pi4_pmic_read_adc.txt").read_text()
    assert energy_sources.parse_pmic_adc(pi4) == {}


def test_pi5_pmic_source_runs_vcgencmd(tmp_path: Path) -> None:
    fake = _script(tmp_path / "vcgencmd",
                   "import sys\nassert sys.argv[1:] == ['pmic_read_adc'], sys.argv\n"
                   f"print(open({str(DATA / 'vcgencmd' / 'pi5_pmic_read_adc_load.txt')!r}).read())")
    src = energy_sources.Pi5PmicSource(str(fake))
    assert src.available() and src.detail()["rails"][-1] == "VDD_CORE"
    assert src.read() == pytest.approx(sum(energy_sources.parse_pmic_adc(PMIC_LOAD).values()))
    pi4 = _script(tmp_path / "vcgencmd4",
                  f"print(open({str(DATA / 'vcgencmd' / 'pi4_pmic_read_adc.txt')!r}).read())")
    with pytest.raises(BenchInputError, match="lists no rail"):
        energy.resolve_source("pi5-pmic", vcgencmd=str(pi4))
    with pytest.raises(BenchInputError, match="not on PATH"):
        energy.resolve_source("pi5-pmic", vcgencmd=str(tmp_path / "absent"))


# ---- battery (Android and other power_supply batteries) --------------------------------------


@pytest.mark.parametrize(("tree", "watts"), [
    ("battery-axp20x-discharging", 3.862 * 0.523),  # current_now x voltage_now
    ("battery-legion-go-s-discharging", 22.543),  # power_now
])
def test_battery_power_while_discharging(tree: str, watts: float) -> None:
    src = energy_sources.AndroidBatterySource(str(DATA / tree))
    assert src.available()
    assert src.read() == pytest.approx(watts, rel=1e-12)


def test_battery_on_charger_is_refused_when_named_and_skipped_by_auto() -> None:
    root = str(DATA / "android-moto-xt1072-full")
    with pytest.raises(BenchInputError, match=r"battery battery is 'Full', not 'Discharging'"):
        energy.resolve_source("android", root)
    assert energy.resolve_source("auto", root) == (None, [])


def test_battery_plugged_in_mid_run_gives_null_energy_and_a_warning(tmp_path: Path,
                                                                    monkeypatch) -> None:
    root = _copy("battery-axp20x-discharging", tmp_path)
    status = root / "sys" / "class" / "power_supply" / "axp20x-battery" / "status"
    calls = []

    def plug_in() -> None:
        calls.append(1)
        status.write_text("Charging\n")

    result, warnings = energy.bench_energy("android", plug_in, seconds=0.05,
                                           mean_latency_ms=1.0, threads=1, root=str(root),
                                           idle_seconds=0.0)
    assert result is None and calls
    assert warnings == ["energy source android failed mid-run: battery axp20x-battery changed to "
                        "'Charging' mid-run; energy is null"]


# ---- external meter ---------------------------------------------------------------------------


@pytest.mark.parametrize(("printed", "watts"), [
    ("2.5", 2.5), ("power: 2.5 W", 2.5), ("V=5.02 P=2500 mW", 2.5), ("1.2e1W", 12.0),
])
def test_meter_parses_the_last_number_as_watts(tmp_path: Path, printed: str, watts: float) -> None:
    meter = _script(tmp_path / "meter", f"print({printed!r})")
    src, _ = energy.resolve_source(f"meter:{meter} --watts")
    assert src is not None and src.read() == pytest.approx(watts)


def test_meter_trapezoid_over_a_ramp_is_exact(tmp_path: Path) -> None:
    level = tmp_path / "watts"
    level.write_text("1.0")
    meter = _script(tmp_path / "meter", f"print(open({str(level)!r}).read())")
    clock = FakeClock()

    def ramp(seconds: float) -> None:  # power rises linearly from 1 W by 2 W/s
        clock.now += seconds
        level.write_text(str(float(level.read_text()) + 2.0 * seconds))

    src = energy_sources.MeterSource(f"{meter}")
    result = energy.measure(src, lambda: ramp(0.25), seconds=1.0, idle_seconds=1.0,
                            interval_s=0, clock=clock, sleep=ramp)
    assert result["idle_w"] == pytest.approx(2.0)  # mean of 1 W .. 3 W
    assert result["inferences"] == 4 and result["active_w"] == pytest.approx(4.0)  # 3 .. 5 W
    assert result["mj_per_inference"] == pytest.approx(1000.0)  # 4 J over 4 runs
    assert result["mj_per_inference_above_idle"] == pytest.approx(500.0)


@pytest.mark.parametrize(("spec", "message"), [
    ("meter:", "energy source 'meter:' needs a command"),
    ("meter:'unclosed", "cannot be split"),
    ("watts", "energy must be one of auto, none, rapl, hwmon[:NAME], pi5-pmic, android, "
              "meter:CMD, profile[:BOARD]; got 'watts'"),
    ("hwmon:", "energy must be one of"),
    (3, "energy must be one of"),
])
def test_bad_specs_are_input_errors(spec: object, message: str) -> None:
    with pytest.raises(BenchInputError, match=message.replace("[", r"\[").replace("]", r"\]")):
        BenchOptions(energy=spec)  # type: ignore[arg-type]


def test_meter_that_prints_no_number_is_not_available(tmp_path: Path) -> None:
    meter = _script(tmp_path / "meter", "print('no reading yet')")
    with pytest.raises(BenchInputError, match=r"printed no number"):
        energy.resolve_source(f"meter:{meter}")


# ---- profiles and the estimate ----------------------------------------------------------------


@pytest.mark.parametrize(("tree", "key"), [
    ("hwmon-pi4-ina226", "rpi4b"), ("pi5-board", "rpi5"), ("hwmon-jetson-ina3221", None),
])
def test_profile_from_the_device_tree(tree: str, key: str | None) -> None:
    found = profiles.detect_profile(str(DATA / tree))
    assert (found and found.key) == key


def test_profile_x86_laptop_or_desktop(tmp_path: Path) -> None:
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc" / "cpuinfo").write_text("processor\t: 0\nvendor_id\t: GenuineIntel\n")
    assert profiles.detect_profile(str(tmp_path)).key == "x86-desktop"
    shutil.copytree(DATA / "battery-legion-go-s-discharging" / "sys", tmp_path / "sys",
                    symlinks=True)
    assert profiles.detect_profile(str(tmp_path)).key == "x86-laptop"


def test_estimate_is_marked_and_scales_with_busy_cores() -> None:
    pi4 = profiles.PROFILES["rpi4b"]
    one = profiles.estimate_energy(pi4, mean_latency_ms=2.0, threads=None, machine_cores=2)
    assert one["measured"] is False and one["source"] == "profile:rpi4b"
    assert one["active_w"] == pytest.approx(2.7 + (6.4 - 2.7) / 4)  # 1 of the Pi's 4 cores
    assert one["mj_per_inference"] == pytest.approx(one["active_w"] * 2.0)  # W x ms = mJ
    assert one["mj_per_inference_above_idle"] == pytest.approx((6.4 - 2.7) / 4 * 2.0)
    four = profiles.estimate_energy(pi4, mean_latency_ms=2.0, threads=8, machine_cores=2)
    assert four["active_w"] == pytest.approx(6.4)  # capped at the board's cores


def test_auto_with_an_ina226_measures_and_without_anything_estimates() -> None:
    measured, warnings = energy.bench_energy(
        "auto", lambda: time.sleep(0.001), seconds=0.2, mean_latency_ms=1.0, threads=1,
        root=str(DATA / "hwmon-pi4-ina226"), idle_seconds=0.1)
    assert warnings == [] and measured is not None and measured["measured"] is True
    assert measured["source"] == "hwmon" and measured["active_w"] == pytest.approx(2.625)
    estimated, warnings = energy.bench_energy(
        "auto", lambda: None, seconds=0.2, mean_latency_ms=1.0, threads=1,
        root=str(DATA / "pi5-board"))
    assert estimated["source"] == "profile:rpi5" and estimated["measured"] is False
    assert warnings == ["no energy source here; energy is an estimate from the Raspberry Pi 5 "
                        "power profile (measured: false)"]
    nothing, warnings = energy.bench_energy(
        "auto", lambda: None, seconds=0.2, mean_latency_ms=1.0, threads=1,
        root=str(DATA / "hwmon-jetson-ina3221" / "sys" / "firmware"))  # nothing under it
    assert nothing is None and warnings[-1].endswith("energy is null")
    with pytest.raises(BenchInputError, match="unknown power profile 'pi9'"):
        energy.bench_energy("profile:pi9", lambda: None, seconds=1, mean_latency_ms=1,
                            threads=1)


# ---- in the runner and its command line -------------------------------------------------------


def test_run_benchmark_energy_block_follows_the_contract(tiny) -> None:
    options = BenchOptions(runs=20, min_seconds=0.05, warmup=3, warmup_seconds=0.01,
                           energy="profile:rpi4b", energy_seconds=0.1)
    result = run_benchmark(tiny.int8, options)
    block = result["energy"]
    assert {"source", "measured", "mj_per_inference", "mj_per_inference_above_idle", "idle_w",
            "active_w"} <= set(block)
    assert block["source"] == "profile:rpi4b" and block["measured"] is False
    assert block["mj_per_inference"] == pytest.approx(
        block["active_w"] * result["latency_ms"]["mean"], rel=1e-6)
    assert BenchOptions.from_dict(result["options"]) == options
    assert options.to_argv()[-4:] == ["--energy", "profile:rpi4b", "--energy-seconds", "0.1"]
    summary = format_summary(result).splitlines()[-1]
    assert summary.startswith("energy ") and summary.endswith("ESTIMATE, profile:rpi4b)")


def test_cli_energy_auto_here_and_throttle_warning(tiny, tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _script(bin_dir / "vcgencmd", "print('throttled=0x50005')")  # under-voltage and throttled
    env = {**os.environ, "PYTHONPATH": str(REPO), "PATH": f"{bin_dir}{os.pathsep}"
           + os.environ.get("PATH", "")}
    proc = subprocess.run(
        [sys.executable, "-m", "device_bench", str(tiny.int8), "--json", "-", "--runs", "20",
         "--min-seconds", "0.05", "--energy", "auto", "--energy-seconds", "0.2"],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    warnings = [ln for ln in proc.stderr.splitlines() if ln.startswith("device_bench: warning")]
    assert result["target"]["throttled"] is True
    assert any("throttled or under-voltage" in ln for ln in warnings)
    block = result["energy"]
    if block["measured"]:  # a machine with a readable source (RAPL as root, a battery ...)
        assert block["active_w"] > 0 and block["inferences"] > 0
    else:  # this sandbox: no source, so the generic x86 (or board) estimate, said so
        assert block["source"].startswith("profile:")
        assert any("measured: false" in ln for ln in warnings)


def test_cli_bad_energy_spec_exits_2(tiny, run_cli, stderr_lines) -> None:
    proc = run_cli(str(tiny.int8), "--energy", "joulemeter")
    assert proc.returncode == 2
    assert stderr_lines(proc.stderr) == [
        "device_bench: error: energy must be one of auto, none, rapl, hwmon[:NAME], pi5-pmic, "
        "android, meter:CMD, profile[:BOARD]; got 'joulemeter'"]
    proc = run_cli(str(tiny.int8), "--energy", "auto", "--energy-seconds", "0")
    assert proc.returncode == 2
    assert stderr_lines(proc.stderr) == ["device_bench: error: energy_seconds must be > 0, got 0.0"]
