"""Input checks and pixel scale shared by both input pipelines (`tf_data` and `arrays`).

`kmixvae.data.pipeline.make_dataset` and
`kmixvae.data.array_dataset.ImageBatches` take the same arguments and reject
the same bad ones with the same messages; both read them through here.

Example:

```python
images, labels = check_batch_inputs(images, labels, 128, with_labels=True)
x = images[:128].astype("float32") * pixel_scale(images)
```
"""

from __future__ import annotations

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
