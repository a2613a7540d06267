"""Image grids saved as PNG (for the `sample` and `reconstruct` commands)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np


def image_grid(
    images: np.ndarray, rows: int | None = None, cols: int | None = None, pad: int = 0
) -> np.ndarray:
    """Tiles `(N, H, W, C)` images row by row into one `(rows*(H+pad)-pad, cols*(W+pad)-pad, C)`
    float32 array, white between and after the images (the one tiling helper).

    With neither `rows` nor `cols`, the grid is about square (`rows = ceil(sqrt(N))`);
    with one, the other follows from N; images beyond `rows * cols` are left out.
    """
    images = np.asarray(images, "float32")
    n, h, w, c = images.shape
    if rows is None and cols is None:
        rows = max(1, math.ceil(math.sqrt(n)))
    if cols is None:
        cols = max(1, math.ceil(n / rows))
    if rows is None:
        rows = max(1, math.ceil(n / cols))
    grid = np.ones((rows * (h + pad) - pad, cols * (w + pad) - pad, c), "float32")
    for i in range(min(n, rows * cols)):
        r, col = divmod(i, cols)
        grid[r * (h + pad) : r * (h + pad) + h, col * (w + pad) : col * (w + pad) + w] = images[i]
    return grid


def save_image_grid(
    images: np.ndarray, path: str | Path, rows: int | None = None, title: str = ""
) -> Path:
    """Saves images as one titled PNG grid (written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from kmixvae.utils.files import atomic_write

    grid = np.clip(image_grid(images, rows), 0.0, 1.0)
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
