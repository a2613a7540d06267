"""Backend-neutral in-memory input pipelines (`keras.utils.PyDataset`), no TensorFlow needed.

The same batches as the `tf.data` pipelines of `kmixvae.data.pipeline`, built
from numpy arrays in the training process: float32 images in [0, 1],
reshuffled every epoch with the run's seed, and the neighbour pairs of the
neighbour-consistency term with a table that a callback can replace between
epochs (`NeighborTable.assign`, as `tf.Variable.assign` does for `tf.data`).
They feed Keras 3 `fit`/`evaluate`/`predict` on every backend, and are what
the JAX backend uses where TensorFlow is not installed.

Each epoch's order and neighbour draws come from `numpy.random.default_rng`
seeded with `(seed, epoch)`, so a run is reproducible; they are not the same
random numbers as `tf.data`'s (same distribution, different draws).

Example:

```python
ds = ImageBatches(images, batch_size=128, shuffle=True, seed=0)
model.fit(ds, epochs=3, shuffle=False)
table = NeighborTable(pixel_neighbors(images, 20))
pairs = NeighborPairBatches(images, table, batch_size=128, seed=0)
```
"""

from __future__ import annotations

import math
from typing import Optional

import keras
import numpy as np

from kmixvae.data.batching import check_batch_inputs, pixel_scale
from kmixvae.errors import DataError


def buffered_permutation(n: int, buffer: int, rng: np.random.Generator) -> np.ndarray:
    """The order a `tf.data` shuffle buffer of `buffer` elements gives `range(n)`.

    Same algorithm as `tf.data.Dataset.shuffle`: fill the buffer with the
    first elements, then repeatedly emit a uniformly chosen buffered element
    and put the next input in its place. `buffer <= 0` or `>= n` is a uniform
    permutation.
    """
    if buffer <= 0 or buffer >= n:
        return rng.permutation(n)
    out = np.empty(n, dtype="int64")
    pool = list(range(buffer))
    picks = rng.random(n)
    for t in range(n):
        slot = int(picks[t] * len(pool))
        out[t] = pool[slot]
        nxt = buffer + t
        if nxt < n:
            pool[slot] = nxt
        else:
            pool[slot] = pool[-1]
            pool.pop()
    return out


def _num_batches(n: int, batch_size: int, drop_remainder: bool) -> int:
    return n // batch_size if drop_remainder else math.ceil(n / batch_size)


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
    """Batches of float32 images in [0, 1] (or `(x, y)`), optionally reshuffled each epoch.

    Args:
        images: uint8 `[N, H, W, C]` pixels 0-255 (float arrays are taken as
            already in [0, 1] and only cast to float32).
        labels: int `[N]` labels; needed only when `with_labels=True`.
        batch_size: examples per batch (the global batch size).
        shuffle: a new order every epoch.
        seed: shuffle seed; `None` = not reproducible.
        shuffle_buffer: as `tf.data`'s shuffle buffer (`buffered_permutation`);
            0 or at least `N` = a uniform permutation of all examples.
        drop_remainder: drop the last, smaller batch.
        with_labels: yield `(x, y)` with int64 `y` instead of `x`.
        repeat: never end (`num_batches` is `None`); with shuffling, a new
            order after every pass.
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
    ):
        super().__init__()
        self.images, self.labels = check_batch_inputs(images, labels, batch_size, with_labels)
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle) and len(self.images) > 1
        self.seed = np.random.SeedSequence().entropy if seed is None else int(seed)
        self.shuffle_buffer = int(shuffle_buffer)
        self.drop_remainder = bool(drop_remainder)
        self.with_labels = bool(with_labels)
        self.repeat = bool(repeat)
        self.scale = pixel_scale(self.images)
        self.epoch = 0
        self._per_pass = _num_batches(len(self.images), self.batch_size, self.drop_remainder)
        if self._per_pass == 0:
            raise DataError(
                f"batch_size: {batch_size} is larger than the {len(self.images)} examples "
                "and the last batch is dropped"
            )
        self._orders = {}

    @property
    def num_batches(self) -> Optional[int]:
        return None if self.repeat else self._per_pass

    def _order(self, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(len(self.images))
        if epoch not in self._orders:
            rng = np.random.default_rng([self.seed, epoch])
            self._orders = {epoch: buffered_permutation(len(self.images), self.shuffle_buffer, rng)}
        return self._orders[epoch]

    def __getitem__(self, index):
        if not self.repeat and not 0 <= index < self._per_pass:
            raise IndexError(index)
        epoch, index = self.epoch + index // self._per_pass, index % self._per_pass
        idx = self._order(epoch)[index * self.batch_size : (index + 1) * self.batch_size]
        x = self.images[idx].astype("float32") * np.float32(self.scale)
        if self.with_labels:
            return x, self.labels[idx]
        return (x,)

    def on_epoch_end(self):
        self.epoch += 1


class NeighborPairBatches(keras.utils.PyDataset):
    """Shuffled training batches of `{"x": x, "neighbor": x_nbr}` in [0, 1].

    Every epoch pairs each image with one of its neighbours, drawn anew
    uniformly from its row of the table; the table is read when a batch is
    made, so a `NeighborTable.assign` between epochs changes the pairs of the
    following batches (the neighbour refresh).

    Args:
        images: uint8 `[N, H, W, C]` (or float in [0, 1]).
        neighbors: int `[N, k]` neighbour indices, or a `NeighborTable`.
        batch_size: examples per batch.
        seed: shuffle and draw seed.
        drop_remainder: drop the last, smaller batch.
        repeat: never end (`num_batches` is `None`).
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
    ):
        super().__init__()
        self.order = ImageBatches(
            images,
            batch_size=batch_size,
            shuffle=True,
            seed=seed,
            drop_remainder=drop_remainder,
            repeat=repeat,
        )
        self.images = self.order.images
        self.table = neighbors if isinstance(neighbors, NeighborTable) else NeighborTable(neighbors)
        shape = self.table.shape
        if len(shape) != 2 or shape[0] != len(self.images):
            raise DataError(f"neighbors: expected shape ({len(self.images)}, k), got {shape}")
        self._picks = {}

    @property
    def num_batches(self) -> Optional[int]:
        return self.order.num_batches

    def _pick(self, epoch: int) -> np.ndarray:
        if epoch not in self._picks:
            rng = np.random.default_rng([self.order.seed, epoch, 1])
            self._picks = {epoch: rng.integers(0, self.table.shape[1], len(self.images))}
        return self._picks[epoch]

    def __getitem__(self, index):
        per_pass = self.order._per_pass
        if not self.order.repeat and not 0 <= index < per_pass:
            raise IndexError(index)
        epoch, index = self.order.epoch + index // per_pass, index % per_pass
        b = self.order.batch_size
        idx = self.order._order(epoch)[index * b : (index + 1) * b]
        j = self.table.value[idx, self._pick(epoch)[idx]]
        scale = np.float32(self.order.scale)
        x = self.images[idx].astype("float32") * scale
        x_nbr = self.images[j].astype("float32") * scale
        return {"x": x, "neighbor": x_nbr}

    def on_epoch_end(self):
        self.order.on_epoch_end()
