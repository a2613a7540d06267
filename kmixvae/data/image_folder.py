"""Reading a folder of PNG/JPEG files into uint8 arrays (`data.source=folder`).

Layouts (`data.dir` = DIR):

- `DIR/<class>/*.png`: one sub-folder per class gives labels, the classes
  numbered 0, 1, ... in sorted name order (as `keras.utils.image_dataset_from_directory`
  numbers them); the whole folder is split `train`.
- `DIR/*.png`: a flat folder gives no labels (`labels` is `None`); split `train`.
- `DIR/train/...`, `DIR/test/...` (also `validation`): when every sub-folder
  of DIR is one of these split names, each is a split, laid out as above
  (classes numbered over the union of the splits' class names).

Files ending in `.png`, `.jpg` or `.jpeg` (any case) are images; other
files and hidden names are ignored. Every image of a folder must have the
same height and width: mixed sizes are rejected with the sizes found, unless
`data.image_size` asks for every image to be resized (bilinear) to one size. Images are grey (`H x W x 1`) when every file is greyscale,
else RGB (`H x W x 3`; palette images are converted, an alpha channel is
dropped). Files are read in sorted path order, so the arrays are the same
on every run.

Pillow reads the files, not `keras.utils.image_dataset_from_directory`:
that helper needs TensorFlow, and kmixvae also runs on JAX without it; it
also returns a `tf.data` pipeline of float batches, where kmixvae keeps
the whole split in memory as uint8 (4x smaller) and batches it itself
(`kmixvae.data.pipeline`). Pillow is a dependency of matplotlib, which
kmixvae needs anyway.

Example:

```python
images, labels, classes = read_image_folder("shapes/")
images.shape, labels[:3], classes   # (60, 32, 32, 3), [0 0 0], ['circle', 'square', 'triangle']
```
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Optional

import numpy as np

from kmixvae.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
SPLIT_FOLDERS = ("train", "test", "validation")
_GREY_MODES = ("1", "L", "LA", "I", "I;16")


def _is_image(path: Path) -> bool:
    return (
        path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_SUFFIXES
    )


def _subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def holds_images(folder: str | os.PathLike) -> bool:
    """Whether `folder` holds image files, directly or one or two folders down."""
    folder = Path(folder)
    if not folder.is_dir():
        return False
    for p in folder.iterdir():
        if _is_image(p):
            return True
        if p.is_dir() and not p.name.startswith("."):
            for q in p.iterdir():
                if _is_image(q) or (q.is_dir() and any(_is_image(r) for r in q.iterdir())):
                    return True
    return False


def folder_splits(folder: str | os.PathLike) -> dict[str, Path]:
    """The splits of an image folder: `{"train": DIR}`, or its split sub-folders.

    Raises:
        DataError: `folder` is not a folder.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"data.dir {str(folder)!r}: not a folder (data.source=folder)")
    subs = _subfolders(folder)
    if subs and all(p.name in SPLIT_FOLDERS for p in subs):
        if not any(_is_image(p) for p in folder.iterdir()):
            return {p.name: p for p in subs}
    return {"train": folder}


def _split_files(split_dir: Path) -> tuple[list[Path], Optional[list[str]]]:
    """The image files of one split folder and, for a folder of class folders, each file's class."""
    flat = sorted(p for p in split_dir.iterdir() if _is_image(p))
    classes = [p for p in _subfolders(split_dir) if any(_is_image(q) for q in p.iterdir())]
    if flat and classes:
        raise DataError(
            f"{split_dir}: holds both image files ({flat[0].name}, ...) and class folders "
            f"({classes[0].name}/, ...); put every image in a class folder (labels) or none "
            "in any (no labels)"
        )
    if flat:
        return flat, None
    files, names = [], []
    for c in classes:
        for p in sorted(q for q in c.iterdir() if _is_image(q)):
            files.append(p)
            names.append(c.name)
    if not files:
        raise DataError(
            f"{split_dir}: no image files ({', '.join(IMAGE_SUFFIXES)}) in it or in its sub-folders"
        )
    return files, names


def _open(path: Path):
    from PIL import Image, UnidentifiedImageError

    try:
        return Image.open(path)
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise DataError(f"{path}: not a readable image ({type(e).__name__}: {e})") from None


def _check_sizes(sizes: dict[Path, tuple[int, int]], where: Path) -> tuple[int, int]:
    counts = Counter(sizes.values())
    if len(counts) == 1:
        return next(iter(counts))
    example = {}
    for path, size in sizes.items():
        example.setdefault(size, path)
    found = ", ".join(
        f"{h}x{w} ({n} images, e.g. {example[(h, w)].relative_to(where)})"
        for (h, w), n in counts.most_common()
    )
    raise DataError(
        f"{where}: images of different sizes (height x width): {found}; every image must have "
        "the same size, or set data.image_size=[H,W] to resize them all"
    )


def read_image_folder(
    folder: str | os.PathLike,
    class_names: Optional[list[str]] = None,
    image_size: Optional[tuple[int, int]] = None,
) -> tuple[np.ndarray, Optional[np.ndarray], Optional[list[str]]]:
    """Reads one split folder of image files into memory.

    Args:
        folder: a flat folder of images, or a folder of class folders.
        class_names: the class names that number the labels (e.g. the
            union over every split); default: this folder's, sorted.
        image_size: optional `(height, width)`: every image is resized to it
            (bilinear); `None` keeps the size, which must then be the same
            for every image.

    Returns:
        `(images, labels, classes)`: uint8 `[N, H, W, C]` (C = 1 or 3),
        int64 `[N]` labels or `None` for a flat folder, and the class names
        (`None` for a flat folder).

    Raises:
        DataError: no images, an unreadable or truncated file, images of
            different sizes, or image files beside class folders.
    """
    folder = Path(folder)
    files, names = _split_files(folder)
    sizes, grey = {}, True
    for path in files:
        with _open(path) as im:
            sizes[path] = (int(im.height), int(im.width))
            grey = grey and im.mode in _GREY_MODES
    if image_size is None:
        h, w = _check_sizes(sizes, folder)
    else:
        h, w = (int(v) for v in image_size)
    mode, c = ("L", 1) if grey else ("RGB", 3)
    images = np.empty((len(files), h, w, c), np.uint8)
    for i, path in enumerate(files):
        with _open(path) as im:
            try:
                if im.mode in ("I", "I;16"):  # 16-bit grey: the top 8 bits
                    a = np.asarray(im, np.int64)
                    pixels = (a >> 8 if a.max() > 255 else np.clip(a, 0, 255)).astype(np.uint8)
                else:
                    pixels = np.asarray(im.convert(mode), np.uint8)
                if pixels.shape[:2] != (h, w):  # only with image_size
                    from PIL import Image

                    pixels = np.asarray(
                        Image.fromarray(pixels).resize((w, h), Image.Resampling.BILINEAR),
                        np.uint8,
                    )
            except (OSError, ValueError, SyntaxError) as e:
                raise DataError(f"{path}: not a readable image ({type(e).__name__}: {e})") from None
        images[i] = pixels.reshape(h, w, c)
    if names is None:
        return images, None, None
    classes = sorted(set(names)) if class_names is None else list(class_names)
    index = {name: i for i, name in enumerate(classes)}
    labels = np.array([index[n] for n in names], np.int64)
    return images, labels, classes


def folder_class_names(splits: dict[str, Path]) -> Optional[list[str]]:
    """The sorted union of the class folders of every split (`None` when no split has classes).

    Raises:
        DataError: one split has class folders and another is flat.
    """
    kinds = {}
    for name, path in splits.items():
        classes = [p.name for p in _subfolders(path) if any(_is_image(q) for q in p.iterdir())]
        kinds[name] = classes
    labelled = [n for n, c in kinds.items() if c]
    if labelled and len(labelled) != len(kinds):
        flat = [n for n in kinds if n not in labelled]
        raise DataError(
            f"{next(iter(splits.values())).parent}: split folder(s) {', '.join(labelled)} hold "
            f"class folders but {', '.join(flat)} do not; give every split class folders or none"
        )
    if not labelled:
        return None
    return sorted({c for n in labelled for c in kinds[n]})


__all__ = [
    "IMAGE_SUFFIXES",
    "SPLIT_FOLDERS",
    "folder_class_names",
    "folder_splits",
    "holds_images",
    "read_image_folder",
]
