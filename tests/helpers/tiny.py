"""The one tiny model the tests build (3 channels, one small conv each way)."""

from __future__ import annotations

import copy

from kmixvae.config import Config, from_dict
from kmixvae.models.factory import build_model

TINY_MODEL = {
    "num_channels": 3,
    "encoder": {"filters": [8], "dense_units": 16},
    "decoder": {"filters": [8, 8]},
}


def _merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def tiny_config_dict(model: dict | None = None, **sections) -> dict:
    """The tiny model's config mapping, `model` merged into its model section, plus `sections`."""
    return {"model": _merge(TINY_MODEL, model or {}), **sections}


def tiny_config(model: dict | None = None, **sections) -> Config:
    return from_dict(tiny_config_dict(model, **sections))


def tiny_model(image_shape=(28, 28, 1), model: dict | None = None, **sections):
    """A built `MixtureVAE` of the tiny config for images of `image_shape`."""
    return build_model(tiny_config(model, **sections), image_shape)
