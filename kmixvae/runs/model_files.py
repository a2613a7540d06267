"""Model files: loading a `.keras` file (or a run folder's model) safely, saving one atomically.

A kmixvae `.keras` file is a Keras archive. The files kmixvae writes also
carry the description of the data the model trained on, as one JSON entry
of the archive (`TRAINING_DATA_ENTRY`: `name`, `source`, `dir`,
`train_split`, `val_split` of the run's `data` section), which Keras itself
ignores. Commands given a model file read it for their defaults, as they
read a run folder's `config.json`: `evaluate saved_models/x.keras` judges
generation with a classifier of the model's own training split. Files saved
before this carry none; `read_training_data` returns None for them.

Loading goes through Keras' safe mode (a file with a `Lambda` payload is
refused, never run) and turns every failure into one `ModelFileError` line.

Example:

```python
model = load_model_file("runs/film_het__20261126_090000")   # its model.keras
save_model_atomic(model, "saved_models/x.keras", training_data=describe_training_data(config.data))
read_training_data("saved_models/x.keras")["train_split"]   # 'test[:80%]'
save_for_inference(model, "saved_models/x.keras", training_data=describe_training_data(config.data))
```
"""

from __future__ import annotations

import contextlib
import io
import json
import zipfile
from pathlib import Path

import keras

from kmixvae.errors import ModelFileError
from kmixvae.models import MixtureVAE  # registers every kmixvae class for load_model
from kmixvae.models.export import inference_copy
from kmixvae.runs.folder import MODEL_CANDIDATES, check_run_dir
from kmixvae.utils.files import atomic_write

TRAINING_DATA_ENTRY = "kmixvae_training_data.json"
TRAINING_DATA_KEYS = ("name", "source", "dir", "train_split", "val_split")


def describe_training_data(data_config) -> dict:
    """The description of a run's data that its model files carry.

    Args:
        data_config: the run's `DataConfig`.

    Returns:
        dict with `TRAINING_DATA_KEYS` (`dir` None for TFDS' default folder).
    """
    return {key: getattr(data_config, key) for key in TRAINING_DATA_KEYS}


def save_model_atomic(model, path: str | Path, training_data: dict | None = None) -> None:
    """`model.save(path)` through a temporary file and a rename.

    Args:
        model: the Keras model.
        path: the `.keras` file.
        training_data: optional `describe_training_data(...)` dict, stored in the
            archive as `TRAINING_DATA_ENTRY`.
    """

    def write(tmp: str) -> None:
        model.save(tmp)
        if training_data is not None:
            with zipfile.ZipFile(tmp, "a") as archive:
                archive.writestr(TRAINING_DATA_ENTRY, json.dumps(training_data, indent=2))

    atomic_write(path, write)


def read_training_data(path: str | Path) -> dict | None:
    """The training-data description a `.keras` file carries, or None (none, or not readable)."""
    try:
        with zipfile.ZipFile(path) as archive:
            if TRAINING_DATA_ENTRY not in archive.namelist():
                return None
            data = json.loads(archive.read(TRAINING_DATA_ENTRY).decode("utf-8"))
    except (OSError, ValueError, zipfile.BadZipFile):
        return None
    if not isinstance(data, dict):
        return None
    return {
        key: data[key] for key in TRAINING_DATA_KEYS if isinstance(data.get(key), (str, type(None)))
    }


def save_for_inference(model, path: str | Path, training_data: dict | None = None) -> Path:
    """Saves an inference copy of `model` (no optimizer state) atomically to a `.keras` file.

    Args:
        model: a built `MixtureVAE`.
        path: destination, ending in `.keras`.
        training_data: optional description of its training data (see
            `describe_training_data`), carried by the file.

    Returns:
        The path written.
    """
    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"{str(path)!r}: must end with .keras")
    save_model_atomic(inference_copy(model), path, training_data=training_data)
    return path


def model_file_of(path: str | Path) -> Path:
    """The `.keras` file `path` names: itself, or a run folder's model (see `MODEL_CANDIDATES`)."""
    p = Path(path)
    if not p.is_dir():
        return p
    check_run_dir(p)
    for name in MODEL_CANDIDATES:
        if (p / name).is_file():
            return p / name
    raise ModelFileError(f"run folder {str(path)!r} holds no saved model yet")


def load_model_file(path: str | Path) -> keras.Model:
    """Loads a kmixvae `.keras` file, or a run folder's model, with one-line errors."""
    p = model_file_of(path)
    if not p.exists():
        raise ModelFileError(f"model file {str(p)!r} does not exist")
    if p.suffix != ".keras":
        raise ModelFileError(f"model file {str(p)!r} is not a .keras file")
    if not zipfile.is_zipfile(p):  # Keras reports a corrupt archive as "File not found"
        raise ModelFileError(
            f"model file {str(p)!r} is not a valid .keras (zip) file "
            f"({p.stat().st_size} bytes): it is corrupt, truncated or empty"
        )
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            model = keras.models.load_model(p)
    except Exception as e:  # Keras raises many types for a bad file
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelFileError(f"model file {str(p)!r} cannot be loaded: {first[:200]}") from None
    if not isinstance(model, MixtureVAE):
        raise ModelFileError(
            f"model file {str(p)!r} is not a kmixvae model (it holds a {type(model).__name__})"
        )
    return model


__all__ = [
    "TRAINING_DATA_ENTRY",
    "load_model_file",
    "model_file_of",
    "read_training_data",
    "save_for_inference",
    "save_model_atomic",
    "describe_training_data",
]
