"""Times the augmentation's affine warp: Keras' `affine_transform` against `bilinear_affine`.

512 images of 28x28 (the views of one training step), random rotations,
shears and shifts, each function compiled (`jax.jit` / `tf.function`);
prints the median of 50 calls after 3 warm-up calls.

Usage:

    KERAS_BACKEND=jax python apps/warp_benchmark.py
    KERAS_BACKEND=tensorflow python apps/warp_benchmark.py
"""

from __future__ import annotations

import time

import keras
import numpy as np
from keras import ops

from kmixvae.utils.affine_warp import bilinear_affine, keras_affine


def compiled(fn):
    if keras.backend.backend() == "jax":
        import jax

        return jax.jit(fn)
    import tensorflow as tf

    return tf.function(fn)


def main() -> None:
    rng = np.random.default_rng(0)
    n = 512
    images = ops.convert_to_tensor(rng.random((n, 28, 28, 1)).astype("float32"))
    angle = rng.uniform(-0.17, 0.17, n)
    cos, sin, one = np.cos(angle), np.sin(angle), np.ones(n)
    transform = np.stack([cos, sin + 0.2, one, -sin, cos, -one, 0 * one, 0 * one], 1)
    transform = ops.convert_to_tensor(transform.astype("float32"))
    for name, fn in (
        ("keras affine_transform", keras_affine),
        ("bilinear_affine", bilinear_affine),
    ):
        fn = compiled(fn)
        for _ in range(3):
            np.asarray(fn(images, transform))
        times = []
        for _ in range(50):
            t0 = time.perf_counter()
            np.asarray(fn(images, transform))
            times.append(time.perf_counter() - t0)
        print(
            f"{keras.backend.backend()} {name}: median {1000 * np.median(times):.2f} ms "
            f"({n} images 28x28)",
            flush=True,
        )


if __name__ == "__main__":
    main()
