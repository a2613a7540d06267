"""Every registered layer, output head and conditioning goes through `run_layer_test`.

The cases are collected from the registries (Keras' serialisation registry
for the `kmixvae>` layers, `HEADS`, `CONDITIONINGS`), so that a new
registration is tested without an edit here: a head or a conditioning gets a
generic case; any other new layer fails `test_every_registered_layer_has_a_case`
until it has one below.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

import kmixvae.models  # noqa: F401  (registers every kmixvae layer)
from kmixvae.layers.channel_embedding import ChannelEmbedding
from kmixvae.layers.conditioning import CONDITIONINGS, Conditioning, make_conditioning
from kmixvae.layers.film import FiLM
from kmixvae.layers.mixture_prior import MixturePrior
from kmixvae.layers.output_heads import HEADS, Bernoulli, OutputHead
from kmixvae.models.decoder import Decoder
from kmixvae.models.encoder import Encoder
from tests.helpers.layers import run_layer_test

RNG = np.random.default_rng(0)
Z = RNG.normal(size=(4, 2)).astype("float32")
CHANNELS = np.array([0, 2, 1, 2], "int32")
FEATURES = RNG.normal(size=(2, 5, 3, 4)).astype("float32")
IMAGES = RNG.random((4, 8, 8, 1)).astype("float32")


def tiny_decoder(conditioning) -> Decoder:
    return Decoder((8, 8, 1), 2, 3, conditioning, 4, [8, 4], Bernoulli(upscale=1), block="subpixel")


# Layers that are neither heads nor conditionings: a fresh instance, its call arguments,
# its output shape(s), and what `run_layer_test` needs to know about it.
LAYER_CASES = {
    ChannelEmbedding: lambda: (ChannelEmbedding(3, 5), (CHANNELS,), (4, 5), {}),
    FiLM: lambda: (FiLM(init="random"), (FEATURES, Z[:2]), FEATURES.shape, {}),
    # No tensor input; log p(c) is float32 whatever the policy.
    MixturePrior: lambda: (
        MixturePrior(3, 2, pi="learnable"),
        (None,),
        (3,),
        {"check_output_shape_fn": False, "mixed_output_dtype": "float32"},
    ),
    # (logits, mu, log_var); the model casts them to float32.
    Encoder: lambda: (
        Encoder(num_channels=3, latent_dim=2, filters=[4], dense_units=8),
        (IMAGES,),
        [(4, 3), (4, 3, 2), (4, 3, 2)],
        {"check_output_shape_fn": False},
    ),
    Decoder: lambda: (
        tiny_decoder(make_conditioning("concat")),
        (Z, CHANNELS),
        (4, 8, 8, 1),
        {"check_output_shape_fn": False},
    ),
}


def registered_layer_classes() -> dict[str, type]:
    """The layers registered under Keras' `kmixvae>` package (models excluded)."""
    out = {}
    for name, obj in keras.saving.get_custom_objects().items():
        if (
            name.startswith("kmixvae>")
            and isinstance(obj, type)
            and issubclass(obj, keras.layers.Layer)
            and not issubclass(obj, keras.Model)
        ):
            out[name] = obj
    return out


def test_every_registered_layer_has_a_case():
    missing = [
        name
        for name, cls in registered_layer_classes().items()
        if not issubclass(cls, (OutputHead, Conditioning)) and cls not in LAYER_CASES
    ]
    assert not missing, f"registered layers without a LAYER_CASES entry: {missing}"


@pytest.mark.parametrize("cls", list(LAYER_CASES), ids=lambda c: c.__name__)
def test_registered_layer(cls):
    layer, inputs, shape, options = LAYER_CASES[cls]()
    run_layer_test(layer, inputs, shape, **options)


@pytest.mark.parametrize("kind", list(HEADS))
def test_registered_head(kind):
    head = HEADS[kind].from_settings(image_channels=2, upscale=2)
    shape = (2, 10, 6, head.params_per_channel * 2)
    params = run_layer_test(head, (FEATURES,), shape)
    x = np.random.default_rng(1).random((2, 10, 6, 2)).astype("float32")
    nll = np.asarray(keras.ops.convert_to_numpy(head.nll(x, params)))
    assert nll.shape == (2,) and np.all(np.isfinite(nll))
    assert isinstance(head.discrete_likelihood, bool)


@pytest.mark.parametrize("kind", sorted(CONDITIONINGS))
def test_registered_conditioning_in_a_decoder(kind):
    decoder = tiny_decoder(make_conditioning(kind))
    run_layer_test(decoder, (Z, CHANNELS), (4, 8, 8, 1), check_output_shape_fn=False)
    assert decoder.conditioning == kind
    assert (decoder.embedding is not None) == CONDITIONINGS[kind].uses_embedding
