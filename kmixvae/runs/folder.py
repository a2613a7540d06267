"""The run folder: its layout, its marker, and claiming, checking and probing one.

A run folder `runs/<name>__<YYYYmmdd_HHMMSS>/` holds `config.json` (its
marker: a folder is a run folder when it has one), `model_summary.txt`,
`history.csv`, `metrics.json`, `checkpoints/` (`last.keras` + `last.json`,
`best.keras`), `tensorboard/`, `report.html` and `model.keras`. Every file is
written through a temporary file and a rename (`kmixvae.utils.files`).

A new run claims its folder atomically: the marker is created exclusively
(`O_CREAT | O_EXCL`), so of two fits started at the same instant on one
folder exactly one gets it; a folder named from the clock that another run
took in the same second gets a suffix (`__20261202_101500_2`).

Example:

```python
path = claim_run_dir(config)          # runs/film_het__20261202_101500/, marker created
check_run_dir(path)                   # a run folder
check_writable("saved_models/x.keras")  # raises WriteError for a path under a file
```
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from kmixvae.errors import ConfigError, ModelFileError, WriteError
from kmixvae.utils.files import write_error

RUN_MARKER = "config.json"
# A run folder's model, in the order `load_model_file` looks for it.
MODEL_CANDIDATES = ("model.keras", "checkpoints/best.keras", "checkpoints/last.keras")

_MAX_SUFFIX = 100


def run_stamp() -> str:
    """The clock part of a new run folder's name, `YYYYmmdd_HHMMSS`."""
    return datetime.now().strftime("%Y%m%d_%H%M%S")


def check_writable(path: str | Path) -> Path:
    """Checks, writing nothing, that a file can later be written at `path`.

    Walks up to the nearest folder that exists: every part on the way must
    be a folder (or not exist yet), and that folder must be writable.

    Args:
        path: the file to be written.

    Returns:
        `path` as a `Path`.

    Raises:
        WriteError: `path` is a folder, a part of it is a regular file, or
            the nearest existing folder is not writable.
    """
    path = Path(path)
    if path.is_dir():
        raise WriteError(f"cannot write {str(path)!r}: it is a folder")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if parent.exists() and not parent.is_dir():
        raise WriteError(f"cannot write {str(path)!r}: {str(parent)!r} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise WriteError(f"cannot write {str(path)!r}: no permission to write in {str(parent)!r}")
    return path


def _claim(path: Path) -> bool:
    """Creates `path` (and its parents) and its marker exclusively; False if the marker exists."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd = os.open(path / RUN_MARKER, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
    except FileExistsError:
        if (path / RUN_MARKER).exists():
            return False
        raise write_error(path, FileExistsError(17, "a file of that name exists")) from None
    except OSError as e:
        raise write_error(path, e) from None
    os.close(fd)
    return True


def _taken(path: Path) -> ConfigError:
    return ConfigError(
        f"run folder {str(path)!r} already exists and is not empty (use --resume to continue it)"
    )


def claim_run_dir(config, run_dir: str | Path | None = None) -> Path:
    """Creates a new run folder and its marker, atomically.

    Args:
        config: the run's `Config` (its `name` and `output.runs_dir`).
        run_dir: the folder to use; it may exist only while empty. Default:
            `<output.runs_dir>/<name>__<timestamp>`, with a suffix `_2`,
            `_3`, ... when another run claimed that name first.

    Returns:
        The claimed folder; its marker (`config.json`) exists, empty, until
        the run writes its config into it.

    Raises:
        ConfigError: `run_dir` exists and is not empty (or another run just
            claimed it).
        WriteError: the folder cannot be created or written.
    """
    if run_dir is not None:
        path = Path(run_dir)
        if path.is_dir() and any(path.iterdir()):
            raise _taken(path)
        if not _claim(path):
            raise _taken(path)
        return path
    base = Path(config.output.runs_dir) / f"{config.name}__{run_stamp()}"
    for n in range(1, _MAX_SUFFIX + 1):
        path = base if n == 1 else base.with_name(f"{base.name}_{n}")
        if path.is_dir() and any(p.name != RUN_MARKER for p in path.iterdir()):
            continue
        if _claim(path):
            return path
    raise _taken(base)


def release_run_dir(path: str | Path, remove_folder: bool = True) -> None:
    """Undoes `claim_run_dir` for a run that could write nothing.

    Removes the empty marker and, with `remove_folder`, the folder if it is
    empty then (a folder the user gave with `--run-dir` is kept).
    """
    path = Path(path)
    marker = path / RUN_MARKER
    if marker.is_file() and marker.stat().st_size == 0:
        marker.unlink()
    if remove_folder:
        try:
            path.rmdir()
        except OSError:
            pass  # not empty: leave it


def check_run_dir(path: str | Path) -> Path:
    """Checks that `path` is a kmixvae run folder (a folder holding its marker)."""
    p = Path(path)
    if not p.is_dir():
        raise ModelFileError(f"run folder {str(p)!r} does not exist")
    if not (p / RUN_MARKER).is_file():
        raise ModelFileError(f"{str(p)!r} is not a kmixvae run folder (no {RUN_MARKER})")
    return p


__all__ = [
    "MODEL_CANDIDATES",
    "RUN_MARKER",
    "check_run_dir",
    "check_writable",
    "claim_run_dir",
    "release_run_dir",
    "run_stamp",
]
