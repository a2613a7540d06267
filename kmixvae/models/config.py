"""The `model` section (channels, latents, prior, encoder, decoder) and its own rules."""

from __future__ import annotations

from dataclasses import dataclass

from kmixvae import choices
from kmixvae.config_fields import only_unless, only_when, option, section
from kmixvae.errors import ConfigError
from kmixvae.layers.output_heads import OUTPUT_HEADS


@dataclass
class LatentConfig:
    dim: int = option(2, lo=1, hi=512)
    layout: str = option("decentralized", choices=choices.LAYOUTS)


@dataclass
class PriorConfig:
    pi: str = option("fixed", choices=choices.PRIOR_MODES)
    means: str = option("fixed", choices=choices.PRIOR_MODES)
    scales: str = option("fixed", choices=choices.PRIOR_MODES)


@dataclass
class EncoderConfig:
    filters: list[int] = option([32, 64], lo=1)
    dense_units: int = option(256, lo=1)
    batch_norm: bool = option(False)
    batch_norm_momentum: float = option(0.99, lo=0.0, hi=1.0)
    heads: int = option(
        1,
        lo=1,
        doc="candidate channel heads trained together on the trunk; at head_selection_epoch "
        "the one whose channels are most stable under loss.augment is kept (no labels)",
    )
    head_selection_epoch: int = option(
        1,
        lo=1,
        doc="epoch (0-based) at which one candidate head is kept and the others stop",
        switch=only_unless("heads", 1),
    )


@dataclass
class DecoderConfig:
    conditioning: str = option("film", choices=choices.CONDITIONINGS)
    embedding_dim: int = option(32, lo=1, switch=only_unless("conditioning", "none"))
    film_init: str = option(
        "identity",
        choices=choices.FILM_INITS,
        doc="FiLM layers at creation: exactly the identity, or a small random projection so "
        "that each channel modulates the decoder from the first step",
        switch=only_when("conditioning", "film"),
    )
    film_input: bool = option(
        False,
        doc="FiLM also feeds e_c to the decoder's first (dense) layer",
        switch=only_when("conditioning", "film"),
    )
    filters: list[int] = option([64, 32], lo=1)
    block: str = option(
        "subpixel",
        choices=choices.BLOCKS,
        doc="2x upsampling block: 3x3 conv at low resolution to 4x the filters then pixel "
        "shuffle (`subpixel`), or nearest upsampling then a 3x3 conv (`upsample`)",
    )
    # The registered heads (`register_output_head`), looked up when a config is read.
    head: str = option("heteroscedastic", choices=OUTPUT_HEADS.keys())
    head_upscale: int = option(2, choices=(1, 2), doc="pixel-shuffle factor of the output head")
    sigma_min: float = option(0.05, lo=1e-6, switch=only_when("head", "heteroscedastic"))
    sigma_max: float = option(0.5, lo=1e-6, switch=only_when("head", "heteroscedastic"))
    fixed_sigma: float = option(
        0.1, lo=1e-6, doc="sigma of the `gaussian` head", switch=only_when("head", "gaussian")
    )
    nll_beta: float = option(
        0.0,
        lo=0.0,
        hi=1.0,
        doc="beta-NLL exponent (0 = plain NLL)",
        switch=only_when("head", "heteroscedastic"),
    )


@dataclass
class ModelConfig:
    num_channels: int = option(10, lo=1, hi=1024)
    latent: LatentConfig = section(LatentConfig)
    prior: PriorConfig = section(PriorConfig)
    encoder: EncoderConfig = section(EncoderConfig)
    decoder: DecoderConfig = section(DecoderConfig)


def check_model(m: ModelConfig) -> None:
    """Rules between the model section's own keys."""
    dec = m.decoder
    if dec.sigma_min >= dec.sigma_max:
        raise ConfigError(
            f"model.decoder.sigma_min: {dec.sigma_min} must be below "
            f"model.decoder.sigma_max ({dec.sigma_max})"
        )
    if m.latent.layout == "shared" and m.prior.means == "fixed" and m.num_channels > 1:
        raise ConfigError(
            "model.prior.means: 'fixed' with model.latent.layout='shared' gives every channel "
            "the same prior p(z|c); use 'learnable'"
        )
