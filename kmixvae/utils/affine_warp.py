"""A bilinear affine warp of images written as four gathers, for the JAX backend.

`keras.ops.image.affine_transform` is TensorFlow's native
`ImageProjectiveTransformV3` on that backend, but on JAX Keras builds it
from `map_coordinates`, which computes and gathers each of the four
bilinear corners through a general n-d interpolation path: 12-18 ms for
512 views of 28x28 on the 2-core CPU, against 4.5-4.9 ms on TensorFlow.
The same warp written as four flat gathers with their bilinear weights
takes 2.7-3.2 ms on JAX (`apps/warp_benchmark.py`, `docs/performance.md`);
on TensorFlow it is slower than the native op (15-18 ms), so `warp_images`
keeps that op there.
"""

from __future__ import annotations

import keras
from keras import ops


def bilinear_affine(images, transform):
    """Warps each image by its affine transform, bilinear, zero outside.

    The same result as `keras.ops.image.affine_transform(images, transform,
    interpolation="bilinear", fill_mode="constant", fill_value=0.0)` for
    affine transforms (the last two of the eight numbers 0): the output
    pixel `(x, y)` reads the input at `(a0 x + a1 y + a2, b0 x + b1 y + b2)`,
    blended from its four neighbouring pixels, pixels outside the image
    counting as 0.

    Args:
        images: `(B, H, W, C)` float tensor.
        transform: `(B, 8)` tensor `[a0, a1, a2, b0, b1, b2, 0, 0]`.

    Returns:
        `(B, H, W, C)` tensor of the images' dtype.

    Example:

    ```python
    shift = ops.convert_to_tensor([[1, 0, -2, 0, 1, 0, 0, 0]], "float32")
    moved = bilinear_affine(images[:1], shift)  # two pixels to the right
    ```
    """
    b = ops.shape(images)[0]
    h, w, c = images.shape[1], images.shape[2], images.shape[3]
    ys, xs = ops.meshgrid(
        ops.arange(h, dtype="float32"), ops.arange(w, dtype="float32"), indexing="ij"
    )
    xs, ys = ops.reshape(xs, (1, h * w)), ops.reshape(ys, (1, h * w))
    t = ops.cast(transform, "float32")
    sx = t[:, 0:1] * xs + t[:, 1:2] * ys + t[:, 2:3]  # (B, H*W) source columns
    sy = t[:, 3:4] * xs + t[:, 4:5] * ys + t[:, 5:6]  # source rows
    x0, y0 = ops.floor(sx), ops.floor(sy)
    fx, fy = sx - x0, sy - y0
    x0, y0 = ops.cast(x0, "int32"), ops.cast(y0, "int32")
    pixels = ops.cast(ops.reshape(images, (-1, c)), "float32")  # (B*H*W, C)
    first = ops.reshape(ops.arange(b, dtype="int32") * (h * w), (-1, 1))
    out = 0.0
    for dy, dx, weight in (
        (0, 0, (1.0 - fy) * (1.0 - fx)),
        (0, 1, (1.0 - fy) * fx),
        (1, 0, fy * (1.0 - fx)),
        (1, 1, fy * fx),
    ):
        row, col = y0 + dy, x0 + dx
        inside = (row >= 0) & (row < h) & (col >= 0) & (col < w)
        index = first + ops.clip(row, 0, h - 1) * w + ops.clip(col, 0, w - 1)
        weight = ops.where(inside, weight, 0.0)[..., None]  # (B, H*W, 1)
        out = out + weight * ops.take(pixels, index, axis=0)  # (B, H*W, C)
    return ops.cast(ops.reshape(out, (b, h, w, c)), images.dtype)


def keras_affine(images, transform):
    """Keras' `affine_transform` with the same settings (bilinear, zero outside)."""
    return ops.image.affine_transform(
        images, transform, interpolation="bilinear", fill_mode="constant", fill_value=0.0
    )


def warp_images(images, transform):
    """`bilinear_affine` on JAX, Keras' `affine_transform` (a native op) elsewhere."""
    if keras.backend.backend() == "jax":
        return bilinear_affine(images, transform)
    return keras_affine(images, transform)
