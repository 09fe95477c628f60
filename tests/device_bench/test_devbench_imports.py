"""What device_bench imports, read from its source with ``ast`` (every ``import`` statement,
at module level or inside a function).

device_bench runs on the device with numpy and a TFLite interpreter only: no module may import
edgekit or TensorFlow. (``device_bench.interpreter`` falls back to ``tensorflow.lite`` by name,
through ``importlib``, when neither LiteRT nor tflite_runtime is installed: the documented last
resort, not an ``import`` statement.) Its own modules import each other in one direction: the
graph has no cycle, and no internal import hides inside a function to dodge one.
"""

from __future__ import annotations

import pytest
from import_graph import all_edges, cycles, internal_graph, module_files, reaches

FORBIDDEN = ("edgekit", "tensorflow", "tf_keras", "keras")
MODULES = module_files(["device_bench"])
EDGES = all_edges(MODULES)


def test_the_walk_sees_the_package() -> None:
    assert {"device_bench.runner", "device_bench.targets", "device_bench.targets.ssh",
            "device_bench.arm_sysroot", "device_bench.insn_plugin"} <= set(MODULES)
    assert any(e.target == "numpy" for e in EDGES)  # it reads real imports
    assert any(e.target == "resource" and e.in_function for e in EDGES)  # and nested ones


def test_no_module_imports_edgekit_or_tensorflow() -> None:
    bad = [e for e in EDGES if e.target.split(".")[0] in FORBIDDEN]
    assert bad == []


def _internal_graph() -> dict[str, set[str]]:
    return internal_graph(MODULES, EDGES)


def test_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c", "a"]]


def test_internal_imports_form_no_cycle() -> None:
    assert cycles(_internal_graph()) == []


def test_no_internal_import_inside_a_function() -> None:
    # A function-level import of another device_bench module is how a cycle gets dodged;
    # optional or heavy third-party imports (resource, tflite backends) may stay lazy.
    nested = [e for e in EDGES if e.in_function and e.target.split(".")[0] == "device_bench"]
    assert nested == []


@pytest.mark.parametrize("low, high", [
    ("device_bench.qemu_host", "device_bench.arm_sysroot"),
    ("device_bench.qemu_host", "device_bench.insn_plugin"),
    ("device_bench.insn_plugin", "device_bench.arm_sysroot"),
])
def test_arm_sysroot_and_insn_plugin_import_one_way(low: str, high: str) -> None:
    graph = _internal_graph()
    assert reaches(graph, high, low)
    assert not reaches(graph, low, high)
