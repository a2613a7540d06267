"""The four-gather bilinear warp against Keras' own affine_transform."""

from __future__ import annotations

import math

import numpy as np
import pytest
from keras import ops

from kmixvae.utils.affine_warp import bilinear_affine, warp_images


def _transforms(n, rng):
    """Random rotations, shears, zooms and shifts about the centre of a 28x28 image."""
    angle = rng.uniform(-math.radians(30), math.radians(30), n)
    shear, zoom = rng.uniform(-0.5, 0.5, n), rng.uniform(0.6, 1.4, n)
    tx, ty = rng.uniform(-6, 6, n), rng.uniform(-6, 6, n)
    cos, sin = np.cos(angle), np.sin(angle)
    m00, m01, m10, m11 = (
        cos / zoom,
        (sin + cos * shear) / zoom,
        -sin / zoom,
        (cos - sin * shear) / zoom,
    )
    c = 13.5
    return np.stack(
        [
            m00,
            m01,
            c - m00 * c - m01 * c - tx,
            m10,
            m11,
            c - m10 * c - m11 * c - ty,
            0 * c + 0 * tx,
            0 * tx,
        ],
        1,
    ).astype("float32")


@pytest.mark.parametrize("channels", [1, 3])
def test_the_warp_is_keras_affine_transform(channels):
    rng = np.random.default_rng(0)
    images = rng.random((16, 28, 28, channels)).astype("float32")
    transform = _transforms(16, rng)
    expected = ops.image.affine_transform(
        images, transform, interpolation="bilinear", fill_mode="constant", fill_value=0.0
    )
    got = bilinear_affine(ops.convert_to_tensor(images), ops.convert_to_tensor(transform))
    np.testing.assert_allclose(ops.convert_to_numpy(got), ops.convert_to_numpy(expected), atol=1e-5)
    np.testing.assert_allclose(
        ops.convert_to_numpy(warp_images(images, transform)),
        ops.convert_to_numpy(expected),
        atol=1e-5,
    )


def test_a_whole_pixel_shift_moves_the_image_and_fills_zeros():
    image = np.zeros((1, 6, 6, 1), "float32")
    image[0, 2, 1, 0] = 1.0
    # Output (x, y) reads input (x - 2, y): everything moves two pixels right.
    shift = np.array([[1, 0, -2, 0, 1, 0, 0, 0]], "float32")
    out = ops.convert_to_numpy(bilinear_affine(ops.convert_to_tensor(image), shift))
    expected = np.zeros_like(image)
    expected[0, 2, 3, 0] = 1.0
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_the_warp_keeps_the_images_dtype():
    images = ops.convert_to_tensor(np.ones((2, 8, 8, 1)), "float16")
    identity = np.array([[1, 0, 0, 0, 1, 0, 0, 0]] * 2, "float32")
    out = bilinear_affine(images, identity)
    assert ops.dtype(out) == "float16"
    np.testing.assert_allclose(ops.convert_to_numpy(out), 1.0)
