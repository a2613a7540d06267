"""Config files: strict JSON reading (one-line errors, duplicate keys refused) and atomic saving."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from kmixvae.errors import ConfigError
from kmixvae.utils.files import atomic_write_text


def read_json(path: str | Path) -> dict:
    """Reads a JSON config file, with a one-line error for every failure."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"config file {str(p)!r} does not exist")
    if p.is_dir():
        raise ConfigError(f"config file {str(p)!r} is a directory")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"config file {str(p)!r} cannot be read: {e}") from None
    too_deep = ConfigError(f"config file {str(p)!r}: its JSON is nested too deeply")
    try:
        data = json.loads(text, object_pairs_hook=_object_without_duplicates)
    except json.JSONDecodeError as e:
        raise ConfigError(
            f"config file {str(p)!r} is not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}"
        ) from None
    except RecursionError:
        raise too_deep from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(p)!r}: the top level must be a JSON object")
    try:
        duplicate = _first_duplicate_key(data)
    except RecursionError:
        raise too_deep from None
    if duplicate is not None:
        raise ConfigError(
            f"config file {str(p)!r}: {duplicate}: duplicate key (each key may appear once "
            "in an object; JSON would silently keep the last one)"
        )
    return data


class _ObjectWithDuplicateKey(dict):
    """A JSON object in which `duplicate` appeared more than once."""

    duplicate = ""


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict:
    """`object_pairs_hook` that marks an object whose keys repeat (the path is found later)."""
    obj = {}
    for key, value in pairs:
        if key in obj:
            marked = _ObjectWithDuplicateKey(pairs)
            marked.duplicate = key
            return marked
        obj[key] = value
    return obj


def _first_duplicate_key(node: Any, path: str = "") -> str | None:
    """The key path of the first repeated key in parsed JSON, or None."""
    if isinstance(node, _ObjectWithDuplicateKey):
        return f"{path}.{node.duplicate}" if path else node.duplicate
    if isinstance(node, dict):
        children = node.items()
    elif isinstance(node, list):
        children = enumerate(node)
    else:
        return None
    for key, value in children:
        sub = f"{path}[{key}]" if isinstance(key, int) else (f"{path}.{key}" if path else key)
        found = _first_duplicate_key(value, sub)
        if found is not None:
            return found
    return None


def save_config(config, path: str | Path) -> None:
    """Writes a resolved config (a section dataclass) as JSON, atomically."""
    atomic_write_text(path, json.dumps(dataclasses.asdict(config), indent=2) + "\n")
