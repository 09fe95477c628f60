"""The layers of the house (docs/architecture.md): every import points down, and no cycle.

Read from the source (every ``import`` statement, also inside functions) and checked again at
run time in a fresh interpreter, which imports the modules layer by layer and looks at what
each layer pulled in. Also: the commands that need no TensorFlow do not load it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from import_graph import REPO, all_edges, cycles, internal_graph, module_files

MODULES = module_files()
EDGES = all_edges(MODULES)

# Lowest first. A module belongs to the layer of its longest matching prefix.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("bottom", ("edgekit.core", "device_bench.errors", "device_bench.atomicio",
                "device_bench.interrupts", "device_bench.config_keys", "device_bench.sizes",
                "device_bench.registry")),
    ("components", ("edgekit.converters", "edgekit.models", "edgekit.data", "device_bench")),
    ("compress", ("edgekit.compress",)),
    ("pipeline", ("edgekit.",)),  # the other modules of edgekit itself
    ("interface", ("edgekit", "edgekit.api", "edgekit.cli", "edgekit.__main__")),
]


def layer_of(module: str) -> int:
    """Index of ``module``'s layer in :data:`LAYERS`."""
    best, rank = -1, -1
    for i, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            matches = (module == prefix or module.startswith(prefix if prefix.endswith(".")
                                                             else prefix + "."))
            if matches and len(prefix) > best:
                best, rank = len(prefix), i
    if rank < 0:
        raise KeyError(f"{module} is in no layer")
    return rank


def package_of(module: str) -> str:
    """The package a module lives in (a package's ``__init__`` is the package itself)."""
    path = MODULES[module]
    return module if path.name == "__init__.py" else module.rpartition(".")[0]


def test_the_walk_sees_every_package() -> None:
    assert {"edgekit.core.errors", "edgekit.converters.modes", "edgekit.models.ds_cnn",
            "edgekit.compress.prune", "edgekit.pipeline", "device_bench.runner",
            "device_bench.targets.ssh", "edgekit.cli"} <= set(MODULES)
    assert any(e.in_function for e in EDGES)  # nested imports are read too


def test_every_module_is_in_a_layer() -> None:
    assert [m for m in MODULES if layer_of(m) < 0] == []
    assert layer_of("edgekit.core._keras") == 0 and layer_of("device_bench.sizes") == 0
    assert layer_of("device_bench.targets.ssh") == 1 and layer_of("edgekit.pipeline") == 3
    assert layer_of("edgekit.cli") == layer_of("edgekit") == 4


def test_no_module_imports_a_higher_layer() -> None:
    up = [f"{e.module} (layer {LAYERS[layer_of(e.module)][0]}) imports {e.target} (layer "
          f"{LAYERS[layer_of(e.target)][0]}) at line {e.line}"
          for e in EDGES if e.target in MODULES and layer_of(e.target) > layer_of(e.module)]
    assert up == []


def test_the_bottom_layer_imports_nothing_above_it() -> None:
    bottom = [m for m in MODULES if layer_of(m) == 0]
    assert "edgekit.core.errors" in bottom and "edgekit.core.model_io" in bottom
    imported = {e.target for e in EDGES if e.module in bottom and e.target in MODULES}
    assert imported <= set(bottom)


def test_device_bench_never_imports_edgekit() -> None:
    bad = [e for e in EDGES if e.module.startswith("device_bench")
           and e.target.split(".")[0] == "edgekit"]
    assert bad == []


def test_no_module_level_import_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"a"}}) == [["a", "b", "a"]]  # the finder finds one
    assert cycles(internal_graph(MODULES, EDGES)) == []


def test_no_package_level_import_cycle() -> None:
    graph: dict[str, set[str]] = {package_of(m): set() for m in MODULES}
    for e in EDGES:
        if e.target in MODULES and package_of(e.target) != package_of(e.module):
            graph[package_of(e.module)].add(package_of(e.target))
    assert {"edgekit", "edgekit.core", "edgekit.converters", "edgekit.compress"} <= set(graph)
    assert cycles(graph) == []


_LAYER_BY_LAYER = """
import importlib, json, sys
layers = json.loads(sys.argv[1])
seen, parents = {}, set()
for i, modules in enumerate(layers):
    for m in modules:
        importlib.import_module(m)
        # Python runs a package's __init__ before its modules: those parents are not pulled up.
        parts = m.split(".")
        parents.update(".".join(parts[:k]) for k in range(1, len(parts)))
    loaded = sorted(m for m in sys.modules if m not in parents
                    for j, later in enumerate(layers) if j > i and m in later)
    seen[i] = loaded
print(json.dumps({"pulled_up": seen, "tensorflow": "tensorflow" in sys.modules}))
"""


def test_fresh_interpreter_imports_every_module_layer_by_layer() -> None:
    order = [[m for m in MODULES if layer_of(m) == i and not m.endswith("__main__")]
             for i in range(len(LAYERS))]
    done = subprocess.run([sys.executable, "-c", _LAYER_BY_LAYER, json.dumps(order)],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    # Importing a layer loads nothing of the layers above it.
    assert all(pulled == [] for pulled in result["pulled_up"].values()), result["pulled_up"]
    # Importing every module of edgekit loads no TensorFlow: it loads on first use.
    assert result["tensorflow"] is False


_NO_TF = """
import json, sys, time
from edgekit.cli import main
t0 = time.perf_counter()
codes = [main(argv) for argv in json.loads(sys.argv[1])]
from edgekit.recipe import Recipe
recipe = Recipe.load(sys.argv[2])
print(json.dumps({"codes": codes, "stages": [s.class_name for s in recipe.stages],
                  "tensorflow": "tensorflow" in sys.modules,
                  "seconds": time.perf_counter() - t0}))
"""


@pytest.fixture()
def recipe_file(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(textwrap.dedent("""\
        model: demo_cnn
        data: digits
        stages:
          - {class_name: Prune, config: {final_sparsity: 0.5}}
          - {class_name: QAT, config: {}}
        convert: {mode: int8}
        bench: {targets: [local], runs: 20}
        """))
    return path


def test_inspect_bench_compare_models_and_recipe_validation_load_no_tensorflow(
        tmp_path, recipe_file) -> None:
    missing = str(tmp_path / "missing.tflite")
    argv = [["inspect", missing], ["bench", missing], ["models"],
            ["compare", str(tmp_path / "a"), str(tmp_path / "b")],
            ["run", str(tmp_path / "nope.yaml")]]
    done = subprocess.run([sys.executable, "-c", _NO_TF, json.dumps(argv), str(recipe_file)],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    # Bad input answers with exit 2 (models lists and exits 0); the recipe parses.
    assert result["codes"] == [2, 2, 0, 2, 2]
    assert result["stages"] == ["Prune", "QAT"]
    assert result["tensorflow"] is False
    assert "missing.tflite" in done.stderr


@pytest.fixture(scope="module")
def tiny_tflite(tmp_path_factory) -> str:
    """A real float .tflite (made here, in the test process, where TensorFlow may load)."""
    import tensorflow as tf

    from edgekit.core._keras import keras

    model = keras.Sequential([keras.layers.Input((8,)), keras.layers.Dense(4)])
    path = tmp_path_factory.mktemp("tflite") / "mlp.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    return str(path)


def test_inspect_and_bench_of_a_real_model_run_without_tensorflow(tiny_tflite, recipe_file) -> None:
    argv = [["inspect", tiny_tflite],
            ["bench", tiny_tflite, "--warmup", "1", "--runs", "5", "--min_seconds", "0"]]
    done = subprocess.run([sys.executable, "-c", _NO_TF, json.dumps(argv), str(recipe_file)],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["codes"] == [0, 0], done.stdout[-2000:]
    assert result["tensorflow"] is False
    assert "FULLY_CONNECTED" in done.stdout  # inspect listed the real op

