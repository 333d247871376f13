"""Architectures, one family per module, and the one table that names them."""

from __future__ import annotations

import dataclasses
import functools

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from dl.errors import ConfigError, unknown_name
from dl.imports import MARKER, import_object, is_import_path
from dl.models.cnn import CNN, AlexNet, AlexNetTiny, ConvFilter, LeNet5
from dl.models.gnn import GraphClassifier, NodeClassifier
from dl.models.mixture import GatedMixture
from dl.models.mlp import MLP, Perceptron
from dl.models.rbf_data import DataRBFNetwork
from dl.models.recurrent import CharLM, RecurrentClassifier, RecurrentRegressor
from dl.models.resnet import (
    CifarResNet,
    ResNet,
    ResNet18,
    ResNet20,
    ResNet32,
    ResNet34,
    ResNet50,
    ResNet56,
    ResNet101,
    ResNet152,
)
from dl.models.seq2seq import Seq2Seq
from dl.models.yolo import YOLOv1, YOLOv1Paper

MODELS = {
    "perceptron": Perceptron,
    "mlp": MLP,
    "conv_filter": ConvFilter,
    "cnn": CNN,
    "lenet5": LeNet5,
    "alexnet": AlexNet,
    "alexnet_tiny": AlexNetTiny,
    "resnet": ResNet,
    "resnet18": ResNet18,
    "resnet34": ResNet34,
    "resnet50": ResNet50,
    "resnet101": ResNet101,
    "resnet152": ResNet152,
    "cifar_resnet": CifarResNet,
    "resnet20": ResNet20,
    "resnet32": ResNet32,
    "resnet56": ResNet56,
    "rnn_classifier": RecurrentClassifier,
    "rnn_regressor": RecurrentRegressor,
    "charlm": CharLM,
    "seq2seq": Seq2Seq,
    "yolo": YOLOv1,
    "yolo_paper": YOLOv1Paper,
    "graph_classifier": GraphClassifier,
    "node_classifier": NodeClassifier,
    "gcn_node": functools.partial(NodeClassifier, layer="gcn"),
    "gat_node": functools.partial(NodeClassifier, layer="gat"),
    "rbf": DataRBFNetwork,
    "moe": GatedMixture,
}

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def model_fields(constructor) -> dict[str, object]:
    """The configurable fields of a model constructor (a Module class or a partial of one)."""
    cls = getattr(constructor, "func", constructor)
    preset = dict(getattr(constructor, "keywords", {}) or {})
    fields = {}
    for f in dataclasses.fields(cls):
        if f.name in ("parent", "name") or not f.init:
            continue
        if f.name in preset:
            fields[f.name] = preset[f.name]
        elif f.default is not dataclasses.MISSING:
            fields[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            fields[f.name] = f.default_factory()
        else:
            fields[f.name] = dataclasses.MISSING
    return fields


def model_constructor(name: str):
    """The constructor a model name stands for: a key of MODELS or an import path.

    Raises:
      ConfigError: an unknown name (listing the known ones), an import path
        that cannot be imported, or an object that is not a flax Module class.
    """
    if name in MODELS:
        return MODELS[name]
    if not (is_import_path(name) or str(name).startswith(MARKER)):
        raise ConfigError(
            f"unknown model {name!r}; known models: {', '.join(sorted(MODELS))}; or an "
            "import path 'package.module:Class' of a flax.linen.Module"
        )
    return _check_constructor(import_object(name, "model"), name)


def _check_constructor(obj, name: str):
    cls = getattr(obj, "func", obj)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ConfigError(
            f"model {name!r} is {type(obj).__name__} {obj!r}; dl needs a flax.linen.Module "
            "class (or a functools.partial of one), whose fields are the model's config fields"
        )
    return obj


def instance_fields(module: nn.Module) -> dict | None:
    """The config fields that rebuild a Module instance from its class, or None.

    None when a field holds something a config cannot (a function, an array).
    """
    out = {}
    for key, default in model_fields(type(module)).items():
        value = getattr(module, key)
        if value is default:
            continue
        if isinstance(value, type) and value in DTYPES.values():
            value = next(k for k, v in DTYPES.items() if v is value)
        if isinstance(value, tuple):
            value = list(value)
        if not _is_config_value(value):
            return None
        out[key] = value
    return out


def model_config(name: str, **fields) -> ml_collections.ConfigDict:
    """A config `model` section naming a model and listing its fields at their defaults.

    With every field present, each can be set from the command line
    (`--config.model.FIELD=VALUE`) although the binaries lock the config.
    Fields a config cannot hold (functions, dtypes) and the output width
    (the task's) are left out.

    Args:
      name: a key of MODELS or an import path `package.module:Class`.
      **fields: fields to set.

    Returns:
      The ConfigDict.

    >>> model_config("mlp", hidden_sizes=(64,)).hidden_sizes
    (64,)
    """
    constructor = model_constructor(name)
    known = model_fields(constructor)
    unknown = sorted(set(fields) - set(known))
    if unknown:
        raise ConfigError(
            f"model {name!r} has no field(s) {', '.join(unknown)}; its fields are: "
            f"{', '.join(sorted(known))}"
        )
    section = {"name": name}
    for key, default in known.items():
        if key in fields:
            section[key] = fields[key]
        elif key not in ("num_outputs", "num_classes", "dtype") and _is_config_value(
            list(default) if isinstance(default, tuple) else default
        ):
            section[key] = default
    return ml_collections.ConfigDict(section)


def _is_config_value(value) -> bool:
    if isinstance(value, list):
        return all(_is_config_value(v) for v in value)
    return value is None or isinstance(value, bool | int | float | str)


def build_model(
    cfg, num_outputs: int | None = None, dtype: str | None = None, model=None
) -> nn.Module:
    """Builds the model a config names (or the one handed in).

    Args:
      cfg: the `model` field of an experiment config: `name` (a key of MODELS
        or an import path `package.module:Class`) plus the model's own fields.
        `num_outputs` may be left out (or None) to take the task's.
      num_outputs: the output width the task needs.
      dtype: the experiment's compute dtype (a DTYPES name), used unless `cfg`
        sets the model's own `dtype`.
      model: instead of `cfg.name`, a Module class (or partial), built with
        `cfg`'s fields, or a Module instance, used as it is.

    Returns:
      A flax.linen Module.
    """
    cfg = dict(cfg)
    name = cfg.pop("name", None)
    if isinstance(model, nn.Module):
        return _check_instance(model, num_outputs)
    constructor = (
        _check_constructor(model, str(name)) if model is not None else model_constructor(name)
    )
    fields = model_fields(constructor)
    unknown = sorted(set(cfg) - set(fields))
    if unknown:
        raise ConfigError(
            f"model {name!r} has no field(s) {', '.join(unknown)}; its fields are: "
            f"{', '.join(sorted(fields))}"
        )
    if "num_outputs" in fields:
        given = cfg.get("num_outputs")
        if given is not None and num_outputs is not None and int(given) != num_outputs:
            raise ConfigError(
                f"model.num_outputs is {given}, but the task needs {num_outputs} "
                "outputs per example; drop the field to take the task's"
            )
        if given is None and num_outputs is not None:
            cfg["num_outputs"] = num_outputs
    if "num_classes" in fields and cfg.get("num_classes") is None and num_outputs is not None:
        cfg["num_classes"] = num_outputs  # heads that count classes, not outputs (YOLO)
    if dtype is not None and "dtype" not in cfg:
        if "dtype" not in fields:
            if dtype != "float32":
                raise ConfigError(f"model {name!r} has no dtype field; it computes in float32")
        else:
            cfg["dtype"] = dtype
    if "dtype" in cfg:
        if cfg["dtype"] not in DTYPES:
            raise unknown_name("dtype", str(cfg["dtype"]), DTYPES)
        cfg["dtype"] = DTYPES[cfg["dtype"]]
    for key, value in cfg.items():
        if isinstance(value, list):
            cfg[key] = tuple(value)
    missing = [k for k, v in fields.items() if v is dataclasses.MISSING and k not in cfg]
    if missing:
        raise ConfigError(f"model {name!r} needs field(s) {', '.join(missing)}")
    return constructor(**cfg)


def _check_instance(model: nn.Module, num_outputs: int | None) -> nn.Module:
    given = getattr(model, "num_outputs", None)
    if given is not None and num_outputs is not None and int(given) != num_outputs:
        raise ConfigError(
            f"the model handed in has num_outputs={given}, but the task needs {num_outputs} "
            "outputs per example"
        )
    return model


__all__ = [
    "DTYPES",
    "MODELS",
    "build_model",
    "instance_fields",
    "model_config",
    "model_constructor",
    "model_fields",
]
