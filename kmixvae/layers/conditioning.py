"""Decoder conditionings: how the channel c reaches the decoder p(x | z, c), as registered parts.

A conditioning is a small layer that the `Decoder` receives, as it receives
its output head. The decoder owns the channel embedding e_c (built when the
conditioning's `uses_embedding` is True) and asks the conditioning three
things: the dense layer's input (`decoder_input`, of width `input_width`),
and what to do to the features after the dense layer and after each
upsampling block (`modulate`, given the feature map's index). Its `build`
receives the shapes of those feature maps.

`@register_conditioning` files a conditioning under its `kind`, the value of
`model.decoder.conditioning`; its `Settings` dataclass declares its own keys
of `model.decoder`, used only while it is the chosen conditioning (the config
section is assembled from this registry, `kmixvae.models.config`). Adding a
conditioning is its module, its registration and a test:

```python
@register_conditioning
class Additive(Conditioning):
    kind = "additive"  # model.decoder.conditioning = "additive"

    def build(self, feature_shapes, embedding_shape):
        self.projection = keras.layers.Dense(int(feature_shapes[0][-1]))
        self.projection.build(embedding_shape)

    def modulate(self, index, features, e):
        return features + self.projection(e)[:, None, None, :] if index == 0 else features
```

The built-in ones: `none` (the channel is ignored), `concat` (the decoder
input is `[z, e_c]`) and `film` (`kmixvae.layers.film.FiLMConditioning`).
"""

from __future__ import annotations

from typing import ClassVar

import keras
from keras import ops

from kmixvae.config_fields import NoSettings, setting_names

# Registered conditionings by `kind` (the value of `model.decoder.conditioning`).
CONDITIONINGS: dict[str, type] = {}


def register_conditioning(cls):
    """Registers a conditioning under its `kind` (and with Keras' serialiser)."""
    if not cls.kind:
        raise ValueError(f"{cls.__name__}: a conditioning needs a `kind`")
    if cls.kind in CONDITIONINGS and CONDITIONINGS[cls.kind].__qualname__ != cls.__qualname__:
        raise ValueError(
            f"{cls.__name__}: conditioning {cls.kind!r} is already "
            f"{CONDITIONINGS[cls.kind].__name__}"
        )
    CONDITIONINGS[cls.kind] = cls
    return keras.saving.register_keras_serializable(package="kmixvae")(cls)


def conditioning_kinds() -> tuple[str, ...]:
    """The registered conditionings' kinds, sorted (the config's and the decoder's choices)."""
    return tuple(sorted(CONDITIONINGS))


def make_conditioning(kind: str, **settings):
    """The registered conditioning `kind` with its settings (a ValueError names the choices)."""
    if kind not in CONDITIONINGS:
        raise ValueError(
            f"Decoder conditioning: {kind!r} is not one of {', '.join(conditioning_kinds())}"
        )
    return CONDITIONINGS[kind](name="conditioning", **settings)


def pop_settings(kind: str, kwargs: dict) -> dict:
    """Takes the `Settings` keys of conditioning `kind` out of `kwargs` (none for an unknown kind)."""
    cls = CONDITIONINGS.get(kind)
    names = setting_names(cls.Settings) if cls is not None else []
    return {name: kwargs.pop(name) for name in names if name in kwargs}


class Conditioning(keras.layers.Layer):
    """Base of the conditionings; the identity on the features, z alone into the dense layer.

    Class attributes:
        kind: str. The value of `model.decoder.conditioning` that picks it.
        Settings: dataclass of its own `model.decoder` keys (`option`s); the
            constructor takes them by these names.
        uses_embedding: bool. Whether it reads the channel embedding e_c (the
            decoder builds e_c, and `model.decoder.embedding_dim` is used, only
            then).

    Args:
        **kwargs: its `Settings` keys, then standard `keras.layers.Layer`
            arguments.
    """

    kind: ClassVar[str] = ""
    Settings: ClassVar[type] = NoSettings
    uses_embedding: ClassVar[bool] = True

    def __init__(self, **kwargs):
        names = setting_names(self.Settings)
        settings = {name: kwargs.pop(name) for name in names if name in kwargs}
        super().__init__(**kwargs)
        defaults = self.Settings()
        for name in names:
            setattr(self, name, settings.get(name, getattr(defaults, name)))

    def build(self, feature_shapes, embedding_shape=None):
        """Creates its layers for the decoder's feature maps.

        Args:
            feature_shapes: list of `(N, h, w, F)` shapes: after the dense
                layer, then after each block.
            embedding_shape: `(N, E)`, or None when `uses_embedding` is False.
        """
        self.built = True

    def input_width(self, latent_dim: int, embedding_dim: int) -> int:
        """Width of `decoder_input`."""
        return latent_dim

    def decoder_input(self, z, e):
        """The dense layer's input from `(N, d)` latents and `(N, E)` embeddings (or None)."""
        return z

    def modulate(self, index, features, e):
        """Features after the dense layer (`index` 0) or after block `index` (1, 2, ...)."""
        return features

    def settings(self) -> dict:
        """Its `Settings` keys and values."""
        return {name: getattr(self, name) for name in setting_names(self.Settings)}

    def get_config(self):
        config = super().get_config()
        config.update(self.settings())
        return config


@register_conditioning
class ConcatConditioning(Conditioning):
    """`concat`: the decoder's dense layer reads `[z, e_c]`.

    Example:

    ```python
    dec = Decoder((28, 28, 1), 2, 10, ConcatConditioning(), 32, [64, 32], Bernoulli())
    ```
    """

    kind = "concat"

    def input_width(self, latent_dim, embedding_dim):
        return latent_dim + embedding_dim

    def decoder_input(self, z, e):
        return ops.concatenate([ops.cast(z, e.dtype), e], axis=-1)


@register_conditioning
class NoConditioning(Conditioning):
    """`none`: the decoder ignores the channel (an ablation); no embedding is built.

    Example:

    ```python
    dec = Decoder((28, 28, 1), 2, 10, NoConditioning(), 32, [64, 32], Bernoulli())
    ```
    """

    kind = "none"
    uses_embedding = False


__all__ = [
    "CONDITIONINGS",
    "ConcatConditioning",
    "Conditioning",
    "NoConditioning",
    "conditioning_kinds",
    "make_conditioning",
    "pop_settings",
    "register_conditioning",
]
