"""The channel-conditioned decoder p(x | z, c)."""

from __future__ import annotations

import math

import keras
from keras import ops

from kmixvae.choices import BLOCKS, CONDITIONINGS, FILM_INITS
from kmixvae.layers.channel_embedding import ChannelEmbedding
from kmixvae.layers.film import FiLM
from kmixvae.layers.output_heads import depth_to_space


@keras.saving.register_keras_serializable(package="kmixvae")
class Decoder(keras.layers.Layer):
    """Dense to a small feature map, upsampling blocks, an output head.

    Each block doubles the resolution. `"subpixel"` (Shi et al. 2016) runs
    the 3x3 convolution at the low resolution with 4x the filters and pixel-
    shuffles the result; `"upsample"` upsamples (nearest) and then convolves.
    Both cost the same FLOPs; the sub-pixel block is one wide convolution
    instead of a narrow one on 4x the pixels. On a 2-core CPU it trained this
    decoder fastest on both backends (`apps/decoder_blocks.py`, 320 rows: TF
    60.5 ms/step vs 71.6 upsample and 65.7 transposed conv; JAX 98.1 vs 135.8
    and 137.5) and made whole film_het steps (k=10) 1.15x (TF) and 1.27x
    (JAX) faster (docs/performance.md). The head may finish
    with a pixel shuffle (`head.upscale`), so that no convolution runs at
    full resolution (the costliest place on CPU).

    The channel c reaches the decoder through a learned
    embedding e_c, by one of three strategies:

    - `"concat"`: the decoder input is `[z, e_c]`;
    - `"film"`: after the dense layer and after every block, features are
      modulated by a `FiLM` layer computed from e_c; with `film_input` the
      dense layer also reads `[z, e_c]`;
    - `"none"`: the channel is ignored (an ablation).

    With FiLM alone, initialised as the identity, the decoder learns to read
    the digit from z and ignores c: draws from a channel's prior showed its
    digit 47% of the time (`docs/study_channel_generation.md`). A random
    FiLM initialisation (`film_init="random"`) and e_c at the input
    (`film_input=True`) make c what selects the digit.

    Args:
        image_shape: tuple `(H, W, C)` of the images.
        latent_dim: int. d.
        num_channels: int. K.
        conditioning: `"concat"`, `"film"` or `"none"`.
        embedding_dim: int. Size of e_c.
        filters: list of int. Filters of the feature map and of each block.
        block: `"subpixel"` or `"upsample"` (the default, for models saved
            before the choice existed), the 2x block.
        head: an output-head layer (see `kmixvae.layers.output_heads`).
        film_init: `"identity"` (the default, for models saved before the
            choice existed) or `"random"`: the FiLM layers at creation.
        film_input: bool. With FiLM, the dense layer also reads e_c.
        **kwargs: standard `keras.layers.Layer` arguments.

    Call arguments:
        z: `(N, d)` latents.
        channels: `(N,)` integer channel indices.

    Returns:
        `(N, H, W, P)` parameters of the output head.

    Example:

    ```python
    dec = Decoder((28, 28, 1), 2, 10, "film", 32, [64, 32], HeteroscedasticGaussian())
    params = dec(z, channels)
    mean = dec.head.mean(params)
    ```
    """

    def __init__(
        self,
        image_shape,
        latent_dim,
        num_channels,
        conditioning,
        embedding_dim,
        filters,
        head,
        block="upsample",
        film_init="identity",
        film_input=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if conditioning not in CONDITIONINGS:
            raise ValueError(
                f"Decoder conditioning: {conditioning!r} is not one of {', '.join(CONDITIONINGS)}"
            )
        if film_init not in FILM_INITS:
            raise ValueError(
                f"Decoder film_init: {film_init!r} is not one of {', '.join(FILM_INITS)}"
            )
        if block not in BLOCKS:
            raise ValueError(f"Decoder block: {block!r} is not one of {', '.join(BLOCKS)}")
        self.block = block
        self.film_init = film_init
        self.film_input = bool(film_input) and conditioning == "film"
        self.image_shape = tuple(int(s) for s in image_shape)
        self.latent_dim = int(latent_dim)
        self.num_channels = int(num_channels)
        self.conditioning = conditioning
        self.embedding_dim = int(embedding_dim)
        self.filters = [int(f) for f in filters]
        self.head = head
        n_up = len(self.filters) - 1
        h, w = self.image_shape[:2]
        total = 2**n_up * head.upscale
        self._grid = (math.ceil(h / total), math.ceil(w / total))
        self.embedding = (
            None
            if conditioning == "none"
            else ChannelEmbedding(
                num_channels,
                embedding_dim,
                concatenate=conditioning == "concat",
                name="channel_embedding",
            )
        )
        self.project = keras.layers.Dense(
            self._grid[0] * self._grid[1] * self.filters[0], name="project"
        )
        width = 4 if block == "subpixel" else 1
        self.convs = [
            keras.layers.Conv2D(width * f, 3, padding="same", name=f"conv_{i}")
            for i, f in enumerate(self.filters[1:])
        ]
        self.films = (
            [FiLM(init=film_init, name=f"film_{i}") for i in range(len(self.filters))]
            if conditioning == "film"
            else []
        )

    def build(self, z_shape, channels_shape=None):
        n = z_shape[0]
        in_width = self.latent_dim
        if self.embedding is not None:
            self.embedding.build((n,), (n, self.latent_dim))
            if self.conditioning == "concat" or self.film_input:
                in_width += self.embedding_dim
        self.project.build((n, in_width))
        e_shape = (n, self.embedding_dim)
        shape = (n, self._grid[0], self._grid[1], self.filters[0])
        if self.films:
            self.films[0].build(shape, e_shape)
        for i, conv in enumerate(self.convs):
            if self.block == "upsample":
                shape = (n, 2 * shape[1], 2 * shape[2], shape[3])
            conv.build(shape)
            shape = (n, 2 * shape[1], 2 * shape[2], self.filters[i + 1])
            if self.films:
                self.films[i + 1].build(shape, e_shape)
        if not self.head.built:
            self.head.build(shape)
        self.built = True

    def call(self, z, channels):
        e = None
        if self.conditioning == "concat":
            h = self.project(self.embedding(channels, z))
        else:
            if self.conditioning == "film":
                e = self.embedding(channels)
            if self.film_input:
                h = self.project(ops.concatenate([ops.cast(z, e.dtype), e], axis=-1))
            else:
                h = self.project(z)
        h = ops.reshape(h, (-1, self._grid[0], self._grid[1], self.filters[0]))
        if e is not None:
            h = self.films[0](h, e)
        h = ops.relu(h)
        for i, conv in enumerate(self.convs):
            if self.block == "upsample":
                h = conv(ops.repeat(ops.repeat(h, 2, axis=1), 2, axis=2))
            else:
                h = depth_to_space(conv(h), 2)
            if e is not None:
                h = self.films[i + 1](h, e)
            h = ops.relu(h)
        params = self.head(h)
        return params[:, : self.image_shape[0], : self.image_shape[1], :]

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "image_shape": list(self.image_shape),
                "latent_dim": self.latent_dim,
                "num_channels": self.num_channels,
                "conditioning": self.conditioning,
                "embedding_dim": self.embedding_dim,
                "filters": self.filters,
                "block": self.block,
                "film_init": self.film_init,
                "film_input": self.film_input,
                "head": keras.layers.serialize(self.head),
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["head"] = keras.layers.deserialize(config["head"])
        return cls(**config)
