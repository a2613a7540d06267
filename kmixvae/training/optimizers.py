"""`make_optimizer`: the optimizer and learning-rate schedule a config describes."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the root config composes this part's section: no import at run time
    from kmixvae.config import Config

import keras

from kmixvae.choices import OPTIMIZERS
from kmixvae.errors import ConfigError
from kmixvae.models.learning_rate_schedule import PhasedLearningRate, attach_phase_variable


def make_optimizer(config: Config, steps_per_epoch: int):
    """The optimizer of `training.*`: its class, learning-rate schedule (cosine,
    warm restart) and clipnorm, for `steps_per_epoch` steps an epoch."""
    t = config.training
    lr = t.learning_rate
    if t.restart_epoch > 0:
        restart_lr = t.restart_learning_rate if t.restart_learning_rate is not None else lr
        lr = PhasedLearningRate(
            [
                [lr, t.lr_final, t.restart_epoch * steps_per_epoch],
                [restart_lr, t.lr_final, (t.epochs - t.restart_epoch) * steps_per_epoch],
            ],
            cosine=t.lr_schedule == "cosine",
        )
    elif t.lr_schedule == "cosine":
        lr = keras.optimizers.schedules.CosineDecay(
            lr, decay_steps=max(1, t.epochs * steps_per_epoch)
        )
    kwargs = {"learning_rate": lr}
    if t.clipnorm is not None:
        kwargs["clipnorm"] = t.clipnorm
    classes = {
        "adam": keras.optimizers.Adam,
        "adamw": keras.optimizers.AdamW,
        "sgd": keras.optimizers.SGD,
        "rmsprop": keras.optimizers.RMSprop,
    }
    assert set(classes) == set(OPTIMIZERS), "kmixvae.choices.OPTIMIZERS and make_optimizer disagree"
    if t.optimizer not in classes:
        raise ConfigError(f"training.optimizer: {t.optimizer!r} is not one of {', '.join(classes)}")
    return classes[t.optimizer](**kwargs)


def prepare_optimizer(model) -> None:
    """Builds `model.optimizer`'s variables and gives a phased schedule its phase variable.

    A new run and a resumed one call it; a loaded checkpoint gets the same
    phase variable from `MixtureVAE.compile_from_config`
    (`attach_phase_variable`, after Keras builds the optimizer), so the
    optimizer's variables are the same list, in the same order, in each.
    """
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    attach_phase_variable(model.optimizer)
