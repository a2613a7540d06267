"""Pixel scaling shared by every reader of images: uint8 0-255 -> float32 in [0, 1]."""

from __future__ import annotations

import numpy as np


def as_float_images(x) -> np.ndarray:
    """Integer pixels 0-255 -> float32 in [0, 1]; float arrays are only cast.

    `(N, H, W)` arrays get a channel axis: `(N, H, W, 1)`.
    """
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[..., None]
    if np.issubdtype(x.dtype, np.integer):
        return x.astype("float32") / 255.0
    return x.astype("float32", copy=False)
