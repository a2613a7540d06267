"""Histograms of oriented gradients: an input space for the neighbour graph.

Two images of one kind that differ in where their strokes or edges lie by a
pixel or two are far apart as pixel vectors and close as histograms of their
edge orientations pooled over small cells (Dalal & Triggs 2005, "Histograms
of Oriented Gradients for Human Detection"). `data.neighbor_space: hog`
builds the k-NN graph of the neighbour pairs from these descriptors instead
of the pixels (see `kmixvae.data.neighbors.input_neighbors`).

The descriptor is the paper's: centred differences [-1, 0, 1], unsigned
orientations in `orientations` bins with each pixel's magnitude split
linearly between its two nearest bins, cells of `cell` x `cell` pixels,
blocks of 2 x 2 cells moved one cell at a time, each block L2-Hys
normalised (L2, clipped at 0.2, L2 again). For colour images each pixel
takes the gradient of the channel where it is strongest. The cell size
follows the image: `min(H, W) // 7` pixels (4 for 28 x 28 images, as the
paper's 8-pixel cells on its 64-pixel-wide windows), at least 2.

Memory: 1,296 float32 values an image for 28 x 28 images (5.2 GB at
1,000,000 images, against 784 uint8 pixels), computed `CHUNK_IMAGES` images
at a time.

It is computed here for a whole array at once with numpy (scikit-image's
`skimage.feature.hog` computes one image a call, about 5x slower on 28 x 28
images, and bins each pixel into one orientation only).
"""

from __future__ import annotations

import numpy as np

from kmixvae.errors import DataError

ORIENTATIONS = 9
"""Unsigned orientation bins over [0, pi) (the paper's 9)."""

BLOCK_CELLS = 2
"""Cells per block side (the paper's 2 x 2 blocks)."""

HYS_CLIP = 0.2
"""L2-Hys: the normalised block's entries are clipped at this value."""

CHUNK_IMAGES = 4096
"""Images whose gradients are held in memory at once."""


def hog_cell_size(height: int, width: int) -> int:
    """The cell side in pixels for `height` x `width` images: `min(H, W) // 7`, at least 2."""
    return max(2, min(int(height), int(width)) // 7)


def check_hog_size(height: int, width: int, cell: int | None = None) -> int:
    """The cell side for `height` x `width` images; `DataError` when one block does not fit.

    Args:
        height: int. Image height in pixels.
        width: int. Image width in pixels.
        cell: int. Cell side in pixels; default `hog_cell_size(height, width)`.

    Returns:
        int. The cell side.
    """
    cell = int(cell or hog_cell_size(height, width))
    if min(height, width) // cell < BLOCK_CELLS:
        raise DataError(
            f"HOG needs images of at least {BLOCK_CELLS * cell} x {BLOCK_CELLS * cell} "
            f"pixels (cells of {cell}), got {height} x {width}"
        )
    return cell


def _gradients(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centred differences of `(n, H, W, C)` float images; for C > 1 the strongest channel."""
    g_row = np.zeros_like(images)
    g_col = np.zeros_like(images)
    g_row[:, 1:-1] = images[:, 2:] - images[:, :-2]
    g_col[:, :, 1:-1] = images[:, :, 2:] - images[:, :, :-2]
    if images.shape[-1] == 1:
        return g_row[..., 0], g_col[..., 0]
    strongest = np.argmax(g_row**2 + g_col**2, axis=-1)[..., None]
    return (
        np.take_along_axis(g_row, strongest, -1)[..., 0],
        np.take_along_axis(g_col, strongest, -1)[..., 0],
    )


def _cell_histograms(g_row, g_col, cell: int, orientations: int) -> np.ndarray:
    """`(n, cells_r, cells_c, orientations)` magnitude-weighted orientation histograms."""
    n = len(g_row)
    rows, cols = g_row.shape[1] // cell, g_row.shape[2] // cell
    g_row = g_row[:, : rows * cell, : cols * cell]
    g_col = g_col[:, : rows * cell, : cols * cell]
    magnitude = np.hypot(g_row, g_col)
    position = (np.arctan2(g_row, g_col) % np.pi) * (orientations / np.pi)
    lower = np.floor(position)
    upper_share = position - lower
    lower = lower.astype(np.int64) % orientations
    upper = (lower + 1) % orientations
    hist = np.zeros((n, rows, cols, orientations), np.float32)
    for b in range(orientations):
        votes = magnitude * ((lower == b) * (1.0 - upper_share) + (upper == b) * upper_share)
        hist[..., b] = votes.reshape(n, rows, cell, cols, cell).sum(axis=(2, 4))
    return hist


def _l2_hys(blocks: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    out = blocks / np.sqrt(np.sum(blocks**2, axis=-1, keepdims=True) + eps**2)
    out = np.minimum(out, HYS_CLIP)
    return out / np.sqrt(np.sum(out**2, axis=-1, keepdims=True) + eps**2)


def _descriptors(images: np.ndarray, cell: int, orientations: int) -> np.ndarray:
    hist = _cell_histograms(*_gradients(images), cell, orientations)
    n, rows, cols, _ = hist.shape
    b = BLOCK_CELLS
    blocks = [
        hist[:, i : i + b, j : j + b].reshape(n, -1)
        for i in range(rows - b + 1)
        for j in range(cols - b + 1)
    ]
    return _l2_hys(np.stack(blocks, axis=1)).reshape(n, -1)


def hog_descriptors(
    images: np.ndarray, cell: int | None = None, orientations: int = ORIENTATIONS
) -> np.ndarray:
    """The HOG descriptor of every image, as float32 rows.

    Args:
        images: `(N, H, W, C)` or `(N, H, W)` images, uint8 (0-255) or float
            in [0, 1].
        cell: int. Cell side in pixels; default `hog_cell_size(H, W)`.
        orientations: int. Unsigned orientation bins.

    Returns:
        float32 `(N, blocks * 4 * orientations)`: for 28 x 28 images 36
        blocks of 2 x 2 cells of 9 bins, 1,296 values.

    Raises:
        DataError: when the images are too small for one block of cells.

    Example:

    ```python
    features = hog_descriptors(train_images)        # (N, 1296) for 28 x 28
    neighbors = cosine_neighbors(features, k=20)
    ```
    """
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4:
        raise DataError(f"HOG needs (N, H, W[, C]) images, got shape {images.shape}")
    cell = check_hog_size(*images.shape[1:3], cell=cell)
    scale = 1.0 / 255.0 if images.dtype == np.uint8 else 1.0
    chunks = [
        _descriptors(images[i : i + CHUNK_IMAGES].astype(np.float32) * scale, cell, orientations)
        for i in range(0, len(images), CHUNK_IMAGES)
    ]
    return np.concatenate(chunks, axis=0).astype(np.float32, copy=False)
