"""The one place that names dl's datasets.

`SOURCES` maps a dataset name to its loader (`loader(dataset_config) ->
Source`); `FILE_SOURCES` maps the prefix of `dataset.name='PREFIX:PATH'` to a
loader of the user's own files (`loader(path, dataset_config) -> Source`).
An unknown name is an error that lists the known ones. To add a dataset,
write its loader in a module of dl/data and add one line here.
"""

from __future__ import annotations

from collections.abc import Callable

import dl.data.builtin as builtin
import dl.data.files as files
import dl.data.graph_sources as graph_sources
import dl.data.sequences as sequences
import dl.data.series as series
import dl.data.shapes as shapes
import dl.data.subproblems as subproblems
import dl.data.text_windows as text_windows
from dl.data.source import Source
from dl.errors import ConfigError, unknown_name
from dl.imports import MARKER, import_object, is_import_path

SOURCES: dict[str, Callable[..., Source]] = {
    "digits": builtin.sklearn_bundled("load_digits", "classification", image=True),
    "iris": builtin.sklearn_bundled("load_iris", "classification"),
    "breast_cancer": builtin.sklearn_bundled("load_breast_cancer", "classification"),
    "wine": builtin.sklearn_bundled("load_wine", "classification"),
    "diabetes": builtin.sklearn_bundled("load_diabetes", "regression"),
    "xor": builtin.logic_gate("xor"),
    "and": builtin.logic_gate("and"),
    "or": builtin.logic_gate("or"),
    "moons": builtin.moons,
    "circles": builtin.circles,
    "spirals": builtin.spirals,
    "synthetic": builtin.synthetic,
    "conv_pairs": builtin.conv_pairs,
    "shapes": shapes.make_shapes_source,
    "karate": graph_sources.load_karate,
    "citation_synthetic": graph_sources.load_citation_synthetic,
    "digits_grid": graph_sources.load_digits_grid,
    "graphs_synthetic": graph_sources.load_graphs_synthetic,
    "subproblems": subproblems.load_subproblems,
    "sine": series.sine,
    "addition": sequences.addition,
    "dates": sequences.dates,
    "sequential_digits": series.sequential_digits,
}

FILE_SOURCES: dict[str, Callable[..., Source]] = {
    "npz": files.load_npz,
    "csv": files.load_csv,
    "images": files.load_image_folder,
    "detection_npz": shapes.load_detection_npz,
    "graph_npz": graph_sources.load_graph_npz,
    "text": text_windows.load_text,
}


def load_source(cfg, given=None) -> Source:
    """Loads the examples that `cfg.name` names (or that `given` gives).

    Args:
      cfg: the dataset config; `name` is a key of SOURCES, `PREFIX:PATH` with
        PREFIX a key of FILE_SOURCES, or an import path
        `package.module:attribute` of a Source or of a function taking the
        dataset config and returning one (a name whose prefix is a file type
        is a file).
      given: instead of `cfg.name`, a Source or such a function.

    Returns:
      The Source.

    Raises:
      ConfigError: an unknown name (listing the known ones), an import that
        fails, or an object that gives no Source.
    """
    name = cfg.name
    file_type = name.split(":", 1)[0] in FILE_SOURCES  # `csv:data.csv` is a file, not a module
    if given is None and not file_type and (is_import_path(name) or name.startswith(MARKER)):
        given = import_object(name, "dataset")
    if given is not None:
        return _source_of(given, cfg, name)
    if ":" in name:
        prefix, path = name.split(":", 1)
        if prefix not in FILE_SOURCES:
            raise unknown_name("dataset file type", prefix, FILE_SOURCES)
        return FILE_SOURCES[prefix](path, cfg)
    if name not in SOURCES:
        raise unknown_name(
            "dataset",
            name,
            [*SOURCES, *(f"{p}:PATH" for p in FILE_SOURCES), "package.module:attribute"],
        )
    return SOURCES[name](cfg)


def _source_of(given, cfg, name: str) -> Source:
    source = given if isinstance(given, Source) else None
    if source is None and callable(given):
        source = given(cfg)
    if not isinstance(source, Source):
        raise ConfigError(
            f"dataset {name!r} gave {type(source if callable(given) else given).__name__}; a "
            "dataset is a dl.data.Source, or a function taking the dataset config and "
            "returning one (dl.data.from_arrays builds a Source from arrays)"
        )
    return source
