"""Progress bars for long inference loops: shown on a terminal, silent in logs.

`track` wraps a loop over batches with a `keras.utils.Progbar` when stdout
is a terminal, and does nothing otherwise (a log file, a pipe, a test), so
logs never fill with carriage-return bars.

Example:

```python
for lo in track(range(0, n, 256), total=n, step=256, label="evaluate"):
    ...
enc = encode_with_progress(model, images, label="encode")
```
"""

from __future__ import annotations

import sys

import numpy as np


def attached_to_terminal(stream=None) -> bool:
    """Whether `stream` (default stdout) is an interactive terminal."""
    stream = sys.stdout if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def track(starts, *, total: int, step: int, label: str, stream=None):
    """Yields `starts` (batch offsets), advancing a progress bar of `total` items.

    Args:
        starts: iterable of batch start offsets (e.g. `range(0, n, step)`).
        total: int. Number of items (images) in all.
        step: int. Items per batch.
        label: str. Shown before the bar.
        stream: where to check for a terminal (default stdout).
    """
    if not attached_to_terminal(stream) or total <= step:
        yield from starts
        return
    import keras

    print(label, flush=True)
    bar = keras.utils.Progbar(total, unit_name="image")
    for lo in starts:
        yield lo
        bar.update(min(lo + step, total))


def encode_with_progress(
    model, images, *, label: str = "encode", chunk: int = 4096, batch_size: int = 512
) -> dict:
    """`model.encode(images)` in chunks, with a progress bar on a terminal.

    Args:
        model: a `MixtureVAE`.
        images: `(N, H, W, C)` floats in [0, 1].
        label: str. Shown before the bar.
        chunk: int. Images per `encode` call.
        batch_size: int. Batch size of `model.encode`.

    Returns:
        The same dict as `model.encode(images)`.
    """
    n = len(images)
    parts = [
        model.encode(images[lo : lo + chunk], batch_size=batch_size)
        for lo in track(range(0, n, chunk), total=n, step=chunk, label=label)
    ]
    if not parts:
        return model.encode(images, batch_size=batch_size)
    return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}


__all__ = ["attached_to_terminal", "encode_with_progress", "track"]
