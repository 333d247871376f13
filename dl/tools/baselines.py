"""Classic supervised baselines from scikit-learn on exactly a dl experiment's splits.

`run_baselines(config)` loads the experiment's dataset with
`dl.data.load_dataset(config.dataset)`, so every method sees the same
train/validation/test examples, standardized with the same training-split
statistics as the network. Inputs of any shape are flattened to one row per
example. Each method is fitted on the training split only and scored on all
three splits:

  classification: logistic regression, Gaussian naive Bayes, k-nearest
    neighbours, SVM with an RBF kernel, decision tree (accuracy);
  regression: linear regression, k-nearest neighbours, support vector
    regression with an RBF kernel, decision tree (MSE and MAE in the
    target's own units, as dl's regression task reports them).

`write_tables` writes baselines.json and baselines.md, with the network's
row from a dl workdir's summary.json if one is given.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np

from dl.data import load_dataset
from dl.errors import ConfigError
from dl.train.resume import config_differences

CLASSIFIERS = ("logistic_regression", "naive_bayes", "knn", "svm_rbf", "decision_tree")
REGRESSORS = ("linear_regression", "knn", "svm_rbf", "decision_tree")
LABELS = {
    "logistic_regression": "logistic regression",
    "linear_regression": "linear regression (least squares)",
    "naive_bayes": "Gaussian naive Bayes",
    "knn": "k-nearest neighbours (k=5)",
    "svm_rbf": "SVM, RBF kernel",
    "decision_tree": "decision tree",
}


def _make(name: str, kind: str, seed: int, multi_output: bool):
    # scikit-learn's estimators import scipy: slow, so only when baselines run.
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.multioutput import MultiOutputRegressor
    from sklearn.naive_bayes import GaussianNB
    from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
    from sklearn.svm import SVC, SVR
    from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

    if kind == "classification":
        return {
            "logistic_regression": lambda: LogisticRegression(max_iter=5000),
            "naive_bayes": GaussianNB,
            "knn": lambda: KNeighborsClassifier(n_neighbors=5),
            "svm_rbf": lambda: SVC(kernel="rbf", C=1.0, gamma="scale"),
            "decision_tree": lambda: DecisionTreeClassifier(random_state=seed),
        }[name]()
    svr = SVR(kernel="rbf", C=1.0, gamma="scale")
    return {
        "linear_regression": LinearRegression,
        "knn": lambda: KNeighborsRegressor(n_neighbors=5),
        "svm_rbf": lambda: MultiOutputRegressor(svr) if multi_output else svr,
        "decision_tree": lambda: DecisionTreeRegressor(random_state=seed),
    }[name]()


def _flat(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, np.float64).reshape(len(x), -1)


def _targets(y: np.ndarray, kind: str) -> np.ndarray:
    if kind == "classification":
        return np.asarray(y).astype(np.int64)
    y = np.asarray(y, np.float64)
    return y.reshape(len(y), -1) if y.ndim > 1 else y


def methods_for(kind: str) -> tuple[str, ...]:
    """The baselines that fit a dataset kind ("classification" or "regression")."""
    return CLASSIFIERS if kind == "classification" else REGRESSORS


def run_baselines(config, methods: list[str] | None = None, log=None) -> dict:
    """Fits every baseline on the experiment's training split and scores every split.

    Args:
      config: a dl experiment config (only `dataset` and `seed` are read).
      methods: names to run (default: all for the dataset's kind).
      log: optional callable for one progress line per method.

    Returns:
      {"dataset", "kind", "sizes", "features", "metric", "methods": {name:
      {"label", "train", "validation", "test", "fit_seconds"}}}; each split's
      entry maps metric -> value.

    Raises:
      ConfigError: the dataset is neither classification nor regression data
        with fields x and y, or a method name is unknown.
    """
    dataset = load_dataset(config.dataset)
    kind = dataset.kind
    if kind not in ("classification", "regression") or "y" not in dataset.splits["train"]:
        raise ConfigError(
            f"baselines need a classification or regression dataset with inputs x and "
            f"targets y; {dataset.name!r} is {kind!r}"
        )
    known = methods_for(kind)
    methods = list(methods or known)
    unknown = [m for m in methods if m not in known]
    if unknown:
        raise ConfigError(
            f"unknown baseline(s) {', '.join(unknown)} for a {kind} dataset; known: "
            + ", ".join(known)
        )
    splits = {s: f for s, f in dataset.splits.items() if len(f["x"])}
    x = {s: _flat(f["x"]) for s, f in splits.items()}
    y = {s: _targets(f["y"], kind) for s, f in splits.items()}
    std = np.asarray(dataset.info.get("target_scale", {}).get("std", 1.0), np.float64)
    multi = kind == "regression" and y["train"].ndim > 1
    out = {
        "dataset": dataset.name,
        "kind": kind,
        "sizes": {s: int(len(f["x"])) for s, f in dataset.splits.items()},
        "features": int(x["train"].shape[1]),
        "metric": "accuracy" if kind == "classification" else "mse",
        "methods": {},
    }
    for name in methods:
        model = _make(name, kind, int(config.get("seed", 0)), multi)
        start = time.perf_counter()
        model.fit(x["train"], y["train"])
        row = {"label": LABELS[name], "fit_seconds": round(time.perf_counter() - start, 4)}
        for split in splits:
            pred = np.asarray(model.predict(x[split]))
            if kind == "classification":
                row[split] = {"accuracy": float(np.mean(pred == y[split]))}
            else:
                err = (pred.reshape(y[split].shape) - y[split]) * std
                row[split] = {
                    "mse": float(np.mean(err**2)),
                    "mae": float(np.mean(np.abs(err))),
                }
        out["methods"][name] = row
        if log:
            log(f"{LABELS[name]}: " + _scores(row, out["metric"]))
    return out


def _scores(row: dict, metric: str) -> str:
    return ", ".join(
        f"{split} {metric} {row[split][metric]:.4g}"
        for split in ("train", "validation", "test")
        if split in row
    )


def network_row(workdir: str) -> dict | None:
    """The dl run's final metrics from WORKDIR/summary.json, as a table row (None if absent)."""
    path = os.path.join(workdir, "summary.json")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        summary = json.load(f)
    config_path = os.path.join(workdir, "config.json")
    model = "network"
    if os.path.isfile(config_path):
        with open(config_path) as f:
            stored = json.load(f).get("model", {})
        hidden = stored.get("hidden_sizes")
        model = f"network: {stored.get('name', 'model')}" + (
            f" hidden_sizes={tuple(hidden)}" if hidden is not None else ""
        )
    row = {
        "label": f"{model} (dl, step {summary.get('step')})",
        "workdir": os.path.abspath(workdir),
    }
    for split in ("train", "validation", "test"):
        if split in summary:
            row[split] = summary[split]
    return row


def check_network(config, workdir: str) -> None:
    """Raises ConfigError if the dl run in `workdir` used another dataset config than `config`."""
    path = os.path.join(workdir, "config.json")
    if not os.path.isfile(path):
        return
    with open(path) as f:
        stored = json.load(f).get("dataset", {})
    diffs = config_differences(stored, json.loads(config.dataset.to_json()), "dataset.")
    if diffs:
        raise ConfigError(
            f"the run in {workdir!r} used other data than --config, so its row would not "
            "compare like with like:\n  " + "\n  ".join(diffs) + "\npass the run's config"
        )


def baselines_table(result: dict) -> str:
    """The Markdown table: one row per method, the metric on each split."""
    metrics = ["accuracy"] if result["kind"] == "classification" else ["mse", "mae"]
    header = ["method"] + [f"{s} {m}" for m in metrics for s in ("train", "validation", "test")]
    header.append("fit seconds")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    rows = list(result["methods"].values())
    if result.get("network"):
        rows.append(result["network"])
    for row in rows:
        cells = [row["label"]]
        for m in metrics:
            for s in ("train", "validation", "test"):
                value = row.get(s, {}).get(m)
                cells.append("" if value is None else f"{float(value):.4g}")
        cells.append(str(row.get("fit_seconds", "")))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_tables(result: dict, outdir: str) -> list[str]:
    """Writes OUTDIR/baselines.json and OUTDIR/baselines.md; returns their paths."""
    os.makedirs(outdir, exist_ok=True)
    json_path = os.path.join(outdir, "baselines.json")
    md_path = os.path.join(outdir, "baselines.md")
    with open(json_path, "w") as f:
        json.dump(result, f, indent=2)
    sizes = ", ".join(f"{s} {n}" for s, n in result["sizes"].items())
    text = [
        f"# Baselines on {result['dataset']} ({result['kind']})",
        "",
        f"Splits as the dl experiment uses them: {sizes}; {result['features']} input "
        "features, standardized with training-split statistics. Every method is fitted on "
        "the training split only.",
        "",
        baselines_table(result),
    ]
    if result["kind"] == "regression":
        text.append("MSE and MAE are in the target's own units.\n")
    with open(md_path, "w") as f:
        f.write("\n".join(text))
    return [json_path, md_path]
