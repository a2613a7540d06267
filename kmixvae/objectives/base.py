"""What every clustering objective is: a weighted term on the channel posteriors q(c|x).

An objective is a small, serialisable part that `MixtureVAE` composes from a
list. It declares the config section that sets it up (`section`, `Config`),
the views of the batch whose posteriors it reads (`views`), the metrics it
logs (`metrics`) and which of them only a training step computes
(`training_only_metrics`: validation draws no augmented view) and, through
its config, its weight and the epoch it starts at. Registering it (`@register_objective`) is all it takes for the config to
accept `loss.<section>` and for `build_model` to compose it.

Views are (B, K) posteriors q(c|.) with locked channels exactly 0:
    "x":         the batch itself,
    "augmented": a random rotation and shift of the batch (`ViewAugmentation`),
    "neighbor":  an augmented neighbour of each image (needs `data.neighbors`).

Example:

```python
@dataclass
class ConstantConfig(ObjectiveConfig):
    value: float = option(1.0)

@register_objective
class Constant(Objective):
    section = "constant"
    Config = ConstantConfig
    metrics = ("constant",)

    def term(self, q):
        c = ops.convert_to_tensor(self.value)
        return c, {"constant": c}
```
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Optional

import keras

from kmixvae.config_fields import Switch, only_unless, option, setting_names

# Each augmented view and the entry of the training batch it augments (`MixtureVAE.call`
# draws the views that the objectives on read, in this order).
VIEW_SOURCES = {"augmented": "x", "neighbor": "neighbor"}
AUGMENTED_VIEWS = tuple(VIEW_SOURCES)
VIEWS = ("x", *AUGMENTED_VIEWS)

OBJECTIVES: dict[str, type[Objective]] = {}


@dataclass
class ObjectiveConfig:
    """Keys every objective section has; its other keys are used only while `weight` is not 0."""

    SWITCH: ClassVar[Switch] = only_unless("weight", 0.0)
    weight: float = option(0.0, lo=0.0, doc="weight of the term in the loss (0 = off)")
    start_epoch: int = option(0, lo=0, doc="the term is on from this epoch (0-based)")
    stop_epoch: Optional[int] = option(
        None, lo=1, doc="the term is off from this epoch on (0-based; null: on to the end)"
    )


def register_objective(cls):
    """Registers an objective class under its config section (and with Keras' serialiser)."""
    if not cls.section or cls.section in ("elbo", "augment"):
        raise ValueError(f"{cls.__name__}: section {cls.section!r} is not a free section name")
    for view in cls.views:
        if view not in VIEWS:
            raise ValueError(f"{cls.__name__}: unknown view {view!r} (allowed: {', '.join(VIEWS)})")
    extra = sorted(set(cls.training_only_metrics) - set(cls.metrics))
    if extra:
        raise ValueError(f"{cls.__name__}: training-only metric {extra[0]!r} is not in `metrics`")
    OBJECTIVES[cls.section] = cls
    return keras.saving.register_keras_serializable(package="kmixvae")(cls)


class Objective:
    """Base class of a clustering objective; subclasses set the class attributes and `term`.

    Args:
        weight: float. Weight of the term in the loss.
        start_epoch: int. The term is on from this epoch (0-based).
        stop_epoch: int or None. The term is off from this epoch on
            (0-based; None: on to the end of the run).
        **settings: the other keys of the objective's config section.
    """

    section: ClassVar[str] = ""
    Config: ClassVar[type] = ObjectiveConfig
    views: ClassVar[tuple[str, ...]] = ()
    metrics: ClassVar[tuple[str, ...]] = ()
    training_only_metrics: ClassVar[tuple[str, ...]] = ()

    def __init__(self, weight, start_epoch=0, stop_epoch=None, **settings):
        self.weight = float(weight)
        self.start_epoch = int(start_epoch)
        self.stop_epoch = None if stop_epoch is None else int(stop_epoch)
        names = [
            f
            for f in setting_names(self.Config)
            if f not in ("weight", "start_epoch", "stop_epoch")
        ]
        unknown = sorted(set(settings) - set(names))
        if unknown:
            raise TypeError(f"{type(self).__name__}: unknown setting {unknown[0]!r}")
        defaults = self.Config()
        for name in names:
            setattr(self, name, settings.get(name, getattr(defaults, name)))
        self.active = self.is_on_at(0)

    def is_on_at(self, epoch: int) -> bool:
        """Whether the term is trained in (0-based) `epoch`."""
        return epoch >= self.start_epoch and (self.stop_epoch is None or epoch < self.stop_epoch)

    def term(self, q: dict):
        """The unweighted term and its metrics.

        Args:
            q: dict from view name (`views`, and always "x") to the (B, K)
                posteriors of that view.

        Returns:
            (scalar tensor, dict from each name in `metrics` to a scalar tensor).
        """
        raise NotImplementedError

    def get_config(self) -> dict:
        return {name: getattr(self, name) for name in setting_names(self.Config)}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"{type(self).__name__}({self.get_config()})"


def training_only_metrics() -> tuple[str, ...]:
    """The metrics of the registered objectives that only a training step computes.

    Validation (`training=False`) draws no augmented view, so the trackers of
    terms that read one stay 0 there (`kmixvae.training.progress` drops them).
    """
    return tuple(m for cls in OBJECTIVES.values() for m in cls.training_only_metrics)


def objectives_from_config(loss_config) -> list[Objective]:
    """The objectives a `loss` config section turns on (weight not 0), in registration order."""
    out = []
    for name, cls in OBJECTIVES.items():
        settings = getattr(loss_config, name)
        if settings.weight != 0:
            out.append(cls(**{f: getattr(settings, f) for f in setting_names(cls.Config)}))
    return out
