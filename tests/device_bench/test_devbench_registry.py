"""The registries (targets, energy sources) and the generic Registry they share.

Each test walks what is registered instead of a list of its own, so a new target or energy
source is covered the moment it exists.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from device_bench import energy
from device_bench.energy_base import ENERGY_SOURCES, Argument, EnergySource, SourcePlace
from device_bench.errors import BenchInputError
from device_bench.registry import Registry
from device_bench.runner import BenchOptions
from device_bench.targets import KNOWN_SPECS, Target, get_target, target_kinds
from device_bench.targets.base import spec_scheme

REPO = Path(__file__).resolve().parents[2]
KINDS = target_kinds()
ENERGY_KINDS = list(ENERGY_SOURCES)


# ---- Registry ---------------------------------------------------------------------------------


class Boom(ValueError):
    """A caller's own error type."""


def test_registry_lists_in_order_and_names_the_known_on_a_miss() -> None:
    reg: Registry[int] = Registry("stage", label=lambda n: f"#{n}", error=Boom)
    reg.register("prune", 1, order=5)
    reg.register("qat", 2)
    reg.register("distill", 3, order=5)
    assert reg.names() == ("qat", "prune", "distill")  # by order, then registration
    assert reg.labels() == ("#2", "#1", "#3")
    assert list(reg) == [2, 1, 3] and len(reg) == 3
    assert reg.items() == (("qat", 2), ("prune", 1), ("distill", 3))
    assert reg.get("prune") == 1 and "prune" in reg and "nope" not in reg and 3 not in reg
    with pytest.raises(Boom) as err:
        reg.get("prun")
    assert str(err.value) == "unknown stage 'prun'; expected one of: #2, #1, #3"
    with pytest.raises(Boom, match="unknown stage 7"):
        reg.get(7)  # type: ignore[arg-type]


def test_registry_refuses_a_second_item_under_a_name() -> None:
    reg: Registry[str] = Registry("criterion")
    assert reg.register("l1", "a") == "a"
    assert reg.register("l1", "a") == "a"  # the same declaration again: no change
    with pytest.raises(ValueError, match="criterion 'l1' is registered twice"):
        reg.register("l1", "b")
    for bad in ("", " l2", None):
        with pytest.raises(ValueError, match="name must be a non-empty string"):
            reg.register(bad, "c")  # type: ignore[arg-type]
    assert reg.names() == ("l1",)
    with pytest.raises(BenchInputError, match=r"^unknown criterion 'l2'; expected one of: l1$"):
        reg.get("l2")


# ---- targets ----------------------------------------------------------------------------------


def test_known_specs_come_from_the_registry() -> None:
    assert KNOWN_SPECS == tuple(kind.spec_form for kind in KINDS)
    assert [kind.name for kind in KINDS] == ["local", "ssh", "adb", "qemu"]
    with pytest.raises(BenchInputError) as err:
        get_target("nope://x")
    assert str(err.value) == f"unknown target 'nope://x'; expected one of: {', '.join(KNOWN_SPECS)}"


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_every_kind_builds_its_example_and_rejects_a_malformed_spec(kind) -> None:
    assert kind.spec_form in KNOWN_SPECS
    target = get_target(kind.example)
    assert isinstance(target, Target) and target.kind == kind.name
    assert type(target).__module__ == kind.from_spec.__module__  # built by its own module
    # A spec of this kind's scheme with garbage after it reaches the kind's own parser.
    malformed = kind.scheme + ("" if kind.scheme.endswith("://") else ":") + "?!bad value"
    assert spec_scheme(malformed) == kind.scheme
    with pytest.raises(BenchInputError) as err:
        get_target(malformed)
    message = str(err.value)
    assert repr(malformed) in message and "\n" not in message
    assert not message.startswith("unknown target")


def test_only_qemu_is_emulated() -> None:
    assert {kind.name for kind in KINDS if kind.emulated} == {"qemu"}


def _package_copy(dest: Path) -> Path:
    shutil.copytree(REPO / "device_bench", dest / "device_bench",
                    ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def _python(code: str, path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(path)}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, cwd=path, timeout=120, check=False)


def test_a_new_target_is_one_new_module(tmp_path: Path) -> None:
    root = _package_copy(tmp_path)
    (root / "device_bench" / "targets" / "echo.py").write_text(
        "from device_bench.targets.base import TargetKind, target_spec_error\n"
        "class EchoTarget:\n"
        "    kind = 'echo'\n"
        "    def __init__(self, spec): self.spec = spec\n"
        "    def bench(self, model_path, options): return {}\n"
        "    @classmethod\n"
        "    def from_spec(cls, spec):\n"
        "        if spec == 'echo://': raise target_spec_error('echo', spec, 'no name', 'echo://N')\n"
        "        return cls(spec)\n"
        "TARGET_KIND = TargetKind(name='echo', scheme='echo://', spec_form='echo://NAME',\n"
        "                         from_spec=EchoTarget.from_spec, example='echo://a', order=50)\n"
    )
    code = ("from device_bench.targets import KNOWN_SPECS, get_target\n"
            "from device_bench.__main__ import build_parser\n"
            "print(KNOWN_SPECS)\n"
            "print(get_target('echo://a').kind)\n"
            "print(build_parser().parse_args(['m.tflite', '--target-kind', 'echo']).target_kind)")
    proc = _python(code, root)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "('local', 'ssh://USER@HOST[:PORT]', 'adb://SERIAL', 'qemu-aarch64[:CPU]', 'echo://NAME')",
        "echo", "echo"]


def test_importing_the_targets_package_imports_no_remote_target() -> None:
    code = ("import sys, device_bench.targets\n"
            "print(sorted(m for m in sys.modules if m.startswith('device_bench.')))")
    proc = _python(code, REPO)
    assert proc.returncode == 0, proc.stderr
    loaded = proc.stdout.strip()
    for heavy in ("targets.qemu", "arm_sysroot", "insn_plugin", "targets.ssh", "targets.adb"):
        assert f"device_bench.{heavy}'" not in loaded


# ---- energy sources ---------------------------------------------------------------------------


def _example(kind) -> str:
    return kind.name if kind.argument is Argument.NONE else f"{kind.name}:x"


def test_energy_specs_and_auto_order_come_from_the_registry() -> None:
    assert energy.energy_specs() == ("auto", "none", *(k.form for k in ENERGY_KINDS))
    assert energy.ENERGY_SPECS == energy.energy_specs()
    assert energy.AUTO_ORDER == energy.auto_order() == ("rapl", "hwmon", "pi5-pmic", "android")
    assert [k.form for k in ENERGY_KINDS] == [
        "rapl", "hwmon[:NAME]", "pi5-pmic", "android", "meter:CMD", "profile[:BOARD]"]


@pytest.mark.parametrize("kind", ENERGY_KINDS, ids=lambda k: k.name)
def test_every_energy_kind_parses_and_builds(kind, tmp_path: Path) -> None:
    spec = _example(kind)
    parsed, argument = energy.parse_spec(spec)
    assert parsed is kind and argument == (None if kind.argument is Argument.NONE else "x")
    assert BenchOptions(energy=spec).energy == spec
    if kind.argument is Argument.OPTIONAL:
        assert energy.parse_spec(kind.name) == (kind, None)
    place = SourcePlace(root=str(tmp_path), vcgencmd=str(tmp_path / "no-vcgencmd"))
    if kind.measured:
        source = kind.make(argument, place)
        assert isinstance(source, EnergySource) and source.name == spec
        assert source.available() is False and source.why_unavailable  # an empty tree
        with pytest.raises(BenchInputError, match=rf"energy source '{spec}' is not available"):
            energy.resolve_source(spec, str(tmp_path), place.vcgencmd)
    else:
        assert energy.resolve_source(spec, str(tmp_path)) == (None, [])


@pytest.mark.parametrize("kind", ENERGY_KINDS, ids=lambda k: k.name)
def test_every_energy_kind_rejects_a_malformed_argument(kind) -> None:
    malformed = {Argument.NONE: f"{kind.name}:x", Argument.OPTIONAL: f"{kind.name}:",
                 Argument.REQUIRED: kind.name}[kind.argument]
    with pytest.raises(BenchInputError) as err:
        energy.parse_spec(malformed)
    assert "\n" not in str(err.value)
    assert str(err.value) == (f"energy must be one of {', '.join(energy.energy_specs())}; "
                              f"got {malformed!r}")


def test_unknown_energy_source_lists_the_registered_ones() -> None:
    with pytest.raises(BenchInputError) as err:
        energy.parse_spec("joulemeter")
    for kind in ENERGY_KINDS:
        assert kind.form in str(err.value)
    assert str(err.value).startswith("energy must be one of auto, none, ")


def test_auto_estimates_with_the_registered_profile_kind() -> None:
    block, warnings = energy.bench_energy(
        "auto", lambda: None, seconds=0.1, mean_latency_ms=2.0, threads=1,
        root=str(Path(__file__).parent / "data" / "energy" / "pi5-board"))
    assert block is not None and block["measured"] is False
    assert block["source"] == "profile:rpi5"
    assert warnings == ["no energy source here; energy is an estimate from the Raspberry Pi 5 "
                        "power profile (measured: false)"]
