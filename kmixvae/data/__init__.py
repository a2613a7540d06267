"""Data layer: MNIST-style images from TFDS, IDX files or an .npz, as tf.data or in-memory (PyDataset) pipelines.

Example:

```python
from kmixvae.data import load_datasets
bundle = load_datasets(config)  # DataBundle
model.fit(bundle.train_dataset(), validation_data=bundle.val_dataset())
```
"""

from kmixvae.data.pipeline import DataBundle, load_datasets, make_dataset
from kmixvae.data.sources import (
    IDX_IMAGES_MAGIC,
    IDX_LABELS_MAGIC,
    load_split,
    load_splits,
    read_idx,
)
from kmixvae.data.splits import SplitSlice, parse_split, resolve_split, split_names

__all__ = [
    "IDX_IMAGES_MAGIC",
    "IDX_LABELS_MAGIC",
    "DataBundle",
    "SplitSlice",
    "load_datasets",
    "load_split",
    "load_splits",
    "make_dataset",
    "parse_split",
    "read_idx",
    "resolve_split",
    "split_names",
]
