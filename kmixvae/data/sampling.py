"""The fixed sample of images a stage reads when it need not read them all.

Several stages of a run only estimate something from the images: channel
pruning's link counts, the generation judge, the held-out images the
end-of-run generation scores, the head selection's held-out record. On a
large data set they read a fixed, seeded sample of at most `SAMPLE_CAP`
images instead of every image, so their cost and memory stay bounded
whatever N is. Up to the cap they read every image, in order, as they did
before the cap existed: runs on up to `SAMPLE_CAP` images are unchanged.

Example:

```python
x, y = fixed_sample(train_images, train_labels, seed=0)   # <= SAMPLE_CAP rows
```
"""

from __future__ import annotations

from typing import Optional

import numpy as np

SAMPLE_CAP = 10_000
"""Most images a sampling stage reads (every image up to it, a seeded sample above it)."""


def sample_indices(n: int, cap: int = SAMPLE_CAP, seed: int = 0) -> Optional[np.ndarray]:
    """The rows of a fixed sample of `n` rows: None (all of them) up to `cap`.

    Args:
        n: int. Rows there are.
        cap: int >= 1. Most rows sampled.
        seed: int. Seed of the sample (`numpy.random.default_rng`).

    Returns:
        None when `n <= cap`, else the sorted int64 indices of `cap`
        distinct rows, a function of `(n, cap, seed)` alone.
    """
    n, cap = int(n), int(cap)
    if cap < 1:
        raise ValueError(f"cap: {cap} must be at least 1")
    if n <= cap:
        return None
    return np.sort(np.random.default_rng([int(seed), n]).choice(n, cap, replace=False))


def fixed_sample(images, *others, cap: int = SAMPLE_CAP, seed: int = 0):
    """`images` (and rows of `others`, e.g. labels) at `sample_indices(len(images), cap, seed)`.

    Up to `cap` rows the very arrays given are returned (no copy), so
    what is keyed on the images' bytes (the pixel-graph cache, the judge
    cache) is shared with the stages that read all of them.

    Args:
        images: `(N, ...)` array.
        *others: `(N, ...)` arrays sampled at the same rows; None stays None.
        cap: int. Most rows kept.
        seed: int. Seed of the sample.

    Returns:
        The sampled `images` alone, or a tuple `(images, *others)` when
        `others` are given.
    """
    pick = sample_indices(len(images), cap, seed)
    out = [images, *others]
    if pick is not None:
        out = [None if a is None else np.asarray(a)[pick] for a in out]
    return out[0] if not others else tuple(out)


__all__ = ["SAMPLE_CAP", "fixed_sample", "sample_indices"]
