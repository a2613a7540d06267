"""The data a command reads: from `--data-dir`/`--dataset` and the run folder or model file.

`evaluate`, `visualize`, `reconstruct`, `encode`, `export-projector` and
`report` take a run folder or a `.keras` file. The data they read starts
from the run's `data` section (`config.json`), or the training-data
description a model file carries (`kmixvae.runs.model_files`), or the
defaults for a model file that carries none; `--data-dir DIR` then sets
`data.dir` and `data.source` (from what DIR holds), `--dataset` the TFDS name.

Example:

```python
data = data_config("saved_models/x.keras", data_dir="../shared/data/mnist-10k")
model, images, labels, split = model_and_data("runs/x", None, None)   # its val_split
judge, skipped = load_judge("saved_models/x.keras", "../shared/data/mnist-10k", None, None,
                            images, split)
```
"""

from __future__ import annotations

from pathlib import Path

from kmixvae import config as config_lib
from kmixvae.data import available_splits, load_split, split_names
from kmixvae.errors import DataError
from kmixvae.evaluation.generation import (
    check_disjoint,
    default_judge_cache_dir,
    load_or_train_judge,
)
from kmixvae.runs.folder import RUN_MARKER
from kmixvae.runs.model_files import load_model_file, read_training_data
from kmixvae.utils.images import as_float_images


def detect_source(folder: str | Path) -> str:
    """The `data.source` a `--data-dir` path holds: `idx`, `npz` or `folder` (image files).

    An `.npz` file is `npz`; a folder with IDX files is `idx`, one with an
    `.npz` is `npz`, and one holding PNG/JPEG files (directly or in
    sub-folders: classes, or `train`/`test` splits) is `folder`.

    Raises:
        DataError: `folder` is neither an .npz file nor a folder, or holds none of these.
    """
    from kmixvae.data.image_folder import IMAGE_SUFFIXES, holds_images

    folder = Path(folder)
    if folder.is_file() and folder.suffix.lower() == ".npz":
        return "npz"
    if not folder.is_dir():
        raise DataError(f"--data-dir {str(folder)!r}: not a folder (nor an .npz file)")
    names = {p.name for p in folder.iterdir()}
    if any(n.startswith(("train-images-idx3-ubyte", "t10k-images-idx3-ubyte")) for n in names):
        return "idx"
    if "mnist.npz" in names or any(n.endswith(".npz") for n in names):
        return "npz"
    if holds_images(folder):
        return "folder"
    raise DataError(
        f"--data-dir {str(folder)!r}: holds neither IDX files (train-images-idx3-ubyte[.gz], "
        f"t10k-images-idx3-ubyte[.gz], ...), nor an .npz (e.g. mnist.npz), nor image files "
        f"({', '.join(IMAGE_SUFFIXES)}, directly or in class sub-folders)"
    )


def folder_data(data_dir: str | Path) -> config_lib.DataConfig:
    """The data config of a `--data-dir` alone: the defaults, with its `dir` and `source`.

    For tools that read a split of a folder without a run or a model file
    (`load_split(folder_data(args.data_dir), args.split)`).

    Raises:
        DataError: `data_dir` holds no data kmixvae reads (`detect_source`).
    """
    return _with_flags(config_lib.DataConfig(), data_dir, None)


def _own_data(model_path) -> tuple[config_lib.DataConfig, str]:
    """The data section a run folder or model file names, and what its training split is."""
    path = Path(model_path)
    if path.is_dir() and (path / RUN_MARKER).is_file():
        return config_lib.load_config(path / RUN_MARKER).data, "the run's data.train_split"
    defaults = config_lib.Config().data
    described = read_training_data(path) if path.is_file() else None
    if described is None:
        return defaults, "the default (the model file names no training split)"
    return config_lib.DataConfig(**{**vars(defaults), **described}), "the model's training split"


def data_config(model_path, data_dir=None, dataset=None) -> config_lib.DataConfig:
    """The data config of a run folder or model file, with `--data-dir`/`--dataset` applied.

    Args:
        model_path: a run folder or a `.keras` file.
        data_dir: `--data-dir` (sets `dir` and `source`), or None.
        dataset: `--dataset` (a TFDS name; sets `source` to `tfds`), or None.

    Returns:
        The `DataConfig` to read splits from.
    """
    data, _ = _own_data(model_path)
    return _with_flags(data, data_dir, dataset)


def _with_flags(data, data_dir, dataset):
    if data_dir is not None:
        return config_lib.DataConfig(
            **{**vars(data), "dir": str(data_dir), "source": detect_source(data_dir)}
        )
    if dataset is not None:
        return config_lib.DataConfig(**{**vars(data), "name": dataset, "source": "tfds"})
    return data


def model_and_data(model_path, data_dir=None, split=None, dataset=None):
    """Loads a model and the images/labels of `split` (by default its own validation split).

    Returns:
        `(model, images, labels, split)`: the model, [0, 1] float images,
        int labels (`None` for unlabelled data) and the split spec read.

    Raises:
        ModelFileError, DataError: the model or the data cannot be used.
    """
    model = load_model_file(model_path)
    data = data_config(model_path, data_dir, dataset)
    split = split or data.val_split or data.train_split
    images, labels = load_split(data, split)
    if tuple(images.shape[1:]) != tuple(model.decoder.image_shape):
        raise DataError(
            f"split {split!r} has images of shape {tuple(images.shape[1:])}, "
            f"the model expects {tuple(model.decoder.image_shape)}"
        )
    return model, as_float_images(images), labels, split


def _missing_split(data, spec) -> str | None:
    """What local files hold when they lack a split `spec` names (None if they have it, or TFDS)."""
    available = available_splits(data)
    if available is None:
        return None
    try:
        split_names(spec, available)
    except DataError:
        return ", ".join(available) or "no split"
    return None


def load_judge(model_path, data_dir, dataset, judge_split, eval_images, eval_split):
    """The generation judge, trained (or read from its cache) on `judge_split`.

    Default split: the training split of the run (its `data.train_split`)
    or of the model file (the description it carries). When the split is
    the default and the data holds no such split (a model file that names
    no training data, evaluated on data without a `train` split), the
    generation scores are skipped and the reason returned. Its labels only
    train the judge, never the model; a split sharing images with the
    evaluated one is an error.

    Returns:
        `(judge, None)`, or `(None, reason)` when the scores are skipped
        (also when the judge's split has no labels).

    Raises:
        DataError: the given `judge_split` cannot be read, or shares images
            with `eval_split`.
    """
    own, origin = _own_data(model_path)
    data = _with_flags(own, data_dir, dataset)
    if judge_split is None:
        judge_split = data.train_split
        holds = _missing_split(data, judge_split)
        if holds is not None:
            return None, (
                f"generation scores skipped: the judge's split {judge_split!r}, {origin}, "
                f"is not in {data.dir} (it holds: {holds}); add --judge-split SPLIT, sharing "
                f"no images with {eval_split!r}, to score them"
            )
    images, labels = load_split(data, judge_split)
    if labels is None:
        return None, (
            f"generation scores skipped: the judge's split {judge_split!r} has no labels "
            "(the judge learns to name labels)"
        )
    if tuple(images.shape[1:]) != tuple(eval_images.shape[1:]):
        raise DataError(
            f"--judge-split {judge_split!r} has images of shape {tuple(images.shape[1:])}, "
            f"the evaluated split {tuple(eval_images.shape[1:])}"
        )
    try:
        check_disjoint(images, eval_images)
    except ValueError as e:
        raise DataError(
            f"--judge-split {judge_split!r} vs --split {eval_split!r}: {e}; "
            "train the judge on another split"
        ) from None
    judge = load_or_train_judge(
        images, labels, seed=0, source=judge_split, cache_dir=default_judge_cache_dir()
    )
    return judge, None


__all__ = ["data_config", "detect_source", "folder_data", "load_judge", "model_and_data"]
