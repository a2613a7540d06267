"""How a config section is read: types, ranges and choices checked by key path, and switches.

Generic over the section dataclasses (`kmixvae.config_fields`): nothing here
knows which sections exist; `kmixvae.config` composes them.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from typing import Any

from kmixvae.config_fields import section_class
from kmixvae.errors import ConfigError


def _type_name(tp) -> str:
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def _unwrap_optional(tp):
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _check_scalar(path: str, value: Any, tp, meta: dict) -> Any:
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: {value!r} is not true or false")
    elif tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: {value!r} is not an integer")
    elif tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: {value!r} is not a number")
        value = float(value)
        if value != value or value in (float("inf"), float("-inf")):
            raise ConfigError(f"{path}: {value!r} is not a finite number")
    elif tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: {value!r} is not a string")
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        raise ConfigError(f"{path}: {value!r} is not one of {', '.join(str(c) for c in choices)}")
    lo, hi = meta.get("min"), meta.get("max")
    if lo is not None and value < lo:
        raise ConfigError(f"{path}: {value!r} is below the minimum {lo}")
    if hi is not None and value > hi:
        raise ConfigError(f"{path}: {value!r} is above the maximum {hi}")
    return value


def _parse_value(path: str, value: Any, tp, meta: dict, on_unknown) -> Any:
    tp, optional = _unwrap_optional(tp)
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{path}: null is not allowed (expected {_type_name(tp)})")
    if dataclasses.is_dataclass(tp):
        return parse_section(path, value, tp, on_unknown)
    if typing.get_origin(tp) is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"{path}: {value!r} is not a list of {_type_name(item_tp)}s")
        if not value:
            raise ConfigError(f"{path}: the list must not be empty")
        return [_check_scalar(f"{path}[{i}]", v, item_tp, meta) for i, v in enumerate(value)]
    return _check_scalar(path, value, tp, meta)


def parse_section(path: str, data: Any, cls, on_unknown=None):
    """Parses a JSON mapping into the section dataclass `cls`, checking every key.

    Args:
        path: the section's key path (`""` for the root) for messages.
        data: the parsed JSON value.
        cls: the section's dataclass (fields made with `option` / `section`).
        on_unknown: called with an unknown key's path before the error is
            raised (e.g. to say where a renamed key went).
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{path or 'config'}: expected an object, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = f"{path}.{unknown[0]}" if path else unknown[0]
        if on_unknown is not None:
            on_unknown(where)
        raise ConfigError(f"{where}: unknown key (allowed: {', '.join(fields)})")
    kwargs = {}
    for name, value in data.items():
        sub = f"{path}.{name}" if path else name
        tp = section_class(fields[name], hints[name])
        kwargs[name] = _parse_value(sub, value, tp, dict(fields[name].metadata), on_unknown)
    return cls(**kwargs)


def lookup(config, path: str):
    """The value at a dotted key path of a parsed config."""
    node = config
    for part in path.split("."):
        node = getattr(node, part)
    return node


def check_switched_off(config, node=None, path: str = "") -> None:
    """Rejects a key set away from its default while the key that switches it on is off.

    Switches are declared with the keys (`kmixvae.config_fields`): per key
    (`option(..., switch=...)`) or per section (a `SWITCH` class attribute),
    so every section, new ones included, gets this check.
    """
    node = config if node is None else node
    cls = type(node)
    defaults = cls()
    section_switch = getattr(cls, "SWITCH", None)
    for f in dataclasses.fields(cls):
        key = f"{path}.{f.name}" if path else f.name
        value = getattr(node, f.name)
        if dataclasses.is_dataclass(value):
            check_switched_off(config, value, key)
            continue
        if value == getattr(defaults, f.name):
            continue
        switches = [f.metadata.get("switch")]
        if section_switch is not None and f.name != section_switch.key:
            switches.insert(0, section_switch)  # a section that is off says so first
        for switch in filter(None, switches):
            if switch.key.startswith("/"):
                switch_path = switch.key[1:]
            else:
                switch_path = f"{path}.{switch.key}" if path else switch.key
            switch_value = lookup(config, switch_path)
            if not switch.is_on(switch_value):
                default = json.dumps(getattr(defaults, f.name))
                raise ConfigError(
                    f"{key}: {value!r} is set, but it is only used when "
                    f"{switch.condition(switch_path)} "
                    f"({switch.describe(switch_path, switch_value)}); remove it (or "
                    f"--set {key}={default}, its default) or switch it on"
                )


def describe_fields(cls, prefix: str = "") -> list[tuple[str, Any, str]]:
    """(key path, default, allowed) rows for documentation."""
    rows = []
    instance = cls()
    for f in dataclasses.fields(cls):
        path = f"{prefix}{f.name}"
        value = getattr(instance, f.name)
        if dataclasses.is_dataclass(value):
            rows.extend(describe_fields(type(value), path + "."))
            continue
        meta = f.metadata
        allowed = []
        if meta.get("choices"):
            allowed.append(" | ".join(str(c) for c in meta["choices"]))
        if meta.get("min") is not None:
            allowed.append(f">= {meta['min']}")
        if meta.get("max") is not None:
            allowed.append(f"<= {meta['max']}")
        rows.append((path, value, ", ".join(allowed) or meta.get("doc", "")))
    return rows
