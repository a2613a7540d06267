"""Backend-neutral in-memory input pipelines (`keras.utils.PyDataset`), no TensorFlow needed.

The same batches as the `tf.data` pipelines of `kmixvae.data.pipeline`, built
from numpy arrays in the training process: float32 images in [0, 1],
reshuffled every pass with the run's seed, and the neighbour pairs of the
neighbour-consistency term with a table that a callback can replace between
epochs (`NeighborTable.assign`, as `tf.Variable.assign` does for `tf.data`).
They feed Keras 3 `fit`/`evaluate`/`predict` on every backend, and are what
the JAX backend uses where TensorFlow is not installed.

Each pass's order and neighbour picks are those of
`kmixvae.data.batching.pass_order` / `pass_picks`, functions of
`(seed, pass)` that the `tf.data` pipelines draw from too: for one seed the
two pipelines read the same batches.

Which pass a batch belongs to: an endless dataset (`repeat=True`, what
`kmixvae fit` trains on, with `steps_per_epoch`) is one pass after another,
each batched as a single pass is; Keras reads it through one iterator whose
index keeps growing across epochs, so batch `index` is batch
`index % batches_per_pass` of pass `index // batches_per_pass`, whatever
`on_epoch_end` calls came in between (counting them as well would advance
the pass twice and splice a pass from several shuffles). `start_batch`
starts that sequence further on, as a resumed run needs. A dataset that
ends (`repeat=False`) is read one pass per iteration and moves to the next
pass at each `on_epoch_end`.

Example:

```python
ds = ImageBatches(images, batch_size=128, shuffle=True, seed=0)
model.fit(ds, epochs=3, shuffle=False)
table = NeighborTable(pixel_neighbors(images, 20))
pairs = NeighborPairBatches(images, table, batch_size=128, seed=0)
```
"""

from __future__ import annotations

from typing import Optional

import keras
import numpy as np

from kmixvae.data.batching import (
    batches_per_pass,
    check_batch_inputs,
    check_shard,
    check_start_batch,
    pass_order,
    pass_picks,
    pipeline_seed,
    pixel_scale,
    shard_slice,
)
from kmixvae.errors import DataError


class NeighborTable:
    """A replaceable int64 `(N, k)` neighbour table read by `NeighborPairBatches`.

    Has the two members of a `tf.Variable` that `NeighborRefresh` uses
    (`shape`, `assign`), so one callback refreshes either pipeline.

    Args:
        neighbors: int `(N, k)` neighbour indices.
    """

    def __init__(self, neighbors):
        self.value = np.asarray(neighbors, dtype="int64")

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.value.shape)

    def assign(self, neighbors) -> None:
        """Replaces the table; later batches draw their pairs from it."""
        neighbors = np.asarray(neighbors, dtype="int64")
        if neighbors.shape != self.value.shape:
            raise DataError(f"neighbors: expected shape {self.value.shape}, got {neighbors.shape}")
        self.value = neighbors

    def numpy(self) -> np.ndarray:
        return self.value


class ImageBatches(keras.utils.PyDataset):
    """Batches of float32 images in [0, 1] (or `(x, y)`), optionally reshuffled each pass.

    Args:
        images: uint8 `[N, H, W, C]` pixels 0-255 (float arrays are taken as
            already in [0, 1] and only cast to float32).
        labels: int `[N]` labels; needed only when `with_labels=True`.
        batch_size: examples per batch (the global batch size).
        shuffle: a new order every pass.
        seed: shuffle seed; `None` = not reproducible.
        shuffle_buffer: as `tf.data`'s shuffle buffer (`kmixvae.data.batching.buffered_permutation`);
            0 or at least `N` = a uniform permutation of all examples.
        drop_remainder: drop the last, smaller batch of each pass.
        with_labels: yield `(x, y)` with int64 `y` instead of `x`.
        repeat: never end (`num_batches` is `None`): one pass after another,
            a new order every pass.
        start_batch: batches an uninterrupted run would have read before
            this one starts: a run resumed at epoch `e` passes
            `e * steps_per_epoch` and reads what an uninterrupted run reads
            from epoch `e` on. Without `repeat`, a whole number of passes.
        shard: `(index, count)`: yield only the `index`-th of `count` equal
            contiguous parts of every batch (one process's part of the
            global batch, `Distribution.data_shard`).
    """

    def __init__(
        self,
        images,
        labels=None,
        batch_size: int = 128,
        *,
        shuffle: bool = False,
        seed: Optional[int] = None,
        shuffle_buffer: int = 0,
        drop_remainder: bool = False,
        with_labels: bool = False,
        repeat: bool = False,
        start_batch: int = 0,
        shard: tuple[int, int] = (0, 1),
    ):
        super().__init__()
        self.images, self.labels = check_batch_inputs(images, labels, batch_size, with_labels)
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle) and len(self.images) > 1
        self.seed = pipeline_seed(seed)
        self.shuffle_buffer = int(shuffle_buffer)
        self.drop_remainder = bool(drop_remainder)
        self.with_labels = bool(with_labels)
        self.repeat = bool(repeat)
        self.scale = pixel_scale(self.images)
        self._per_pass = batches_per_pass(len(self.images), self.batch_size, self.drop_remainder)
        if self._per_pass == 0:
            raise DataError(
                f"batch_size: {batch_size} is larger than the {len(self.images)} examples "
                "and the last batch is dropped"
            )
        self.start_batch = check_start_batch(start_batch, self._per_pass, self.repeat)
        self.current_pass = self.start_batch // self._per_pass  # of a dataset that ends
        self.shard = check_shard(shard)
        self._orders = {}

    @property
    def num_batches(self) -> Optional[int]:
        return None if self.repeat else self._per_pass

    def locate(self, index: int) -> tuple[int, int]:
        """`(pass, batch within the pass)` of the batch Keras asks for by `index`."""
        if self.repeat:
            return divmod(self.start_batch + index, self._per_pass)
        if not 0 <= index < self._per_pass:
            raise IndexError(index)
        return self.current_pass, index

    def order(self, pass_index: int) -> np.ndarray:
        """The order of the examples in pass `pass_index` (`pass_order`)."""
        if not self.shuffle:
            return np.arange(len(self.images))
        if pass_index not in self._orders:
            order = pass_order(self.seed, pass_index, len(self.images), self.shuffle_buffer)
            self._orders = {pass_index: order}
        return self._orders[pass_index]

    def batch_indices(self, index: int) -> tuple[int, np.ndarray]:
        """`(pass, example indices)` of batch `index` (this shard's part of it)."""
        pass_index, i = self.locate(index)
        b = self.batch_size
        idx = self.order(pass_index)[i * b : (i + 1) * b]
        return pass_index, idx[shard_slice(len(idx), self.shard)]

    def __getitem__(self, index):
        _, idx = self.batch_indices(index)
        x = self.images[idx].astype("float32") * np.float32(self.scale)
        if self.with_labels:
            return x, self.labels[idx]
        return (x,)

    def on_epoch_end(self):
        """A dataset that ends moves to its next pass (an endless one goes by its index)."""
        if not self.repeat:
            self.current_pass += 1


class NeighborPairBatches(keras.utils.PyDataset):
    """Shuffled training batches of `{"x": x, "neighbor": x_nbr}` in [0, 1].

    Every pass pairs each image with one of its neighbours, drawn anew
    uniformly from its row of the table (`pass_picks`); the table is read
    when a batch is made, so a `NeighborTable.assign` between epochs changes
    the pairs of the following batches (the neighbour refresh).

    Args:
        images: uint8 `[N, H, W, C]` (or float in [0, 1]).
        neighbors: int `[N, k]` neighbour indices, or a `NeighborTable`.
        batch_size: examples per batch.
        seed: shuffle and draw seed.
        drop_remainder: drop the last, smaller batch of each pass.
        repeat: never end (`num_batches` is `None`; see `ImageBatches`).
        start_batch: batches an uninterrupted run would have read before
            this one starts (see `ImageBatches`).
        shard: `(index, count)`: this process's part of every batch (see
            `ImageBatches`).
    """

    def __init__(
        self,
        images,
        neighbors,
        batch_size: int = 128,
        *,
        seed: Optional[int] = None,
        drop_remainder: bool = False,
        repeat: bool = False,
        start_batch: int = 0,
        shard: tuple[int, int] = (0, 1),
    ):
        super().__init__()
        self.batches = ImageBatches(
            images,
            batch_size=batch_size,
            shuffle=True,
            seed=seed,
            drop_remainder=drop_remainder,
            repeat=repeat,
            start_batch=start_batch,
            shard=shard,
        )
        self.images = self.batches.images
        self.table = neighbors if isinstance(neighbors, NeighborTable) else NeighborTable(neighbors)
        shape = self.table.shape
        if len(shape) != 2 or shape[0] != len(self.images):
            raise DataError(f"neighbors: expected shape ({len(self.images)}, k), got {shape}")
        self._picks = {}

    @property
    def num_batches(self) -> Optional[int]:
        return self.batches.num_batches

    def picks(self, pass_index: int) -> np.ndarray:
        """Which neighbour (column of the table) each image is paired with in a pass."""
        if pass_index not in self._picks:
            picks = pass_picks(self.batches.seed, pass_index, len(self.images), self.table.shape[1])
            self._picks = {pass_index: picks}
        return self._picks[pass_index]

    def __getitem__(self, index):
        pass_index, idx = self.batches.batch_indices(index)
        j = self.table.value[idx, self.picks(pass_index)[idx]]
        scale = np.float32(self.batches.scale)
        x = self.images[idx].astype("float32") * scale
        x_nbr = self.images[j].astype("float32") * scale
        return {"x": x, "neighbor": x_nbr}

    def on_epoch_end(self):
        self.batches.on_epoch_end()
