"""`build_model`: maps each config value to its class, explicitly."""

from __future__ import annotations

from kmixvae.config import Config
from kmixvae.errors import ConfigError
from kmixvae.layers.mixture_prior import MixturePrior
from kmixvae.layers.output_heads import Bernoulli, Gaussian, HeteroscedasticGaussian
from kmixvae.models.decoder import Decoder
from kmixvae.models.encoder import Encoder
from kmixvae.models.mixture_vae import MixtureVAE


def build_head(config: Config, image_channels: int):
    """The output head named by `model.decoder.head`."""
    dec = config.model.decoder
    if dec.head == "heteroscedastic":
        return HeteroscedasticGaussian(
            image_channels=image_channels,
            sigma_min=dec.sigma_min,
            sigma_max=dec.sigma_max,
            nll_beta=dec.nll_beta,
            upscale=dec.head_upscale,
            name="head",
        )
    if dec.head == "bernoulli":
        return Bernoulli(image_channels=image_channels, upscale=dec.head_upscale, name="head")
    if dec.head == "gaussian":
        return Gaussian(
            image_channels=image_channels,
            sigma=dec.fixed_sigma,
            upscale=dec.head_upscale,
            name="head",
        )
    raise ConfigError(
        f"model.decoder.head: {dec.head!r} is not one of heteroscedastic, bernoulli, gaussian"
    )


def initial_channels(config: Config) -> list[int]:
    """Channels active at the start of training (the curriculum's first stage)."""
    k = config.model.num_channels
    if config.curriculum.enabled:
        return list(range(config.curriculum.start_channels))
    return list(range(k))


def build_model(config: Config, image_shape: tuple[int, int, int]) -> MixtureVAE:
    """Builds the `MixtureVAE` the config describes, for images of `image_shape`.

    Every choice is mapped to its class here; anything unknown raises
    `ConfigError` naming the key. Call `model.describe()` to see what was built.
    """
    m = config.model
    if m.latent.layout not in ("decentralized", "shared"):
        raise ConfigError(
            f"model.latent.layout: {m.latent.layout!r} is not one of decentralized, shared"
        )
    if m.decoder.conditioning not in ("concat", "film", "none"):
        raise ConfigError(
            f"model.decoder.conditioning: {m.decoder.conditioning!r} is not one of concat, film, none"
        )
    image_shape = tuple(int(s) for s in image_shape)
    encoder = Encoder(
        num_channels=m.num_channels,
        latent_dim=m.latent.dim,
        layout=m.latent.layout,
        filters=m.encoder.filters,
        dense_units=m.encoder.dense_units,
        batch_norm=m.encoder.batch_norm,
        batch_norm_momentum=m.encoder.batch_norm_momentum,
        name="encoder",
    )
    decoder = Decoder(
        image_shape=image_shape,
        latent_dim=m.latent.dim,
        num_channels=m.num_channels,
        conditioning=m.decoder.conditioning,
        embedding_dim=m.decoder.embedding_dim,
        filters=m.decoder.filters,
        block=m.decoder.block,
        head=build_head(config, image_shape[-1]),
        name="decoder",
    )
    prior = MixturePrior(
        num_channels=m.num_channels,
        latent_dim=m.latent.dim,
        pi=m.prior.pi,
        means=m.prior.means,
        scales=m.prior.scales,
        name="prior",
    )
    model = MixtureVAE(
        encoder=encoder,
        decoder=decoder,
        prior=prior,
        diversity_weight=config.loss.diversity_weight,
        confidence_weight=config.loss.confidence_weight,
        elbo_weight=config.loss.elbo_weight,
        elbo_subbatch=config.loss.elbo_subbatch,
        iic_weight=config.loss.iic_weight,
        neighbor_weight=config.loss.neighbor_weight,
        self_label_weight=config.loss.self_label_weight,
        self_label_threshold=config.loss.self_label_threshold,
        elbo_assignment_gradient=config.loss.elbo_assignment_gradient,
        augment_rotation=config.loss.augment_rotation,
        augment_shift=config.loss.augment_shift,
        active_channels=initial_channels(config),
        seed=config.seed,
        name="mixture_vae",
    )
    model.build((None,) + image_shape)
    return model
