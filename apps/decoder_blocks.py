"""Training speed of decoder upsampling blocks on the current Keras backend.

Times forward + backward + Adam of a stand-alone decoder shaped like
film_het's (Dense -> 7x7x32 -> one 2x block to 14x14x32 -> 3x3 head conv to
2x2x2 sub-pixels -> 28x28x2) on synthetic data, for each block:

- `upsample`: nearest 2x upsampling, then a 3x3 conv (32 -> 32) at 14x14;
- `subpixel`: a 3x3 conv (32 -> 128) at 7x7, then a 2x pixel shuffle;
- `transpose`: a 3x3 stride-2 `Conv2DTranspose` (32 -> 32).

The first two cost the same FLOPs. Rows = the decoder's batch (ELBO
sub-batch x active channels: 32 x 10 = 320 in film_het at k=10).

Usage:

    KERAS_BACKEND=jax python apps/decoder_blocks.py [--rows 320] [--steps 20] [--blocks upsample,subpixel,transpose]
"""

from __future__ import annotations

import argparse
import time

import keras
import numpy as np
from keras import ops

BLOCKS = ("upsample", "subpixel", "transpose")


def pixel_shuffle(h, r=2):
    _, height, width, channels = h.shape
    c = channels // (r * r)
    h = ops.reshape(h, (-1, height, width, r, r, c))
    h = ops.transpose(h, (0, 1, 3, 2, 4, 5))
    return ops.reshape(h, (-1, height * r, width * r, c))


def build(block: str) -> keras.Model:
    z = keras.Input((2,))
    h = ops.relu(ops.reshape(keras.layers.Dense(7 * 7 * 32)(z), (-1, 7, 7, 32)))
    if block == "upsample":
        h = keras.layers.Conv2D(32, 3, padding="same")(keras.layers.UpSampling2D(2)(h))
    elif block == "subpixel":
        h = pixel_shuffle(keras.layers.Conv2D(128, 3, padding="same")(h))
    else:
        h = keras.layers.Conv2DTranspose(32, 3, strides=2, padding="same")(h)
    h = keras.layers.Conv2D(8, 3, padding="same")(ops.relu(h))
    return keras.Model(z, pixel_shuffle(h))


def time_block(block: str, rows: int, steps: int) -> float:
    """Mean ms per training step after one warm-up epoch."""
    rng = np.random.default_rng(0)
    z = rng.random((rows * steps, 2), dtype=np.float32)
    x = rng.random((rows * steps, 28, 28, 2), dtype=np.float32)
    model = build(block)
    model.compile(optimizer="adam", loss="mse")
    model.fit(z, x, batch_size=rows, epochs=1, verbose=0)
    t0 = time.perf_counter()
    model.fit(z, x, batch_size=rows, epochs=2, verbose=0)
    return 1e3 * (time.perf_counter() - t0) / (2 * steps)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=320)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--blocks", default=",".join(BLOCKS))
    args = parser.parse_args(argv)
    for block in args.blocks.split(","):
        if block not in BLOCKS:
            parser.error(f"--blocks: {block!r} is not one of {', '.join(BLOCKS)}")
        ms = time_block(block, args.rows, args.steps)
        print(
            f"{keras.backend.backend():<10} {block:<9} rows {args.rows}: {ms:7.1f} ms/step "
            f"({args.rows / ms * 1e3:,.0f} decodes/s)",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
