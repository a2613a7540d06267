"""Loading image data as numpy arrays from TFDS, IDX files, an .npz or a folder of image files.

Every loader returns `images` as uint8 `[N, H, W, C]` (with a channel axis, any
`H x W x C`) and `labels` as int64 `[N]`, or `None` for unlabelled data (a
flat image folder, an .npz with `x_<split>` but no `y_<split>`). Every problem with the data (missing files,
corrupt or truncated files, wrong keys, unknown splits, an unprepared TFDS
dataset) raises `DataError` with one line naming the file or split.

Sources (`DataConfig.source`):

- `idx`: a folder with the standard IDX files, gzipped or not:
  `train-images-idx3-ubyte[.gz]`, `train-labels-idx1-ubyte[.gz]` (split
  `train`) and `t10k-images-idx3-ubyte[.gz]`, `t10k-labels-idx1-ubyte[.gz]`
  (split `test`). Only the files of the requested splits are read.
- `npz`: the `mnist.npz` layout (`x_train`, `y_train`, `x_test`, `y_test`),
  `DataConfig.dir` being the .npz file or a folder holding `mnist.npz` (or
  holding one .npz). `x_<split>` is uint8 `[N, H, W]` or `[N, H, W, C]` of
  any size; without `y_<split>` the split is unlabelled.
- `folder`: a folder of PNG/JPEG files (`kmixvae.data.image_folder`): one
  sub-folder per class gives labels (classes numbered in sorted name order),
  a flat folder gives none; the whole folder is split `train`, or its
  `train`/`test`/`validation` sub-folders are the splits.
- `tfds`: any TFDS image dataset (an `image` feature; `label` optional) in
  `DataConfig.dir` (or the TFDS default folder).
  An unprepared dataset is downloaded and prepared when the network is
  reachable (`TFDS_PROBE_HOST`, a 3-second probe), and fails at once with
  one line saying how to use local files when it is not.

Example:

```python
from kmixvae.data.config import DataConfig
images, labels = load_split(DataConfig(source="idx", dir="../shared/data/mnist-10k"), "test[:80%]")
images.shape, images.dtype, labels.dtype  # (8000, 28, 28, 1), uint8, int64
```
"""

from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

import numpy as np

from kmixvae.data.config import DataConfig
from kmixvae.data.image_folder import folder_class_names, folder_splits, read_image_folder
from kmixvae.data.splits import parse_split, resolve_split, split_names
from kmixvae.errors import DataError

IDX_IMAGES_MAGIC = 0x00000803
IDX_LABELS_MAGIC = 0x00000801
# split name -> file name prefix of the standard MNIST IDX files.
IDX_PREFIXES = {"train": "train", "test": "t10k"}
IDX_FILES_HINT = (
    "train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], "
    "t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]"
)
# Every kmixvae command that reads data (fit, evaluate, visualize, reconstruct, encode,
# export-projector) takes --data-dir; a config names the same folder with data.source/data.dir.
LOCAL_FILES_HINT = (
    f"to read local files instead, pass --data-dir DIR with DIR holding {IDX_FILES_HINT} "
    "or mnist.npz (in a config: data.source=idx or npz, data.dir=DIR)"
)

# TFDS downloads MNIST from Google Cloud Storage: the host the network probe tries.
TFDS_PROBE_HOST = ("storage.googleapis.com", 443)

# (images, labels): labels is None for unlabelled data.
Arrays = tuple[np.ndarray, Optional[np.ndarray]]

# Image channels the figures and image grids can draw: grey, RGB, RGBA.
IMAGE_CHANNELS = (1, 3, 4)


def check_image_channels(images: np.ndarray, where: str) -> np.ndarray:
    """Returns `images` (`[N, H, W, C]`) when C is 1, 3 or 4; raises `DataError` naming C otherwise."""
    if images.shape[-1] not in IMAGE_CHANNELS:
        raise DataError(
            f"{where}: images of shape {tuple(images.shape[1:])} have {images.shape[-1]} "
            "channels; kmixvae reads 1 (grey), 3 (RGB) or 4 (RGBA)"
        )
    return images


# ---------------------------------------------------------------------------
# IDX
# ---------------------------------------------------------------------------


def _read_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot be read ({e.strerror or e})") from None
    if path.name.endswith(".gz") or raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"{path}: corrupt gzip file ({e})") from None
    return raw


def read_idx(path: str | os.PathLike, magic: int | None = None) -> np.ndarray:
    """Reads an IDX file of unsigned bytes (gzipped or not) into a numpy array.

    Args:
        path: the file, e.g. `t10k-images-idx3-ubyte.gz`.
        magic: the magic number to require, e.g. `IDX_IMAGES_MAGIC`
            (`0x00000803`); `None` accepts any unsigned-byte IDX file.

    Returns:
        A uint8 array shaped by the header dimensions.

    Raises:
        DataError: the file is missing, not gzip when it should be, has the
            wrong magic number, or its size does not match its header.
    """
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise DataError(f"{path}: truncated IDX file ({len(raw)} bytes, no header)")
    found = int.from_bytes(raw[:4], "big")
    if magic is not None and found != magic:
        raise DataError(
            f"{path}: wrong magic number 0x{found:08x} (expected 0x{magic:08x} for an IDX "
            f"{'image' if magic == IDX_IMAGES_MAGIC else 'label'} file)"
        )
    if raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path}: not an unsigned-byte IDX file (magic number 0x{found:08x})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX file ({len(raw)} bytes, header needs {header})")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(dims, dtype=np.int64))
    if len(raw) != expected:
        what = "truncated" if len(raw) < expected else "oversized"
        raise DataError(
            f"{path}: {what} IDX file ({len(raw)} bytes, header dims {dims} need {expected})"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _find_idx(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def _idx_available(folder: Path) -> list[str]:
    return [
        split
        for split, prefix in IDX_PREFIXES.items()
        if _find_idx(folder, f"{prefix}-images-idx3-ubyte") is not None
        or _find_idx(folder, f"{prefix}-labels-idx1-ubyte") is not None
    ]


def _load_idx_split(folder: Path, split: str) -> Arrays:
    prefix = IDX_PREFIXES[split]
    paths = {}
    for kind, stem in (
        ("images", f"{prefix}-images-idx3-ubyte"),
        ("labels", f"{prefix}-labels-idx1-ubyte"),
    ):
        path = _find_idx(folder, stem)
        if path is None:
            raise DataError(f"{folder / stem}[.gz]: missing (split {split!r} needs it)")
        paths[kind] = path
    images = read_idx(paths["images"], IDX_IMAGES_MAGIC)
    labels = read_idx(paths["labels"], IDX_LABELS_MAGIC)
    if len(images) != len(labels):
        raise DataError(
            f"{paths['labels']}: {len(labels)} labels but {paths['images'].name} has "
            f"{len(images)} images"
        )
    return images[..., None], labels.astype(np.int64)


def _idx_folder(data_dir: str | None) -> Path:
    if not data_dir:
        raise DataError(
            f"data.dir: must be set for data.source=idx (a folder with {IDX_FILES_HINT})"
        )
    folder = Path(data_dir).expanduser()
    if not folder.is_dir():
        raise DataError(
            f"data.dir {str(folder)!r}: not a folder (data.source=idx needs a folder with {IDX_FILES_HINT})"
        )
    return folder


# ---------------------------------------------------------------------------
# NPZ
# ---------------------------------------------------------------------------


def _npz_path(data_dir: str | None) -> Path:
    if not data_dir:
        raise DataError(
            "data.dir: must be set for data.source=npz (an .npz file or a folder with mnist.npz)"
        )
    path = Path(data_dir).expanduser()
    if path.is_dir():
        found = sorted(p for p in path.glob("*.npz") if p.is_file())
        if not (path / "mnist.npz").is_file() and len(found) == 1:
            return found[0]
        if len(found) > 1 and not (path / "mnist.npz").is_file():
            raise DataError(
                f"{path}: holds {len(found)} .npz files ({', '.join(p.name for p in found)}) "
                "and no mnist.npz; pass the one to read as --data-dir FILE.npz"
            )
        path = path / "mnist.npz"
    if not path.is_file():
        raise DataError(
            f"{path}: missing (data.source=npz needs an .npz file or a folder with mnist.npz)"
        )
    return path


def _npz_keys(path: Path) -> list[str]:
    try:
        with np.load(path, allow_pickle=False) as f:
            return list(f.files)
    except Exception as e:  # zipfile.BadZipFile, ValueError, OSError, ...
        raise DataError(f"{path}: not a readable .npz file ({type(e).__name__}: {e})") from None


def _npz_available(keys: Sequence[str]) -> list[str]:
    """Split names: every `x_<split>` key (a split without `y_<split>` is unlabelled)."""
    return [k[2:] for k in keys if k.startswith("x_")]


def _load_npz_split(path: Path, split: str) -> Arrays:
    xk, yk = f"x_{split}", f"y_{split}"
    try:
        with np.load(path, allow_pickle=False) as f:
            x = f[xk]
            y = f[yk] if yk in f.files else None
    except KeyError:
        raise DataError(f"{path}: no keys {xk!r}/{yk!r} for split {split!r}") from None
    except Exception as e:
        raise DataError(f"{path}: cannot read {xk!r}/{yk!r} ({type(e).__name__}: {e})") from None
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or len(x) == 0:
        raise DataError(f"{path}: {xk!r} has shape {x.shape}; expected [N, H, W] or [N, H, W, C]")
    check_image_channels(x, f"{path}: {xk!r}")
    if x.dtype != np.uint8:
        if not np.issubdtype(x.dtype, np.integer) or x.min() < 0 or x.max() > 255:
            raise DataError(f"{path}: {xk!r} must hold uint8 pixels 0-255 (found dtype {x.dtype})")
        x = x.astype(np.uint8)
    if y is None:
        return x, None
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise DataError(
            f"{path}: {yk!r} has shape {y.shape} and dtype {y.dtype}; expected integer labels [N]"
        )
    if len(x) != len(y):
        raise DataError(f"{path}: {len(y)} labels in {yk!r} but {len(x)} images in {xk!r}")
    return x, y.astype(np.int64)


# ---------------------------------------------------------------------------
# Image folder
# ---------------------------------------------------------------------------


def _image_folder(data_dir: str | None) -> Path:
    if not data_dir:
        raise DataError(
            "data.dir: must be set for data.source=folder (a folder of PNG/JPEG files, "
            "one sub-folder per class for labels)"
        )
    folder = Path(data_dir).expanduser()
    if not folder.is_dir():
        raise DataError(
            f"data.dir {str(folder)!r}: not a folder (data.source=folder needs a folder of "
            "PNG/JPEG files)"
        )
    return folder


# ---------------------------------------------------------------------------
# TFDS
# ---------------------------------------------------------------------------


def _tfds_is_prepared(builder) -> bool:
    """Whether the TFDS builder's data is on disk (kept separate so tests can mock TFDS)."""
    return bool(builder.is_prepared())


def _network_available(timeout: float = 3.0) -> bool:
    """Whether `TFDS_PROBE_HOST` answers within `timeout` seconds."""
    import socket

    try:
        socket.create_connection(TFDS_PROBE_HOST, timeout=timeout).close()
    except OSError:
        return False
    return True


def _first_line(e: Exception) -> str:
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0]}" if lines else type(e).__name__


def _load_tfds(name: str, spec: str, data_dir: str | None) -> Arrays:
    parse_split(spec)  # malformed specs fail here, with our message
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as e:
        raise DataError(f"TFDS dataset {name!r}: cannot be opened ({_first_line(e)})") from None
    where = f"TFDS dataset {name!r} in {builder.data_dir}"
    if not _tfds_is_prepared(builder):
        if not _network_available():
            raise DataError(
                f"{where}: not prepared, and TFDS cannot download it without network access; "
                f"{LOCAL_FILES_HINT}"
            )
        try:
            builder.download_and_prepare()
        except Exception as e:
            raise DataError(
                f"{where}: download failed ({_first_line(e)}); {LOCAL_FILES_HINT}"
            ) from None
    available = list(builder.info.splits.keys())
    if available:  # empty only under tfds.testing.mock_data
        split_names(spec, available, where=where)
    features = builder.info.features
    keys = list(features.keys()) if hasattr(features, "keys") else []
    if "image" not in keys:
        raise DataError(
            f"{where}: has no 'image' feature (features: {', '.join(keys) or 'none'}); "
            "kmixvae reads TFDS image datasets"
        )
    with_labels = "label" in keys
    try:
        ds = builder.as_dataset(split=spec, shuffle_files=False)
        if with_labels:
            ds = ds.map(lambda ex: (ex["image"], ex["label"]))
        else:
            ds = ds.map(lambda ex: (ex["image"], 0))
        xs, ys = [], []
        for x, y in tfds.as_numpy(ds.batch(8192)):
            xs.append(x)
            ys.append(y)
    except (ConnectionError, OSError) as e:
        raise DataError(
            f"{where}: cannot be read, split {spec!r} ({_first_line(e)}); {LOCAL_FILES_HINT}"
        ) from None
    except Exception as e:
        raise DataError(f"{where}: cannot be read, split {spec!r} ({_first_line(e)})") from None
    if not xs:
        raise DataError(f"{where}: split {spec!r} selects no examples")
    images = np.concatenate(xs)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.dtype != np.uint8:
        raise DataError(
            f"{where}: images of shape {images.shape[1:]} and dtype {images.dtype}; "
            "expected uint8 [H, W] or [H, W, C] images of one size"
        )
    check_image_channels(images, where)
    return images, (np.concatenate(ys).astype(np.int64) if with_labels else None)


# ---------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------


def _select(spec: str, raw: dict[str, Arrays], where: str) -> Arrays:
    ranges = resolve_split(spec, {k: len(v[0]) for k, v in raw.items()}, where=where)
    images = np.concatenate([raw[name][0][a:b] for name, a, b in ranges])
    unlabelled = [name for name, _, _ in ranges if raw[name][1] is None]
    if unlabelled and len(unlabelled) != len(ranges):
        raise DataError(
            f"split {spec!r}: joins labelled and unlabelled splits ({', '.join(unlabelled)} "
            f"has no labels) from {where}"
        )
    labels = None if unlabelled else np.concatenate([raw[name][1][a:b] for name, a, b in ranges])
    if len(images) == 0:
        raise DataError(f"split {spec!r}: selects no examples from {where}")
    shapes = {raw[name][0].shape[1:] for name, _, _ in ranges}
    if len(shapes) > 1:
        raise DataError(
            f"split {spec!r}: the splits in {where} have different image shapes {sorted(shapes)}"
        )
    return images, labels


def available_splits(data_config: DataConfig) -> list[str] | None:
    """The split names local files hold (`idx`, `npz`, `folder`), e.g. `["test"]`; None for TFDS.

    Raises:
        DataError: the folder or file of `data.dir` cannot be used.
    """
    if data_config.source == "idx":
        return _idx_available(_idx_folder(data_config.dir))
    if data_config.source == "npz":
        return _npz_available(_npz_keys(_npz_path(data_config.dir)))
    if data_config.source == "folder":
        return list(folder_splits(_image_folder(data_config.dir)))
    return None


def load_splits(data_config: DataConfig, specs: Sequence[str]) -> list[Arrays]:
    """Loads several split specs, reading each underlying file once.

    Args:
        data_config: the `data` section of the config (`name`, `source`, `dir`).
        specs: split specs, e.g. `["test[:80%]", "test[80%:]"]`.

    Returns:
        One `(images, labels)` pair per spec: uint8 `[N, H, W, C]` and int64
        `[N]`, or `None` for unlabelled data.

    Raises:
        DataError: any problem with the files, the keys or the splits.
    """
    source = data_config.source
    if source == "tfds":
        return [_load_tfds(data_config.name, spec, data_config.dir) for spec in specs]
    if source == "idx":
        folder = _idx_folder(data_config.dir)
        available = _idx_available(folder)
        files = sorted(p.name for p in folder.iterdir() if "-idx" in p.name)
        where = f"{folder} (IDX files found: {', '.join(files) or 'none'})"
        load = lambda split: _load_idx_split(folder, split)  # noqa: E731
    elif source == "npz":
        path = _npz_path(data_config.dir)
        keys = _npz_keys(path)
        available = _npz_available(keys)
        where = f"{path} (keys found: {', '.join(keys) or 'none'})"
        load = lambda split: _load_npz_split(path, split)  # noqa: E731
    elif source == "folder":
        root = _image_folder(data_config.dir)
        splits = folder_splits(root)
        classes = folder_class_names(splits)
        available = list(splits)
        where = f"{root} (split folders found: {', '.join(available)})"
        size = data_config.image_size
        load = lambda split: read_image_folder(splits[split], classes, size)[:2]  # noqa: E731
    else:
        raise DataError(f"data.source: {source!r} is not one of tfds, idx, npz, folder")
    needed: list[str] = []
    for spec in specs:
        needed += [n for n in split_names(spec, available, where=where) if n not in needed]
    raw = {name: load(name) for name in needed}
    return [_select(spec, raw, where) for spec in specs]


def load_split(data_config: DataConfig, split: str) -> Arrays:
    """Loads one split of the configured data source as numpy arrays.

    Args:
        data_config: the `data` section of the config (`name`, `source`, `dir`).
        split: a TFDS-style split spec, e.g. `"train"`, `"test[:80%]"`,
            `"train[1000:2000]"`.

    Returns:
        `(images, labels)`: uint8 `[N, H, W, C]` and int64 `[N]` (`None`
        for unlabelled data: a flat image folder, an .npz without `y_<split>`,
        a TFDS dataset without a `label` feature).

    Raises:
        DataError: any problem with the files, the keys or the split.

    Example:

    ```python
    cfg = DataConfig(source="npz", dir="data/mnist.npz")
    x, y = load_split(cfg, "train[:100]")  # (100, 28, 28, 1) uint8, (100,) int64
    ```
    """
    return load_splits(data_config, [split])[0]
