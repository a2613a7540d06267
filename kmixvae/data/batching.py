"""What both input pipelines (`tf_data` and `arrays`) share: input checks, pixel scale, draws.

`kmixvae.data.pipeline.make_dataset` and
`kmixvae.data.array_dataset.ImageBatches` take the same arguments and reject
the same bad ones with the same messages; both read them through here.

Both also draw from here: the order of pass `p` over the examples
(`pass_order`) and each image's neighbour pick in it (`pass_picks`) are
functions of `(seed, p)` alone, made with `numpy.random.default_rng`. So the
two pipelines read the same sequence of batches for a seed, and a run
resumed at any epoch (`start_batch`) reads what an uninterrupted one reads.

Example:

```python
images, labels = check_batch_inputs(images, labels, 128, with_labels=True)
x = images[:128].astype("float32") * pixel_scale(images)
order = pass_order(seed=0, pass_index=3, n=len(images), buffer=10000)
```
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from kmixvae.errors import DataError


def pixel_scale(images: np.ndarray) -> float:
    """The factor that maps `images` to [0, 1]: 1/255 for uint8, else 1 (already in [0, 1])."""
    return 1.0 / 255.0 if images.dtype == np.uint8 else 1.0


def check_batch_inputs(
    images, labels=None, batch_size: int = 128, with_labels: bool = False
) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """Checks the images, labels and batch size a pipeline is built from.

    Args:
        images: `[N, H, W, C]` array-like.
        labels: `[N]` int labels, or None; checked only when `with_labels`.
        batch_size: examples per batch.
        with_labels: whether the pipeline yields `(x, y)`.

    Returns:
        `(images, labels)` as numpy arrays: labels as int64 when
        `with_labels`, else passed through unchanged.

    Raises:
        DataError: images that are not 4-D, a batch size below 1, or missing
            or mis-shaped labels when `with_labels`.
    """
    images = np.asarray(images)
    if images.ndim != 4:
        raise DataError(f"images: expected [N, H, W, C], got shape {images.shape}")
    if batch_size < 1:
        raise DataError(f"batch_size: {batch_size} must be at least 1")
    if with_labels:
        if labels is None:
            raise DataError("labels: needed when with_labels=True")
        labels = np.asarray(labels).astype(np.int64)
        if labels.shape != (len(images),):
            raise DataError(f"labels: shape {labels.shape} does not match {len(images)} images")
    return images, labels


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


def pass_order(seed: int, pass_index: int, n: int, buffer: int) -> np.ndarray:
    """The int64 order of the `n` examples in pass `pass_index` of a shuffled pipeline.

    Args:
        seed: the pipeline's seed.
        pass_index: which pass (0 = the first of an uninterrupted run).
        n: examples.
        buffer: shuffle buffer (`buffered_permutation`); 0 or at least `n`
            = a uniform permutation.
    """
    rng = np.random.default_rng([int(seed), int(pass_index)])
    return buffered_permutation(n, buffer, rng).astype("int64")


def pass_picks(seed: int, pass_index: int, n: int, k: int) -> np.ndarray:
    """Which of its `k` neighbours each of the `n` images is paired with in pass `pass_index`."""
    rng = np.random.default_rng([int(seed), int(pass_index), 1])
    return rng.integers(0, k, n).astype("int64")


def batches_per_pass(n: int, batch_size: int, drop_remainder: bool) -> int:
    """Batches in one pass over `n` examples."""
    return n // batch_size if drop_remainder else math.ceil(n / batch_size)


def check_start_batch(start_batch: int, per_pass: int, repeat: bool) -> int:
    """Checks where a pipeline starts in its sequence of batches (pass after pass).

    A resumed run starts at `initial_epoch * steps_per_epoch`; a pipeline
    that ends after one pass (`repeat=False`) is read one pass per epoch, so
    it can only start at a whole pass. A repeating one is one stream of
    examples, pass after pass, and starts `start_batch * batch_size`
    examples in.

    Returns:
        `start_batch` as an int.

    Raises:
        DataError: a negative start, or one inside a pass without `repeat`.
    """
    start = int(start_batch)
    if start < 0 or (not repeat and start % per_pass):
        raise DataError(
            f"start_batch: {start_batch} is not a whole number of passes of {per_pass} "
            "batches (or is negative)"
        )
    return start


def pipeline_seed(seed: Optional[int]) -> int:
    """The seed of a pipeline's draws: `seed`, or a fresh random one for `None`."""
    return int(np.random.SeedSequence().entropy % 2**31) if seed is None else int(seed)


def shard_slice(size: int, shard: tuple[int, int]) -> slice:
    """The contiguous part of a `size`-example global batch that process `shard[0]` of
    `shard[1]` reads (an equal part each; the sizes are checked where the run starts)."""
    index, count = shard
    part = size // count
    return slice(index * part, (index + 1) * part)


def check_shard(shard: tuple[int, int]) -> tuple[int, int]:
    """Checks a `(process index, process count)` data shard."""
    index, count = (int(v) for v in shard)
    if count < 1 or not 0 <= index < count:
        raise DataError(f"shard: {shard} is not (index, count) with 0 <= index < count")
    return index, count
