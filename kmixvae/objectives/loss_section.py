"""The `loss` config section, assembled from the objective registry, and its moved keys."""

from __future__ import annotations

import dataclasses

from kmixvae.config_fields import section
from kmixvae.errors import ConfigError
from kmixvae.objectives.base import OBJECTIVES
from kmixvae.objectives.elbo import ElboConfig
from kmixvae.objectives.views import AugmentConfig

# Flat loss keys of configs written before the loss sections, and where they went.
MOVED_KEYS = {
    "loss.diversity_weight": "loss.usage_entropy.weight",
    "loss.neighbor_weight": "loss.neighbor.weight",
    "loss.elbo_weight": "loss.elbo.weight",
    "loss.elbo_subbatch": "loss.elbo.subbatch",
    "loss.elbo_assignment_gradient": "loss.elbo.assignment_gradient",
    "loss.elbo_start_epoch": "loss.elbo.start_epoch",
    "loss.augment_rotation": "loss.augment.rotation",
    "loss.augment_shift": "loss.augment.shift",
    "loss.self_label_weight": "loss.self_label.weight",
    "loss.self_label_threshold": "loss.self_label.threshold",
    "loss.self_label_start_epoch": "loss.self_label.start_epoch",
    "loss.iic_weight": "nothing (IIC was removed)",
    "loss.confidence_weight": "nothing (the confidence term was removed)",
    "loss.kl_warmup_epochs": "nothing (the KL warm-up was removed)",
}


def check_not_moved(path: str) -> None:
    """Names where a key of the old flat `loss` section went."""
    if path in MOVED_KEYS:
        raise ConfigError(
            f"{path}: this key predates the loss sections; it is now {MOVED_KEYS[path]}"
        )


_LOSS_CLASSES: dict[tuple, type] = {}


def loss_config_class() -> type:
    """The `loss` section: `elbo`, one section per registered objective, then `augment`.

    Assembled from the objective registry (`kmixvae.objectives`), so that a
    new objective's section is accepted without an edit here.
    """
    key = tuple((name, cls.Config) for name, cls in OBJECTIVES.items())
    if key not in _LOSS_CLASSES:
        fields = [("elbo", ElboConfig, section(ElboConfig))]
        fields += [(name, cfg, section(cfg)) for name, cfg in key]
        fields.append(("augment", AugmentConfig, section(AugmentConfig)))
        _LOSS_CLASSES[key] = dataclasses.make_dataclass("LossConfig", fields)
    return _LOSS_CLASSES[key]
