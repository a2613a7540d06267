"""Self-labelling: confident channel choices become targets for the augmented view."""

from __future__ import annotations

from dataclasses import dataclass

from keras import ops

from kmixvae.config_fields import option
from kmixvae.objectives.base import Objective, ObjectiveConfig, register_objective


def self_label_loss(q, q_aug, threshold):
    """Class-balanced cross-entropy of q(c|aug x) against confident argmax q(c|x).

    Images whose max q(c|x) exceeds `threshold` are pseudo-labelled with their
    argmax (no gradient through the target); each pseudo-class is weighted by
    the inverse of its count so that large channels do not swallow small ones
    (SCAN's self-labelling step, Van Gansbeke et al. 2020).

    Returns:
        (loss, share of confident images).
    """
    target_q = ops.stop_gradient(q)
    k = q.shape[-1]
    confident = ops.cast(ops.max(target_q, axis=-1) > threshold, "float32")
    onehot = ops.one_hot(ops.argmax(target_q, axis=-1), k)
    counts = ops.sum(onehot * confident[:, None], axis=0)
    weight = ops.sum(onehot * (1.0 / ops.maximum(counts, 1.0))[None, :], axis=-1)
    n_conf = ops.maximum(ops.sum(confident), 1.0)
    weight = weight / ops.maximum(ops.sum(weight * confident), 1e-6) * n_conf
    ce = -ops.sum(onehot * ops.log(ops.maximum(q_aug, 1e-8)), axis=-1)
    loss = ops.sum(confident * weight * ce) / n_conf
    return loss, ops.mean(confident)


@dataclass
class SelfLabellingConfig(ObjectiveConfig):
    weight: float = option(
        0.0, lo=0.0, doc="weight of the class-balanced self-labelling cross-entropy (0 = off)"
    )
    threshold: float = option(0.9, lo=0.0, hi=1.0, doc="confidence of a pseudo-label")


@register_objective
class SelfLabelling(Objective):
    """Class-balanced cross-entropy of q(c|aug x) against the confident argmax of q(c|x).

    Usually started late (`start_epoch`), once clusters have formed. Logs
    `self_label_share`, the share of images confident enough to be labelled.

    Args:
        weight: float. Weight of the term.
        start_epoch: int. The term is on from this epoch.
        threshold: float. Max q(c|x) above which an image is pseudo-labelled.
    """

    section = "self_label"
    Config = SelfLabellingConfig
    views = ("augmented",)
    metrics = ("self_label_share",)
    training_only_metrics = ("self_label_share",)

    def term(self, q):
        loss, share = self_label_loss(q["x"], q["augmented"], self.threshold)
        return loss, {"self_label_share": share}
