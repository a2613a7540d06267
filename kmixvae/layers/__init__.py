"""kmixvae layers (importing this registers them for `keras.models.load_model`)."""

from kmixvae.layers.channel_embedding import ChannelEmbedding
from kmixvae.layers.film import FiLM
from kmixvae.layers.mixture_prior import MixturePrior
from kmixvae.layers.output_heads import (
    OUTPUT_HEADS,
    Bernoulli,
    Gaussian,
    HeteroscedasticGaussian,
    register_output_head,
)

__all__ = [
    "OUTPUT_HEADS",
    "Bernoulli",
    "ChannelEmbedding",
    "FiLM",
    "Gaussian",
    "HeteroscedasticGaussian",
    "MixturePrior",
    "register_output_head",
]
