"""Input pipelines for training and evaluation: `tf.data`, or in-memory arrays.

Images go in as uint8 `[N, H, W, C]` numpy arrays and come out as float32
batches in [0, 1]. Training pipelines yield the images only (the model is
unsupervised, so labels never reach `fit`); evaluation pipelines can yield
`(x, y)`. Two implementations make the same batches (`data.pipeline`):
`tf_data` (`tf.data`, feeds Keras 3 on both backends, needs TensorFlow) and
`arrays` (`keras.utils.PyDataset` over numpy, `kmixvae.data.array_dataset`,
needs no TensorFlow). `auto` takes `tf_data` where TensorFlow is installed
and `arrays` where it is not (the JAX backend without TensorFlow).

Example:

```python
from kmixvae.config import load_config
bundle = load_datasets(load_config("configs/film_het.json"))
model.fit(bundle.train_dataset(), validation_data=bundle.val_dataset(), epochs=3)
```
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional, Union

import numpy as np

from kmixvae.config import Config, DataConfig
from kmixvae.data.batching import check_batch_inputs, pixel_scale
from kmixvae.data.sources import load_splits
from kmixvae.errors import ConfigError, DataError

if TYPE_CHECKING:  # TensorFlow is imported only by the `tf_data` pipeline
    import tensorflow as tf

PIPELINES = ("auto", "tf_data", "arrays")


def tensorflow_available() -> bool:
    """Whether `import tensorflow` can succeed (without importing it)."""
    try:
        return importlib.util.find_spec("tensorflow") is not None
    except (ImportError, ValueError):
        return False


def resolve_pipeline(name: str = "auto") -> str:
    """The input pipeline `data.pipeline` names: `tf_data` or `arrays`.

    Args:
        name: `auto` (`tf_data` where TensorFlow is installed, else `arrays`),
            `tf_data` or `arrays`.

    Raises:
        ConfigError: an unknown name, or `tf_data` without TensorFlow.
    """
    if name not in PIPELINES:
        raise ConfigError(f"data.pipeline: {name!r} is not one of {', '.join(PIPELINES)}")
    if name == "auto":
        return "tf_data" if tensorflow_available() else "arrays"
    if name == "tf_data" and not tensorflow_available():
        raise ConfigError(
            "data.pipeline: 'tf_data' needs TensorFlow, which is not installed "
            "(use 'arrays' or 'auto')"
        )
    return name


def make_dataset(
    images: np.ndarray,
    labels: Optional[np.ndarray] = None,
    batch_size: int = 128,
    *,
    shuffle: bool = False,
    seed: Optional[int] = None,
    shuffle_buffer: int = 10000,
    drop_remainder: bool = False,
    with_labels: bool = False,
    repeat: bool = False,
) -> tf.data.Dataset:
    """Builds a batched, normalised, optionally shuffled `tf.data.Dataset`.

    Args:
        images: uint8 `[N, H, W, C]` pixels 0-255 (float arrays are taken as
            already in [0, 1] and only cast to float32).
        labels: int `[N]` labels; needed only when `with_labels=True`.
        batch_size: examples per batch (the global batch size).
        shuffle: shuffle the examples, with a new order every epoch.
        seed: shuffle seed; the same seed gives the same sequence of epoch
            orders. `None` = not reproducible.
        shuffle_buffer: shuffle buffer size; 0 or a size of at least `N`
            shuffles the whole dataset uniformly.
        drop_remainder: drop the last, smaller batch.
        with_labels: yield `(x, y)` (for evaluation) instead of `x` only.
        repeat: repeat the (reshuffled) examples without end, before
            batching, so that every batch is full; for `steps_per_epoch`.

    Returns:
        A prefetched dataset of float32 `[B, H, W, C]` batches in [0, 1]
        (`x`), or of `(x, y)` with int64 `y` when `with_labels=True`.

    Example:

    ```python
    ds = make_dataset(images, None, 128, shuffle=True, seed=0)
    x = next(iter(ds))  # float32 (128, 28, 28, 1)
    ```
    """
    import tensorflow as tf

    images, labels = check_batch_inputs(images, labels, batch_size, with_labels)
    if with_labels:
        ds = tf.data.Dataset.from_tensor_slices((images, labels))
    else:
        ds = tf.data.Dataset.from_tensor_slices(images)
    n = len(images)
    if shuffle and n > 1:
        buffer = n if shuffle_buffer <= 0 else min(shuffle_buffer, n)
        ds = ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    scale = pixel_scale(images)

    def normalise(x):
        return tf.cast(x, tf.float32) * scale

    if with_labels:
        ds = ds.map(lambda x, y: (normalise(x), y), num_parallel_calls=tf.data.AUTOTUNE)
    else:
        ds = ds.map(normalise, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def make_neighbor_dataset(
    images: np.ndarray,
    neighbors: np.ndarray,
    batch_size: int = 128,
    *,
    seed: Optional[int] = None,
    drop_remainder: bool = False,
    repeat: bool = False,
) -> tf.data.Dataset:
    """Shuffled training batches of `{"x": x, "neighbor": x_nbr}` in [0, 1].

    Each epoch pairs every image with one of its precomputed neighbours,
    drawn anew (see `kmixvae.data.neighbors.pixel_neighbors`).

    Args:
        images: uint8 `[N, H, W, C]` (or float in [0, 1]).
        neighbors: int `[N, k]` neighbour indices, or an int64 `tf.Variable`
            of that shape (assigning it changes the pairs of later batches).
        batch_size: examples per batch.
        seed: shuffle and draw seed.
        drop_remainder: drop the last, smaller batch.
        repeat: repeat the reshuffled images without end before batching
            (see `make_dataset`).

    Returns:
        A prefetched dataset of dicts of float32 `[B, H, W, C]` batches.
    """
    import tensorflow as tf

    images = np.asarray(images)
    if isinstance(neighbors, tf.Variable):
        nbr = neighbors
    else:
        nbr = tf.constant(np.asarray(neighbors, dtype="int64"))
    shape = tuple(nbr.shape)
    if len(shape) != 2 or shape[0] != len(images):
        raise DataError(f"neighbors: expected shape ({len(images)}, k), got {shape}")
    scale = pixel_scale(images)
    table = tf.constant(images)
    k = shape[1]
    n = len(images)
    ds = tf.data.Dataset.range(n).shuffle(n, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    gen = tf.random.Generator.from_seed(0 if seed is None else seed)

    def pair(idx):
        pick = gen.uniform(tf.shape(idx), 0, k, dtype=tf.int64)
        j = tf.gather_nd(nbr, tf.stack([idx, pick], axis=1))
        x = tf.cast(tf.gather(table, idx), tf.float32) * scale
        x_nbr = tf.cast(tf.gather(table, j), tf.float32) * scale
        return {"x": x, "neighbor": x_nbr}

    return ds.map(pair).prefetch(tf.data.AUTOTUNE)


def neighbor_table(neighbors: np.ndarray, pipeline: str = "auto"):
    """A replaceable neighbour table for `neighbor_dataset` (what a refresh assigns to).

    Args:
        neighbors: int `(N, k)` neighbour indices.
        pipeline: `data.pipeline`.

    Returns:
        An int64 `tf.Variable` (`tf_data`) or a `NeighborTable` (`arrays`);
        both have `shape` and `assign`.
    """
    if resolve_pipeline(pipeline) == "tf_data":
        import tensorflow as tf

        return tf.Variable(np.asarray(neighbors, dtype="int64"), trainable=False, dtype=tf.int64)
    from kmixvae.data.array_dataset import NeighborTable

    return NeighborTable(neighbors)


def neighbor_dataset(
    images: np.ndarray,
    neighbors,
    batch_size: int = 128,
    *,
    seed: Optional[int] = None,
    drop_remainder: bool = False,
    repeat: bool = False,
    pipeline: str = "auto",
):
    """Training batches of `{"x": x, "neighbor": x_nbr}` on the chosen pipeline.

    Args:
        images: uint8 `[N, H, W, C]` (or float in [0, 1]).
        neighbors: int `[N, k]` indices, or a table from `neighbor_table`.
        batch_size: examples per batch.
        seed: shuffle and draw seed.
        drop_remainder: drop the last, smaller batch.
        repeat: never end (for `fit` with `steps_per_epoch`).
        pipeline: `data.pipeline`.

    Returns:
        `make_neighbor_dataset(...)` (`tf_data`) or a `NeighborPairBatches`.
    """
    if resolve_pipeline(pipeline) == "tf_data":
        ds = make_neighbor_dataset(
            images, neighbors, batch_size, seed=seed, drop_remainder=drop_remainder
        )
        return ds.repeat() if repeat else ds
    from kmixvae.data.array_dataset import NeighborPairBatches

    return NeighborPairBatches(
        images, neighbors, batch_size, seed=seed, drop_remainder=drop_remainder, repeat=repeat
    )


@dataclass
class DataBundle:
    """The training and validation data of a run, as numpy arrays.

    Args:
        train_images: uint8 `[N, H, W, C]`.
        train_labels: int64 `[N]` (used for evaluation only, never by `fit`).
        val_images: uint8 `[M, H, W, C]`, or `None` without a validation split.
        val_labels: int64 `[M]`, or `None`.
        batch_size: global batch size.
        shuffle_buffer: shuffle buffer of the training pipeline (0 = all).
        seed: shuffle seed of the training pipeline.
        pipeline: `data.pipeline`: `auto`, `tf_data` or `arrays`.

    Example:

    ```python
    bundle.image_shape, bundle.num_train  # (28, 28, 1), 8000
    model.fit(bundle.train_dataset(), validation_data=bundle.val_dataset())
    ```
    """

    train_images: np.ndarray
    train_labels: np.ndarray
    val_images: Optional[np.ndarray] = None
    val_labels: Optional[np.ndarray] = None
    batch_size: int = 128
    shuffle_buffer: int = 10000
    seed: Optional[int] = 0
    pipeline: str = "auto"

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """`(H, W, C)` of one image."""
        return tuple(int(d) for d in self.train_images.shape[1:])

    @property
    def num_train(self) -> int:
        """Number of training examples."""
        return int(len(self.train_images))

    @property
    def num_val(self) -> int:
        """Number of validation examples (0 without a validation split)."""
        return 0 if self.val_images is None else int(len(self.val_images))

    def steps_per_epoch(self, drop_remainder: bool = False) -> int:
        """Training batches per pass over the data."""
        if drop_remainder:
            return self.num_train // self.batch_size
        return math.ceil(self.num_train / self.batch_size)

    def check_batch_fits(self) -> None:
        """Raises `DataError` when one batch is larger than the training split.

        Keras would silently train on one smaller batch an epoch while the
        config says otherwise.
        """
        if self.batch_size > self.num_train:
            raise DataError(
                f"data.batch_size: {self.batch_size} exceeds the {self.num_train} training "
                f"images of data.train_split; use at most {self.num_train} or a larger split"
            )

    def train_dataset(
        self,
        *,
        seed: Optional[int] = None,
        drop_remainder: bool = False,
        with_labels: bool = False,
        repeat: bool = False,
    ) -> tf.data.Dataset:
        """Shuffled training batches of images in [0, 1] (see `make_dataset`).

        Args:
            seed: shuffle seed; `None` = the bundle's `seed`.
            drop_remainder: drop the last, smaller batch.
            with_labels: yield `(x, y)` instead of `x`.
            repeat: repeat without end (see `make_dataset`).

        Returns:
            The training `tf.data.Dataset` (or `ImageBatches`), reshuffled
            every epoch.
        """
        kwargs = dict(
            shuffle=True,
            seed=self.seed if seed is None else seed,
            shuffle_buffer=self.shuffle_buffer,
            drop_remainder=drop_remainder,
            with_labels=with_labels,
            repeat=repeat,
        )
        if resolve_pipeline(self.pipeline) == "arrays":
            from kmixvae.data.array_dataset import ImageBatches

            return ImageBatches(self.train_images, self.train_labels, self.batch_size, **kwargs)
        return make_dataset(self.train_images, self.train_labels, self.batch_size, **kwargs)

    def val_dataset(self, *, with_labels: bool = False) -> Optional[tf.data.Dataset]:
        """Validation batches in a fixed order, or `None` without a validation split.

        Args:
            with_labels: yield `(x, y)` instead of `x`.

        Returns:
            The validation `tf.data.Dataset` (or `ImageBatches`), or `None`.
        """
        if self.val_images is None:
            return None
        if resolve_pipeline(self.pipeline) == "arrays":
            from kmixvae.data.array_dataset import ImageBatches

            return ImageBatches(
                self.val_images, self.val_labels, self.batch_size, with_labels=with_labels
            )
        return make_dataset(
            self.val_images,
            self.val_labels,
            self.batch_size,
            shuffle=False,
            with_labels=with_labels,
        )


def load_datasets(config: Union[Config, DataConfig], seed: Optional[int] = None) -> DataBundle:
    """Loads the configured training and validation splits.

    Args:
        config: the full `Config` (its `data` section and `seed` are used)
            or just a `DataConfig`. An empty `data.val_split` means no
            validation data.
        seed: shuffle seed; `None` = `config.seed` (0 for a `DataConfig`).

    Returns:
        A `DataBundle` holding the arrays and making the pipelines.

    Raises:
        DataError: any problem with the data source, files or splits.

    Example:

    ```python
    cfg = DataConfig(source="idx", dir="../shared/data/mnist-10k",
                     train_split="test[:80%]", val_split="test[80%:]")
    bundle = load_datasets(cfg)  # 8000 train, 2000 val
    ```
    """
    data = config.data if isinstance(config, Config) else config
    if seed is None:
        seed = config.seed if isinstance(config, Config) else 0
    specs = [data.train_split] + ([data.val_split] if data.val_split else [])
    loaded = load_splits(data, specs)
    (train_x, train_y), val = loaded[0], (loaded[1] if len(loaded) > 1 else (None, None))
    if val[0] is not None and val[0].shape[1:] != train_x.shape[1:]:
        raise DataError(
            f"data.val_split {data.val_split!r}: image shape {val[0].shape[1:]} differs from "
            f"data.train_split {data.train_split!r} ({train_x.shape[1:]})"
        )
    return DataBundle(
        train_images=train_x,
        train_labels=train_y,
        val_images=val[0],
        val_labels=val[1],
        batch_size=data.batch_size,
        shuffle_buffer=data.shuffle_buffer,
        seed=seed,
        pipeline=data.pipeline,
    )
