"""Sweep specs: `FIELD=V1,V2,...` parsed against a config, and overrides applied to it.

FIELD is a dotted config field; the values are separated by commas outside
brackets, so a tuple field is written `model.hidden_sizes=(),(16,),(16,16)`.
Every value is parsed to the type of the field it replaces.

    axis = parse_axis(config, "optimizer.learning_rate=0.001,0.01")  # Axis(field, [0.001, 0.01])
    apply_overrides(config, {"optimizer.learning_rate": 0.01})       # a changed copy
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import os

import ml_collections

from dl.errors import ConfigError


@dataclasses.dataclass
class Axis:
    """One swept field.

    Attributes:
      field: dotted config field, e.g. "optimizer.learning_rate".
      values: the values, parsed to the field's type.
    """

    field: str
    values: list


def split_values(text: str) -> list[str]:
    """Splits `a,(b,c),[d]` at the commas that are outside brackets and quotes."""
    parts, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts]


def _field_node(config, field: str, add: bool = False):
    """(parent ConfigDict, key) of a dotted field; ConfigError naming it if absent.

    With `add`, the last part of the field may be missing (it is then created).
    """
    node, parts = config, field.split(".")
    for depth, part in enumerate(parts):
        is_group = isinstance(node, ml_collections.ConfigDict)
        last = depth == len(parts) - 1
        if not part or not is_group or (part not in node and not (add and last)):
            where = ".".join(parts[:depth]) or "the config"
            known = ", ".join(sorted(node.keys())) if is_group else "(none: not a group)"
            raise ConfigError(f"sweep field {field!r} does not exist: {where} has fields {known}")
        if not last:
            node = node[part]
    return node, parts[-1]


def _type_name(kind) -> str:
    return getattr(kind, "__name__", str(kind))


def parse_value(config, field: str, text: str):
    """Parses one sweep value to the type of `field`.

    Args:
      config: the base config.
      field: dotted field name.
      text: the value as written on the command line.

    Returns:
      The value (bool, int, float, str, tuple, list).

    Raises:
      ConfigError: the field does not exist or the value is not of its type.
    """
    node, key = _field_node(config, field)
    current = node[key]
    if isinstance(current, ml_collections.ConfigDict):
        raise ConfigError(
            f"sweep field {field!r} is a group of fields; sweep one of them: "
            + ", ".join(f"{field}.{k}" for k in sorted(current.keys()))
        )
    kind = type(current) if current is not None else node.get_type(key)

    def bad(expected: str) -> ConfigError:
        return ConfigError(
            f"sweep value {text!r} for {field!r} is not {expected} (the field is of type "
            f"{_type_name(kind)}, currently {current!r})"
        )

    if text == "":
        raise ConfigError(f"sweep field {field!r} has an empty value")
    if kind is bool:
        lowered = text.lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
        raise bad("a boolean (true or false)")
    if kind is int:
        try:
            return int(text)
        except ValueError:
            raise bad("an integer") from None
    if kind is float:
        try:
            return float(text)
        except ValueError:
            raise bad("a number") from None
    if kind is str:
        if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
            return text[1:-1]
        return text
    if kind in (tuple, list):
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            raise bad(f"a {kind.__name__} literal such as (16,) or ()") from None
        if not isinstance(value, tuple | list):
            raise bad(f"a {kind.__name__}: write ({text},) for one element")
        return kind(value)
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        value = text
    return value


def parse_axis(config, spec: str) -> Axis:
    """Parses one `FIELD=V1,V2,...` sweep spec against the config.

    Raises:
      ConfigError: the spec is malformed, the field does not exist, or a
        value is not of the field's type.
    """
    field, sep, rest = spec.partition("=")
    field = field.strip()
    if not sep or not field:
        raise ConfigError(
            f"sweep spec {spec!r} must be FIELD=V1,V2,... "
            "(e.g. optimizer.learning_rate=0.001,0.01,0.1)"
        )
    texts = split_values(rest)
    values = [parse_value(config, field, t) for t in texts]
    if len(set(map(repr, values))) != len(values):
        raise ConfigError(f"sweep field {field!r} lists a value twice: {rest}")
    return Axis(field, values)


def format_value(value) -> str:
    """A value as it appears in a sub-directory name: 16x16 for tuples, 'none' for ()."""
    if isinstance(value, tuple | list):
        return "x".join(format_value(v) for v in value) if value else "none"
    if isinstance(value, bool):
        return str(value).lower()
    text = repr(value) if isinstance(value, float) else str(value)
    return text.replace(os.sep, "_").replace(" ", "_").replace(",", "_")


def apply_overrides(config, overrides: dict, *, add_fields: bool = False):
    """A copy of `config` with dotted-field overrides set (types checked by the config).

    Args:
      config: the base config.
      overrides: dotted field -> value.
      add_fields: create a last-level field the config lacks (the benchmark's
        suite rows turn a digits config into one on other data); by default a
        missing field is an error naming it.

    Returns:
      The new config.
    """
    out = copy.deepcopy(config)
    for field, value in overrides.items():
        node, key = _field_node(out, field, add=add_fields)
        try:
            if key in node:
                node[key] = value
            else:
                with node.unlocked():
                    node[key] = value
        except (TypeError, ValueError) as e:
            raise ConfigError(f"sweep value {value!r} cannot be set for {field!r}: {e}") from e
    return out
