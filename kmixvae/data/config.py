"""DataConfig: the `data` section (what to train on, how it is batched and paired) and its rules."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from kmixvae import choices
from kmixvae.config_fields import only_unless, only_when, option
from kmixvae.data.splits import parse_split
from kmixvae.errors import ConfigError, DataError


@dataclass
class DataConfig:
    name: str = option(
        "mnist",
        doc="TFDS dataset with an `image` feature (`label` optional), e.g. mnist, "
        "fashion_mnist, cifar10, svhn_cropped, emnist/digits (data.source=tfds only)",
    )
    source: str = option(
        "tfds",
        choices=choices.DATA_SOURCES,
        doc="tfds, IDX files, an .npz (x_<split>, optional y_<split>), or a folder of "
        "PNG/JPEG files (one sub-folder per class gives labels); --data-dir picks it "
        "from what DIR holds",
    )
    dir: Optional[str] = option(
        None, doc="folder of IDX files, of image files or of an .npz; an .npz file; TFDS data_dir"
    )
    image_size: Optional[list[int]] = option(
        None,
        lo=1,
        doc="[height, width]: resize every image of the folder to it (Pillow, bilinear); "
        "null = every image must already have the same size (data.source=folder only)",
        switch=only_when("source", "folder"),
    )
    train_split: str = option("train")
    val_split: str = option("test")
    batch_size: int = option(128, lo=1, doc="global batch size (across all replicas)")
    drop_remainder: bool = option(
        False,
        doc="train on full batches only: each pass over the training images leaves out its "
        "last, smaller batch (other images each pass: every pass is shuffled anew), so the "
        "training step has one shape and JAX compiles it once instead of twice",
    )
    shuffle_buffer: int = option(
        10000, lo=0, doc="shuffle buffer of the tf_data pipeline (0 = all)"
    )
    pipeline: str = option(
        "auto",
        choices=choices.PIPELINES,
        doc="input pipeline: tf.data (needs TensorFlow), in-memory arrays "
        "(keras.utils.PyDataset, no TensorFlow), or auto (tf_data where TensorFlow is installed)",
    )
    neighbors: int = option(
        0, lo=0, doc="k of the input-space k-NN graph that pairs training images (0 = no pairs)"
    )
    neighbor_space: str = option(
        "pixels",
        choices=choices.NEIGHBOR_SPACES,
        doc="the space of that graph: pixel vectors, or histograms of oriented gradients "
        "(hog: 2x2 blocks of cells of min(H, W) // 7 pixels, 9 orientations)",
        switch=only_unless("neighbors", 0),
    )
    neighbor_mutual: bool = option(
        False,
        doc="keep only mutual k-NN pairs (j in kNN(i) and i in kNN(j))",
        switch=only_unless("neighbors", 0),
    )
    neighbor_refresh_epoch: int = option(
        0,
        lo=0,
        doc="from this epoch the pairs come from the k-NN graph of the encoder's trunk "
        "features, computed once at that epoch (0 = pixel pairs throughout)",
        switch=only_unless("neighbors", 0),
    )
    neighbor_refresh_graph: str = option(
        "features",
        choices=choices.REFRESH_GRAPHS,
        doc="the refreshed pairs: the features' k-NN graph, or only its pairs that the "
        "input-space graph (data.neighbor_space) also lists (agreement)",
        switch=only_unless("neighbor_refresh_epoch", 0),
    )


# A TFDS dataset name: `name`, `name/config`, optionally `:version`.
_TFDS_NAME = re.compile(r"^[a-z][a-z0-9_]*(/[A-Za-z0-9_.-]+)?(:[0-9.*]+)?$")


def check_data(data: DataConfig) -> None:
    """`data.name` is a TFDS name, `data.image_size` two numbers, and split specs follow
    the TFDS grammar (checked here, before any data is read)."""
    if not _TFDS_NAME.match(data.name):
        raise ConfigError(
            f"data.name: {data.name!r} is not a TFDS dataset name (e.g. mnist, cifar10, "
            "emnist/digits, mnist:3.*)"
        )
    if data.image_size is not None and len(data.image_size) != 2:
        raise ConfigError(
            f"data.image_size: {data.image_size!r} must be [height, width] (two numbers) or null"
        )
    for key in ("train_split", "val_split"):
        spec = getattr(data, key)
        if key == "val_split" and spec == "":
            continue  # no validation data
        try:
            parse_split(spec)
        except DataError as e:
            raise ConfigError(f"data.{key}: {e}") from None
