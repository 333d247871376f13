"""The shape of dl/, read from its source: one-way layers, no cycles, small files and functions.

Layers, low to high (BUILD_NOTES.md, "Layout"):

    base       dl/errors.py, dl/config.py, dl/boxes.py, dl/imports.py
    models | data | reporting | autodiff      side by side: none imports another
    tasks
    train
    tools
    api        dl/__init__ (the package root: `dl.load`), which may import anything

A module may import its own layer's modules and those of lower layers, never
a higher one, nor a neighbour of the same level. Imports inside functions
count as much as top-level ones; they are kept only for heavy or optional
libraries, each with a comment saying why.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "dl")

GROUPS = {
    "base": 0,
    "models": 1,
    "data": 1,
    "reporting": 1,
    "autodiff": 1,
    "tasks": 2,
    "train": 3,
    "tools": 4,
    "api": 5,
}
BASE = {"dl.errors", "dl.config", "dl.boxes", "dl.imports"}
# The package root is the API on top of every layer. It imports lazily, inside
# its module-level __getattr__, so that `import dl` does not import JAX.
API = {"dl"}
# Libraries that may be imported inside a function: slow to import, or optional.
HEAVY = {
    "matplotlib",
    "torch",
    "sklearn",
    "scipy",
    "networkx",
    "safetensors",
    "grain",
    "array_record",
    "pyarrow",
}
MAX_FILE_LINES = 450
MAX_FUNCTION_LINES = 80


def _modules() -> dict[str, str]:
    out = {}
    for dirpath, _, files in os.walk(ROOT):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(dirpath, f)
                rel = os.path.relpath(path, os.path.dirname(ROOT))[:-3].replace(os.sep, ".")
                out[rel.removesuffix(".__init__")] = path
    return out


MODULES = _modules()


def _group(module: str) -> str:
    if module in API:
        return "api"
    if module in BASE:
        return "base"
    return module.split(".")[1]


def _imports(module: str, path: str) -> list[tuple[str, ast.AST, bool]]:
    """(imported dl module, node, inside a function) for every import of dl in a module."""
    tree = ast.parse(open(path).read())
    package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
    inner = {
        id(n)
        for f in ast.walk(tree)
        if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef)
        for n in ast.walk(f)
    }
    out = []
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        for name in names:
            if name in MODULES:
                out.append((name, node, id(node) in inner))
    return out


def _graph() -> dict[str, set[str]]:
    return {
        m: {d for d, _, _ in _imports(m, p) if d != m and not m.startswith(d + ".")}
        for m, p in MODULES.items()
    }


def test_no_module_imports_a_higher_layer_or_a_neighbour():
    bad = []
    for module, deps in _graph().items():
        g = _group(module)
        for dep in deps:
            h = _group(dep)
            if h != g and GROUPS[h] >= GROUPS[g]:
                bad.append(f"{module} ({g}) imports {dep} ({h})")
    assert not bad, "imports against the layers:\n  " + "\n  ".join(sorted(bad))


def test_no_module_imports_from_its_own_package_init():
    """`from dl.train import x` inside dl/train/ runs dl/train/__init__.py, which imports
    the package's modules, this one among them: a cycle through the package. Import
    the module itself (`import dl.train.x as x`, `from dl.train.x import y`)."""
    bad = []
    for module, path in MODULES.items():
        if path.endswith("__init__.py"):
            continue
        ancestors = {module.rsplit(".", k)[0] for k in range(1, module.count(".") + 1)}
        for node in ast.walk(ast.parse(open(path).read())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module in ancestors:
                bad.append(f"{module}: from {node.module} import ... (line {node.lineno})")
    assert not bad, "imports through the package's own __init__:\n  " + "\n  ".join(bad)


def test_no_import_cycle():
    graph = _graph()
    # A package's __init__ re-exports its modules; an edge into the package is
    # an edge into the module it re-exports, so only module-to-module edges count.
    edges = {m: {d for d in ds if not m.startswith(d)} for m, ds in graph.items()}
    state, cycles = {}, []

    def visit(m, stack):
        state[m] = "open"
        for d in sorted(edges.get(m, ())):
            if state.get(d) == "open":
                cycles.append(" -> ".join(stack[stack.index(d) :] + [d]))
            elif d not in state:
                visit(d, stack + [d])
        state[m] = "done"

    for m in sorted(edges):
        if m not in state:
            visit(m, [m])
    assert not cycles, "import cycles:\n  " + "\n  ".join(cycles)


def test_imports_inside_functions_are_only_for_heavy_libraries_and_say_why():
    bad = []
    for module, path in MODULES.items():
        lines = open(path).read().splitlines()
        tree = ast.parse("\n".join(lines))
        for f in ast.walk(tree):
            if not isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(f):
                if not isinstance(node, ast.Import | ast.ImportFrom):
                    continue
                names = (
                    [a.name for a in node.names]
                    if isinstance(node, ast.Import)
                    else [node.module or ""]
                )
                line = lines[node.lineno - 1]
                first = node.lineno - 1  # the first of a block of import lines
                while first > 0 and lines[first - 1].strip().startswith(("import ", "from ")):
                    first -= 1
                above = lines[first - 1].strip() if first > 0 else ""
                heavy = all(n.split(".")[0] in HEAVY for n in names)
                lazy_api = module in API and f.name == "__getattr__"
                said = "#" in line or above.startswith("#")
                if not ((heavy or lazy_api) and said):
                    bad.append(f"{module}:{node.lineno}: {line.strip()}")
    assert not bad, "imports inside functions:\n  " + "\n  ".join(bad)


def test_files_and_functions_stay_small():
    big, long = [], []
    for module, path in MODULES.items():
        src = open(path).read()
        if src.count("\n") > MAX_FILE_LINES:
            big.append(f"{module}: {src.count(chr(10))} lines")
        for f in ast.walk(ast.parse(src)):
            if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef):
                n = f.end_lineno - f.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{module}.{f.name}: {n} lines")
    assert not big and not long, (
        f"files over {MAX_FILE_LINES} lines: {big}; functions over "
        f"{MAX_FUNCTION_LINES} lines: {long}"
    )


def test_no_backend_switch_or_pyplot_in_the_library():
    bad = [
        m
        for m, p in MODULES.items()
        if "matplotlib.use(" in open(p).read() or "matplotlib.pyplot" in open(p).read()
    ]
    assert not bad, f"modules that switch matplotlib's backend or use pyplot: {bad}"


def _imported_names(path: str) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_jraph_is_imported_by_graph_batch_only():
    importers = sorted(
        m
        for m, p in MODULES.items()
        if any(n == "jraph" or n.startswith("jraph.") for n in _imported_names(p))
    )
    assert importers == ["dl.models.graph_batch"]


def test_box_geometry_needs_only_numpy_and_jax_numpy():
    assert _imported_names(MODULES["dl.boxes"]) <= {"__future__", "numpy", "jax.numpy"}


def test_import_dl_is_light_and_dl_load_is_lazy():
    code = (
        "import sys, dl, dl.errors, dl.config, dl.imports\n"
        "assert 'jax' not in sys.modules, 'import dl imported jax'\n"
        "assert callable(dl.load) and 'jax' in sys.modules\n"
        "from dl.train.predictor import load\n"
        "assert dl.load is load\n"
    )
    root = os.path.dirname(ROOT)
    proc = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
