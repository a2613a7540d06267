"""Usage entropy: a term on H(p_bar), the entropy of the batch's mean channel posterior."""

from __future__ import annotations

from dataclasses import dataclass

from keras import ops

from kmixvae.config_fields import option
from kmixvae.objectives.base import Objective, ObjectiveConfig, register_objective
from kmixvae.utils.replicas import mean_across_replicas


def usage_entropy(q):
    """H(p_bar) with p_bar the mean of the (B, K) posteriors q(c|x) over the global batch."""
    p_bar = mean_across_replicas(ops.mean(q, axis=0))
    return -ops.sum(p_bar * ops.log(ops.maximum(p_bar, 1e-12)))


@dataclass
class UsageEntropyConfig(ObjectiveConfig):
    weight: float = option(
        -30.0, doc="weight on H(p_bar); negative rewards using many channels (0 = off)"
    )


@register_objective
class UsageEntropy(Objective):
    """`weight * H(p_bar)`: with a negative weight, rewards spreading the batch over the channels.

    The model logs `usage_entropy` whether or not this term is on.

    Args:
        weight: float. Weight on H(p_bar) (negative: diversity).
        start_epoch: int. The term is on from this epoch.
    """

    section = "usage_entropy"
    Config = UsageEntropyConfig

    def term(self, q):
        return usage_entropy(q["x"]), {}
