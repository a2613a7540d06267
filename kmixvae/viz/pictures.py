"""The model's pictures as arrays: prior samples per channel and reconstructions.

One place decides what is drawn; every output draws from it: the PNG
figures of `kmixvae visualize` (`viz/figures.py`), the report page
(`viz/report.py`) and the TensorBoard images (`viz/tensorboard_images.py`).
Tiling and PNG encoding are `viz/grids.py`'s.

Example:

```python
strips = channel_samples(model, 8)           # {channel: (8, H, W, C)}
grid = reconstruction_grid(model, x_val[:16])  # originals / reconstructions / sigma rows
```
"""

from __future__ import annotations

import numpy as np

from kmixvae.utils.images import as_float_images
from kmixvae.viz.grids import image_grid


def has_pixel_sigma(model) -> bool:
    """Whether the decoder's head predicts a sigma per pixel (a fixed-sigma head does not)."""
    return not hasattr(model.decoder.head, "fixed_sigma")


def channel_samples(model, n: int, seed: int = 0) -> dict[int, np.ndarray]:
    """Mean images of `n` draws z ~ p(z|c) for every active channel.

    Every channel uses the same `seed`, so row i of two channels decodes the
    same standard-normal draw through each channel's prior.

    Args:
        model: a `MixtureVAE`.
        n: int. Draws per channel.
        seed: int. Sampling seed.

    Returns:
        dict of channel -> `(n, H, W, C)` float32 images in [0, 1].
    """
    return {
        int(c): np.clip(model.sample(n, channel=int(c), seed=seed)["mean"], 0.0, 1.0)
        for c in model.active_channels
    }


def reconstructions(model, images: np.ndarray, batch_size: int = 256) -> dict[str, np.ndarray]:
    """Images, their reconstruction by their chosen channel (posterior mean) and its sigma.

    Args:
        model: a `MixtureVAE`.
        images: `(N, H, W, C)` uint8 pixels or floats in [0, 1].
        batch_size: int. Images per batch.

    Returns:
        dict with `original` and `mean` `(N, H, W, C)` in [0, 1], `channel`
        `(N,)` and, for heads with a per-pixel sigma, `sigma` `(N, H, W, C)`.
    """
    x = as_float_images(images)
    out = model.reconstruct(x, batch_size=batch_size)
    rec = {"original": x, "mean": np.clip(out["mean"], 0.0, 1.0), "channel": out["channel"]}
    if "sigma" in out and has_pixel_sigma(model):
        rec["sigma"] = np.asarray(out["sigma"], "float32")
    return rec


def reconstruction_grid(model, images: np.ndarray, n: int = 16) -> np.ndarray:
    """One grid: the first `n` images (top row), their reconstructions, and sigma.

    The sigma row (heads with a per-pixel sigma only) is divided by its
    largest value over the shown images, so the brightest pixel is the most
    uncertain one.

    Returns:
        `(rows, cols, C)` float32 image in [0, 1], 1-pixel white gaps.
    """
    rec = reconstructions(model, np.asarray(images)[:n])
    panels = [rec["original"], rec["mean"]]
    if "sigma" in rec:
        panels.append(rec["sigma"] / max(float(rec["sigma"].max()), 1e-12))
    count = len(panels[0])
    return np.clip(image_grid(np.concatenate(panels), rows=len(panels), cols=count, pad=1), 0, 1)


__all__ = ["channel_samples", "has_pixel_sigma", "reconstruction_grid", "reconstructions"]
