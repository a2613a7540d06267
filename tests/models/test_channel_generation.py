"""Tests of what makes each channel a VAE of its own cluster.

FiLM that conditions the decoder (its initialisation and input feed), the
separate latent trunk that only the ELBO trains, and the sampled-channel
ELBO estimator.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import ops

from kmixvae.errors import ConfigError
from kmixvae.layers.film import FiLM
from kmixvae.layers.output_heads import Bernoulli
from kmixvae.models.decoder import Decoder
from kmixvae.models.factory import build_model
from tests.helpers import tiny as tiny_lib


def tiny_config(model=None, elbo=None):
    """The shared tiny config with the ELBO detached from q(c|x) (and `elbo` settings)."""
    return tiny_lib.tiny_config(
        model=model,
        loss={
            "elbo": {"assignment_gradient": False, **(elbo or {})},
            "usage_entropy": {"weight": 0.0},
        },
    )


def np_(t):
    return np.asarray(ops.convert_to_numpy(t))


def two_kinds(n):
    """`n` 8x8 images of two kinds: a bright left half (kind 0) or a bright right half (kind 1)."""
    kinds = np.arange(n) % 2
    x = np.zeros((n, 8, 8, 1), "float32")
    x[kinds == 0, :, :4] = 1.0
    x[kinds == 1, :, 4:] = 1.0
    return x, kinds.astype("int32")


# ---------------------------------------------------------------------------
# FiLM
# ---------------------------------------------------------------------------


def test_film_identity_init_is_the_identity_and_random_init_is_not():
    h = np.random.default_rng(0).normal(size=(2, 3, 3, 4)).astype("float32")
    e = np.random.default_rng(1).normal(size=(2, 5)).astype("float32")
    assert np.allclose(np_(FiLM(init="identity")(h, e)), h)
    out = np_(FiLM(init="random")(h, e))
    assert not np.allclose(out, h, atol=1e-3)
    # Different conditioning vectors modulate differently from the first step.
    assert not np.allclose(out[0] / h[0], out[1] / h[1], atol=1e-3)
    with pytest.raises(ValueError, match="init"):
        FiLM(init="ones")


def test_film_init_round_trips_through_get_config():
    layer = FiLM(init="random", name="f")
    assert FiLM.from_config(layer.get_config()).init == "random"


def _train_decoder(conditioning, steps=150, **kwargs):
    """Trains a decoder to draw kind c from pure-noise z: only c tells the kinds apart."""
    keras.utils.set_random_seed(0)
    dec = Decoder((8, 8, 1), 2, 2, conditioning, 4, [8, 8], Bernoulli(image_channels=1), **kwargs)
    z_in = keras.Input((2,))
    c_in = keras.Input((), dtype="int32")
    model = keras.Model([z_in, c_in], dec.head.mean(dec(z_in, c_in)))
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="binary_crossentropy")
    x, kinds = two_kinds(256)
    z = np.random.default_rng(0).normal(size=(256, 2)).astype("float32")
    model.fit([z, kinds], x, epochs=steps // 8, batch_size=32, verbose=0)
    z_test = np.random.default_rng(1).normal(size=(64, 2)).astype("float32")
    left = model.predict_on_batch([z_test, np.zeros(64, "int32")])
    right = model.predict_on_batch([z_test, np.ones(64, "int32")])
    return np.asarray(left), np.asarray(right)


@pytest.mark.parametrize("film_init", ["identity", "random"])
def test_trained_film_decoder_output_depends_on_the_channel(film_init):
    left, right = _train_decoder("film", film_init=film_init)
    # Channel 0 draws the left half bright, channel 1 the right half.
    assert left[:, :, :4].mean() > 0.8 and left[:, :, 4:].mean() < 0.2
    assert right[:, :, 4:].mean() > 0.8 and right[:, :, :4].mean() < 0.2


def test_a_decoder_that_ignores_the_channel_fails_the_same_check():
    left, right = _train_decoder("none")
    assert np.allclose(left, right)
    assert not (left[:, :, :4].mean() > 0.8 and left[:, :, 4:].mean() < 0.2)


def test_film_input_feeds_the_embedding_to_the_first_layer():
    model = build_model(
        tiny_config(model={"decoder": {"film_input": True, "embedding_dim": 4}}), (8, 8, 1)
    )
    dec = model.decoder
    assert dec.strategy.film_input  # the FiLM conditioning part owns the key
    assert dec.project.kernel.shape[0] == 2 + 4  # z and e_c
    plain = build_model(tiny_config(model={"decoder": {"embedding_dim": 4}}), (8, 8, 1)).decoder
    assert plain.project.kernel.shape[0] == 2


def test_film_keys_are_rejected_with_another_conditioning():
    with pytest.raises(ConfigError, match="model.decoder.film_init"):
        tiny_config(model={"decoder": {"conditioning": "concat", "film_init": "random"}})
    with pytest.raises(ConfigError, match="model.decoder.film_input"):
        tiny_config(model={"decoder": {"conditioning": "concat", "film_input": True}})


# ---------------------------------------------------------------------------
# Sampled-channel ELBO
# ---------------------------------------------------------------------------


def test_sampled_channel_needs_a_detached_assignment():
    with pytest.raises(ConfigError, match="loss.elbo.channels"):
        tiny_config(elbo={"channels": "sampled", "assignment_gradient": True})


def _deterministic_latents(model):
    # z = mu exactly: the log-variance head's bias far below zero.
    bias = model.encoder.log_var_head.bias
    bias.assign(np.full(bias.shape, -40.0, "float32"))


def test_sampled_channel_estimate_is_unbiased_and_decodes_one_channel():
    x = np.random.default_rng(0).random((6, 8, 8, 1)).astype("float32")
    exact_model = build_model(tiny_config(), (8, 8, 1))
    sampled_model = build_model(tiny_config(elbo={"channels": "sampled"}), (8, 8, 1))
    sampled_model.set_weights(exact_model.get_weights())
    for m in (exact_model, sampled_model):
        _deterministic_latents(m)
    exact = np_(exact_model.loss_terms(exact_model(x, training=True))["recon"])
    draws = []
    for _ in range(300):
        terms = sampled_model(x, training=True)
        # One decoded channel per image: a one-hot assignment row.
        np.testing.assert_allclose(np_(terms["q_active"]).sum(axis=1), 1.0)
        assert set(np.unique(np_(terms["q_active"]))) <= {0.0, 1.0}
        draws.append(float(np_(sampled_model.loss_terms(terms)["recon"])))
    draws = np.asarray(draws)
    stderr = draws.std() / np.sqrt(len(draws))
    assert abs(draws.mean() - float(exact)) < 4 * stderr + 1e-3 * abs(float(exact))
    # Evaluation is always exact.
    np.testing.assert_allclose(
        np_(sampled_model.loss_terms(sampled_model(x))["recon"]),
        np_(exact_model.loss_terms(exact_model(x))["recon"]),
        rtol=1e-5,
    )
