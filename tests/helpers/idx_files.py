"""IDX files (MNIST's format) written by the tests, gzipped when the name ends in `.gz`."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

IMAGES_MAGIC, LABELS_MAGIC = 0x00000803, 0x00000801


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    """The IDX bytes of `array` as uint8, with `magic` and its shape in the header."""
    array = np.asarray(array, dtype=np.uint8)
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.tobytes()


def write_idx(path: Path, array: np.ndarray, magic: int) -> Path:
    """Writes `array` to `path` as an IDX file (gzipped for a `.gz` name); returns `path`."""
    data = idx_bytes(array, magic)
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path
