"""View consistency: an image and an augmented view of it should pick the same channel."""

from __future__ import annotations

from dataclasses import dataclass

from kmixvae.config_fields import option
from kmixvae.objectives.base import Objective, ObjectiveConfig, register_objective
from kmixvae.objectives.neighbor_agreement import agreement_loss


@dataclass
class ViewConsistencyConfig(ObjectiveConfig):
    weight: float = option(0.0, lo=0.0, doc="weight on -log <q(c|x), q(c|aug x)> (0 = off)")


@register_objective
class ViewConsistency(Objective):
    """`mean_x -log <q(c|x), q(c|aug x)>`: an image's channel survives its augmentation.

    The neighbour term asks an image and an augmented *neighbour* to agree;
    this term asks the same of an image and an augmented view of itself
    (the pairs IIC's objective is built on). Without it a
    channel choice that follows something the augmentation changes (a
    slant, a size) is rewarded by every pair whose two images share that
    property; with it that choice pays in every image. It reads the same
    augmented view as self-labelling, so with both on the encoder's batch
    is the same in both phases of `configs/film_het.json`.

    Logs `view_agreement`, the mean of <q(c|x), q(c|aug x)>.

    Args:
        weight: float. Weight of the term.
        start_epoch: int. The term is on from this epoch.
    """

    section = "consistency"
    Config = ViewConsistencyConfig
    views = ("augmented",)
    metrics = ("view_agreement",)
    training_only_metrics = ("view_agreement",)

    def term(self, q):
        loss, agreement = agreement_loss(q["x"], q["augmented"])
        return loss, {"view_agreement": agreement}
