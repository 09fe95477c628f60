"""The ``qemu-aarch64[:CPU]`` target: an emulated Raspberry Pi running the real aarch64 LiteRT.

qemu-user runs Debian's arm64 Python with PyPI's aarch64 numpy and ai-edge-litert wheels (the
sysroot :mod:`device_bench.arm_sysroot` builds and caches) under a board prefix that gives the
guest a Raspberry Pi's ``/proc/cpuinfo`` and ``/sys/devices/system/cpu``
(:mod:`device_bench.arm_boards`). Host files are visible to the guest as they are, so the model,
the input file and a fresh copy of the ``device_bench`` package are used in place.

One :meth:`QemuTarget.bench` runs three processes:

1. ``python -m device_bench`` in the guest: the usual ``edgekit.bench/1`` measurement. Its
   timings are emulated (``emulated: true``): they prove the model runs, not how fast a board is.
2. ``python -m device_bench.insn_probe`` in the guest, under the ``insn_count`` TCG plugin: the raw
   outputs for the seeded input, and the guest instructions executed per inference (one thread,
   counted between marker syscalls, empty-segment overhead subtracted): a deterministic ARM work
   figure for regression gates.
3. The same probe on the host (no emulation): the reference outputs.

Output check: the guest's raw output tensors are compared byte for byte with the host's
(``outputs_match_host``) and ``max_abs_diff`` is the largest element difference in the tensors' own
units (quantization steps for integer outputs). Integer outputs must be bit-identical: a
difference raises TargetError unless ``require_identical=False`` (then the flag is false and a
warning is printed). Float outputs may differ in the last bits between x86 and ARM kernels; their
difference is reported, never an error.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from device_bench.arm_boards import BOARDS, DEFAULT_CPU, board_for
from device_bench.arm_sysroot import (
    ArmSysroot,
    QemuInfo,
    SysrootVersions,
    ensure_sysroot,
    find_qemu,
)
from device_bench.child_output import ERROR_PREFIX, WARNING_PREFIX, relay_warnings
from device_bench.errors import BenchInputError, TargetError
from device_bench.insn_plugin import PluginBuild, ensure_plugin
from device_bench.remote_payload import copy_package
from device_bench.runner import BenchOptions
from device_bench.targets.base import TargetKind
from device_bench.tflite_check import describe_exit

__all__ = ["SPEC_PREFIX", "TARGET_KIND", "OutputCheck", "QemuTarget", "compare_outputs",
           "per_inference"]

SPEC_PREFIX = "qemu-aarch64"
_ERROR_PREFIXES = (ERROR_PREFIX, "device_bench.insn_probe: error: ")


def _warn(message: str) -> None:
    print(f"{WARNING_PREFIX}{message}", file=sys.stderr, flush=True)


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("INFO: ")]
    line = lines[-1] if lines else ""
    for prefix in _ERROR_PREFIXES:
        line = line.removeprefix(prefix)
    return line


@dataclass(frozen=True)
class OutputCheck:
    """How the guest's outputs compare with the host's.

    Attributes:
        match: Every output tensor is byte-for-byte identical (same dtype and shape).
        max_abs_diff: Largest ``|guest - host|`` over all elements (None when shapes differ).
        integer: Every output tensor has an integer dtype.
    """

    match: bool
    max_abs_diff: float | None
    integer: bool


def compare_outputs(host: dict[str, np.ndarray], guest: dict[str, np.ndarray]) -> OutputCheck:
    """Compares raw output tensors (``out0``, ``out1`` ...) of the host and the guest.

    Args:
        host: The host's outputs by name.
        guest: The guest's outputs by name.

    Returns:
        The comparison; NaNs in the same places count as equal in ``max_abs_diff``.
    """
    integer = all(np.asarray(a).dtype.kind in "iub" for a in host.values())
    if sorted(host) != sorted(guest):
        return OutputCheck(False, None, integer)
    match = True
    worst: float | None = 0.0
    for name, h in host.items():
        h, g = np.asarray(h), np.asarray(guest[name])
        if h.shape != g.shape or h.dtype != g.dtype:
            return OutputCheck(False, None, integer)
        if h.tobytes() != g.tobytes():
            match = False
        h64, g64 = h.astype(np.float64), g.astype(np.float64)
        diff = np.abs(g64 - h64)[~(np.isnan(h64) & np.isnan(g64))]
        if np.isnan(diff).any() or np.isinf(diff).any():
            worst = None  # NaN or infinity on one side only: no finite difference to report
        elif diff.size and worst is not None:
            worst = max(worst, float(diff.max()))
    return OutputCheck(match, worst, integer)


def per_inference(lines: list[dict[str, Any]], runs: int, segments: int) -> tuple[int, list[int]]:
    """Guest instructions per inference from the plugin's segment lines.

    Args:
        lines: The plugin's records ``{"tag", "instructions", "vcpus"}``: tag 0 is the empty
            segment (the markers' own cost), tags 1..``segments`` ran ``runs`` inferences each.
        runs: Inferences per counted segment.
        segments: Counted segments.

    Returns:
        (the median over segments of ``(count - empty) / runs`` rounded, each segment's value).

    Raises:
        TargetError: A segment is missing or a count went backwards.
    """
    by_tag = {int(rec["tag"]): int(rec["instructions"]) for rec in lines}
    missing = [t for t in range(segments + 1) if t not in by_tag]
    if missing or runs < 1:
        raise TargetError(f"the instruction-count plugin wrote no record for segment(s) {missing}")
    values = [(by_tag[t] - by_tag[0]) / runs for t in range(1, segments + 1)]
    if min(values) <= 0:
        raise TargetError(f"instruction counts per inference are not positive: {values}")
    return round(statistics.median(values)), [round(v) for v in values]


@dataclass(frozen=True)
class _Guest:
    qemu: QemuInfo
    sysroot: ArmSysroot
    plugin: PluginBuild


class QemuTarget:
    """An emulated Raspberry Pi (qemu-user) running the aarch64 LiteRT interpreter.

    Args:
        cpu: The emulated core: ``cortex-a53`` (Pi 3), ``cortex-a72`` (Pi 4) or ``cortex-a76``
            (Pi 5). It sets the CPU features the guest sees (XNNPACK picks kernels by them), not
            timing.
        timeout_s: Seconds each emulated or host process may run.
        cache_dir: Sysroot and plugin cache; None is ``$XDG_CACHE_HOME/edgekit/arm-sysroot``.
        qemu: The qemu-user executable; None prefers ``qemu-aarch64`` (loads plugins), then
            ``qemu-aarch64-static``.
        count_runs: Inferences per counted segment.
        count_segments: Counted segments (the figure is their median).
        count_warmup: Inferences before counting.
        require_identical: Integer outputs that differ from the host's raise TargetError.

    Raises:
        BenchInputError: An argument is out of range; an unknown ``cpu`` lists the accepted ones.
    """

    kind = "qemu"

    def __init__(
        self,
        cpu: str = DEFAULT_CPU,
        timeout_s: float = 600.0,
        cache_dir: str | os.PathLike[str] | None = None,
        *,
        qemu: str | None = None,
        count_runs: int = 10,
        count_segments: int = 3,
        count_warmup: int = 20,
        require_identical: bool = True,
    ) -> None:
        self.board = board_for(cpu)
        if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or timeout_s <= 0:
            raise BenchInputError(f"timeout_s must be a number > 0, got {timeout_s!r}")
        for name, value, low, high in [("count_runs", count_runs, 1, 100_000),
                                       ("count_segments", count_segments, 1, 62),
                                       ("count_warmup", count_warmup, 0, 100_000)]:
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise BenchInputError(f"{name} must be an integer in [{low}, {high}], "
                                      f"got {value!r}")
        self.cpu = cpu
        self.timeout_s = float(timeout_s)
        self.cache_dir = cache_dir
        self.qemu = qemu
        self.count_runs = count_runs
        self.count_segments = count_segments
        self.count_warmup = count_warmup
        self.require_identical = bool(require_identical)
        self._guest: _Guest | None = None

    @classmethod
    def from_spec(cls, spec: str, **kwargs: Any) -> QemuTarget:
        """Builds a target from ``qemu-aarch64`` or ``qemu-aarch64:CPU``.

        Args:
            spec: The target spec.
            **kwargs: Other constructor arguments.

        Returns:
            The target.

        Raises:
            BenchInputError: The spec is not of that form, or names an unknown CPU.
        """
        if not isinstance(spec, str) or not (spec == SPEC_PREFIX
                                             or spec.startswith(SPEC_PREFIX + ":")):
            raise BenchInputError(f"qemu target must be {SPEC_PREFIX}[:CPU], got {spec!r}")
        cpu = spec[len(SPEC_PREFIX) + 1:] if ":" in spec else DEFAULT_CPU
        if cpu not in BOARDS:
            raise BenchInputError(
                f"unknown CPU {cpu!r} in target {spec!r}; expected {SPEC_PREFIX} or "
                f"{SPEC_PREFIX}:CPU with CPU one of: {', '.join(sorted(BOARDS))}"
            )
        return cls(cpu=cpu, **kwargs)

    # ------------------------------------------------------------------------- set-up

    def prepare(self) -> dict[str, Any]:
        """Finds qemu and builds (or reuses) the sysroot and the counting plugin.

        Returns:
            ``{"qemu", "qemu_version", "sysroot", "sysroot_build_seconds", "plugin",
            "plugin_error"}`` (paths as str; the build time is the one recorded when the cached
            sysroot was built).

        Raises:
            TargetError: No qemu-user, or the sysroot build failed (the message names the step).
        """
        guest = self._prepared()
        return {
            "qemu": guest.qemu.path,
            "qemu_version": guest.qemu.version,
            "sysroot": str(guest.sysroot.path),
            "sysroot_build_seconds": guest.sysroot.manifest.get("build_seconds"),
            "plugin": str(guest.plugin.path) if guest.plugin.path else None,
            "plugin_error": guest.plugin.reason,
        }

    def _prepared(self) -> _Guest:
        if self._guest is None:
            qemu = find_qemu(self.qemu)
            sysroot = ensure_sysroot(SysrootVersions.for_host(qemu), self.cache_dir)
            plugin = ensure_plugin(qemu, self.cache_dir)
            if plugin.path is not None and "," in str(plugin.path):
                plugin = PluginBuild(None, f"plugin path {str(plugin.path)!r} has a comma, "
                                           "which qemu's -plugin option cannot take")
            self._guest = _Guest(qemu, sysroot, plugin)
        return self._guest

    def _guest_argv(self, guest: _Guest, plugin_out: Path | None = None) -> list[str]:
        argv = [guest.qemu.path, "-L", str(guest.sysroot.prefix(self.cpu)), "-cpu", self.cpu]
        if plugin_out is not None and guest.plugin.path is not None:
            argv += ["-plugin", f"{guest.plugin.path},out={plugin_out}"]
        return [*argv, str(guest.sysroot.python)]

    @staticmethod
    def _guest_env(package_parent: Path, guest: _Guest) -> dict[str, str]:
        """A fixed, minimal environment: the same guest state in every run (exact counts).

        Nothing of the host's environment reaches the guest (no host PYTHONPATH, LD_* or QEMU_*;
        no variable whose changing length would shift the guest's stack), no bytecode is
        written (the cache stays as built), and numpy's BLAS starts no threads.
        """
        return {
            "PATH": "/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "PYTHONPATH": os.pathsep.join([str(package_parent), str(guest.sysroot.site)]),
            "PYTHONNOUSERSITE": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONHASHSEED": "0",
            "OPENBLAS_NUM_THREADS": "1",
        }

    def _run(self, label: str, argv: list[str], env: dict[str, str],
             cwd: Path) -> subprocess.CompletedProcess[str]:
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=self.timeout_s,
                                  env=env, cwd=cwd, check=False)
        except subprocess.TimeoutExpired as e:
            raise TargetError(f"{label} timed out after {self.timeout_s:g} s") from e
        except OSError as e:
            raise TargetError(f"cannot start {argv[0]!r} for {label}: {e.strerror or e}") from e
        relay_warnings(proc.stderr)
        if proc.returncode == 2:
            raise BenchInputError(_last_line(proc.stderr) or f"{label}: bad input (exit 2)")
        if proc.returncode != 0:
            raise TargetError(f"{label} failed ({describe_exit(proc.returncode)}): "
                              f"{_last_line(proc.stderr) or 'no message'}")
        return proc

    # ------------------------------------------------------------------------- the check

    def _probe_argv(self, model: str, options: BenchOptions, json_out: Path, npz_out: Path,
                    runs: int) -> list[str]:
        argv = ["-m", "device_bench.insn_probe", model, "--json", str(json_out),
                "--outputs", str(npz_out), "--runs", str(runs),
                "--segments", str(self.count_segments), "--warmup", str(self.count_warmup),
                "--seed", str(options.seed)]
        if options.input_path is not None:
            argv += ["--input", options.input_path]
        if not options.xnnpack:
            argv.append("--no-xnnpack")
        return argv

    def _guest_probe(self, guest: _Guest, model: str, options: BenchOptions, tmp: Path,
                     env: dict[str, str]) -> tuple[Path, list[dict[str, Any]] | None, str | None]:
        """Runs the probe in the guest; returns (outputs .npz, plugin records, why no count)."""
        npz, record = tmp / "guest.npz", tmp / "guest.json"
        counts = tmp / "insn.jsonl"
        use_plugin = guest.plugin.path is not None
        reason = guest.plugin.reason
        argv = self._guest_argv(guest, counts if use_plugin else None)
        probe = self._probe_argv(model, options, record, npz, self.count_runs if use_plugin else 0)
        try:
            self._run(f"emulated probe of {model!r} on {self.cpu}", argv + probe, env, tmp)
        except TargetError as e:
            if not use_plugin or "plugin" not in str(e).lower():
                raise
            reason = f"qemu could not load the instruction-count plugin: {e}"
            counts.unlink(missing_ok=True)
            use_plugin = False
            self._run(f"emulated probe of {model!r} on {self.cpu}",
                      self._guest_argv(guest) + self._probe_argv(model, options, record, npz, 0),
                      env, tmp)
        if not use_plugin:
            return npz, None, reason
        try:
            lines = [json.loads(ln) for ln in counts.read_text(encoding="utf-8").splitlines()
                     if ln.strip()]
        except (OSError, ValueError) as e:
            return npz, None, f"the instruction-count plugin wrote no readable record: {e}"
        return npz, lines, None

    def _host_outputs(self, model: str, options: BenchOptions, tmp: Path,
                      package_parent: Path) -> Path:
        npz = tmp / "host.npz"
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(package_parent)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        )
        argv = [sys.executable, *self._probe_argv(model, options, tmp / "host.json", npz, 0)]
        self._run(f"host reference run of {model!r}", argv, env, tmp)
        return npz

    def _check(self, guest: _Guest, model: str, options: BenchOptions, tmp: Path,
               package_parent: Path) -> dict[str, Any]:
        env = self._guest_env(package_parent, guest)
        guest_npz, lines, count_reason = self._guest_probe(guest, model, options, tmp, env)
        arm: dict[str, Any] = {
            "qemu": guest.qemu.version,
            "qemu_cpu": self.cpu,
            "board": f"{self.board.model} (emulated)",
            "sysroot": guest.sysroot.key,
            "outputs_match_host": None,
            "max_abs_diff": None,
            "integer_outputs": None,
            "instructions_per_inference": None,
            "instructions_per_segment": None,
            "instruction_runs": None,
            "instruction_threads": None,
            "instructions_note": None,
        }
        try:
            host_npz = self._host_outputs(model, options, tmp, package_parent)
        except (TargetError, BenchInputError) as e:
            _warn(f"no host reference outputs, so the ARM outputs are not checked: {e}")
        else:
            with np.load(host_npz, allow_pickle=False) as h, \
                    np.load(guest_npz, allow_pickle=False) as g:
                check = compare_outputs({k: h[k] for k in h.files}, {k: g[k] for k in g.files})
            arm.update(outputs_match_host=check.match, max_abs_diff=check.max_abs_diff,
                       integer_outputs=check.integer)
            if check.integer and not check.match:
                message = (f"integer outputs of {model!r} on emulated {self.cpu} differ from the "
                           f"host's (max abs diff {check.max_abs_diff} quantization steps)")
                if self.require_identical:
                    raise TargetError(message)
                _warn(message)
        if lines is None:
            arm["instructions_note"] = count_reason
            _warn(f"instructions_per_inference is null: {count_reason}")
            return arm
        try:
            value, segments = per_inference(lines, self.count_runs, self.count_segments)
        except TargetError as e:
            arm["instructions_note"] = str(e)
            _warn(f"instructions_per_inference is null: {e}")
            return arm
        threads = max(int(rec.get("vcpus", 1)) for rec in lines)
        arm.update(instructions_per_inference=value, instructions_per_segment=segments,
                   instruction_runs=self.count_runs * self.count_segments,
                   instruction_threads=threads)
        if threads > 1:
            arm["instructions_note"] = (f"{threads} guest threads ran; the count may include "
                                        "other threads' work")
            _warn(arm["instructions_note"])
        return arm

    @staticmethod
    def _resolve(model_path: str, options: Any) -> tuple[str, BenchOptions]:
        if not isinstance(options, BenchOptions):
            raise BenchInputError(f"options must be BenchOptions, got {type(options).__name__}")
        model = Path(model_path)
        if not model.is_file():
            raise BenchInputError(f"model {os.fspath(model_path)!r} does not exist or is not a "
                                  "file; expected a .tflite file")
        if options.input_path is not None:
            options = replace(options, input_path=os.path.abspath(options.input_path))
        return str(model.resolve()), options

    def check(self, model_path: str, options: BenchOptions | None = None) -> dict[str, Any]:
        """Runs only the output check and the instruction count (no timings).

        Args:
            model_path: The ``.tflite`` file.
            options: ``seed``, ``input_path`` and ``xnnpack`` are used; None is the defaults.

        Returns:
            The ``arm`` block of a bench result.

        Raises:
            BenchInputError: The model or input is unusable (also on ARM).
            TargetError: qemu, the sysroot or a run failed, or integer outputs differ from the
                host's while ``require_identical``.
        """
        model, options = self._resolve(model_path, options or BenchOptions())
        guest = self._prepared()
        with tempfile.TemporaryDirectory(prefix="device_bench-qemu-") as tmp:
            package_parent = Path(tmp) / "pkg"
            package_parent.mkdir()
            copy_package(package_parent)
            return self._check(guest, model, options, Path(tmp), package_parent)

    # ------------------------------------------------------------------------- the benchmark

    def bench(self, model_path: str, options: BenchOptions) -> dict[str, Any]:
        """Benchmarks a model in the emulator, checks its outputs and counts its instructions.

        Args:
            model_path: The ``.tflite`` file on this machine.
            options: How to measure (emulated time: small ``runs``/``min_seconds`` suffice).

        Returns:
            The ``edgekit.bench/1`` dict with ``target.kind == "qemu"``, ``emulated: true``,
            ``target.cpu`` naming the emulated core and qemu, ``memory.peak_rss_mb`` null (the
            emulator's own is ``arm.emulator_peak_rss_mb``), governor/temperature/throttled null,
            plus ``arm``: ``qemu``, ``qemu_cpu``, ``board``, ``sysroot``, ``outputs_match_host``,
            ``max_abs_diff``, ``integer_outputs``, ``instructions_per_inference`` (int or null),
            ``instructions_per_segment``, ``instruction_runs``, ``instruction_threads``,
            ``instructions_note``, ``emulator_peak_rss_mb``.

        Raises:
            BenchInputError: The model, input or options are unusable (also on ARM).
            TargetError: qemu, the sysroot or a run failed, or integer outputs differ from the
                host's while ``require_identical``.
        """
        model, options = self._resolve(model_path, options)
        guest = self._prepared()
        with tempfile.TemporaryDirectory(prefix="device_bench-qemu-") as tmp_name:
            tmp = Path(tmp_name)
            package_parent = tmp / "pkg"
            package_parent.mkdir()
            copy_package(package_parent)
            out = tmp / "result.json"
            argv = [
                *self._guest_argv(guest), "-m", "device_bench", "--json", str(out),
                "--target-kind", self.kind, *options.to_argv(), "--", model,
            ]
            label = f"emulated benchmark of {model!r}"
            self._run(f"{label} on {self.cpu}", argv, self._guest_env(package_parent, guest), tmp)
            try:
                result = json.loads(out.read_text(encoding="utf-8"))
            except (OSError, ValueError) as e:
                raise TargetError(f"{label} wrote no valid JSON: {e}") from e
            if not isinstance(result, dict):
                raise TargetError(f"{label} wrote JSON that is not an object")
            arm = self._check(guest, model, options, tmp, package_parent)
        target = result.setdefault("target", {})
        target.update(
            kind=self.kind,
            cpu=f"{self.board.core} (emulated, qemu-aarch64 {guest.qemu.version})",
            machine=target.get("machine") or "aarch64",
            # The board's clocks, temperature and firmware do not exist under emulation.
            governor=None, temperature_c=None, throttled=None,
        )
        memory = result.setdefault("memory", {})
        arm["emulator_peak_rss_mb"] = memory.get("peak_rss_mb")
        memory["peak_rss_mb"] = None
        result.setdefault("model", {})["path"] = os.fspath(model_path)  # as given, like local
        result["emulated"] = True
        result["arm"] = arm
        return result


TARGET_KIND = TargetKind(
    name="qemu",
    scheme=SPEC_PREFIX,
    spec_form=f"{SPEC_PREFIX}[:CPU]",
    from_spec=QemuTarget.from_spec,
    example=f"{SPEC_PREFIX}:cortex-a72",
    emulated=True,
    order=30,
)
