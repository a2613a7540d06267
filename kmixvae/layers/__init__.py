"""kmixvae layers (importing this registers them for `keras.models.load_model`)."""

from kmixvae.layers.channel_embedding import ChannelEmbedding
from kmixvae.layers.conditioning import (
    CONDITIONINGS,
    ConcatConditioning,
    Conditioning,
    NoConditioning,
    register_conditioning,
)
from kmixvae.layers.film import FiLM, FiLMConditioning
from kmixvae.layers.mixture_prior import MixturePrior
from kmixvae.layers.output_heads import (
    HEADS,
    Bernoulli,
    Gaussian,
    HeteroscedasticGaussian,
    OutputHead,
    register_head,
)

__all__ = [
    "CONDITIONINGS",
    "HEADS",
    "Bernoulli",
    "ChannelEmbedding",
    "ConcatConditioning",
    "Conditioning",
    "FiLM",
    "FiLMConditioning",
    "Gaussian",
    "HeteroscedasticGaussian",
    "MixturePrior",
    "NoConditioning",
    "OutputHead",
    "register_conditioning",
    "register_head",
]
