"""Synthetic image mixtures with a known number of clusters.

Each cluster is a random glyph (a few thick strokes between random points);
its images are the glyph under a random affine transform (rotation, scale,
shift), stroke-width jitter, endpoint jitter and pixel noise. The number of
clusters is therefore certain, which makes these sets the reference for
methods that must find it (channel pruning, `apps/channel_selection.py`).
"""

from __future__ import annotations

import numpy as np


def _render(points: np.ndarray, widths: np.ndarray, size: int) -> np.ndarray:
    """Draws strokes `(S, 2, 2)` (from, to, in pixel coordinates) of `widths` `(S,)`."""
    yy, xx = np.mgrid[0:size, 0:size].astype("float32")
    grid = np.stack([xx, yy], axis=-1)[:, :, None, :]  # (H, W, 1, 2)
    a, b = points[:, 0], points[:, 1]  # (S, 2)
    ab = b - a
    t = np.clip(
        np.sum((grid - a) * ab, axis=-1) / np.maximum(np.sum(ab * ab, axis=-1), 1e-6), 0.0, 1.0
    )
    dist = np.linalg.norm(grid - (a + t[..., None] * ab), axis=-1)  # (H, W, S)
    ink = np.clip(widths - dist + 0.5, 0.0, 1.0)
    return ink.max(axis=-1)


def glyph_mixture(
    num_clusters: int,
    num_images: int,
    size: int = 28,
    strokes: int = 3,
    rotation: float = 15.0,
    scale: float = 0.1,
    shift: float = 2.0,
    jitter: float = 1.5,
    noise: float = 0.05,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Draws `num_images` images of `num_clusters` random glyphs, balanced.

    Args:
        num_clusters: int. Number of glyphs (the true K).
        num_images: int. Images drawn (cluster i gets every i-th one).
        size: int. Image side in pixels.
        strokes: int. Strokes per glyph.
        rotation: float. Degrees, +- (per image).
        scale: float. Relative scale change, +- (per image).
        shift: float. Pixels, +- (per image).
        jitter: float. Pixels, +- moved per stroke endpoint (per image).
        noise: float. Standard deviation of additive pixel noise (in [0, 1] units).
        seed: int. The glyphs and the images are a function of the seed.

    Returns:
        `(images, labels)`: uint8 `(N, size, size, 1)` and int64 `(N,)`.

    Example:

    ```python
    x, y = glyph_mixture(num_clusters=5, num_images=1000)
    ```
    """
    if num_clusters < 1 or num_images < 1:
        raise ValueError("num_clusters and num_images must be >= 1")
    rng = np.random.default_rng(seed)
    margin = size * 0.2
    glyphs = rng.uniform(margin, size - margin, size=(num_clusters, strokes, 2, 2))
    labels = np.arange(num_images) % num_clusters
    rng.shuffle(labels)
    centre = np.array([size / 2 - 0.5, size / 2 - 0.5], "float32")
    images = np.empty((num_images, size, size, 1), "uint8")
    for i, label in enumerate(labels):
        pts = glyphs[label] + rng.uniform(-jitter, jitter, size=glyphs[label].shape)
        angle = np.deg2rad(rng.uniform(-rotation, rotation))
        s = 1.0 + rng.uniform(-scale, scale)
        rot = s * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        pts = (pts - centre) @ rot.T + centre + rng.uniform(-shift, shift, size=2)
        widths = rng.uniform(1.0, 1.8) * np.ones(strokes)
        img = _render(pts.astype("float32"), widths, size)
        img = np.clip(img + noise * rng.standard_normal(img.shape), 0.0, 1.0)
        images[i, :, :, 0] = np.round(img * 255).astype("uint8")
    return images, labels.astype("int64")


__all__ = ["glyph_mixture"]
