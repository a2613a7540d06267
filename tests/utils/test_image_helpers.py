"""The one tiling helper and the one pixel-scaling helper."""

from __future__ import annotations

import numpy as np
import pytest

from kmixvae.utils.images import as_float_images
from kmixvae.viz.grids import image_grid


def test_as_float_images_scales_integers_and_casts_floats():
    u8 = np.array([[[0, 255]]], "uint8")
    out = as_float_images(u8)
    assert out.dtype == np.float32 and out.shape == (1, 1, 2, 1)
    np.testing.assert_array_equal(out[..., 0], [[[0.0, 1.0]]])
    f = np.full((2, 3, 3, 1), 0.5, "float64")
    assert as_float_images(f).dtype == np.float32 and as_float_images(f).max() == 0.5


@pytest.mark.parametrize(
    "kwargs, shape",
    [
        ({}, (3 * 2, 2 * 3, 1)),  # 5 images: rows = ceil(sqrt(5)) = 3, cols = 2
        ({"cols": 5}, (2, 5 * 3, 1)),
        ({"rows": 1, "cols": 2}, (2, 2 * 3, 1)),  # images beyond rows * cols are left out
        ({"cols": 5, "pad": 1}, (2, 5 * 4 - 1, 1)),
    ],
)
def test_image_grid_places_images_row_by_row(kwargs, shape):
    images = np.stack([np.full((2, 3, 1), i / 10, "float32") for i in range(5)])
    grid = image_grid(images, **kwargs)
    assert grid.shape == shape
    pad = kwargs.get("pad", 0)
    cols = kwargs.get("cols", 2)
    # The second image sits right of the first, after the padding.
    assert grid[0, 3 + pad, 0] == pytest.approx(0.1)
    if pad:
        assert grid[0, 3, 0] == 1.0
    if cols == 2 and "rows" not in kwargs:
        assert grid[2, 0, 0] == pytest.approx(0.2)  # the third image starts the second row
