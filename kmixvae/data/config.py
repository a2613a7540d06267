"""DataConfig: the `data` section (what to train on, how it is batched and paired) and its rules."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from kmixvae import choices
from kmixvae.config_fields import only_unless, option
from kmixvae.data.splits import parse_split
from kmixvae.errors import ConfigError, DataError


@dataclass
class DataConfig:
    name: str = option("mnist", choices=choices.DATASETS)
    source: str = option("tfds", choices=choices.DATA_SOURCES)
    dir: Optional[str] = option(None, doc="folder of IDX files or of mnist.npz; TFDS data_dir")
    train_split: str = option("train")
    val_split: str = option("test")
    batch_size: int = option(128, lo=1, doc="global batch size (across all replicas)")
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
        0, lo=0, doc="k of the pixel-space k-NN graph that pairs training images (0 = no pairs)"
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


def check_data(data: DataConfig) -> None:
    """Split specs follow the TFDS grammar (checked here, before any data is read)."""
    for key in ("train_split", "val_split"):
        spec = getattr(data, key)
        if key == "val_split" and spec == "":
            continue  # no validation data
        try:
            parse_split(spec)
        except DataError as e:
            raise ConfigError(f"data.{key}: {e}") from None
