"""The augmented views that objectives compare: a random rotation, shift, shear, zoom, brightness and gamma of each image."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import keras
from keras import ops

from kmixvae.config_fields import Switch, option
from kmixvae.objectives.base import AUGMENTED_VIEWS, OBJECTIVES
from kmixvae.utils.affine_warp import warp_images


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
    shear: float = option(0.0, lo=0.0, hi=1.0, doc="horizontal shear factor, +- (augmented views)")
    scale: float = option(0.0, lo=0.0, hi=0.5, doc="zoom, a factor in [1 - scale, 1 + scale]")
    brightness: float = option(
        0.0, lo=0.0, hi=0.9, doc="pixels times a factor in [1 - b, 1 + b], clipped to [0, 1]"
    )
    gamma: float = option(
        0.0, lo=0.0, hi=2.0, doc="pixels to the power exp(u), u in +- gamma (mid-tones only)"
    )
    flip: float = option(
        0.0, lo=0.0, hi=1.0, doc="probability of mirroring a view left-right (0: never)"
    )
    erase: float = option(
        0.0, lo=0.0, hi=1.0, doc="a black rectangle, each side up to this fraction of the image"
    )


@keras.saving.register_keras_serializable(package="kmixvae")
class ViewAugmentation:
    """Random rotation, shift, shear, zoom and mirroring of each image, its intensities, a hole.

    Each image gets its own draw: a rotation of +- `rotation` degrees, a
    shift of +- `shift` of the size, a horizontal shear `x += s * y` with
    `s` in +- `shear`, and a zoom by a factor in `[1 - scale, 1 + scale]`,
    all about the image centre (bilinear). Then the grey levels: every pixel
    times a factor in `[1 - brightness, 1 + brightness]`, clipped to
    `[0, 1]`, and raised to the power `exp(u)` with `u` in +- `gamma` (black
    and white stay, the mid-tones move: the grey-scale form of SimCLR's
    colour distortion). With `flip` > 0 a view is mirrored left-right with
    that probability, and with `erase` > 0 one axis-aligned rectangle of it,
    each side up to `erase` of the image's, turns black (Cutout / random
    erasing). Shear, zoom, mirroring, brightness, gamma and the rectangle
    are drawn only when they are on, so with all of them at 0 the views are
    exactly what the rotation-and-shift augmentation always drew.

    Written with `keras.ops` (one code path on every backend; Keras'
    preprocessing layers retrace the JAX step every batch); the warp is
    `kmixvae.utils.affine_warp.warp_images` (four gathers on JAX, the
    native op on TensorFlow). The random state
    is the caller's `SeedGenerator`, tracked by the model.

    Args:
        rotation: float. Maximum rotation in degrees.
        shift: float. Maximum shift as a fraction of the image size.
        shear: float. Maximum horizontal shear factor (0: none).
        scale: float. Maximum relative zoom (0: none).
        brightness: float. Maximum relative change of the grey levels (0: none).
        gamma: float. Maximum |log| of the gamma exponent (0: none).
        flip: float. Probability of mirroring a view left-right (0: never).
        erase: float. Largest side of the black rectangle, as a fraction of
            the image's side (0: none).

    Example:

    ```python
    augment = ViewAugmentation(rotation=10.0, shift=0.08, shear=0.3)
    views = augment(images, keras.random.SeedGenerator(0))
    ```
    """

    def __init__(
        self,
        rotation=15.0,
        shift=0.1,
        shear=0.0,
        scale=0.0,
        brightness=0.0,
        gamma=0.0,
        flip=0.0,
        erase=0.0,
    ):
        self.rotation = float(rotation)
        self.shift = float(shift)
        self.shear = float(shear)
        self.scale = float(scale)
        self.brightness = float(brightness)
        self.gamma = float(gamma)
        self.flip = float(flip)
        self.erase = float(erase)

    def __call__(self, x, seed):
        n = ops.shape(x)[0]
        h, w = x.shape[1], x.shape[2]
        rot = math.radians(self.rotation)
        angle = keras.random.uniform((n,), -rot, rot, seed=seed)
        tx = keras.random.uniform((n,), -self.shift, self.shift, seed=seed) * w
        ty = keras.random.uniform((n,), -self.shift, self.shift, seed=seed) * h
        cos, sin = ops.cos(angle), ops.sin(angle)
        # Output pixel (x, y) reads input M @ (x - c, y - c) + c - t; M = R @ S / zoom.
        m00, m01, m10, m11 = cos, sin, -sin, cos
        if self.shear > 0:
            s = keras.random.uniform((n,), -self.shear, self.shear, seed=seed)
            m01, m11 = m01 + cos * s, m11 - sin * s
        if self.scale > 0:
            zoom = keras.random.uniform((n,), 1.0 - self.scale, 1.0 + self.scale, seed=seed)
            m00, m01, m10, m11 = m00 / zoom, m01 / zoom, m10 / zoom, m11 / zoom
        if self.flip > 0:  # mirror the output's x about the centre: M's first column negated
            mirror = keras.random.uniform((n,), 0.0, 1.0, seed=seed) < self.flip
            sign = ops.where(mirror, -1.0, 1.0)
            m00, m10 = m00 * sign, m10 * sign
        cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
        zero = ops.zeros_like(cos)
        transform = ops.stack(
            [
                m00,
                m01,
                cx - m00 * cx - m01 * cy - tx,
                m10,
                m11,
                cy - m10 * cx - m11 * cy - ty,
                zero,
                zero,
            ],
            axis=1,
        )
        views = warp_images(x, transform)
        if self.brightness > 0:
            factor = keras.random.uniform(
                (n, 1, 1, 1), 1.0 - self.brightness, 1.0 + self.brightness, seed=seed
            )
            views = ops.clip(views * factor, 0.0, 1.0)
        if self.gamma > 0:
            exponent = ops.exp(
                keras.random.uniform((n, 1, 1, 1), -self.gamma, self.gamma, seed=seed)
            )
            views = ops.power(ops.clip(views, 0.0, 1.0), exponent)
        if self.erase > 0:
            views = views * (1.0 - self._rectangles(n, h, w, seed))
        return views

    def _rectangles(self, n, h, w, seed):
        """`(n, h, w, 1)` masks, 1 inside one random axis-aligned rectangle per image."""
        size = ops.convert_to_tensor([[h, w]], "float32")
        sides = keras.random.uniform((n, 2), 0.0, self.erase, seed=seed) * size
        centres = keras.random.uniform((n, 2), 0.0, 1.0, seed=seed) * size
        rows = ops.arange(h, dtype="float32")[None, :] + 0.5
        cols = ops.arange(w, dtype="float32")[None, :] + 0.5
        in_rows = ops.abs(rows - centres[:, :1]) < sides[:, :1] / 2.0
        in_cols = ops.abs(cols - centres[:, 1:]) < sides[:, 1:] / 2.0
        inside = ops.logical_and(in_rows[:, :, None], in_cols[:, None, :])
        return ops.cast(inside, "float32")[..., None]

    def get_config(self):
        return {
            "rotation": self.rotation,
            "shift": self.shift,
            "shear": self.shear,
            "scale": self.scale,
            "brightness": self.brightness,
            "gamma": self.gamma,
            "flip": self.flip,
            "erase": self.erase,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
