"""TensorBoard image and scalar summaries of a `MixtureVAE`.

The model is only asked for numpy arrays (`reconstruct`, `sample`); the
summaries are written with TensorFlow's own summary writer, which is always
installed, so this works on the TensorFlow and JAX backends alike.

Each call opens a writer, writes one step and closes it (a new event file per
call). Give these summaries a run folder of their own (e.g.
`<tensorboard>/images`): TensorBoard stops polling an event file once a newer
one appears in the same folder.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from kmixvae.viz.grids import image_grid
from kmixvae.viz.pictures import channel_samples, reconstruction_grid
from kmixvae.viz.projector import images_to_float

RECONSTRUCTION_TAG = "reconstructions"
SAMPLES_TAG = "samples/channel_{}"


def _to_rgb_or_gray(images: np.ndarray) -> np.ndarray:
    """Keeps 1, 3 or 4 image channels (tf.summary.image's); else shows channel 0."""
    if images.shape[-1] in (1, 3, 4):
        return images
    return images[..., :1]


def sample_grids(model, n: int = 16, seed: int = 0) -> dict[int, np.ndarray]:
    """A square grid of `n` prior samples (`pictures.channel_samples`) for each active channel."""
    cols = max(1, math.ceil(math.sqrt(n)))
    return {
        c: image_grid(samples, cols=cols, pad=1)
        for c, samples in channel_samples(model, n, seed=seed).items()
    }


def write_image_summaries(
    model, images: np.ndarray, log_dir: str | Path, step: int, *, n: int = 16
) -> list[str]:
    """Writes reconstructions and per-channel samples as TensorBoard images.

    Tags: `reconstructions` (`pictures.reconstruction_grid`: the first `n`
    images over their reconstructions over sigma) and `samples/channel_<c>`
    (a grid of `n` prior samples) for every active channel `c`.

    Args:
        model: a built `MixtureVAE`.
        images: `(N, H, W, C)` uint8 pixels or floats in [0, 1].
        log_dir: run folder of the event file.
        step: int. Summary step (e.g. the epoch).
        n: int. Images per summary.

    Returns:
        The tags written.

    Example:

    ```python
    write_image_summaries(model, x_val, "runs/r1/tensorboard/images", step=epoch)
    ```
    """
    from kmixvae.data.pipeline import tensorflow_available

    pictures = {RECONSTRUCTION_TAG: reconstruction_grid(model, images_to_float(images), n=n)}
    for c, grid in sample_grids(model, n=n).items():
        pictures[SAMPLES_TAG.format(c)] = grid
    Path(log_dir).mkdir(parents=True, exist_ok=True)
    if not tensorflow_available():
        from kmixvae.viz.tensorboard_events import EventWriter

        with EventWriter(log_dir) as events:
            for tag, picture in pictures.items():
                events.image(tag, _to_rgb_or_gray(picture), int(step))
        return list(pictures)
    import tensorflow as tf

    writer = tf.summary.create_file_writer(str(log_dir))
    try:
        with writer.as_default():
            for tag, picture in pictures.items():
                tf.summary.image(tag, _to_rgb_or_gray(picture)[None], step=int(step))
        writer.flush()
    finally:
        writer.close()
    return list(pictures)


def write_scalars(log_dir: str | Path, step: int, scalars: dict) -> None:
    """Writes `{tag: number}` as TensorBoard scalars at `step`.

    Example:

    ```python
    write_scalars("runs/r1/tensorboard/eval", 3, {"eval/nelbo": 91.2})
    ```
    """
    from kmixvae.data.pipeline import tensorflow_available

    Path(log_dir).mkdir(parents=True, exist_ok=True)
    if not tensorflow_available():
        from kmixvae.viz.tensorboard_events import EventWriter

        with EventWriter(log_dir) as events:
            for tag, value in scalars.items():
                events.scalar(str(tag), float(value), int(step))
        return
    import tensorflow as tf

    writer = tf.summary.create_file_writer(str(log_dir))
    try:
        with writer.as_default():
            for tag, value in scalars.items():
                tf.summary.scalar(str(tag), float(value), step=int(step))
        writer.flush()
    finally:
        writer.close()


__all__ = ["sample_grids", "write_image_summaries", "write_scalars"]
