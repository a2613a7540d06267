"""`build_model`: maps each config value to its class, explicitly."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the root config composes this part's section: no import at run time
    from kmixvae.config import Config

import dataclasses

from kmixvae.layers.conditioning import CONDITIONINGS
from kmixvae.layers.mixture_prior import MixturePrior
from kmixvae.layers.output_heads import HEADS
from kmixvae.models.config import part_settings
from kmixvae.models.decoder import Decoder
from kmixvae.models.encoder import Encoder
from kmixvae.models.mixture_vae import MixtureVAE
from kmixvae.objectives import ElboConfig, ViewAugmentation, objectives_from_config


def build_head(config: Config, image_channels: int):
    """The registered output head named by `model.decoder.head`, with its settings."""
    dec = config.model.decoder
    head = HEADS[dec.head]
    settings = dataclasses.asdict(part_settings(head, dec))
    return head.from_settings(image_channels, dec.head_upscale, name="head", **settings)


def build_conditioning(config: Config):
    """The registered conditioning named by `model.decoder.conditioning`, with its settings."""
    dec = config.model.decoder
    part = CONDITIONINGS[dec.conditioning]
    return part(name="conditioning", **dataclasses.asdict(part_settings(part, dec)))


def initial_channels(config: Config) -> list[int]:
    """Channels active at the start of training (the curriculum's first stage)."""
    k = config.model.num_channels
    if config.curriculum.enabled:
        return list(range(config.curriculum.start_channels))
    return list(range(k))


def build_model(config: Config, image_shape: tuple[int, int, int]) -> MixtureVAE:
    """Builds the `MixtureVAE` the config describes, for images of `image_shape`.

    Every choice is mapped to its class here (the config has checked it
    against `kmixvae.choices` and the conditioning and head registries); the
    clustering objectives are the registered
    ones whose `loss.<section>.weight` is not 0. Call `model.describe()` to
    see what was built.
    """
    m = config.model
    image_shape = tuple(int(s) for s in image_shape)
    encoder = Encoder(
        num_channels=m.num_channels,
        latent_dim=m.latent.dim,
        layout=m.latent.layout,
        filters=m.encoder.filters,
        dense_units=m.encoder.dense_units,
        batch_norm=m.encoder.batch_norm,
        batch_norm_momentum=m.encoder.batch_norm_momentum,
        heads=m.encoder.heads,
        name="encoder",
    )
    decoder = Decoder(
        image_shape=image_shape,
        latent_dim=m.latent.dim,
        num_channels=m.num_channels,
        conditioning=build_conditioning(config),
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
        elbo=ElboConfig.from_dict(dataclasses.asdict(config.loss.elbo)),
        objectives=objectives_from_config(config.loss),
        augmentation=ViewAugmentation(**dataclasses.asdict(config.loss.augment)),
        active_channels=initial_channels(config),
        seed=config.seed,
        head_selection_epoch=m.encoder.head_selection_epoch,
        name="mixture_vae",
    )
    model.build((None,) + image_shape)
    return model
