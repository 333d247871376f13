"""The layers of dl: models and data side by side at the bottom, tasks above them.

Imports are read from the source (top-level and inside functions alike), so
a module that imports one it should not fails here whether or not the import
runs at import time.
"""

import ast
import pathlib

import pytest

DL = pathlib.Path(__file__).resolve().parent.parent / "dl"
ABOVE = {
    "models": ("dl.data", "dl.tasks", "dl.train", "dl.tools"),
    "data": ("dl.models", "dl.tasks", "dl.train", "dl.tools"),
    "tasks": ("dl.train", "dl.tools"),
}


def imported(path: pathlib.Path) -> set[str]:
    """Every module `path` imports, by absolute name."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def modules(package: str) -> list[pathlib.Path]:
    return sorted((DL / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(ABOVE))
def test_no_module_imports_a_layer_above_or_beside_it(package):
    wrong = {
        str(path.relative_to(DL.parent)): sorted(
            name for name in imported(path) if name.startswith(ABOVE[package])
        )
        for path in modules(package)
    }
    assert {path: names for path, names in wrong.items() if names} == {}


def test_jraph_is_imported_by_graph_batch_only():
    importers = [
        str(path.relative_to(DL.parent))
        for path in sorted(DL.rglob("*.py"))
        if any(name == "jraph" or name.startswith("jraph.") for name in imported(path))
    ]
    assert importers == ["dl/models/graph_batch.py"]


def test_box_geometry_needs_only_numpy_and_jax_numpy():
    assert imported(DL / "boxes.py") <= {
        "__future__",
        "__future__.annotations",
        "numpy",
        "jax.numpy",
    }
