"""The fuzz targets: every parser that reads a file a user hands edgekit, and what it may answer.

Each target runs one input through the real code a command runs and classifies what happened:

* ``ok``: a result;
* ``refused``: the documented error (``InputError``, or device_bench's ``BenchInputError`` /
  ``TargetError``), one non-empty line;
* ``crash``: anything else: another exception (named by file, line and type), a message of
  several lines, a hang past :data:`TIME_LIMIT_S`, or, for ``tflite_load``, a dead interpreter
  process (the signal named).

Targets (see ``tests/fuzz/fuzz_inputs.py`` for the inputs):

* ``tflite_inspect``: ``edgekit inspect``'s reader (``inspect_tflite``, ``weight_sparsity``,
  ``check_xnnpack_sparse``, ``tflite_work``, the text and JSON it prints);
* ``tflite_load``: device_bench loading and running the model (``run_benchmark``) in a sandbox
  process (:class:`InterpreterSandbox`);
* ``recipe``: ``Recipe.load`` of a ``.yaml`` / ``.json`` file, then ``to_yaml`` and reloading that;
* ``array_file``: ``--data`` ``.npz`` (``load_npz``, ``load_data``) and ``--calibration``
  ``.npz``/``.npy`` (``calibration_source(...).take`` for a float and an int8 input);
* ``image_folder``: ``--data`` image folders (``load_image_folder``) and calibration folders
  (``ImageFolderSource.take``); needs TensorFlow (image decoding).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fuzz_inputs
from hypothesis import strategies as st

REPO = fuzz_inputs.REPO
TIME_LIMIT_S = 20.0  # one input; a parser that takes longer hangs
WORKER = Path(__file__).resolve().parent / "interp_worker.py"


@dataclass(frozen=True)
class Outcome:
    """What one input did: ``kind`` ok / refused / crash, and the message or the fault."""

    kind: str
    detail: str = ""


class Hang(Exception):
    """An input ran past the time limit."""


@contextlib.contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    def _raise(signum: int, frame: Any) -> None:
        raise Hang(f"no answer within {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _where(exc: BaseException) -> str:
    """``file:line Type: message`` of the innermost frame in this repository."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if f.filename.startswith(str(REPO)) and "/tests/fuzz/" not in f.filename]
    frame = frames[-1] if frames else (traceback.extract_tb(exc.__traceback__) or [None])[-1]
    place = "?" if frame is None else f"{os.path.relpath(frame.filename, REPO)}:{frame.lineno}"
    first = (str(exc).strip().splitlines() or [""])[0][:200]
    return f"{place} {type(exc).__name__}: {first}"


def _one(run: Callable[[], Any], documented: tuple[type[BaseException], ...]) -> Outcome:
    try:
        run()
    except documented as e:
        text = str(e)
        if not text.strip() or "\n" in text:
            return Outcome("crash", f"{type(e).__name__} message is not one line: {text!r}")
        return Outcome("refused", f"{type(e).__name__}: {text}")
    except Hang:
        raise
    except Exception as e:  # RecursionError and MemoryError included
        return Outcome("crash", _where(e))
    return Outcome("ok")


def classify(runs: list[Callable[[], Any]],
             documented: tuple[type[BaseException], ...]) -> Outcome:
    """Runs each parser call under one time limit and classifies how they ended.

    Args:
        runs: The calls, each given the same input (a refusal of one does not stop the next).
        documented: The exception types they may raise (with a one-line message).

    Returns:
        The first crash, else ``refused`` when every call refused (its first message), else
        ``ok``.
    """
    outcomes: list[Outcome] = []
    try:
        with _time_limit(TIME_LIMIT_S):
            for run in runs:
                outcomes.append(_one(run, documented))
    except Hang as e:
        return Outcome("crash", f"hang: {e}")
    crashes = [o for o in outcomes if o.kind == "crash"]
    if crashes:
        return crashes[0]
    if all(o.kind == "refused" for o in outcomes):
        return outcomes[0]
    return Outcome("ok")


def _input_errors() -> tuple[type[BaseException], ...]:
    from edgekit.core.errors import INPUT_ERRORS

    return INPUT_ERRORS


# ---------------------------------------------------------------- targets
def run_inspect(data: bytes, workdir: Path) -> Outcome:
    """``edgekit inspect``: every reader of the flatbuffer, and what the command prints."""
    from edgekit.converters import (
        check_xnnpack_sparse,
        format_inspection,
        format_xnnpack_sparse,
        inspect_tflite,
        tflite_work,
        weight_sparsity,
    )

    def run() -> None:
        result = inspect_tflite(data)
        sparsity = weight_sparsity(data)
        sparse = check_xnnpack_sparse(data)
        tflite_work(data)
        format_inspection(result, sparsity)
        format_xnnpack_sparse(sparse)
        json.dumps({**result.to_dict(), "weight_sparsity": sparsity,
                    "xnnpack_sparse": sparse.to_dict()}, allow_nan=True)

    return classify([run], _input_errors())


class InterpreterSandbox:
    """A worker process (``interp_worker.py``) that runs models; restarted after each crash."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def _start(self) -> subprocess.Popen[bytes]:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
        self.starts += 1
        return subprocess.Popen([sys.executable, str(WORKER)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
                                cwd=REPO)

    def run(self, data: bytes) -> Outcome:
        """Sends one model; a dead or silent worker is the model's crash.

        Args:
            data: The model's bytes.

        Returns:
            The outcome.
        """
        from device_bench.tflite_check import describe_exit

        if self.proc is None or self.proc.poll() is not None:
            self.proc = self._start()
        proc = self.proc
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(struct.pack("<I", len(data)) + data)
            proc.stdin.flush()
            with _time_limit(TIME_LIMIT_S):
                line = proc.stdout.readline()
        except Hang:
            self.close()
            return Outcome("crash", f"hang: the interpreter gave no answer in {TIME_LIMIT_S:g} s")
        except BrokenPipeError:
            line = b""
        if not line:
            code = proc.wait(timeout=30)
            self.proc = None
            return Outcome("crash", f"the interpreter process died ({describe_exit(code)})")
        answer = json.loads(line)
        return Outcome("crash" if answer["kind"] == "error" else answer["kind"], answer["detail"])

    def close(self) -> None:
        """Stops the worker."""
        if self.proc is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()  # type: ignore[union-attr]
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None


def _write(workdir: Path, name: str, data: bytes) -> Path:
    path = workdir / name
    path.write_bytes(data)
    return path


def run_recipe(example: tuple[str, bytes], workdir: Path) -> Outcome:
    """``edgekit run RECIPE``: load, resolve, save as YAML, load that again."""
    from edgekit.recipe import Recipe

    suffix, data = example
    path = _write(workdir, f"recipe{suffix}", data)

    def run() -> None:
        recipe = Recipe.load(path)
        again = _write(workdir, "resolved.yaml", recipe.to_yaml().encode("utf-8"))
        Recipe.load(again)

    return classify([run], _input_errors())


CALIBRATION_SPECS = (("image", (6, 6, 1), "float32"), ("x", (None, 6, 1), "int8"),
                     ("features", (36,), "float32"))


def run_array_file(example: tuple[str, bytes], workdir: Path) -> Outcome:
    """``--data FILE.npz`` and ``--calibration FILE.npz|.npy``."""
    from edgekit.converters import InputSpec, calibration_source
    from edgekit.data import load_data, load_npz

    suffix, data = example
    path = _write(workdir, f"arrays{suffix}", data)

    runs: list[Callable[[], Any]] = []
    if suffix == ".npz":
        runs += [lambda: load_npz(path), lambda: load_data(str(path), input_shape=(6, 6, 1))]
    for name, shape, dtype in CALIBRATION_SPECS:
        spec = InputSpec(name, shape, dtype)
        runs.append(lambda spec=spec: calibration_source(str(path)).take([spec], 3, 0))
    return classify(runs, _input_errors())


def run_image_folder(folders: dict[str, list[tuple[str, bytes]]], workdir: Path) -> Outcome:
    """``--data IMAGE_DIR`` and ``--calibration IMAGE_DIR``."""
    from edgekit.converters import InputSpec, calibration_source
    from edgekit.data import load_image_folder

    root = workdir / "images"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir()
    for cls, files in folders.items():
        (root / cls).mkdir()
        for name, data in files:
            (root / cls / name).write_bytes(data)

    runs: list[Callable[[], Any]] = [
        lambda: load_image_folder(root, image_size=(6, 6), channels=1)]
    for resize in (True, False, [4, 4]):
        runs.append(lambda resize=resize: calibration_source(str(root), resize=resize).take(
            [InputSpec("image", (6, 6, 3))], 3, 0))
    return classify(runs, _input_errors())


@dataclass(frozen=True)
class Target:
    """One fuzz target: its inputs and how one is run."""

    name: str
    inputs: Callable[[], st.SearchStrategy[Any]]
    run: Callable[[Any, Path], Outcome]
    needs_tensorflow: bool = False


TARGETS: dict[str, Target] = {
    "tflite_inspect": Target("tflite_inspect", fuzz_inputs.tflite_inputs, run_inspect),
    "tflite_load": Target("tflite_load", fuzz_inputs.tflite_inputs,
                          lambda data, workdir: SANDBOX.run(data)),
    "recipe": Target("recipe", fuzz_inputs.recipe_inputs, run_recipe),
    "array_file": Target("array_file", fuzz_inputs.array_file_inputs, run_array_file),
    "image_folder": Target("image_folder", fuzz_inputs.image_folders, run_image_folder,
                           needs_tensorflow=True),
}
SANDBOX = InterpreterSandbox()
