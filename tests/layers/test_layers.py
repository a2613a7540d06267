"""Tests of kmixvae.layers: config round trips, output shapes and the math against numpy."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
from keras import ops

from kmixvae.layers.channel_embedding import ChannelEmbedding
from kmixvae.layers.film import FiLM
from kmixvae.layers.mixture_prior import MixturePrior
from kmixvae.layers.output_heads import (
    Bernoulli,
    Gaussian,
    HeteroscedasticGaussian,
    depth_to_space,
)
from tests.helpers.layers import roundtrip, run_layer_test

HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def np_(t):
    return np.asarray(ops.convert_to_numpy(t))


# ---------------------------------------------------------------------------
# MixturePrior
# ---------------------------------------------------------------------------


def np_kl_gauss(mu, log_var, m, log_s):
    """Closed-form KL(N(mu, exp(log_var)) || N(m, exp(log_s)^2)) summed over the last axis."""
    var = np.exp(log_var)
    s2 = np.exp(2.0 * log_s)
    kl = 0.5 * (var / s2 + (mu - m) ** 2 / s2 - 1.0 - log_var + 2.0 * log_s)
    return kl.sum(-1)


def make_prior(k=4, d=3, seed=0, **kwargs):
    prior = MixturePrior(num_channels=k, latent_dim=d, **kwargs)
    prior.build()
    rng = np.random.default_rng(seed)
    return prior, rng


def test_mixture_prior_config_roundtrip():
    prior = MixturePrior(5, 2, pi="learnable", means="learnable", scales="fixed", name="p")
    revived = roundtrip(prior)
    assert (revived.num_channels, revived.latent_dim, revived.pi, revived.means) == (
        5,
        2,
        "learnable",
        "learnable",
    )
    with pytest.raises(ValueError, match="means"):
        MixturePrior(3, 2, means="bogus")


def test_mixture_prior_weights_trainability():
    fixed, _ = make_prior()
    assert fixed.trainable_weights == []
    learn, _ = make_prior(pi="learnable", means="learnable", scales="learnable")
    assert {w.name for w in learn.trainable_weights} == {
        "pi_logits",
        "prior_means",
        "prior_log_scales",
    }
    # Learnable means start apart (random), fixed means at zero.
    assert np.abs(np_(learn.prior_means)).sum() > 0
    assert np.all(np_(fixed.prior_means) == 0)


def test_kl_z_matches_numpy_with_learnable_means_and_scales():
    k, d, b = 4, 3, 5
    prior, rng = make_prior(k, d, means="learnable", scales="learnable")
    m = rng.normal(size=(k, d)).astype("float32")
    log_s = rng.normal(scale=0.5, size=(k, d)).astype("float32")
    prior.prior_means.assign(m)
    prior.prior_log_scales.assign(log_s)
    mu = rng.normal(size=(b, k, d)).astype("float32")
    log_var = rng.normal(scale=0.7, size=(b, k, d)).astype("float32")

    got = np_(prior.kl_z(mu, log_var))
    assert got.shape == (b, k)
    np.testing.assert_allclose(got, np_kl_gauss(mu, log_var, m[None], log_s[None]), rtol=1e-5)

    # A subset of channels uses those channels' prior Gaussians.
    chans = (1, 3)
    got_sub = np_(prior.kl_z(mu[:, :2], log_var[:, :2], channels=chans))
    want_sub = np_kl_gauss(
        mu[:, :2], log_var[:, :2], m[list(chans)][None], log_s[list(chans)][None]
    )
    np.testing.assert_allclose(got_sub, want_sub, rtol=1e-5)

    # KL of a distribution with itself is zero.
    same = np_(prior.kl_z(np.broadcast_to(m, (b, k, d)), np.broadcast_to(2 * log_s, (b, k, d))))
    np.testing.assert_allclose(same, 0.0, atol=1e-5)


def test_log_pi_and_kl_c_with_a_locked_channel():
    k, b = 4, 6
    prior, rng = make_prior(k, 2, pi="learnable")
    logits = rng.normal(size=(k,)).astype("float32")
    prior.pi_logits.assign(logits)
    mask = np.array([1.0, 0.0, 1.0, 1.0], "float32")
    active = mask > 0

    log_pi = np_(prior.log_pi(mask))
    want_log_pi = logits[active] - np.log(np.exp(logits[active]).sum())
    np.testing.assert_allclose(log_pi[active], want_log_pi, rtol=1e-5, atol=1e-6)
    assert np.exp(log_pi[1]) == 0.0  # a locked channel has probability exactly 0
    np.testing.assert_allclose(np.exp(log_pi).sum(), 1.0, rtol=1e-6)

    # Uniform over the active channels when pi is fixed.
    fixed, _ = make_prior(k, 2)
    np.testing.assert_allclose(np.exp(np_(fixed.log_pi(mask)))[active], 1.0 / 3, rtol=1e-6)

    q = rng.random((b, k)).astype("float32") * mask
    q[0, 2] = 0.0  # an active channel with q = 0 contributes 0 * log 0 = 0
    q /= q.sum(-1, keepdims=True)
    got = np_(prior.kl_c(q, mask))
    with np.errstate(divide="ignore"):
        log_q = np.where(q > 0, np.log(np.where(q > 0, q, 1.0)), 0.0)
    want = (q[:, active] * (log_q[:, active] - want_log_pi[None])).sum(-1)
    assert got.shape == (b,)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert np.all(np.isfinite(got))
    # q equal to the prior gives KL 0.
    q_pi = np.broadcast_to(np.exp(log_pi) * mask, (2, k))
    np.testing.assert_allclose(np_(prior.kl_c(q_pi, mask)), 0.0, atol=1e-5)


def test_mixture_prior_sample():
    prior, rng = make_prior(3, 2, means="learnable", scales="learnable")
    m = np.array([[5.0, -5.0], [0.0, 0.0], [-3.0, 2.0]], "float32")
    prior.prior_means.assign(m)
    prior.prior_log_scales.assign(np.full((3, 2), math.log(0.1), "float32"))
    z = np_(prior.sample(500, channel=2, seed=keras.random.SeedGenerator(1)))
    assert z.shape == (500, 2)
    np.testing.assert_allclose(z.mean(0), m[2], atol=0.03)
    np.testing.assert_allclose(z.std(0), 0.1, rtol=0.15)
    assert np_(prior(None)).shape == (3,)


# ---------------------------------------------------------------------------
# FiLM
# ---------------------------------------------------------------------------


def test_film_identity_at_init_then_modulates():
    rng = np.random.default_rng(0)
    h = rng.normal(size=(3, 4, 5, 6)).astype("float32")
    e = rng.normal(size=(3, 7)).astype("float32")
    film = FiLM(name="film")
    y = run_layer_test(film, (h, e), h.shape)
    np.testing.assert_array_equal(y, h)

    kernel = rng.normal(size=(7, 12)).astype("float32")
    bias = rng.normal(size=(12,)).astype("float32")
    film.projection.kernel.assign(kernel)
    film.projection.bias.assign(bias)
    y = np_(film(h, e))
    params = e @ kernel + bias
    delta, beta = params[:, :6], params[:, 6:]
    want = h * (1.0 + delta[:, None, None, :]) + beta[:, None, None, :]
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)
    assert not np.allclose(y, h)


def test_film_on_flat_features_and_roundtrip():
    film = FiLM(name="film_x")
    run_layer_test(film, (np.ones((2, 5), "float32"), np.ones((2, 3), "float32")), (2, 5))
    assert roundtrip(film).name == "film_x"


# ---------------------------------------------------------------------------
# ChannelEmbedding
# ---------------------------------------------------------------------------


def test_channel_embedding_lookup_and_concat():
    emb = ChannelEmbedding(5, 4, name="emb")
    ch = np.array([0, 3, 3, 4], "int32")
    e = run_layer_test(emb, (ch,), (4, 4))
    np.testing.assert_array_equal(e, np_(emb.embeddings)[ch])

    cat = ChannelEmbedding(5, 4, concatenate=True)
    z = np.arange(8, dtype="float32").reshape(4, 2)
    zc = run_layer_test(cat, (ch, z), (4, 6))
    np.testing.assert_array_equal(zc[:, :2], z)
    np.testing.assert_array_equal(zc[:, 2:], np_(cat.embeddings)[ch])
    with pytest.raises(ValueError, match="z"):
        cat(ch)


def test_channel_embedding_roundtrip():
    revived = roundtrip(ChannelEmbedding(7, 3, concatenate=True, name="e"))
    assert (revived.num_channels, revived.embedding_dim, revived.concatenate) == (7, 3, True)


# ---------------------------------------------------------------------------
# Output heads
# ---------------------------------------------------------------------------


def np_sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def np_depth_to_space(x, b):
    n, h, w, c = x.shape
    p = c // (b * b)
    out = np.zeros((n, h * b, w * b, p), x.dtype)
    for i in range(b):
        for j in range(b):
            out[:, i::b, j::b, :] = x[..., (i * b + j) * p : (i * b + j + 1) * p]
    return out


@pytest.mark.parametrize("block,p", [(2, 1), (2, 3), (3, 2)])
def test_depth_to_space_matches_numpy(block, p):
    x = np.random.default_rng(block).normal(size=(2, 3, 4, block * block * p)).astype("float32")
    got = np_(depth_to_space(ops.convert_to_tensor(x), block))
    assert got.shape == (2, 3 * block, 4 * block, p)
    np.testing.assert_array_equal(got, np_depth_to_space(x, block))


@pytest.mark.parametrize(
    "head",
    [
        HeteroscedasticGaussian(image_channels=3, sigma_min=0.1, sigma_max=0.4, nll_beta=0.5),
        HeteroscedasticGaussian(image_channels=1, upscale=2, name="het2"),
        Bernoulli(image_channels=2, kernel_size=1, upscale=2),
        Gaussian(image_channels=3, sigma=0.2),
    ],
    ids=["het", "het-up2", "bern-up2", "gauss"],
)
def test_head_roundtrip_and_shapes(head):
    revived = roundtrip(head)
    for key in ("image_channels", "kernel_size", "upscale"):
        assert getattr(revived, key) == getattr(head, key)
    feats = np.random.default_rng(0).normal(size=(2, 5, 3, 4)).astype("float32")
    s = head.upscale
    want = (2, 5 * s, 3 * s, head.params_per_channel * head.image_channels)
    params = run_layer_test(head, (feats,), want)
    mean = np_(head.mean(params))
    assert mean.shape == (2, 5 * s, 3 * s, head.image_channels)
    assert np.all((mean >= 0) & (mean <= 1))
    x = np.random.default_rng(1).random(mean.shape).astype("float32")
    assert np_(head.nll(x, params)).shape == (2,)


def test_head_specific_config_survives():
    het = roundtrip(HeteroscedasticGaussian(2, sigma_min=0.01, sigma_max=0.9, nll_beta=0.25))
    assert (het.sigma_min, het.sigma_max, het.nll_beta) == (0.01, 0.9, 0.25)
    assert roundtrip(Gaussian(sigma=0.3)).fixed_sigma == 0.3
    with pytest.raises(ValueError, match="sigma_min"):
        HeteroscedasticGaussian(sigma_min=0.5, sigma_max=0.1)


def np_het(x, params, c, smin, smax):
    mean = np_sigmoid(params[..., :c].astype("float64"))
    sigma = smin + (smax - smin) * np_sigmoid(params[..., c:].astype("float64"))
    per_pixel = 0.5 * ((x - mean) / sigma) ** 2 + np.log(sigma) + HALF_LOG_2PI
    return mean, sigma, per_pixel


def test_heteroscedastic_nll_matches_numpy_and_bounds_sigma():
    c, smin, smax = 2, 0.05, 0.5
    head = HeteroscedasticGaussian(image_channels=c, sigma_min=smin, sigma_max=smax)
    rng = np.random.default_rng(0)
    x = rng.random((3, 4, 5, c)).astype("float32")
    params = rng.normal(scale=2.0, size=(3, 4, 5, 2 * c)).astype("float32")
    mean, sigma, per_pixel = np_het(x, params, c, smin, smax)
    np.testing.assert_allclose(np_(head.mean(params)), mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np_(head.sigma(params)), sigma, rtol=1e-5)
    np.testing.assert_allclose(
        np_(head.nll(x, params)), per_pixel.reshape(3, -1).sum(-1), rtol=1e-4
    )

    # Extreme raw parameters: sigma stays inside [sigma_min, sigma_max], NLL finite.
    extreme = np.concatenate(
        [np.full((3, 4, 5, c), 100.0), np.where(rng.random((3, 4, 5, c)) > 0.5, 100.0, -100.0)],
        axis=-1,
    ).astype("float32")
    extreme[0, ..., c:] = 100.0
    extreme[1, ..., c:] = -100.0
    s = np_(head.sigma(extreme))
    assert np.all(s >= smin - 1e-7) and np.all(s <= smax + 1e-7)
    np.testing.assert_allclose(s[0], smax, rtol=1e-6)
    np.testing.assert_allclose(s[1], smin, rtol=1e-6)
    nll = np_(head.nll(x, extreme))
    assert np.all(np.isfinite(nll))
    _, _, pp = np_het(x, extreme, c, smin, smax)
    np.testing.assert_allclose(nll, pp.reshape(3, -1).sum(-1), rtol=1e-4)


def test_beta_nll_weights_each_pixel_by_sigma_power():
    c, beta = 1, 0.5
    plain = HeteroscedasticGaussian(image_channels=c, nll_beta=0.0)
    weighted = HeteroscedasticGaussian(image_channels=c, nll_beta=beta)
    rng = np.random.default_rng(3)
    x = rng.random((4, 3, 3, c)).astype("float32")
    params = rng.normal(size=(4, 3, 3, 2 * c)).astype("float32")
    _, sigma, per_pixel = np_het(x, params, c, plain.sigma_min, plain.sigma_max)
    want = (per_pixel * sigma ** (2 * beta)).reshape(4, -1).sum(-1)
    got = np_(weighted.nll(x, params))
    np.testing.assert_allclose(got, want, rtol=1e-4)
    # Not the plain NLL: the weighting is applied.
    assert not np.allclose(got, np_(plain.nll(x, params)), rtol=1e-3)

    # Per pixel: a single-pixel image isolates each pixel's term.
    x1 = x[:, :1, :1]
    p1 = params[:, :1, :1]
    _, s1, _ = np_het(x1, p1, c, plain.sigma_min, plain.sigma_max)
    np.testing.assert_allclose(
        np_(weighted.nll(x1, p1)), np_(plain.nll(x1, p1)) * s1.reshape(4) ** (2 * beta), rtol=1e-5
    )


def test_bernoulli_nll_matches_numpy_bce():
    head = Bernoulli(image_channels=2)
    rng = np.random.default_rng(0)
    x = rng.random((3, 4, 4, 2)).astype("float32")
    x[0] = (x[0] > 0.5).astype("float32")
    logits = rng.normal(scale=3.0, size=(3, 4, 4, 2)).astype("float32")
    p = np_sigmoid(logits.astype("float64"))
    bce = -(x * np.log(p) + (1 - x) * np.log1p(-p))
    np.testing.assert_allclose(np_(head.nll(x, logits)), bce.reshape(3, -1).sum(-1), rtol=1e-4)
    np.testing.assert_allclose(np_(head.mean(logits)), p, rtol=1e-5, atol=1e-6)
    assert head.sigma(logits) is None
    # Stable for huge logits.
    big = np.full((1, 2, 2, 2), 200.0, "float32")
    assert np.isfinite(np_(head.nll(np.zeros_like(big), big))).all()
    np.testing.assert_allclose(np_(head.nll(np.zeros_like(big), big)), 8 * 200.0, rtol=1e-5)


def test_gaussian_fixed_sigma_nll_matches_numpy():
    sigma = 0.2
    head = Gaussian(image_channels=1, sigma=sigma)
    rng = np.random.default_rng(0)
    x = rng.random((2, 5, 5, 1)).astype("float32")
    params = rng.normal(size=(2, 5, 5, 1)).astype("float32")
    mean = np_sigmoid(params.astype("float64"))
    per_pixel = 0.5 * ((x - mean) / sigma) ** 2 + np.log(sigma) + HALF_LOG_2PI
    np.testing.assert_allclose(
        np_(head.nll(x, params)), per_pixel.reshape(2, -1).sum(-1), rtol=1e-4
    )
    s = np_(head.sigma(params))
    assert s.shape == x.shape
    np.testing.assert_allclose(s, sigma)
