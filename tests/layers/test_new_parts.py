"""A conditioning and an output head are parts: a new one is its module, its registration, a test.

`Additive` and `Laplace` below are written here and nowhere else: the config
accepts `model.decoder.conditioning = "additive"` / `head = "laplace"` and
their keys, `build_model` builds them, and the model trains, saves, loads
and is evaluated like one with the built-in parts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import keras
import numpy as np
import pytest
from keras import ops

from kmixvae.config import from_dict, to_dict
from kmixvae.config_fields import option
from kmixvae.errors import ConfigError
from kmixvae.evaluation.evaluate import evaluate_model
from kmixvae.layers.conditioning import CONDITIONINGS, Conditioning, register_conditioning
from kmixvae.layers.output_heads import HEADS, OutputHead, register_head
from tests.helpers.tiny import tiny_config_dict


@dataclass
class AdditiveSettings:
    additive_scale: float = option(1.0, doc="scale of the added projection of e_c")


class Additive(Conditioning):
    """Adds `additive_scale * W e_c` to the first feature map."""

    kind = "additive"
    Settings = AdditiveSettings

    def build(self, feature_shapes, embedding_shape=None):
        self.projection = keras.layers.Dense(int(feature_shapes[0][-1]), name="projection")
        self.projection.build(embedding_shape)
        self.built = True

    def modulate(self, index, features, e):
        if index != 0:
            return features
        return features + self.additive_scale * self.projection(e)[:, None, None, :]


@dataclass
class LaplaceSettings:
    laplace_scale: float = option(0.1, lo=1e-6, doc="scale b of the `laplace` head")


class Laplace(OutputHead):
    """A Laplace density with mean sigmoid(a) and a fixed scale (its text says "not discrete")."""

    kind = "laplace"
    Settings = LaplaceSettings
    discrete_likelihood = False
    likelihood = "Laplace density (nats; not a discrete likelihood)"

    def __init__(self, laplace_scale=0.1, **kwargs):
        super().__init__(**kwargs)
        self.laplace_scale = float(laplace_scale)

    def mean(self, params):
        return ops.sigmoid(ops.cast(params, "float32"))

    def nll(self, x, params):
        per_pixel = ops.abs(ops.cast(x, "float32") - self.mean(params)) / self.laplace_scale
        per_pixel = per_pixel + math.log(2.0 * self.laplace_scale)
        return ops.sum(per_pixel, axis=(1, 2, 3))

    def get_config(self):
        return {**super().get_config(), "laplace_scale": self.laplace_scale}


@pytest.fixture
def new_parts():
    register_conditioning(Additive)
    register_head(Laplace)
    yield
    CONDITIONINGS.pop("additive")
    HEADS.pop("laplace")


def _images(n=32):
    return np.random.default_rng(0).random((n, 8, 8, 1)).astype("float32")


def _decoder(**keys):
    return tiny_config_dict({"decoder": keys})


def test_new_parts_are_configured(new_parts):
    config = from_dict(_decoder(conditioning="additive", additive_scale=0.5, head="laplace"))
    dec = to_dict(config)["model"]["decoder"]
    assert (dec["conditioning"], dec["additive_scale"]) == ("additive", 0.5)
    assert (dec["head"], dec["laplace_scale"]) == ("laplace", 0.1)
    # A part's keys are used only while it is the chosen one.
    with pytest.raises(
        ConfigError, match="model.decoder.additive_scale.*model.decoder.conditioning"
    ):
        from_dict(_decoder(conditioning="film", additive_scale=0.5))
    with pytest.raises(ConfigError, match="model.decoder.laplace_scale.*model.decoder.head"):
        from_dict(_decoder(laplace_scale=0.2))
    with pytest.raises(ConfigError, match="additive, concat, film, none"):
        from_dict(_decoder(conditioning="addditive"))


def test_new_parts_train_save_load_and_evaluate(new_parts, tiny_model, tmp_path):
    model = tiny_model(
        (8, 8, 1),
        model={
            "decoder": {
                "conditioning": "additive",
                "additive_scale": 2.0,
                "head": "laplace",
                "laplace_scale": 0.2,
            }
        },
    )
    dec = model.decoder
    assert type(dec.strategy) is Additive and dec.strategy.additive_scale == 2.0
    assert type(dec.head) is Laplace and dec.head.laplace_scale == 0.2
    before = keras.ops.convert_to_numpy(dec.strategy.projection.kernel).copy()
    model.compile(optimizer="adam")
    history = model.fit(_images(), batch_size=16, epochs=1, verbose=0).history
    assert np.isfinite(history["loss"][0])
    # The conditioning's own weights train with the model.
    assert not np.allclose(keras.ops.convert_to_numpy(dec.strategy.projection.kernel), before)

    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert (
        type(loaded.decoder.strategy) is Additive and loaded.decoder.strategy.additive_scale == 2.0
    )
    z = np.random.default_rng(1).normal(size=(3, model.latent_dim)).astype("float32")
    np.testing.assert_allclose(
        loaded.decode(z, [0, 1, 2])["mean"], model.decode(z, [0, 1, 2])["mean"], atol=1e-6
    )
    # The channel changes the image through the new conditioning.
    assert not np.allclose(model.decode(z, [0, 0, 0])["mean"], model.decode(z, [1, 1, 1])["mean"])

    labels = np.arange(16) % 3
    report = evaluate_model(model, _images(16), labels, batch_size=8, iwae_samples=0)
    # The head declares a density: no bits per dimension, though its text says "discrete".
    assert report["bits_per_dim"] is None
    assert report["likelihood_scale"] == Laplace.likelihood
