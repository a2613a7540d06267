"""Output heads are registered parts: the shipped ones are registered under the
names the configs and the saved `.keras` files use, a bad registration is refused,
and evaluation reads a head's declared `discrete_likelihood`, never its text.

(A new head that is configured, trained, saved, loaded and evaluated with no
edit elsewhere: `tests/layers/test_new_parts.py`.)"""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from kmixvae.config import from_dict
from kmixvae.config_fields import NoSettings
from kmixvae.evaluation.evaluate import evaluate_model
from kmixvae.layers.output_heads import (
    HEADS,
    Bernoulli,
    Gaussian,
    HeteroscedasticGaussian,
    register_head,
)
from kmixvae.models.factory import build_model
from tests.helpers.tiny import tiny_config_dict


class CountedGaussian(Gaussian):
    """A Gaussian declared discrete, whose `likelihood` text does not say so."""

    kind = "counted"
    Settings = NoSettings  # reads no model.decoder key (fixed_sigma stays the gaussian head's)
    likelihood = "a Gaussian counted as a probability mass"
    discrete_likelihood = True


class ContinuousBernoulli(Bernoulli):
    """A Bernoulli declared continuous, whose `likelihood` still says "discrete"."""

    kind = "cbern"
    Settings = NoSettings
    likelihood = "Bernoulli (nats, discrete), declared continuous"
    discrete_likelihood = False


@pytest.fixture
def registered():
    """Registers the test heads; afterwards the shipped list is back, in Keras' registry too."""
    shipped = dict(HEADS)
    heads = {cls.kind: cls for cls in (CountedGaussian, ContinuousBernoulli)}
    for cls in heads.values():
        register_head(cls)
    yield heads
    for name, cls in heads.items():
        HEADS.pop(name)
        keras.saving.get_custom_objects().pop(keras.saving.get_registered_name(cls), None)
    assert HEADS == shipped


def test_shipped_heads_are_registered_in_order():
    assert list(HEADS) == ["heteroscedastic", "bernoulli", "gaussian"]
    assert HEADS["heteroscedastic"] is HeteroscedasticGaussian
    assert HEADS["bernoulli"] is Bernoulli and HEADS["gaussian"] is Gaussian
    assert Bernoulli.discrete_likelihood is True
    assert HeteroscedasticGaussian.discrete_likelihood is False
    assert Gaussian.discrete_likelihood is False
    # Keras still knows them by the names the shipped .keras files were saved with.
    assert keras.saving.get_registered_name(Bernoulli) == "kmixvae>Bernoulli"


def test_register_head_rejects_bad_parts():
    class Nameless(Gaussian):
        kind = ""

    class Undeclared(Gaussian):
        kind = "undeclared"
        discrete_likelihood = None

    class Usurper(Gaussian):
        kind = "gaussian"

    for bad in (Nameless, Undeclared):
        with pytest.raises(ValueError, match="needs a `kind` and a bool `discrete_likelihood`"):
            register_head(bad)
    with pytest.raises(ValueError, match="head 'gaussian' is already Gaussian"):
        register_head(Usurper)
    assert HEADS["gaussian"] is Gaussian and "undeclared" not in HEADS


@pytest.mark.parametrize("name,discrete", [("counted", True), ("cbern", False)])
def test_discrete_likelihood_decides_bits_per_dim(registered, name, discrete):
    config = from_dict(tiny_config_dict({"decoder": {"filters": [8, 8], "head": name}}))
    model = build_model(config, (28, 28, 1))
    rng = np.random.default_rng(2)
    images = ((rng.random((16, 28, 28, 1)) < 0.2) * 255).astype(np.uint8)
    m = evaluate_model(model, images, rng.integers(0, 10, size=16), batch_size=16, iwae_samples=3)
    assert m["likelihood_head"] == registered[name].__name__
    if discrete:
        assert m["bits_per_dim"] == pytest.approx(-m["iwae_log_px"] / (784 * math.log(2)))
    else:
        assert m["bits_per_dim"] is None
