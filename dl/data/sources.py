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
from dl.errors import unknown_name

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


def load_source(cfg) -> Source:
    """Loads the examples that `cfg.name` names.

    Args:
      cfg: the dataset config; `name` is a key of SOURCES or `PREFIX:PATH`
        with PREFIX a key of FILE_SOURCES.

    Returns:
      The Source.
    """
    name = cfg.name
    if ":" in name:
        prefix, path = name.split(":", 1)
        if prefix not in FILE_SOURCES:
            raise unknown_name("dataset file type", prefix, FILE_SOURCES)
        return FILE_SOURCES[prefix](path, cfg)
    if name not in SOURCES:
        raise unknown_name("dataset", name, list(SOURCES) + [f"{p}:PATH" for p in FILE_SOURCES])
    return SOURCES[name](cfg)
