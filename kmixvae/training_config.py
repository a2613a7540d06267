"""The training sections (`curriculum`, `pruning`, `training`, `distribution`) and their own rules.

A top-level module rather than `kmixvae.training.config`: the training
package also holds `fit`, which reads whole run configs (and the run folders
and the report, which read them too), so its sections sit beside the root
config that composes them, and no part imports in a circle.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Optional

from kmixvae import choices
from kmixvae.config_fields import Switch, only_unless, only_when, option, section
from kmixvae.errors import ConfigError


@dataclass
class CurriculumConfig:
    SWITCH: ClassVar[Switch] = only_when("enabled", True)
    enabled: bool = option(False)
    start_channels: int = option(1, lo=1)
    max_channels: Optional[int] = option(None, lo=1, doc="null = model.num_channels")
    schedule: str = option("fixed", choices=choices.CURRICULUM_SCHEDULES)
    unlock_every: int = option(
        1, lo=1, doc="fixed schedule: epochs between unlocks", switch=only_when("schedule", "fixed")
    )
    unlock_epochs: Optional[list[int]] = option(
        None, lo=1, doc="fixed schedule: explicit epochs", switch=only_when("schedule", "fixed")
    )
    monitor: str = option("val_loss", switch=only_when("schedule", "plateau"))
    patience: int = option(2, lo=1, doc="plateau schedule", switch=only_when("schedule", "plateau"))
    min_delta: float = option(
        0.0, lo=0.0, doc="plateau schedule", switch=only_when("schedule", "plateau")
    )
    unlock_init: str = option("fresh", choices=choices.UNLOCK_INITS)
    split_noise: float = option(0.05, lo=0.0, switch=only_when("unlock_init", "split"))


@dataclass
class PruningConfig:
    """Channel pruning (`kmixvae.training.channel_pruning`): model.num_channels is an upper bound."""

    SWITCH: ClassVar[Switch] = only_when("enabled", True)
    enabled: bool = option(False)
    check_epochs: list[int] = option(
        [3, 4, 5, 6, 7, 8, 9, 10],
        lo=1,
        doc="epochs (counted as training.restart_epoch) at whose start channels are checked",
    )
    merge_ratio: float = option(
        0.75,
        lo=0.0,
        doc="two channels joined by this many times the neighbour pairs chance would give "
        "(for their sizes) are merged (1.0: whenever merging raises the modularity)",
    )
    min_usage: float = option(
        0.01, lo=0.0, hi=1.0, doc="a channel holding a smaller share of the images is masked"
    )
    neighbors: int = option(20, lo=1, doc="k of the mutual k-NN graph the links are counted on")
    graph: str = option(
        "pixels",
        choices=choices.PRUNING_GRAPHS,
        doc="the graph: the training images' pixels (fixed) or the encoder's current features",
    )
    min_channels: int = option(2, lo=1, doc="never keep fewer channels")


@dataclass
class EarlyStoppingConfig:
    SWITCH: ClassVar[Switch] = only_when("enabled", True)
    enabled: bool = option(False)
    monitor: str = option("val_loss")
    patience: int = option(5, lo=1)
    min_delta: float = option(0.0, lo=0.0)


@dataclass
class TrainingConfig:
    epochs: int = option(30, lo=1)
    steps_per_epoch: Optional[int] = option(
        None, lo=1, doc="null = training.epoch_images images an epoch"
    )
    epoch_images: Optional[int] = option(
        10_000,
        lo=1,
        doc="an epoch trains on min(N, this many) training images, rounded up to whole "
        "batches (null = one pass over the N images); the epoch-based schedule then costs "
        "the same on any data set larger than it (kmixvae.training.epoch_schedule)",
        switch=only_when("steps_per_epoch", None),
    )
    optimizer: str = option("adam", choices=choices.OPTIMIZERS)
    learning_rate: float = option(1e-3, lo=0.0)
    lr_schedule: str = option("constant", choices=choices.LR_SCHEDULES)
    lr_final: float = option(
        0.0,
        lo=0.0,
        doc="cosine schedule: the final learning rate",
        switch=only_when("lr_schedule", "cosine"),
    )
    restart_epoch: int = option(
        0,
        lo=0,
        doc="from this epoch the optimizer starts afresh (moments and step count reset) and "
        "the learning-rate schedule restarts at restart_learning_rate (0 = never)",
    )
    restart_learning_rate: Optional[float] = option(
        None,
        lo=0.0,
        doc="learning rate after the restart (null = training.learning_rate)",
        switch=only_unless("restart_epoch", 0),
    )
    clipnorm: Optional[float] = option(None, lo=0.0)
    validation_freq: int = option(
        1,
        lo=1,
        doc="the validation pass (val_* metrics, the best checkpoint, early stopping on a val_* "
        "monitor) runs every this many epochs and at the last; the held-out clustering "
        "(val_cluster_acc) runs every epoch",
    )
    steps_per_execution: int = option(
        1,
        lo=1,
        doc="training steps run by one compiled call (Keras' steps_per_execution): fewer "
        "returns to Python between steps, which an accelerator's short steps wait on; it must "
        "divide the steps of an epoch, and the per-batch callbacks (the NaN check, Ctrl-C) "
        "then act after every call",
    )
    validation_images: Optional[int] = option(
        10_000,
        lo=1,
        doc="the validation pass reads a fixed seeded sample of at most this many validation "
        "images (null = all of them); every image up to it, so splits up to this size are "
        "validated whole",
    )
    early_stopping: EarlyStoppingConfig = section(EarlyStoppingConfig)


@dataclass
class DistributionConfig:
    strategy: str = option(
        "auto",
        choices=choices.STRATEGIES["tensorflow"],
        doc="on JAX: auto, none or data_parallel",
    )


def check_increasing(path: str, values: list) -> None:
    """Epoch lists are strictly increasing."""
    if sorted(set(values)) != list(values):
        raise ConfigError(f"{path}: {values!r} must be strictly increasing")


def check_pruning(pr: PruningConfig, curriculum_on: bool, num_channels: int, epochs: int) -> None:
    """Pruning against the curriculum (both drive the mask), the channels and the epochs."""
    if not pr.enabled:
        return
    if curriculum_on:
        raise ConfigError(
            "pruning.enabled: channel pruning and the curriculum both drive the channel mask; "
            "switch one off"
        )
    checks = pr.check_epochs
    if not checks:
        raise ConfigError("pruning.check_epochs: must list at least one epoch")
    check_increasing("pruning.check_epochs", checks)
    if checks[-1] >= epochs:
        raise ConfigError(
            f"pruning.check_epochs: {checks[-1]} must be below training.epochs ({epochs})"
        )
    if pr.min_channels > num_channels:
        raise ConfigError(
            f"pruning.min_channels: {pr.min_channels} exceeds model.num_channels ({num_channels})"
        )
    if pr.merge_ratio <= 0.0:
        raise ConfigError("pruning.merge_ratio: must be above 0 (0 would merge every linked pair)")


def check_curriculum(cur: CurriculumConfig, num_channels: int) -> None:
    """The curriculum's channel counts against the model's and its unlock epochs."""
    max_ch = cur.max_channels if cur.max_channels is not None else num_channels
    if max_ch > num_channels:
        raise ConfigError(
            f"curriculum.max_channels: {max_ch} exceeds model.num_channels ({num_channels})"
        )
    if not cur.enabled:
        return
    if cur.start_channels > max_ch:
        raise ConfigError(
            f"curriculum.start_channels: {cur.start_channels} exceeds the maximum of "
            f"{max_ch} channels"
        )
    if cur.unlock_epochs is not None:
        check_increasing("curriculum.unlock_epochs", cur.unlock_epochs)
        needed = max_ch - cur.start_channels
        if len(cur.unlock_epochs) != needed:
            raise ConfigError(
                f"curriculum.unlock_epochs: {len(cur.unlock_epochs)} epochs listed, but "
                f"{needed} unlocks are needed to go from {cur.start_channels} to {max_ch}"
            )


def check_training(t: TrainingConfig) -> None:
    """Rules between the training section's own keys."""
    if t.lr_final > t.learning_rate:
        raise ConfigError(
            f"training.lr_final: {t.lr_final} exceeds training.learning_rate ({t.learning_rate})"
        )
    if t.restart_epoch >= t.epochs:
        raise ConfigError(
            f"training.restart_epoch: {t.restart_epoch} must be below training.epochs ({t.epochs})"
        )
    if t.restart_learning_rate is not None and t.lr_final > t.restart_learning_rate:
        raise ConfigError(
            f"training.lr_final: {t.lr_final} exceeds training.restart_learning_rate "
            f"({t.restart_learning_rate})"
        )
