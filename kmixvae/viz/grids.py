"""Image grids saved as PNG (for the `sample` and `reconstruct` commands)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np


def image_grid(images: np.ndarray, rows: int | None = None) -> np.ndarray:
    """Tiles `(N, H, W, C)` images in [0, 1] into one `(rows*H, cols*W, C)` array."""
    images = np.clip(np.asarray(images, "float32"), 0.0, 1.0)
    n, h, w, c = images.shape
    rows = rows or int(math.ceil(math.sqrt(n)))
    cols = int(math.ceil(n / rows))
    grid = np.ones((rows * h, cols * w, c), "float32")
    for i in range(n):
        r, col = divmod(i, cols)
        grid[r * h : (r + 1) * h, col * w : (col + 1) * w] = images[i]
    return grid


def save_image_grid(
    images: np.ndarray, path: str | Path, rows: int | None = None, title: str = ""
) -> Path:
    """Saves images as one titled PNG grid (written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from kmixvae.utils.files import atomic_write

    grid = image_grid(images, rows)
    fig, ax = plt.subplots(figsize=(max(3, grid.shape[1] / 40), max(3, grid.shape[0] / 40) + 0.4))
    ax.imshow(grid[..., 0] if grid.shape[-1] == 1 else grid, cmap="gray", vmin=0, vmax=1)
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight"))
    finally:
        plt.close(fig)
    return Path(path)
