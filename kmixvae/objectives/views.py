"""The augmented views that objectives compare: a random rotation and shift of each image."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import keras
from keras import ops

from kmixvae.config_fields import Switch, option
from kmixvae.objectives.base import AUGMENTED_VIEWS, OBJECTIVES


def augmenting_objectives_on(loss) -> bool:
    return any(
        getattr(loss, name).weight != 0
        for name, cls in OBJECTIVES.items()
        if set(cls.views) & set(AUGMENTED_VIEWS)
    )


def augmenting_objectives_state(loss) -> str:
    names = [
        f"loss.{name}.weight"
        for name, cls in OBJECTIVES.items()
        if set(cls.views) & set(AUGMENTED_VIEWS)
    ]
    return f"{', '.join(names)} are 0" if names else "no objective reads an augmented view"


@dataclass
class AugmentConfig:
    """`loss.augment`: how the augmented and neighbour views are drawn."""

    SWITCH: ClassVar[Switch] = Switch(
        key="/loss",
        is_on=augmenting_objectives_on,
        when="an objective that reads an augmented view is on",
        state=augmenting_objectives_state,
    )
    rotation: float = option(15.0, lo=0.0, hi=180.0, doc="degrees, +- (augmented views)")
    shift: float = option(0.1, lo=0.0, hi=0.5, doc="fraction of the size, +- (augmented views)")


@keras.saving.register_keras_serializable(package="kmixvae")
class ViewAugmentation:
    """Random rotation (+- `rotation` degrees) and shift (+- `shift` of the size), bilinear.

    Written with `keras.ops` (one code path on every backend; Keras'
    preprocessing layers retrace the JAX step every batch). The random state
    is the caller's `SeedGenerator`, tracked by the model.

    Args:
        rotation: float. Maximum rotation in degrees.
        shift: float. Maximum shift as a fraction of the image size.
    """

    def __init__(self, rotation=15.0, shift=0.1):
        self.rotation = float(rotation)
        self.shift = float(shift)

    def __call__(self, x, seed):
        n = ops.shape(x)[0]
        h, w = x.shape[1], x.shape[2]
        rot = math.radians(self.rotation)
        angle = keras.random.uniform((n,), -rot, rot, seed=seed)
        tx = keras.random.uniform((n,), -self.shift, self.shift, seed=seed) * w
        ty = keras.random.uniform((n,), -self.shift, self.shift, seed=seed) * h
        cos, sin = ops.cos(angle), ops.sin(angle)
        cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
        zero = ops.zeros_like(cos)
        transform = ops.stack(
            [
                cos,
                sin,
                cx - cos * cx - sin * cy - tx,
                -sin,
                cos,
                cy + sin * cx - cos * cy - ty,
                zero,
                zero,
            ],
            axis=1,
        )
        return ops.image.affine_transform(
            x, transform, interpolation="bilinear", fill_mode="constant", fill_value=0.0
        )

    def get_config(self):
        return {"rotation": self.rotation, "shift": self.shift}

    @classmethod
    def from_config(cls, config):
        return cls(**config)
