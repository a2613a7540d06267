"""Presets: trained models that ship inside the package, loaded by name.

Each preset is a `.keras` file in this folder with its model card (`<name>.md`),
listed in `presets.json` (file, card and a one-line description). Every
`kmixvae` command that takes a model path also takes a preset name, and
Python loads one with `kmixvae.load_preset(name)`. `apps/ship_model.py`
writes the file, its card and its `presets.json` entry.

Example:

```python
import kmixvae

kmixvae.list_presets()                      # {"mnist_film_het": "MNIST, 10 channels ..."}
model = kmixvae.load_preset("mnist_film_het")
model.sample(16, channel=3)["mean"].shape   # (16, 28, 28, 1)
```
"""

from __future__ import annotations

import json
from pathlib import Path

from kmixvae.errors import ModelFileError

PRESETS_DIR = Path(__file__).resolve().parent
INDEX_NAME = "presets.json"


def _index(folder: Path | None = None) -> dict:
    """The `presets.json` entries whose model file is there, by name."""
    folder = Path(folder) if folder is not None else PRESETS_DIR
    path = folder / INDEX_NAME
    if not path.is_file():
        return {}
    try:
        entries = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ModelFileError(f"presets index {str(path)!r} is not readable JSON ({e})") from None
    return {
        name: entry
        for name, entry in sorted(entries.items())
        if isinstance(entry, dict) and (folder / entry.get("file", "")).is_file()
    }


def list_presets(folder: str | Path | None = None) -> dict[str, str]:
    """The shipped presets and their one-line descriptions.

    Args:
        folder: the presets folder (default: the package's).

    Returns:
        dict name -> description, sorted by name; a preset whose model file
        is missing is not listed.
    """
    return {name: entry.get("description", "") for name, entry in _index(folder).items()}


def _unknown(name: str, index: dict) -> ModelFileError:
    names = ", ".join(index) or "none are installed"
    return ModelFileError(
        f"{name!r} is neither a model file, a run folder nor a preset (presets: {names}; "
        "`kmixvae presets` lists them)"
    )


def preset_path(name: str, folder: str | Path | None = None) -> Path:
    """The model file of preset `name`.

    Args:
        name: a preset name (see `list_presets`).
        folder: the presets folder (default: the package's).

    Returns:
        The `.keras` file's path.

    Raises:
        ModelFileError: `name` is not a preset; the message lists the presets.
    """
    folder = Path(folder) if folder is not None else PRESETS_DIR
    index = _index(folder)
    if name not in index:
        raise _unknown(name, index)
    return folder / index[name]["file"]


def card_path(name: str, folder: str | Path | None = None) -> Path | None:
    """The model card (markdown) of preset `name`, or None when it has none."""
    folder = Path(folder) if folder is not None else PRESETS_DIR
    preset_path(name, folder)
    card = _index(folder)[name].get("card")
    return folder / card if card and (folder / card).is_file() else None


def is_preset_name(value: str) -> bool:
    """Whether `value` reads as a preset name rather than a path: no folder, no `.keras`."""
    value = str(value)
    return bool(value) and "/" not in value and "\\" not in value and "." not in value


def resolve_model_path(value: str | Path, folder: str | Path | None = None) -> str:
    """A command's model argument as a path: an existing path as given, else a preset's file.

    A value that is not an existing path and reads as a name (no folder part,
    no suffix) must be a preset; anything else is returned as given, so a
    mistyped path gets the model loader's own "does not exist" line.

    Args:
        value: a `.keras` file, a run folder or a preset name.
        folder: the presets folder (default: the package's).

    Returns:
        The path to load, as a string.

    Raises:
        ModelFileError: `value` reads as a name but is not a preset (the
            message lists the presets).
    """
    if Path(value).exists() or not is_preset_name(str(value)):
        return str(value)
    return str(preset_path(str(value), folder))


def load_preset(name: str, folder: str | Path | None = None):
    """Loads a shipped preset by name.

    Args:
        name: a preset name (`list_presets()` lists them).
        folder: the presets folder (default: the package's).

    Returns:
        The `MixtureVAE` (inference only: no optimizer state).

    Raises:
        ModelFileError: `name` is not a preset, or its file cannot be loaded.
    """
    from kmixvae.runs import load_model_file

    return load_model_file(preset_path(name, folder))


def write_entry(
    folder: str | Path, name: str, file: str, card: str | None, description: str
) -> Path:
    """Adds or replaces preset `name` in `folder`'s `presets.json` (what ship_model calls).

    Returns:
        The index file's path.
    """
    from kmixvae.utils.files import atomic_write_text

    folder = Path(folder)
    path = folder / INDEX_NAME
    entries = json.loads(path.read_text()) if path.is_file() else {}
    entries[name] = {"file": file, "card": card, "description": description}
    atomic_write_text(path, json.dumps(dict(sorted(entries.items())), indent=2) + "\n")
    return path


__all__ = [
    "PRESETS_DIR",
    "card_path",
    "is_preset_name",
    "list_presets",
    "load_preset",
    "preset_path",
    "resolve_model_path",
    "write_entry",
]
