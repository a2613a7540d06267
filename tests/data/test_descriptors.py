"""Histograms of oriented gradients (`kmixvae.data.descriptors`) and the HOG neighbour graph."""

from __future__ import annotations

import numpy as np
import pytest

from kmixvae.data.descriptors import hog_cell_size, hog_descriptors
from kmixvae.data.neighbors import input_neighbors, pixel_cache_stats
from kmixvae.errors import DataError


def _strokes(n, rising, rng, length=16):
    """1-pixel diagonal strokes ("/" when rising, else "\\") at random places in 28 x 28."""
    x = np.zeros((n, 28, 28, 1), np.uint8)
    for i in range(n):
        r, c = rng.integers(2, 26 - length, size=2)
        for t in range(length):
            x[i, r + t, (c + length - 1 - t) if rising else (c + t)] = 255
    return x


def _edge(vertical: bool) -> np.ndarray:
    """One 28 x 28 image, dark left (top) half and bright right (bottom) half."""
    x = np.zeros((28, 28, 1), np.float32)
    if vertical:
        x[:, 14:] = 1.0
    else:
        x[14:] = 1.0
    return x


def test_descriptor_shape_and_cell_size_follow_the_image():
    assert hog_cell_size(28, 28) == 4 and hog_cell_size(64, 32) == 4
    assert hog_cell_size(8, 8) == 2 and hog_cell_size(140, 140) == 20
    x = np.random.default_rng(0).integers(0, 256, (5, 28, 28, 1), dtype=np.uint8)
    f = hog_descriptors(x)
    assert f.shape == (5, 36 * 4 * 9) and f.dtype == np.float32  # 6 x 6 blocks of 2 x 2 cells
    # 32 x 20: cells of 20 // 7 = 2 pixels, 16 x 10 cells, 15 x 9 blocks.
    assert hog_descriptors(np.zeros((2, 32, 20, 1))).shape == (2, 15 * 9 * 4 * 9)


def test_orientation_bins_follow_the_edge():
    """A vertical edge (change along columns) votes into bin 0, a horizontal one into the
    bins either side of 90 degrees (4 and 5 of 9, equal shares)."""
    vertical = hog_descriptors(_edge(True)[None]).reshape(36, 4, 9)
    horizontal = hog_descriptors(_edge(False)[None]).reshape(36, 4, 9)
    assert vertical.sum(axis=(0, 1)).argmax() == 0
    assert vertical[..., 1:].sum() == 0
    votes = horizontal.sum(axis=(0, 1))
    assert set(np.flatnonzero(votes)) == {4, 5}
    np.testing.assert_allclose(votes[4], votes[5], rtol=1e-5)


def test_descriptor_ignores_brightness_scale_and_takes_the_strongest_colour():
    rng = np.random.default_rng(1)
    x = rng.random((4, 28, 28, 1)).astype(np.float32)
    np.testing.assert_allclose(hog_descriptors(0.5 * x), hog_descriptors(x), atol=1e-4)
    u8 = (x * 255).round().astype(np.uint8)
    np.testing.assert_allclose(hog_descriptors(u8), hog_descriptors(u8 / 255.0), atol=1e-5)
    # Colour: a channel that holds the edge wins over flat ones.
    rgb = np.concatenate([np.zeros_like(x), x, np.full_like(x, 0.3)], axis=-1)
    np.testing.assert_allclose(hog_descriptors(rgb), hog_descriptors(x), atol=1e-6)


def test_too_small_images_are_rejected_by_name():
    with pytest.raises(DataError, match="at least 4 x 4 pixels"):
        hog_descriptors(np.zeros((3, 3, 10, 1)))
    with pytest.raises(DataError, match=r"\(N, H, W\[, C\]\)"):
        hog_descriptors(np.zeros((3, 10)))


def test_hog_graph_separates_kinds_the_pixel_graph_mixes():
    """Thin strokes of two slants at random places: parallel strokes rarely share a pixel and
    crossing ones do, so the pixel graph mixes the slants; the HOG graph does not."""
    rng = np.random.default_rng(0)
    x = np.concatenate([_strokes(60, True, rng), _strokes(60, False, rng)])
    kind = np.repeat([0, 1], 60)

    def purity(space):
        nbr = input_neighbors(x, 5, space=space)
        return float((kind[nbr] == kind[:, None]).mean())

    assert purity("hog") >= 0.95
    assert purity("pixels") <= 0.85


def test_input_graphs_are_cached_per_space():
    x = np.random.default_rng(2).integers(0, 256, (40, 28, 28, 1), dtype=np.uint8)
    before = dict(pixel_cache_stats)
    hog = input_neighbors(x, 4, space="hog")
    pixels = input_neighbors(x, 4, space="pixels")
    assert not np.array_equal(hog, pixels)
    assert input_neighbors(x, 4, space="hog") is hog
    assert pixel_cache_stats["computed"] - before["computed"] == 2
    assert pixel_cache_stats["reused"] - before["reused"] == 1
    with pytest.raises(ValueError, match="'edges' is not one of"):
        input_neighbors(x, 4, space="edges")
