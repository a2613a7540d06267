"""TensorBoard embedding-projector export of the latents of a `MixtureVAE`.

The projector plugin of TensorBoard looks for `projector_config.pbtxt` in the
root of the logdir (shown as run `.`) and in every run folder of it (a folder
holding event files). `export_projector` writes that config, written with
TensorBoard's own `ProjectorConfig` protobuf, next to checkpoint-free TSV
tensors, one metadata TSV and one sprite PNG:

```
log_dir/
  projector_config.pbtxt
  latent_chosen.tsv                           (N, d)
  latent_all_channels.tsv                     (N, K*d), active channels only
  latent_chosen_with_channel_embedding.tsv    (N, d+E), when the decoder has e_c
  metadata.tsv                                index, label, channel, q_max
  sprite.png                                  grid of the N images
```

Only numpy outputs of `model.encode` are used, so the export is the same on
the TensorFlow and JAX backends.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from kmixvae.errors import DataError
from kmixvae.utils.files import atomic_write, atomic_write_text
from kmixvae.utils.images import as_float_images

CONFIG_FILENAME = "projector_config.pbtxt"
METADATA_FILENAME = "metadata.tsv"
SPRITE_FILENAME = "sprite.png"
# The projector front end refuses sprite images larger than this on a side.
MAX_SPRITE_SIZE = 8192


def images_to_float(images: np.ndarray) -> np.ndarray:
    """`as_float_images`, with a one-line error for arrays that are not `(N, H, W[, C])`."""
    images = as_float_images(images)
    if images.ndim != 4:
        raise DataError(f"images must be (N, H, W, C), got shape {images.shape}")
    return images


def images_to_uint8(images: np.ndarray) -> np.ndarray:
    """Float images in [0, 1] (clipped) to uint8 pixels, `(N, H, W, C)`."""
    return np.round(np.clip(np.asarray(images, "float32"), 0.0, 1.0) * 255.0).astype("uint8")


def make_sprite(images: np.ndarray, max_size: int = MAX_SPRITE_SIZE):
    """Tiles images into one square sprite (row-major, as the projector reads it).

    Args:
        images: `(N, H, W, C)` floats in [0, 1] or uint8, C in {1, 3, 4}.
        max_size: int. Largest side of the sprite; tiles are shrunk to fit.

    Returns:
        `(sprite, (tile_h, tile_w))`: a PIL image (mode L, RGB or RGBA) and
        the size of one tile.
    """
    from PIL import Image

    pixels = images_to_uint8(images_to_float(images))
    n, h, w, c = pixels.shape
    modes = {1: "L", 3: "RGB", 4: "RGBA"}
    if c not in modes:
        raise DataError(f"a sprite needs 1, 3 or 4 image channels, got {c}")
    grid = max(1, math.ceil(math.sqrt(n)))
    scale = min(1.0, max_size / (grid * max(h, w)))
    th, tw = max(1, int(h * scale)), max(1, int(w * scale))
    sprite = np.zeros((grid * th, grid * tw, c), "uint8")
    for i, img in enumerate(pixels):
        if (th, tw) != (h, w):
            tile = Image.fromarray(img[..., 0] if c == 1 else img, modes[c])
            img = np.asarray(tile.resize((tw, th), Image.BILINEAR)).reshape(th, tw, c)
        r, col = divmod(i, grid)
        sprite[r * th : (r + 1) * th, col * tw : (col + 1) * tw] = img
    array = sprite[..., 0] if c == 1 else sprite
    return Image.fromarray(array, modes[c]), (th, tw)


def _tsv(array: np.ndarray) -> str:
    buf = io.StringIO()
    np.savetxt(buf, np.asarray(array, "float32"), delimiter="\t", fmt="%.7g")
    return buf.getvalue()


def _clean(value) -> str:
    return str(value).replace("\t", " ").replace("\n", " ")


def projector_tensors(model, images: np.ndarray, batch_size: int = 512) -> dict:
    """The embeddings exported to the projector, as float32 numpy arrays.

    Returns:
        dict: `latent_chosen` `(N, d)`, `latent_all_channels` `(N, K*d)`
        over the K active channels (a masked channel's latents mean nothing),
        `latent_chosen_with_channel_embedding` `(N, d+E)` (only when the
        decoder has a channel embedding) and, for the metadata, `channel`
        `(N,)` and `q_max` `(N,)`.
    """
    from kmixvae.utils.progress import encode_with_progress

    enc = encode_with_progress(
        model, images_to_float(images), label="encode", batch_size=batch_size
    )
    mu, q, channel = enc["mu"], enc["q"], enc["channel"]
    idx = np.arange(len(mu))
    chosen = mu[idx, channel].astype("float32")
    out = {
        "latent_chosen": chosen,
        "latent_all_channels": mu[:, list(model.active_channels)]
        .reshape(len(mu), -1)
        .astype("float32"),
        "channel": channel,
        "q_max": q[idx, channel],
    }
    embedding = getattr(model.decoder, "embedding", None)
    if embedding is not None:
        from keras import ops

        table = np.asarray(ops.convert_to_numpy(embedding.embeddings), "float32")
        out["latent_chosen_with_channel_embedding"] = np.concatenate(
            [chosen, table[channel]], axis=1
        )
    return out


TENSOR_NAMES = (
    "latent_chosen",
    "latent_all_channels",
    "latent_chosen_with_channel_embedding",
)


def export_projector(
    model,
    images: np.ndarray,
    labels: Sequence | np.ndarray | None,
    log_dir: str | Path,
    *,
    max_samples: int = 2000,
    batch_size: int = 512,
) -> Path:
    """Writes TensorBoard embedding-projector files for the first `max_samples` images.

    Point `tensorboard --logdir` at `log_dir` (the embeddings show as run
    `.`) or at its parent when `log_dir` is a run folder with event files.
    Every file is written atomically; rerunning replaces them.

    Args:
        model: a built `MixtureVAE`.
        images: `(N, H, W, C)` uint8 pixels or floats in [0, 1].
        labels: `(N,)` class labels, or None (written as `-`).
        log_dir: folder of the projector files.
        max_samples: int. How many images (the first ones) to export.
        batch_size: int. Batch size of `model.encode`.

    Returns:
        Path of the written `projector_config.pbtxt`.

    Example:

    ```python
    export_projector(model, x_test, y_test, "runs/r1/tensorboard")
    # tensorboard --logdir runs/r1/tensorboard   ->  Projector tab
    ```
    """
    from google.protobuf import text_format
    from tensorboard.plugins import projector

    if max_samples < 1:
        raise ValueError(f"max_samples must be >= 1, got {max_samples}")
    images = images_to_float(images)[:max_samples]
    n = len(images)
    if n == 0:
        raise DataError("export_projector needs at least one image")
    if labels is None:
        label_col = ["-"] * n
    else:
        labels = np.asarray(labels)[:max_samples]
        if len(labels) != n:
            raise DataError(f"got {n} images but {len(labels)} labels")
        label_col = [_clean(v) for v in labels.tolist()]

    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    tensors = projector_tensors(model, images, batch_size=batch_size)

    rows = ["index\tlabel\tchannel\tq_max"]
    rows += [
        f"{i}\t{label_col[i]}\t{int(tensors['channel'][i])}\t{float(tensors['q_max'][i]):.4f}"
        for i in range(n)
    ]
    atomic_write_text(log_dir / METADATA_FILENAME, "\n".join(rows) + "\n")

    sprite, (tile_h, tile_w) = make_sprite(images)
    atomic_write(log_dir / SPRITE_FILENAME, lambda tmp: sprite.save(tmp, format="PNG"))

    config = projector.ProjectorConfig()
    for name in TENSOR_NAMES:
        if name not in tensors:
            continue
        array = tensors[name]
        atomic_write_text(log_dir / f"{name}.tsv", _tsv(array))
        emb = config.embeddings.add()
        emb.tensor_name = name
        emb.tensor_path = f"{name}.tsv"
        emb.tensor_shape.extend([int(s) for s in array.shape])
        emb.metadata_path = METADATA_FILENAME
        emb.sprite.image_path = SPRITE_FILENAME
        # The projector reads single_image_dim as [width, height].
        emb.sprite.single_image_dim.extend([tile_w, tile_h])
    config_path = log_dir / CONFIG_FILENAME
    atomic_write_text(config_path, text_format.MessageToString(config))
    return config_path


__all__ = ["export_projector", "make_sprite", "projector_tensors"]
