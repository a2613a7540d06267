"""Input pipelines for training and evaluation: `tf.data`, or in-memory arrays.

Images go in as uint8 `[N, H, W, C]` numpy arrays and come out as float32
batches in [0, 1]. Training pipelines yield the images only (the model is
unsupervised, so labels never reach `fit`); evaluation pipelines can yield
`(x, y)`. Two implementations make the same batches, in the same order for
a seed (`kmixvae.data.batching` draws both), (`data.pipeline`):
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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional, Union

import numpy as np

from kmixvae.choices import PIPELINES
from kmixvae.data.batching import (
    batches_per_pass,
    check_batch_inputs,
    check_shard,
    check_start_batch,
    pass_order,
    pass_picks,
    pipeline_seed,
    pixel_scale,
)
from kmixvae.data.config import DataConfig
from kmixvae.data.descriptors import check_hog_size
from kmixvae.data.sampling import fixed_sample
from kmixvae.data.sources import load_splits
from kmixvae.errors import ConfigError, DataError

if TYPE_CHECKING:  # TensorFlow is imported only by the `tf_data` pipeline
    import tensorflow as tf

    from kmixvae.config import Config  # composes the data section: no import at run time


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


def _batched_passes(draw, n: int, batch_size: int, drop_remainder: bool, arrays: int = 1):
    """A function from a pass number to that pass's batches of drawn elements.

    `draw(pass_index)` returns a tuple of `arrays` int64 numpy arrays of
    length `n`, the draws of one pass (`kmixvae.data.batching.pass_order`
    and the like, so they are the `arrays` pipeline's); the pass is batched
    as a single pass is, into tuples of `[B]` tensors.
    """
    import tensorflow as tf

    def one_pass(p):
        drawn = tf.numpy_function(lambda q: draw(int(q)), [p], [tf.int64] * arrays)
        for a in drawn:
            a.set_shape([n])
        slices = tf.data.Dataset.from_tensor_slices(tuple(drawn))
        return slices.batch(batch_size, drop_remainder=drop_remainder)

    return one_pass


def _pass_sequence(one_pass, start_batch: int, per_pass: int, repeat: bool) -> tf.data.Dataset:
    """The batches of one pass after another from `start_batch` on (`repeat`), or of
    one pass per iteration, the first iteration reading pass `start_batch // per_pass`."""
    import tensorflow as tf

    first_pass, skip = divmod(start_batch, per_pass)
    if repeat:
        batches = tf.data.Dataset.counter(first_pass).flat_map(one_pass).skip(skip)
        length = tf.data.INFINITE_CARDINALITY
    else:
        counter = tf.Variable(first_pass - 1, dtype=tf.int64, trainable=False)
        iteration = tf.data.Dataset.from_tensors(tf.constant(0, tf.int64))
        batches = iteration.map(lambda _: counter.assign_add(1)).flat_map(one_pass)
        length = per_pass
    # flat_map hides the length; Keras reads it (progress bar, end of epoch)
    return batches.apply(tf.data.experimental.assert_cardinality(length))


def _fixed_options() -> tf.data.Options:
    """tf.data options without the autotuner.

    The pipelines only gather rows of an in-memory table. tf.data's autotuner
    (on by default) cost them whole epochs on a 2-core CPU: with it, the
    `film_het` step on 128 images took 53 ms in three of eight 12-step epochs
    and 41.5 ms in the others on TensorFlow, and up to 107 ms against 70 ms on
    JAX, where without it every epoch took 41-42 ms (TensorFlow) and 48-51 ms
    (JAX) (`docs/performance.md`). The `AUTOTUNE` settings then keep tf.data's
    starting values, enough for gathers of an in-memory table.
    """
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    return options


def _take_shard(batches: tf.data.Dataset, shard: tuple[int, int]) -> tf.data.Dataset:
    """Each batch's `shard[0]`-th of `shard[1]` equal contiguous parts (of every
    component), before any image is gathered: one process reads its own part."""
    import tensorflow as tf

    index, count = check_shard(shard)
    if count == 1:
        return batches

    def part(*parts):
        size = tf.shape(parts[0])[0] // count
        out = tuple(p[index * size : (index + 1) * size] for p in parts)
        return out if len(out) > 1 else out[0]

    return batches.map(part)


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
    start_batch: int = 0,
    shard: tuple[int, int] = (0, 1),
) -> tf.data.Dataset:
    """Builds a batched, normalised, optionally shuffled `tf.data.Dataset`.

    Each pass's order is `kmixvae.data.batching.pass_order(seed, pass, ...)`,
    as in `ImageBatches`: the same batches as the `arrays` pipeline, and a
    resumed run (`start_batch`) reads what an uninterrupted one reads.

    Args:
        images: uint8 `[N, H, W, C]` pixels 0-255 (float arrays are taken as
            already in [0, 1] and only cast to float32).
        labels: int `[N]` labels; needed only when `with_labels=True`.
        batch_size: examples per batch (the global batch size).
        shuffle: shuffle the examples, with a new order every pass.
        seed: shuffle seed; the same seed gives the same sequence of pass
            orders. `None` = not reproducible.
        shuffle_buffer: shuffle buffer size, as `tf.data.Dataset.shuffle`'s;
            0 or a size of at least `N` shuffles the whole dataset uniformly.
        drop_remainder: drop the last, smaller batch of each pass.
        with_labels: yield `(x, y)` (for evaluation) instead of `x` only.
        repeat: one pass after another without end, each batched as a
            single pass (for `fit` with `steps_per_epoch`).
        start_batch: batches an uninterrupted run would have read before
            this one starts (a run resumed at epoch `e`: `e * steps_per_epoch`);
            without `repeat`, a whole number of passes.
        shard: `(index, count)`: yield only the `index`-th of `count` equal
            contiguous parts of every batch (one process's part of the
            global batch, `Distribution.data_shard`).

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
    n = len(images)
    per_pass = batches_per_pass(n, batch_size, drop_remainder)
    start = check_start_batch(start_batch, max(per_pass, 1), repeat)
    if not shuffle or n < 2:
        ids = tf.data.Dataset.range(n).batch(batch_size, drop_remainder=drop_remainder)
        ids = ids.repeat().skip(start) if repeat else ids
    else:
        key_seed = pipeline_seed(seed)
        one_pass = _batched_passes(
            lambda p: (pass_order(key_seed, p, n, shuffle_buffer),),
            n,
            batch_size,
            drop_remainder,
        )
        ids = _pass_sequence(one_pass, start, max(per_pass, 1), repeat)
    ids = _take_shard(ids, shard)
    table = tf.constant(images)
    label_table = tf.constant(labels) if with_labels else None
    scale = pixel_scale(images)

    def gather(idx):
        x = tf.cast(tf.gather(table, idx), tf.float32) * scale
        return (x, tf.gather(label_table, idx)) if with_labels else x

    batches = ids.map(gather, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
    return batches.with_options(_fixed_options())


def make_neighbor_dataset(
    images: np.ndarray,
    neighbors: np.ndarray,
    batch_size: int = 128,
    *,
    seed: Optional[int] = None,
    drop_remainder: bool = False,
    repeat: bool = False,
    start_batch: int = 0,
    shard: tuple[int, int] = (0, 1),
) -> tf.data.Dataset:
    """Shuffled training batches of `{"x": x, "neighbor": x_nbr}` in [0, 1].

    Each pass pairs every image with one of its precomputed neighbours,
    drawn anew (see `kmixvae.data.neighbors.pixel_neighbors`); a pass's
    order and picks are `kmixvae.data.batching.pass_order` / `pass_picks`,
    as in `NeighborPairBatches` (the same batches for one seed).

    Args:
        images: uint8 `[N, H, W, C]` (or float in [0, 1]).
        neighbors: int `[N, k]` neighbour indices, or an int64 `tf.Variable`
            of that shape (assigning it changes the pairs of later batches).
        batch_size: examples per batch.
        seed: shuffle and draw seed.
        drop_remainder: drop the last, smaller batch of each pass.
        repeat: one pass after another without end (see `make_dataset`).
        start_batch: batches an uninterrupted run would have read before
            this one starts (see `make_dataset`).
        shard: `(index, count)`: this process's part of every batch (see
            `make_dataset`).

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
    n, k = shape
    per_pass = batches_per_pass(n, batch_size, drop_remainder)
    if per_pass == 0:
        raise DataError(
            f"batch_size: {batch_size} is larger than the {n} examples and the last batch "
            "is dropped"
        )
    start = check_start_batch(start_batch, per_pass, repeat)
    key_seed = pipeline_seed(seed)

    def draw(p):
        order = pass_order(key_seed, p, n, 0)
        return order, pass_picks(key_seed, p, n, k)[order]

    one_pass = _batched_passes(draw, n, batch_size, drop_remainder, arrays=2)

    def images(idx, pick):
        return tf.cast(tf.gather(table, idx), tf.float32) * scale, idx, pick

    def pair(x, idx, pick):
        j = tf.gather_nd(nbr, tf.stack([idx, pick], axis=1))
        x_nbr = tf.cast(tf.gather(table, j), tf.float32) * scale
        return {"x": x, "neighbor": x_nbr}

    batches = _take_shard(_pass_sequence(one_pass, start, per_pass, repeat), shard)
    # The images are read ahead; the table is read when a batch is taken (the
    # pairing map comes after the prefetch, and tf.data may neither add a
    # prefetch after it nor run it in parallel), so a refresh pairs exactly
    # the batches taken after it, however far the pipeline had read ahead.
    options = _fixed_options()
    options.experimental_optimization.inject_prefetch = False
    options.experimental_optimization.map_parallelization = False
    read_ahead = batches.map(images, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
    return read_ahead.map(pair).with_options(options)


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
    start_batch: int = 0,
    shard: tuple[int, int] = (0, 1),
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
        start_batch: batches an uninterrupted run would have read before
            this one starts (a run resumed at epoch `e`: `e * steps_per_epoch`).
        shard: `(index, count)`: this process's part of every batch.
        pipeline: `data.pipeline`.

    Returns:
        `make_neighbor_dataset(...)` (`tf_data`) or a `NeighborPairBatches`.
    """
    kwargs = dict(
        seed=seed,
        drop_remainder=drop_remainder,
        repeat=repeat,
        start_batch=start_batch,
        shard=shard,
    )
    if resolve_pipeline(pipeline) == "tf_data":
        return make_neighbor_dataset(images, neighbors, batch_size, **kwargs)
    from kmixvae.data.array_dataset import NeighborPairBatches

    return NeighborPairBatches(images, neighbors, batch_size, **kwargs)


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
        shard: `(index, count)`: the part of every batch this process reads
            (`Distribution.data_shard`; `(0, 1)` = all of it).

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
    shard: tuple[int, int] = (0, 1)

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
        return batches_per_pass(self.num_train, self.batch_size, drop_remainder)

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

    def check_neighbor_graph(self, key: str, k: int, space: str = "pixels") -> None:
        """Raises `DataError` when the k-NN graph of the training images that `key` asks for
        cannot be built: `k` must be below the number of training images, and a HOG graph
        needs images of at least one block of cells (`check_hog_size`).

        Checked before the run folder is written, so a bad setting costs no run.
        """
        if k >= self.num_train:
            raise DataError(
                f"{key}: {k} neighbours an image need more than {k} training images; "
                f"data.train_split has {self.num_train}"
            )
        if space == "hog":
            try:
                check_hog_size(*self.image_shape[:2])
            except DataError as e:
                raise DataError(f"data.neighbor_space: hog: {e}") from None

    def train_dataset(
        self,
        *,
        seed: Optional[int] = None,
        drop_remainder: bool = False,
        with_labels: bool = False,
        repeat: bool = False,
        start_batch: int = 0,
    ) -> tf.data.Dataset:
        """Shuffled training batches of images in [0, 1] (see `make_dataset`).

        Args:
            seed: shuffle seed; `None` = the bundle's `seed`.
            drop_remainder: drop the last, smaller batch.
            with_labels: yield `(x, y)` instead of `x`.
            repeat: repeat without end (see `make_dataset`).
            start_batch: batches an uninterrupted run would have read before
                this one starts (a run resumed at epoch `e`:
                `e * steps_per_epoch`).

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
            start_batch=start_batch,
            shard=self.shard,
        )
        if resolve_pipeline(self.pipeline) == "arrays":
            from kmixvae.data.array_dataset import ImageBatches

            return ImageBatches(self.train_images, self.train_labels, self.batch_size, **kwargs)
        return make_dataset(self.train_images, self.train_labels, self.batch_size, **kwargs)

    def val_dataset(
        self, *, with_labels: bool = False, max_images: Optional[int] = None, seed: int = 0
    ) -> Optional[tf.data.Dataset]:
        """Validation batches in a fixed order, or `None` without a validation split.

        Args:
            with_labels: yield `(x, y)` instead of `x`.
            max_images: int or None. Read a fixed sample of at most this
                many validation images (`kmixvae.data.sampling.fixed_sample`:
                every image, in order, up to it); None reads them all.
            seed: int. Seed of that sample.

        Returns:
            The validation `tf.data.Dataset` (or `ImageBatches`), or `None`.
        """
        if self.val_images is None:
            return None
        images, labels = self.val_images, self.val_labels
        if max_images is not None:
            images, labels = fixed_sample(images, labels, cap=max_images, seed=seed)
        if resolve_pipeline(self.pipeline) == "arrays":
            from kmixvae.data.array_dataset import ImageBatches

            return ImageBatches(
                images,
                labels,
                self.batch_size,
                with_labels=with_labels,
                shard=self.shard,
            )
        return make_dataset(
            images,
            labels,
            self.batch_size,
            shuffle=False,
            with_labels=with_labels,
            shard=self.shard,
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
    data = config if isinstance(config, DataConfig) else config.data
    if seed is None:
        seed = 0 if isinstance(config, DataConfig) else config.seed
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
