"""Names in a config that are import paths: `package.module:attribute`.

Every name in a config (`model.name`, `dataset.name`, `task.name`) is a key
of one of dl's tables or an import path with a colon, e.g.
`--config.model.name=my_nets:ResMLP`. The module is imported from the
working directory or the installed packages. The path is stored in
config.json like any other name, so every binary that reads a workdir
imports it again.

An object handed to `dl.train.train` in Python takes the place of a name.
It is recorded by its import path when it has one; otherwise the workdir
records a marker (`<object>:NAME`) that says the object must be handed in
again (`dl.load(workdir, model=...)`).
"""

from __future__ import annotations

import importlib
import os
import re
import sys

from dl.errors import ConfigError

_DOTTED = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
IMPORT_PATH = re.compile(rf"^({_DOTTED}):({_DOTTED})$")
MARKER = "<object>:"


def is_import_path(name) -> bool:
    """Whether `name` reads as `package.module:attribute`.

    >>> is_import_path("my_nets:ResMLP"), is_import_path("mlp"), is_import_path("npz:/d/x.npz")
    (True, False, False)
    """
    return isinstance(name, str) and IMPORT_PATH.match(name) is not None


def import_object(path: str, kind: str):
    """The attribute an import path names, importing its module.

    Args:
      path: `package.module:attribute` (the attribute may be dotted, `Outer.Inner`).
      kind: what the object is for ("model", "dataset", "task"), for messages.

    Returns:
      The object.

    Raises:
      ConfigError: the path is malformed, its module cannot be imported, or
        the module has no such attribute; one line naming both.
    """
    if isinstance(path, str) and path.startswith(MARKER):
        raise ConfigError(
            f"this {kind} was handed to dl.train.train as a Python object "
            f"({path[len(MARKER) :]}) that has no import path; hand the same object in "
            f"again, e.g. dl.load(workdir, {kind}=...), or give the {kind} an import path "
            "'package.module:attribute'"
        )
    match = IMPORT_PATH.match(path or "")
    if match is None:
        raise ConfigError(f"{kind} {path!r} is not an import path 'package.module:attribute'")
    module_name, attribute = match.groups()
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)  # `my_nets` in the working directory, as `python -m` finds it
    try:
        module = importlib.import_module(module_name)
    except Exception as e:  # noqa: BLE001 -- any failure to import is the user's module's
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise ConfigError(
            f"cannot import module {module_name!r} for {kind} {path!r}: {type(e).__name__}: {first}"
        ) from None
    obj = module
    for part in attribute.split("."):
        if not hasattr(obj, part):
            raise ConfigError(
                f"module {module_name!r} has no attribute {attribute!r} (for {kind} {path!r})"
            )
        obj = getattr(obj, part)
    return obj


def import_path_of(obj) -> str | None:
    """The import path that names `obj` again in another process, or None.

    Classes and functions defined at the top level of an importable module
    (not `__main__`) have one; lambdas, local definitions and instances do not.
    """
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if not module or not qualname or module == "__main__" or "<" in qualname:
        return None
    path = f"{module}:{qualname}"
    try:
        found = import_object(path, "object")
    except ConfigError:
        return None
    return path if found is obj else None


def record_name(obj, fallback: str) -> str:
    """The name a config records for an object handed in: its import path, else a marker."""
    return import_path_of(obj) or f"{MARKER}{fallback}"
