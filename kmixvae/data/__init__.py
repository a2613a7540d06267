"""Data layer: MNIST-style images from TFDS, IDX files or an .npz, as tf.data or in-memory (PyDataset) pipelines.

The names below are imported on first use, so that `kmixvae.data.splits` (used
by config validation) does not import TensorFlow.

Example:

```python
from kmixvae.data import load_datasets
bundle = load_datasets(config)  # DataBundle
model.fit(bundle.train_dataset(), validation_data=bundle.val_dataset())
```
"""

import importlib

_WHERE = {
    "DataBundle": "pipeline",
    "load_datasets": "pipeline",
    "make_dataset": "pipeline",
    "IDX_IMAGES_MAGIC": "sources",
    "IDX_LABELS_MAGIC": "sources",
    "available_splits": "sources",
    "load_split": "sources",
    "load_splits": "sources",
    "read_idx": "sources",
    "SplitSlice": "splits",
    "parse_split": "splits",
    "resolve_split": "splits",
    "split_names": "splits",
}

__all__ = sorted(_WHERE)


def __getattr__(name):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
