"""Neighbour agreement: an image and an augmented neighbour should pick the same channel."""

from __future__ import annotations

from dataclasses import dataclass

from keras import ops

from kmixvae.config_fields import option
from kmixvae.objectives.base import Objective, ObjectiveConfig, register_objective


def agreement_loss(q, q_other):
    """`mean -log <q, q_other>` over the batch, and the mean agreement `<q, q_other>`.

    Args:
        q: `(B, K)` channel posteriors of one view.
        q_other: `(B, K)` posteriors of the other view of the same images
            (or of their neighbours).

    Returns:
        (scalar loss, scalar mean agreement).
    """
    agreement = ops.sum(q * q_other, axis=-1)
    return ops.mean(-ops.log(agreement + 1e-7)), ops.mean(agreement)


@dataclass
class NeighborAgreementConfig(ObjectiveConfig):
    weight: float = option(
        0.0,
        lo=0.0,
        doc="weight on -log <q(c|x), q(c|aug x_nbr)> (needs data.neighbors > 0; 0 = off)",
    )


@register_objective
class NeighborAgreement(Objective):
    """`mean_x -log <q(c|x), q(c|aug(x_nbr))>` with `x_nbr` a k-NN neighbour of `x` (SCAN).

    Logs `neighbor_agreement`, the mean of <q(c|x), q(c|aug(x_nbr))>.

    Args:
        weight: float. Weight of the term.
        start_epoch: int. The term is on from this epoch.
    """

    section = "neighbor"
    Config = NeighborAgreementConfig
    views = ("neighbor",)
    metrics = ("neighbor_agreement",)
    training_only_metrics = ("neighbor_agreement",)

    def term(self, q):
        loss, agreement = agreement_loss(q["x"], q["neighbor"])
        return loss, {"neighbor_agreement": agreement}
