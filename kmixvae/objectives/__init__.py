"""Clustering objectives: each a weighted term on q(c|x), composed by `MixtureVAE`.

Importing this package registers the built-in objectives, in the order the
model adds their terms to the loss.
"""

from kmixvae.objectives.base import (
    OBJECTIVES,
    VIEW_SOURCES,
    Objective,
    ObjectiveConfig,
    objectives_from_config,
    register_objective,
    training_only_metrics,
)
from kmixvae.objectives.elbo import ElboConfig

# Registration order is the order of the terms in the loss.
# isort: off
from kmixvae.objectives.usage_entropy import UsageEntropy
from kmixvae.objectives.self_labelling import SelfLabelling
from kmixvae.objectives.neighbor_agreement import NeighborAgreement
from kmixvae.objectives.view_consistency import ViewConsistency

# isort: on
from kmixvae.objectives.views import AugmentConfig, ViewAugmentation

__all__ = [
    "AugmentConfig",
    "ElboConfig",
    "OBJECTIVES",
    "VIEW_SOURCES",
    "NeighborAgreement",
    "Objective",
    "ObjectiveConfig",
    "SelfLabelling",
    "UsageEntropy",
    "ViewAugmentation",
    "ViewConsistency",
    "objectives_from_config",
    "register_objective",
    "training_only_metrics",
]
