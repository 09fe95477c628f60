"""Loading a Python file as a module by its path, for tests that read a script or helper that
is not on ``sys.path`` under a unique name (bench scripts, the root conftest)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType


def load_module(name: str, path: Path) -> ModuleType:
    """Executes the file at ``path`` as a fresh module called ``name``.

    Args:
        name: Module name to give it (not registered in ``sys.modules``, so files that share a
            name, such as several ``conftest.py``, do not replace each other).
        path: The ``.py`` file.

    Returns:
        The executed module.

    Raises:
        FileNotFoundError: ``path`` does not exist.
    """
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such module file")
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
