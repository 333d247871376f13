"""Architectures, one family per module, and the one table that names them."""

from __future__ import annotations

import dataclasses
import functools

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from dl.config import Range, check_ranges
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

_COUNT = Range(1, integer=True)  # a size, a width, a count of layers or units
_INDEX = Range(0, integer=True)
_SIZES = Range(1, integer=True, each=True)
_POSITIVE = Range(0, low_open=True)

# The values each numeric field of dl's models accepts, by field name: the one
# place they are declared. build_model checks the fields of every model of
# dl.models (and of classes derived from one) before the model is built; a
# field added to a model with a number in it belongs here
# (tests/test_config_fuzz.py checks that every one is).
FIELD_RANGES = {
    "dropout_rate": Range(0, 1, high_open=True),
    "num_outputs": _COUNT,
    "num_classes": _COUNT,
    **dict.fromkeys(
        (
            "hidden_sizes",
            "conv_features",
            "dense_sizes",
            "stage_sizes",
            "widths",
            "expert_hidden_sizes",
            "gate_hidden_sizes",
        ),
        _SIZES,
    ),
    **dict.fromkeys(
        (
            "features",
            "kernel_size",
            "pool_size",
            "dense_size",
            "stem_kernel",
            "stem_stride",
            "pooled_size",
            "num_filters",
            "num_blocks",
            "hidden_size",
            "num_layers",
            "horizon",
            "vocab_size",
            "src_vocab_size",
            "tgt_vocab_size",
            "embed_dim",
            "grid_size",
            "boxes_per_cell",
            "convs_per_stage",
            "head_hidden",
            "num_heads",
            "num_centers",
            "num_experts",
        ),
        _COUNT,
    ),
    # 0 is allowed: no padding, the k-means++ start alone, no context features.
    **dict.fromkeys(
        ("stem_padding", "kmeans_iters", "context_features", "pad_id", "bos_id", "eos_id"), _INDEX
    ),
    **dict.fromkeys(("width_multiplier", "init_width", "width_scale"), _POSITIVE),
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
    _refuse_unknown(name, fields, known)
    check_fields(constructor, fields)
    section = {"name": name}
    for key, default in known.items():
        if key in fields:
            section[key] = fields[key]
        elif key not in ("num_outputs", "num_classes", "dtype") and _is_config_value(
            list(default) if isinstance(default, tuple) else default
        ):
            section[key] = default
    return ml_collections.ConfigDict(section)


def _refuse_unknown(name, given, known) -> None:
    """ConfigError naming the fields of `given` that the model does not have, and its fields."""
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise ConfigError(
            f"model {name!r} has no field(s) {', '.join(unknown)}; its fields are: "
            f"{', '.join(sorted(known))}"
        )


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
    _refuse_unknown(name, cfg, fields)
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
    check_fields(constructor, cfg)
    return constructor(**cfg)


def check_fields(constructor, fields: dict) -> None:
    """Refuses a field of one of dl's models whose value is outside its FIELD_RANGES range.

    A model of one's own (an import path, a class handed in) is checked only
    where it derives from one of dl's models: its fields are its own.

    Args:
      constructor: the model's class (or a partial of it).
      fields: field -> value, as the model will be built with.

    Raises:
      ConfigError: naming the field, the value and the accepted range.

    >>> check_fields(MODELS["mlp"], {"dropout_rate": 2.0})
    Traceback (most recent call last):
    ...
    dl.errors.ConfigError: model.dropout_rate must be a finite number in [0, 1), got 2.0
    """
    cls = getattr(constructor, "func", constructor)
    if any(c.__module__.startswith(__name__ + ".") for c in getattr(cls, "__mro__", ())):
        check_ranges(fields, FIELD_RANGES, "model.")


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
    "FIELD_RANGES",
    "MODELS",
    "build_model",
    "check_fields",
    "instance_fields",
    "model_config",
    "model_constructor",
    "model_fields",
]
