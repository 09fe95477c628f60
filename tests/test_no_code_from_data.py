"""No code from data: no shell string, no unpickling, no unsafe YAML, no Lambda code unless trusted.

* the source (edgekit, converters, device_bench, models, bench) builds no shell command line
  (``shell=True``, ``os.system``, ``os.popen``, ``subprocess.getoutput/getstatusoutput``), runs
  no ``eval``/``exec``/``pickle``/``marshal`` and loads YAML only with ``safe_load`` and arrays
  only with ``allow_pickle=False``, read from every call in the syntax tree;
* the SSH target's remote command line is quoted element by element for the remote shell (a
  real sshd run with such a name is in tests/device_bench/test_devbench_ssh.py);
* an ``.npz`` holding an object array, and a recipe with a ``!!python/object`` tag, are refused
  with one line;
* a Keras model with a ``Lambda`` layer (Python bytecode, which loading runs) is refused unless
  the user passes ``--unsafe-load`` (``.keras`` and legacy ``.h5`` alike).
"""

from __future__ import annotations

import ast
import shlex
import warnings
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.reliability("no-code")  # counted in RELIABILITY.md
REPO = Path(__file__).resolve().parents[1]
SOURCES = ("edgekit", "converters", "device_bench", "models", "bench")
# Calls that hand a string to a shell, or turn data into code.
FORBIDDEN_CALLS = {
    ("os", "system"), ("os", "popen"), ("subprocess", "getoutput"),
    ("subprocess", "getstatusoutput"), ("pickle", "load"), ("pickle", "loads"),
    ("marshal", "load"), ("marshal", "loads"), ("yaml", "load"), ("yaml", "unsafe_load"),
    ("yaml", "full_load"), ("yaml", "load_all"), ("yaml", "unsafe_load_all"),
}
FORBIDDEN_BUILTINS = {"eval", "exec"}


def _calls(path: Path) -> list[tuple[int, str, ast.Call]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name):
                found.append((node.lineno, f"{f.value.id}.{f.attr}", node))
            elif isinstance(f, ast.Attribute):
                found.append((node.lineno, f".{f.attr}", node))
            elif isinstance(f, ast.Name):
                found.append((node.lineno, f.id, node))
    return found


def _source_files() -> list[Path]:
    files = [p for d in SOURCES for p in sorted((REPO / d).rglob("*.py"))]
    assert len(files) > 100
    return files


def test_no_shell_strings_and_no_code_from_data_in_the_source() -> None:
    problems = []
    for path in _source_files():
        rel = path.relative_to(REPO)
        for line, name, call in _calls(path):
            module, _, attr = name.rpartition(".")
            if (module, attr) in FORBIDDEN_CALLS or (not module and name in FORBIDDEN_BUILTINS):
                problems.append(f"{rel}:{line}: {name}()")
            for kw in call.keywords:
                if kw.arg == "shell" and not (isinstance(kw.value, ast.Constant)
                                              and kw.value.value is False):
                    problems.append(f"{rel}:{line}: {name}(shell=...)")
    assert problems == [], "build an argument list instead:\n" + "\n".join(problems)


def test_every_np_load_refuses_pickles_explicitly() -> None:
    loads = []
    for path in _source_files():
        for line, name, call in _calls(path):
            if name in ("np.load", "numpy.load"):
                pickle = [kw for kw in call.keywords if kw.arg == "allow_pickle"]
                ok = len(pickle) == 1 and isinstance(pickle[0].value, ast.Constant) \
                    and pickle[0].value.value is False
                loads.append((f"{path.relative_to(REPO)}:{line}", ok))
    assert len(loads) >= 4  # data, calibration, kws cache, device inputs, qemu outputs
    assert [where for where, ok in loads if not ok] == []


def test_ssh_remote_command_keeps_a_hostile_name_one_word() -> None:
    from device_bench.runner import BenchOptions
    from device_bench.targets.ssh import SSHTarget

    name = "m $(touch PWNED);'x\".tflite"
    target = SSHTarget("board", user="pi")
    remote = target.run_command("/tmp/edgekit.X", name, BenchOptions(runs=20))
    cmd = target.ssh_command(remote)
    assert shlex.split(cmd[-1]) == remote  # what the remote shell parses is the argument list
    assert remote[-1] == f"/tmp/edgekit.X/{name}"


# ---------------------------------------------------------------- pickles and YAML tags
def _object_npz(path: Path) -> Path:
    np.savez(path, x=np.array([{"a": 1}, None], dtype=object), y=np.array([0, 1]))
    return path


def test_npz_with_an_object_array_is_refused(tmp_path: Path) -> None:
    from device_bench.errors import BenchInputError
    from device_bench.runner import _load_input_file
    from edgekit.converters import calibration_source
    from edgekit.core.errors import InputError
    from edgekit.data import load_npz

    path = _object_npz(tmp_path / "objects.npz")
    for load, error in ((load_npz, InputError), (calibration_source, InputError),
                        (_load_input_file, BenchInputError)):
        with pytest.raises(error) as err:
            load(str(path))
        text = str(err.value)
        assert "\n" not in text and "allow_pickle=False" in text and str(path) in text


def test_recipe_with_a_python_tag_is_refused(tmp_path: Path, monkeypatch) -> None:
    from edgekit.cli import main

    monkeypatch.chdir(tmp_path)
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: !!python/object/apply:os.system ['touch PWNED']\n")
    assert main(["run", str(recipe), "--plan"]) == 2
    assert not (tmp_path / "PWNED").exists()


def test_recipe_python_tag_message_is_one_line(tmp_path: Path, capsys) -> None:
    from edgekit.cli import main

    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: !!python/name:os.system\n")
    assert main(["run", str(recipe), "--plan"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not valid YAML" in err[0] and "python/name:os.system" in err[0]


# ---------------------------------------------------------------- Lambda layers
@pytest.fixture(scope="module")
def lambda_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A Dense model behind a Lambda whose code touches $EDGEKIT_TEST_PWNED when it runs."""
    from edgekit.core._keras import keras

    root = tmp_path_factory.mktemp("lambda")
    keras.utils.set_random_seed(0)
    inp = keras.Input((4,), name="features")
    touch = keras.layers.Lambda(lambda t: (__import__("pathlib").Path(
        __import__("os").environ.get("EDGEKIT_TEST_PWNED", "/dev/null")).touch(), t)[1],
        name="touch")
    model = keras.Model(inp, keras.layers.Dense(2)(touch(inp)))
    paths = {"keras": root / "lambda.keras", "h5": root / "lambda.h5"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "HDF5 ... legacy": the legacy format is the point
        for path in paths.values():
            model.save(path)
    rng = np.random.default_rng(0)
    x = rng.random((40, 4), np.float32)
    np.savez(root / "data.npz", x=x, y=(x[:, 0] > 0.5).astype(np.int64))
    paths["data"] = root / "data.npz"
    return paths


@pytest.mark.parametrize("kind", ["keras", "h5"])
def test_lambda_model_is_refused_without_unsafe_load(lambda_models, kind, tmp_path, capsys,
                                                     monkeypatch) -> None:
    from edgekit.cli import main

    pwned = tmp_path / "PWNED"
    monkeypatch.setenv("EDGEKIT_TEST_PWNED", str(pwned))
    model = lambda_models[kind]
    out = tmp_path / "m.tflite"
    code = main(["convert", str(model), "--data", str(lambda_models["data"]), "--mode",
                 "float32", "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err == [f"edgekit: error: model {str(model)!r} holds Python code (a Lambda layer) "
                   "that loading would run; pass --unsafe-load to trust it (unsafe_load: true "
                   "in a recipe)"]
    assert not pwned.exists() and not out.exists()


def test_lambda_model_loads_with_unsafe_load(lambda_models, tmp_path, capsys,
                                             monkeypatch) -> None:
    from edgekit.cli import main

    pwned = tmp_path / "PWNED"
    monkeypatch.setenv("EDGEKIT_TEST_PWNED", str(pwned))
    out = tmp_path / "m.tflite"
    code = main(["convert", str(lambda_models["h5"]), "--data", str(lambda_models["data"]),
                 "--mode", "float32", "--out", str(out), "--unsafe-load"])
    assert code == 0, capsys.readouterr().err
    assert out.is_file() and pwned.exists()  # the trusted file's code did run


def test_recipe_unsafe_load_trusts_the_model(lambda_models, tmp_path) -> None:
    from edgekit.core.errors import InputError
    from edgekit.pipeline import Pipeline
    from edgekit.recipe import Recipe

    raw = {"model": str(lambda_models["keras"]), "data": str(lambda_models["data"])}
    with pytest.raises(InputError, match="pass --unsafe-load to trust it"):
        Pipeline(Recipe.from_dict(raw), tmp_path / "a").resolve_inputs()
    trusted = Recipe.from_dict({**raw, "unsafe_load": True})
    assert trusted.to_dict()["unsafe_load"] is True
    assert "unsafe_load" not in Recipe.from_dict(raw).to_dict()  # saved only when true
    model, _, needs_training = Pipeline(trusted, tmp_path / "b").resolve_inputs()
    assert model.get_layer("touch") is not None and not needs_training


def test_unsafe_load_scope_ends_with_the_job(lambda_models) -> None:
    from edgekit.core.errors import InputError
    from edgekit.core.model_io import load_model, unsafe_load_scope

    with unsafe_load_scope():
        load_model(lambda_models["keras"])
    with pytest.raises(InputError, match="Lambda layer"):
        load_model(lambda_models["keras"])
    load_model(lambda_models["keras"], unsafe=True)
