"""kmixvae layers (importing this registers them for `keras.models.load_model`)."""

from kmixvae.layers.channel_embedding import ChannelEmbedding
from kmixvae.layers.film import FiLM
from kmixvae.layers.mixture_prior import MixturePrior
from kmixvae.layers.output_heads import Bernoulli, Gaussian, HeteroscedasticGaussian

__all__ = [
    "Bernoulli",
    "ChannelEmbedding",
    "FiLM",
    "Gaussian",
    "HeteroscedasticGaussian",
    "MixturePrior",
]
