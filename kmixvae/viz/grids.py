"""Image grids: tiling, PNG bytes (the report page) and titled PNG files (`sample`, `reconstruct`)."""

from __future__ import annotations

import io
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


def grid_png(grid: np.ndarray, scale: int = 1) -> bytes:
    """A `(H, W, C)` image in [0, 1] (e.g. an `image_grid`) as PNG bytes, pixels enlarged.

    Args:
        grid: `(H, W, C)` floats; one channel is drawn grey, 3 or 4 as colour.
        scale: int. Each pixel becomes a `scale x scale` block.

    Returns:
        The PNG file's bytes.
    """
    from matplotlib.image import imsave

    grid = np.clip(np.asarray(grid, "float32"), 0.0, 1.0)
    grid = np.repeat(np.repeat(grid, scale, axis=0), scale, axis=1)
    buf = io.BytesIO()
    if grid.shape[-1] == 1:
        imsave(buf, grid[..., 0], cmap="gray", vmin=0.0, vmax=1.0, format="png")
    else:
        imsave(buf, grid, format="png")
    return buf.getvalue()


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
