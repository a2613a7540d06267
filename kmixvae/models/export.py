"""An inference copy of a trained `MixtureVAE`: the weights and the config, no optimizer.

A training checkpoint (`model.keras` of a run) also holds the optimizer's
moments, which triple its size and are useless to a user who samples or
encodes. `inference_copy` rebuilds the same model from its config, copies
every weight (the channel mask and the batch-norm statistics included) and
leaves it uncompiled, so that `kmixvae.runs.save_for_inference` writes only
what inference reads.

Example:

```python
model = load_model_file("runs/film_het__20261126_090000")
copy = inference_copy(model)       # no optimizer
copy.encode(x)
```
"""

from __future__ import annotations

import keras
import numpy as np


def inference_copy(model):
    """An uncompiled copy of `model` with the same config and weights.

    Args:
        model: a built `MixtureVAE`.

    Returns:
        A new `MixtureVAE` (no optimizer), with the same active channels.
    """
    copy = model.__class__.from_config(model.get_config())
    copy.build((None, *model.decoder.image_shape))
    # Same config, same construction order: the weights pair up one to one (their
    # paths may differ by Keras' unique-name suffixes, e.g. encoder_1).
    if len(copy.weights) != len(model.weights):
        raise ValueError(
            f"inference_copy: the copy has {len(copy.weights)} weights, the model "
            f"{len(model.weights)}"
        )
    for target, source in zip(copy.weights, model.weights):
        if tuple(target.shape) != tuple(source.shape) or target.name != source.name:
            raise ValueError(
                f"inference_copy: weight {target.path} {tuple(target.shape)} does not match "
                f"{source.path} {tuple(source.shape)}"
            )
        target.assign(np.asarray(keras.ops.convert_to_numpy(source.value)))
    copy._sync_active_from_mask()
    return copy


__all__ = ["inference_copy"]
