"""Output heads are registered parts: a head registered outside kmixvae is configured,
built, trained and evaluated with no edit elsewhere."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from kmixvae.config import from_dict, to_dict
from kmixvae.errors import ConfigError
from kmixvae.evaluation.evaluate import evaluate_model
from kmixvae.layers.output_heads import (
    OUTPUT_HEADS,
    Bernoulli,
    Gaussian,
    HeteroscedasticGaussian,
    register_output_head,
)
from kmixvae.models.factory import build_model
from tests.helpers.tiny import tiny_config_dict


class UnitGaussian(Gaussian):
    """A fixed-sigma Gaussian whose sigma is always 1 (it reads no config key)."""

    config_settings = {}

    def __init__(self, **kwargs):
        kwargs.pop("sigma", None)  # its own get_config writes it
        super().__init__(sigma=1.0, **kwargs)


class CountedGaussian(Gaussian):
    """A Gaussian declared discrete, whose `likelihood` text does not say so."""

    likelihood = "a Gaussian counted as a probability mass"
    discrete_likelihood = True


class ContinuousBernoulli(Bernoulli):
    """A Bernoulli declared continuous, whose `likelihood` still says "discrete"."""

    likelihood = "Bernoulli (nats, discrete), declared continuous"
    discrete_likelihood = False


@pytest.fixture
def registered():
    """Registers the test heads; afterwards the shipped list is back, in Keras' registry too."""
    shipped = dict(OUTPUT_HEADS)
    heads = {
        "unit_gaussian": UnitGaussian,
        "counted": CountedGaussian,
        "cbern": ContinuousBernoulli,
    }
    for name, cls in heads.items():
        register_output_head(name)(cls)
    yield heads
    for name, cls in heads.items():
        OUTPUT_HEADS.pop(name)
        keras.saving.get_custom_objects().pop(keras.saving.get_registered_name(cls), None)
    assert OUTPUT_HEADS == shipped


def _config(head, **decoder):
    return from_dict(tiny_config_dict({"decoder": {"filters": [8, 8], "head": head, **decoder}}))


def test_shipped_heads_are_registered_in_order():
    assert list(OUTPUT_HEADS) == ["heteroscedastic", "bernoulli", "gaussian"]
    assert OUTPUT_HEADS["heteroscedastic"] is HeteroscedasticGaussian
    assert OUTPUT_HEADS["bernoulli"] is Bernoulli and OUTPUT_HEADS["gaussian"] is Gaussian
    assert Bernoulli.discrete_likelihood is True
    assert HeteroscedasticGaussian.discrete_likelihood is False
    assert Gaussian.discrete_likelihood is False
    # Keras still knows them by the names the shipped .keras files were saved with.
    assert keras.saving.get_registered_name(Bernoulli) == "kmixvae>Bernoulli"


def test_a_new_head_is_configured_built_and_trained(registered):
    with pytest.raises(ConfigError, match="model.decoder.head: 'unit_gaussian_x' is not one of"):
        _config("unit_gaussian_x")
    config = _config("unit_gaussian", head_upscale=1)
    assert to_dict(config)["model"]["decoder"]["head"] == "unit_gaussian"
    model = build_model(config, (8, 8, 1))
    head = model.decoder.head
    assert type(head) is UnitGaussian
    assert head.fixed_sigma == 1.0 and head.upscale == 1 and head.image_channels == 1
    assert model.describe()["head"] == "UnitGaussian"
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1))
    x = np.random.default_rng(0).random((16, 8, 8, 1)).astype("float32")
    before = [np.array(w) for w in head.trainable_weights]
    out = model.train_on_batch(x, return_dict=True)
    assert np.isfinite(out["loss"]) and np.isfinite(out["recon"])
    after = [np.array(w) for w in head.trainable_weights]
    assert any(not np.allclose(b, a) for b, a in zip(before, after))
    # recon is the unit Gaussian's NLL: at least 0.5 log(2 pi) nats per pixel.
    assert out["recon"] >= 64 * 0.5 * math.log(2 * math.pi) - 1e-3


def test_the_new_head_is_gone_after_the_test():
    assert "unit_gaussian" not in OUTPUT_HEADS
    with pytest.raises(ConfigError, match="model.decoder.head: 'unit_gaussian' is not one of"):
        _config("unit_gaussian")


def test_register_output_head_rejects_bad_parts():
    with pytest.raises(ValueError, match="non-empty string"):
        register_output_head("")
    with pytest.raises(TypeError, match="not a keras.layers.Layer"):
        register_output_head("thing")(object)
    with pytest.raises(ValueError, match="'gaussian' is already registered"):
        register_output_head("gaussian")(UnitGaussian)
    assert OUTPUT_HEADS["gaussian"] is Gaussian


@pytest.mark.parametrize("name,discrete", [("counted", True), ("cbern", False)])
def test_discrete_likelihood_decides_bits_per_dim(registered, name, discrete):
    model = build_model(_config(name), (28, 28, 1))
    rng = np.random.default_rng(2)
    images = ((rng.random((16, 28, 28, 1)) < 0.2) * 255).astype(np.uint8)
    m = evaluate_model(model, images, rng.integers(0, 10, size=16), batch_size=16, iwae_samples=3)
    assert m["likelihood_head"] == registered[name].__name__
    if discrete:
        assert m["bits_per_dim"] == pytest.approx(-m["iwae_log_px"] / (784 * math.log(2)))
    else:
        assert m["bits_per_dim"] is None
