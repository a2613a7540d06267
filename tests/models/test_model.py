"""Tests of kmixvae.models: the factory, the loss, locked channels, inference API and saving."""

from __future__ import annotations

import zipfile

import keras
import numpy as np
import pytest
from keras import ops

from kmixvae.config import from_dict
from kmixvae.errors import ConfigError, ModelFileError
from kmixvae.layers.channel_embedding import ChannelEmbedding
from kmixvae.layers.film import FiLM
from kmixvae.layers.output_heads import Bernoulli, Gaussian, HeteroscedasticGaussian
from kmixvae.models.decoder import Decoder
from kmixvae.models.encoder import Encoder
from kmixvae.models.factory import build_model
from kmixvae.models.mixture_vae import MixtureVAE
from kmixvae.runs import load_model_file
from kmixvae.utils.keras_adapter import sublayers
from tests.helpers.tiny import tiny_config_dict


def tiny_dict(**model_overrides):
    d = tiny_config_dict(
        {"decoder": {"embedding_dim": 4}}, loss={"usage_entropy": {"weight": -1.0}}
    )
    for key, value in model_overrides.items():
        section, _, name = key.partition("__")
        if name:
            d["model"].setdefault(section, {})[name] = value
        else:
            d["model"][section] = value
    return d


def tiny_config(**model_overrides):
    return from_dict(tiny_dict(**model_overrides))


def np_(t):
    return np.asarray(ops.convert_to_numpy(t))


def images(n=4, shape=(8, 8, 1), seed=0):
    return np.random.default_rng(seed).random((n,) + shape).astype("float32")


# ---------------------------------------------------------------------------
# Factory
# ---------------------------------------------------------------------------


def test_film_conditioning_builds_film_layers():
    model = build_model(tiny_config(), (8, 8, 1))
    info = model.describe()
    assert info["decoder_conditioning"] == "film"
    assert info["film_layers"] == 2  # after the dense layer and after the one block
    films = [layer for layer in sublayers(model.decoder) if isinstance(layer, FiLM)]
    assert len(films) == 2 and all(f.built for f in films)
    assert isinstance(model.decoder.embedding, ChannelEmbedding)
    assert model.decoder.embedding.concatenate is False
    # The dense projection sees z only (the embedding goes through FiLM).
    assert model.decoder.project.kernel.shape[0] == model.latent_dim


def test_concat_conditioning_builds_no_film():
    model = build_model(tiny_config(decoder__conditioning="concat"), (8, 8, 1))
    info = model.describe()
    assert info["decoder_conditioning"] == "concat"
    assert info["film_layers"] == 0
    assert not any(isinstance(la, FiLM) for la in sublayers(model.decoder))
    assert isinstance(model.decoder.embedding, ChannelEmbedding)
    # The concat conditioning joins [z, e_c] before the dense projection.
    assert model.decoder.project.kernel.shape[0] == model.latent_dim + 4


def test_none_conditioning_builds_no_embedding():
    data = tiny_dict(decoder__conditioning="none")
    del data["model"]["decoder"]["embedding_dim"]  # unused without conditioning: an error if set
    model = build_model(from_dict(data), (8, 8, 1))
    info = model.describe()
    assert info["film_layers"] == 0 and info["embedding_dim"] == 0
    assert model.decoder.embedding is None
    assert not any(isinstance(la, (FiLM, ChannelEmbedding)) for la in sublayers(model.decoder))
    # The decoder ignores the channel.
    z = np.zeros((2, 2), "float32")
    a = model.decode(z, [0, 0])["mean"]
    b = model.decode(z, [1, 2])["mean"]
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "head,cls",
    [
        ("heteroscedastic", HeteroscedasticGaussian),
        ("bernoulli", Bernoulli),
        ("gaussian", Gaussian),
    ],
)
def test_head_choice_builds_its_class(head, cls):
    model = build_model(tiny_config(decoder__head=head, decoder__head_upscale=1), (6, 6, 2))
    assert type(model.decoder.head) is cls
    assert model.decoder.head.upscale == 1
    assert model.describe()["head"] == cls.__name__


def test_shared_layout_with_learnable_means():
    cfg = tiny_config(latent={"layout": "shared"}, prior={"means": "learnable"})
    model = build_model(cfg, (8, 8, 1))
    assert model.encoder.layout == "shared"
    assert model.encoder.mu_head.kernel.shape[-1] == model.latent_dim  # one head for all
    out = model.encode(images(4))
    assert out["mu"].shape == (4, 3, 2)
    np.testing.assert_array_equal(out["mu"][:, 0], out["mu"][:, 2])
    assert model.prior.prior_means.trainable


def test_invalid_choices_raise_config_error():
    with pytest.raises(ConfigError, match="model.prior.means"):
        from_dict(tiny_dict(latent={"layout": "shared"}))
    with pytest.raises(ConfigError, match="model.decoder.conditioning"):
        from_dict(tiny_dict(decoder__conditioning="filmm"))
    with pytest.raises(ConfigError, match="model.decoder.head"):
        from_dict(tiny_dict(decoder__head="laplace"))
    with pytest.raises(ConfigError, match="bogus"):
        from_dict(tiny_dict(decoder__bogus=1))
    # The layers check the same choice sets (kmixvae.choices) when built directly.
    with pytest.raises(ValueError, match="concat, film, none"):
        Decoder((8, 8, 1), 2, 3, conditioning="filmm", embedding_dim=4, filters=[8], head=None)
    with pytest.raises(ValueError, match="decentralized, shared"):
        Encoder(num_channels=3, latent_dim=2, layout="central")


@pytest.mark.parametrize("block", ["subpixel", "upsample"])
def test_decoder_block_choice(block):
    model = build_model(tiny_config(decoder__block=block), (8, 8, 1))
    conv = model.decoder.convs[0]
    assert model.describe()["decoder_block"] == block
    # 8x8 images, one 2x block and a 2x head: a 2x2 grid. The sub-pixel block convolves
    # the 2x2 map into 4 x 8 filters; the upsample block the upsampled 4x4 map into 8.
    assert conv.kernel.shape[-1] == (32 if block == "subpixel" else 8)
    seen = []
    original = conv.call

    def spy(x):
        seen.append(tuple(x.shape[1:3]))
        return original(x)

    conv.call = spy
    try:
        params = model.decoder(np.zeros((2, 2), "float32"), np.array([0, 1]))
    finally:
        del conv.call
    assert seen == [(2, 2) if block == "subpixel" else (4, 4)]
    assert tuple(params.shape[:3]) == (2, 8, 8)


@pytest.mark.parametrize("block", ["subpixel", "upsample"])
@pytest.mark.parametrize("shape,upscale", [((12, 10, 3), 2), ((7, 9, 1), 1)])
def test_any_image_shape_works(shape, upscale, block):
    model = build_model(tiny_config(decoder__head_upscale=upscale, decoder__block=block), shape)
    x = images(2, shape)
    terms = model(x)
    assert np_(terms["nll"]).shape == (2, 3)
    rec = model.reconstruct(x)
    assert rec["mean"].shape == (2,) + shape
    assert rec["sigma"].shape == (2,) + shape


# ---------------------------------------------------------------------------
# Loss
# ---------------------------------------------------------------------------


def test_loss_terms_add_up():
    model = build_model(tiny_config(), (8, 8, 1))
    x = images(4)
    terms = {k: np_(v) for k, v in model(x).items() if k != "views"}
    terms["views"] = {"x": terms["q"]}
    parts = {k: np_(v) for k, v in model.loss_terms(terms).items()}

    q, q_a = terms["q"], terms["q_active"]
    assert q.shape == (4, 3) and terms["nll"].shape == (4, 3) and terms["kl_c"].shape == (4,)
    recon = (q_a * terms["nll"]).sum(-1)
    kl_z = (q_a * terms["kl_z"]).sum(-1)
    kl_c = terms["kl_c"]
    p_bar = q.mean(0)
    usage_entropy = -(p_bar * np.log(p_bar)).sum()
    conf = -(q_a * np.log(q_a)).sum(-1).mean()
    want_loss = (recon + kl_z + kl_c).mean() - 1.0 * usage_entropy

    np.testing.assert_allclose(parts["loss"], want_loss, rtol=1e-5)
    np.testing.assert_allclose(parts["recon"], recon.mean(), rtol=1e-5)
    np.testing.assert_allclose(parts["kl_z"], kl_z.mean(), rtol=1e-5)
    np.testing.assert_allclose(parts["kl_c"], kl_c.mean(), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(parts["usage_entropy"], usage_entropy, rtol=1e-5)
    np.testing.assert_allclose(parts["confidence_entropy"], conf, rtol=1e-5)
    np.testing.assert_allclose(
        parts["nelbo"], parts["recon"] + parts["kl_z"] + parts["kl_c"], rtol=1e-5
    )
    np.testing.assert_allclose(parts["usage"], p_bar, rtol=1e-6)

    # elbo.weight scales the whole ELBO, not the objectives.
    model.elbo.weight = 0.0
    parts0 = np_(model.loss_terms(terms)["loss"])
    np.testing.assert_allclose(parts0, -usage_entropy, rtol=1e-5)


def test_per_image_terms_match_encoder_prior_and_decoder():
    model = build_model(tiny_config(), (8, 8, 1))
    # Nearly deterministic posterior: z ~= mu, so the NLL can be recomputed.
    model.encoder.log_var_head.bias.assign(np.full((6,), -30.0, "float32"))
    x = images(4)
    terms = {k: np_(v) for k, v in model(x).items() if k != "views"}
    logits, mu, log_var = (np_(t) for t in model.encoder(x))
    q = np.exp(logits - logits.max(-1, keepdims=True))
    q /= q.sum(-1, keepdims=True)
    np.testing.assert_allclose(terms["q"], q, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(terms["kl_z"], np_(model.prior.kl_z(mu, log_var)), rtol=1e-5)
    np.testing.assert_allclose(terms["kl_c"], np_(model.prior.kl_c(q, np.ones(3))), atol=1e-5)
    for c in range(3):
        params = model.decoder(mu[:, c], np.full((4,), c, "int32"))
        nll = np_(model.decoder.head.nll(x, params))
        np.testing.assert_allclose(terms["nll"][:, c], nll, rtol=1e-4)


def two_pattern_data(n=64, shape=(8, 8, 1)):
    a = np.zeros(shape, "float32")
    a[: shape[0] // 2] = 1.0
    b = np.zeros(shape, "float32")
    b[:, : shape[1] // 2] = 1.0
    x = np.stack([a if i % 2 else b for i in range(n)])
    x += np.random.default_rng(0).normal(scale=0.02, size=x.shape).astype("float32")
    return np.clip(x, 0.0, 1.0)


def test_training_decreases_the_loss():
    keras.utils.set_random_seed(0)
    model = build_model(tiny_config(), (8, 8, 1))
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    x = two_pattern_data()
    losses = []
    for step in range(20):
        start = (step * 16) % len(x)
        out = model.train_on_batch(x[start : start + 16], return_dict=True)
        losses.append(out["loss"])
        assert {"recon", "kl_z", "kl_c", "usage_entropy", "nelbo"} <= set(out)
    assert np.all(np.isfinite(losses))
    first, last = np.mean(losses[:3]), np.mean(losses[-3:])
    assert last < first - 0.1 * abs(first), (first, last)


# ---------------------------------------------------------------------------
# Locked channels
# ---------------------------------------------------------------------------


def channel_slices(model, c):
    d = model.latent_dim
    enc, dec = model.encoder, model.decoder
    return {
        "logits_kernel": lambda: np_(enc.channel_logits.kernel)[:, c],
        "logits_bias": lambda: np_(enc.channel_logits.bias)[c],
        "mu_kernel": lambda: np_(enc.mu_head.kernel)[:, c * d : (c + 1) * d],
        "mu_bias": lambda: np_(enc.mu_head.bias)[c * d : (c + 1) * d],
        "log_var_kernel": lambda: np_(enc.log_var_head.kernel)[:, c * d : (c + 1) * d],
        "log_var_bias": lambda: np_(enc.log_var_head.bias)[c * d : (c + 1) * d],
        "embedding": lambda: np_(dec.embedding.embeddings)[c],
    }


def test_locked_channel_gets_zero_probability_and_no_gradient():
    model = build_model(tiny_config(), (8, 8, 1))
    model.set_active_channels([0, 2])
    assert model.active_channels == (0, 2)
    np.testing.assert_array_equal(np_(model.channel_mask), [1.0, 0.0, 1.0])

    x = two_pattern_data(16)
    enc = model.encode(x[:4])
    assert np.all(enc["q"][:, 1] == 0.0)
    np.testing.assert_allclose(enc["q"].sum(-1), 1.0, rtol=1e-6)
    assert set(np.unique(enc["channel"])) <= {0, 2}
    terms = model(x[:4])
    assert np_(terms["nll"]).shape == (4, 2)  # the locked channel is not decoded

    locked = channel_slices(model, 1)
    unlocked = channel_slices(model, 0)
    before_locked = {k: f() for k, f in locked.items()}
    before_open = {k: f() for k, f in unlocked.items()}
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.05, momentum=0.0))
    for _ in range(3):
        model.train_on_batch(x)
    for key, f in locked.items():
        np.testing.assert_array_equal(f(), before_locked[key], err_msg=key)
    for key, f in unlocked.items():
        assert not np.array_equal(f(), before_open[key]), key
    np.testing.assert_array_equal(np_(model.channel_mask), [1.0, 0.0, 1.0])

    # Unlocking it again gives it probability.
    model.set_active_channels([0, 1, 2])
    assert model.encode(x[:4])["q"][:, 1].min() > 0


def test_set_active_channels_rejects_bad_input():
    model = build_model(tiny_config(), (8, 8, 1))
    with pytest.raises(ValueError, match="out of range"):
        model.set_active_channels([0, 3])
    with pytest.raises(ValueError, match="at least one"):
        model.set_active_channels([])
    assert model.active_channels == (0, 1, 2)


# ---------------------------------------------------------------------------
# Inference API
# ---------------------------------------------------------------------------


def test_inference_api_shapes():
    shape = (12, 10, 3)
    model = build_model(tiny_config(), shape)
    x = images(4, shape)
    enc = model.encode(x, batch_size=2)
    assert enc["q"].shape == (4, 3)
    assert enc["mu"].shape == (4, 3, 2) and enc["var"].shape == (4, 3, 2)
    assert enc["channel"].shape == (4,)
    np.testing.assert_array_equal(enc["channel"], enc["q"].argmax(1))
    assert np.all(enc["var"] > 0)
    # Streaming in batches gives the same result as one batch.
    np.testing.assert_allclose(model.encode(x)["mu"], enc["mu"], atol=1e-6)

    z = np.random.default_rng(0).normal(size=(4, 2)).astype("float32")
    dec = model.decode(z, [0, 1, 2, 1])
    assert dec["mean"].shape == (4,) + shape and dec["sigma"].shape == (4,) + shape
    assert np.all((dec["sigma"] >= 0.05 - 1e-6) & (dec["sigma"] <= 0.5 + 1e-6))
    one = model.decode(z, 2)
    np.testing.assert_allclose(one["mean"][2], dec["mean"][2], atol=1e-6)

    rec = model.reconstruct(x, batch_size=2)
    assert rec["mean"].shape == (4,) + shape and rec["sigma"].shape == (4,) + shape
    np.testing.assert_array_equal(rec["channel"], enc["channel"])

    s = model.sample(4)
    assert s["mean"].shape == (4,) + shape and s["channel"].shape == (4,)
    assert set(s["channel"]) <= {0, 1, 2}
    s2 = model.sample(4, channel=1, seed=3)
    assert s2["mean"].shape == (4,) + shape
    np.testing.assert_array_equal(s2["channel"], 1)
    np.testing.assert_array_equal(model.sample(4, channel=1, seed=3)["mean"], s2["mean"])

    model.set_active_channels([2])
    assert set(model.sample(4)["channel"]) == {2}

    for bad in (3, -1):
        with pytest.raises(ValueError, match="out of range"):
            model.decode(z, bad)
        with pytest.raises(ValueError, match="out of range"):
            model.sample(2, channel=bad)
    with pytest.raises(ValueError, match="out of range"):
        model.decode(z, [0, 1, 5, 0])


# ---------------------------------------------------------------------------
# Saving and loading
# ---------------------------------------------------------------------------


def test_mask_and_outputs_survive_save_and_load(tmp_path):
    model = build_model(tiny_config(), (8, 8, 1))
    model.set_active_channels([0, 1])
    x = images(4)
    enc = model.encode(x)
    rec = model.reconstruct(x)
    path = tmp_path / "m.keras"
    model.save(path)

    loaded = keras.models.load_model(path)
    assert isinstance(loaded, MixtureVAE)
    assert loaded.active_channels == (0, 1)
    np.testing.assert_array_equal(np_(loaded.channel_mask), [1.0, 1.0, 0.0])
    assert loaded.describe()["film_layers"] == 2
    enc2 = loaded.encode(x)
    assert np.all(enc2["q"][:, 2] == 0.0)
    for key in ("q", "mu", "var"):
        np.testing.assert_allclose(enc2[key], enc[key], atol=1e-5, err_msg=key)
    rec2 = loaded.reconstruct(x)
    np.testing.assert_allclose(rec2["mean"], rec["mean"], atol=1e-5)
    np.testing.assert_allclose(rec2["sigma"], rec["sigma"], atol=1e-5)

    via_cli = load_model_file(path)
    assert isinstance(via_cli, MixtureVAE) and via_cli.active_channels == (0, 1)


def test_get_config_roundtrip_keeps_structure():
    model = build_model(tiny_config(decoder__conditioning="concat"), (8, 8, 1))
    model.set_active_channels([1])
    clone = MixtureVAE.from_config(model.get_config())
    assert clone.active_channels == (1,)
    assert clone.decoder.conditioning == "concat"
    assert [(o.section, o.weight) for o in clone.objectives] == [("usage_entropy", -1.0)]
    assert type(clone.decoder.head) is HeteroscedasticGaussian


def test_bad_model_files_raise_model_file_error(tmp_path):
    corrupt = tmp_path / "corrupt.keras"
    corrupt.write_bytes(b"this is not a zip archive" * 10)
    with pytest.raises(ModelFileError, match=r"not a valid \.keras \(zip\) file \(250 bytes\)"):
        load_model_file(corrupt)

    truncated = tmp_path / "truncated.keras"
    with zipfile.ZipFile(truncated, "w") as zf:
        zf.writestr("config.json", "{not json")
    with pytest.raises(ModelFileError, match="cannot be loaded"):  # a zip, not a Keras archive
        load_model_file(truncated)

    plain = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    other = tmp_path / "plain.keras"
    plain.save(other)
    with pytest.raises(ModelFileError, match="not a kmixvae model"):
        load_model_file(other)

    with pytest.raises(ModelFileError, match="does not exist"):
        load_model_file(tmp_path / "missing.keras")
    wrong_ext = tmp_path / "model.h5"
    wrong_ext.write_bytes(b"x")
    with pytest.raises(ModelFileError):
        load_model_file(wrong_ext)
