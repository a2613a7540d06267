"""Atomic file writes: a file in a run folder is never left half-written."""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

from kmixvae.errors import WriteError

# `atomic_write`'s temporary names: `.<name>.<8 mkstemp characters>.tmp<suffix of name>`.
_TEMP_NAME = re.compile(r"\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp(?P<suffix>.*)")


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def cache_root() -> Path:
    """kmixvae's cache folder: `$KMIXVAE_CACHE_DIR`, else `~/.cache/kmixvae`."""
    root = os.environ.get("KMIXVAE_CACHE_DIR", "").strip()
    return Path(root).expanduser() if root else Path.home() / ".cache" / "kmixvae"


def write_error(path: str | Path, error: OSError) -> WriteError:
    """A one-line `WriteError` naming `path` and what the operating system said.

    Args:
        path: the file or folder that was being written.
        error: the `OSError` raised (its `strerror` is the cause, e.g. "No
            space left on device"; a different `filename` is named too).

    Returns:
        The `WriteError` to raise.
    """
    if isinstance(error, WriteError):
        return error
    cause = error.strerror or str(error) or type(error).__name__
    where = getattr(error, "filename", None)
    if where is not None and str(where) != str(path) and not _TEMP_NAME.fullmatch(Path(where).name):
        cause += f" ({where})"
    return WriteError(f"cannot write {str(path)!r}: {cause}")


def os_error_line(error: OSError) -> str:
    """One line for an `OSError`: the path(s) it names and the cause, e.g.
    `'a/b': Not a directory`."""
    cause = error.strerror or str(error) or type(error).__name__
    paths = [str(p) for p in (error.filename, getattr(error, "filename2", None)) if p is not None]
    return f"{' -> '.join(repr(p) for p in paths)}: {cause}" if paths else cause


def atomic_write(path: str | Path, write: Callable[[str], None]) -> None:
    """Calls `write(tmp_path)`, then renames the temporary file onto `path`.

    The temporary file sits in the same folder, so the rename is atomic: a
    reader (or a run killed mid-write) sees the old file or the new one,
    never a partial one. An operating-system error (read-only disk, disk
    full, a parent that is a file, no permission) removes the temporary
    file and raises a one-line `WriteError` naming `path` and the cause.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent
        )
    except OSError as e:
        raise write_error(path, e) from None
    os.close(fd)
    try:
        # mkstemp makes the file 0600; a run's files get the mode of any other file the user writes.
        os.chmod(tmp, 0o666 & ~_umask())
        write(tmp)
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(e, OSError):
            raise write_error(path, e) from None
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Writes `text` to `path` atomically."""

    def _write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())

    atomic_write(path, _write)


def remove_temp_files(folder: str | Path) -> list[Path]:
    """Removes the temporary files `atomic_write` left under `folder` (a killed writer's).

    Only names of `atomic_write`'s own pattern are touched. Call it when no
    other process writes to `folder`.

    Returns:
        The paths removed.
    """
    removed = []
    for path in sorted(Path(folder).rglob(".*.tmp*")):
        match = _TEMP_NAME.fullmatch(path.name)
        if match and path.is_file() and Path(match["name"]).suffix == match["suffix"]:
            path.unlink()
            removed.append(path)
    return removed
