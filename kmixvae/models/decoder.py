"""The channel-conditioned decoder p(x | z, c)."""

from __future__ import annotations

import math

import keras
from keras import ops

from kmixvae.choices import BLOCKS
from kmixvae.layers.channel_embedding import ChannelEmbedding
from kmixvae.layers.conditioning import CONDITIONINGS, Conditioning, make_conditioning, pop_settings
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

    The channel c reaches the decoder through a learned embedding e_c
    (`embedding`, built when the conditioning reads it) and a conditioning
    part (`kmixvae.layers.conditioning`): it gives the dense layer's input and
    acts on the features after the dense layer and after every block. The
    registered ones are `"concat"` (the input is `[z, e_c]`), `"film"` (a
    `FiLM` layer of e_c after the dense layer and every block; see
    `FiLMConditioning`) and `"none"` (the channel is ignored, an ablation).

    Args:
        image_shape: tuple `(H, W, C)` of the images.
        latent_dim: int. d.
        num_channels: int. K.
        conditioning: a `Conditioning` layer, or the `kind` of a registered
            one (built with its default settings, or with the settings given
            as keyword arguments, as the config of models saved before
            conditionings were parts holds them: `film_init`, `film_input`).
        embedding_dim: int. Size of e_c.
        filters: list of int. Filters of the feature map and of each block.
        head: an output-head layer (see `kmixvae.layers.output_heads`).
        block: `"subpixel"` or `"upsample"` (the default, for models saved
            before the choice existed), the 2x block.
        **kwargs: standard `keras.layers.Layer` arguments.

    Call arguments:
        z: `(N, d)` latents.
        channels: `(N,)` integer channel indices.

    Returns:
        `(N, H, W, P)` parameters of the output head.

    Example:

    ```python
    film = FiLMConditioning(film_init="random", film_input=True)
    dec = Decoder((28, 28, 1), 2, 10, film, 32, [64, 32], HeteroscedasticGaussian())
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
        **kwargs,
    ):
        if not isinstance(conditioning, Conditioning):
            conditioning = make_conditioning(conditioning, **pop_settings(conditioning, kwargs))
        super().__init__(**kwargs)
        if block not in BLOCKS:
            raise ValueError(f"Decoder block: {block!r} is not one of {', '.join(BLOCKS)}")
        self.block = block
        self.image_shape = tuple(int(s) for s in image_shape)
        self.latent_dim = int(latent_dim)
        self.num_channels = int(num_channels)
        # The registered name; the part itself is `strategy` (see `build`).
        self.conditioning = conditioning.kind
        self.embedding_dim = int(embedding_dim)
        self.filters = [int(f) for f in filters]
        self.head = head
        n_up = len(self.filters) - 1
        h, w = self.image_shape[:2]
        total = 2**n_up * head.upscale
        self._grid = (math.ceil(h / total), math.ceil(w / total))
        self.embedding = (
            ChannelEmbedding(num_channels, embedding_dim, name="channel_embedding")
            if conditioning.uses_embedding
            else None
        )
        self.project = keras.layers.Dense(
            self._grid[0] * self._grid[1] * self.filters[0], name="project"
        )
        width = 4 if block == "subpixel" else 1
        self.convs = [
            keras.layers.Conv2D(width * f, 3, padding="same", name=f"conv_{i}")
            for i, f in enumerate(self.filters[1:])
        ]
        self.strategy = conditioning
        self.films = []

    def build(self, z_shape, channels_shape=None):
        n = z_shape[0]
        e_shape = None
        if self.embedding is not None:
            self.embedding.build((n,))
            e_shape = (n, self.embedding_dim)
        self.project.build((n, self.strategy.input_width(self.latent_dim, self.embedding_dim)))
        shape = (n, self._grid[0], self._grid[1], self.filters[0])
        feature_shapes = [shape]
        for i, conv in enumerate(self.convs):
            if self.block == "upsample":
                shape = (n, 2 * shape[1], 2 * shape[2], shape[3])
            conv.build(shape)
            shape = (n, 2 * shape[1], 2 * shape[2], self.filters[i + 1])
            feature_shapes.append(shape)
        if not self.strategy.built:
            self.strategy.build(feature_shapes, e_shape)
        # Keras saves a layer at the first path it walks to, in the order of the attribute
        # names: `films` (walked before `strategy`) keeps the FiLM layers where the files
        # saved before conditionings were parts hold them (decoder/films/...).
        self.films = list(getattr(self.strategy, "films", []))
        if not self.head.built:
            self.head.build(shape)
        self.built = True

    def call(self, z, channels):
        e = None if self.embedding is None else self.embedding(channels)
        h = self.project(self.strategy.decoder_input(z, e))
        h = ops.reshape(h, (-1, self._grid[0], self._grid[1], self.filters[0]))
        h = ops.relu(self.strategy.modulate(0, h, e))
        for i, conv in enumerate(self.convs):
            if self.block == "upsample":
                h = conv(ops.repeat(ops.repeat(h, 2, axis=1), 2, axis=2))
            else:
                h = depth_to_space(conv(h), 2)
            h = ops.relu(self.strategy.modulate(i + 1, h, e))
        params = self.head(h)
        return params[:, : self.image_shape[0], : self.image_shape[1], :]

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "image_shape": list(self.image_shape),
                "latent_dim": self.latent_dim,
                "num_channels": self.num_channels,
                "conditioning": keras.layers.serialize(self.strategy),
                "embedding_dim": self.embedding_dim,
                "filters": self.filters,
                "block": self.block,
                "head": keras.layers.serialize(self.head),
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["head"] = keras.layers.deserialize(config["head"])
        if isinstance(config["conditioning"], dict):
            config["conditioning"] = keras.layers.deserialize(config["conditioning"])
        else:
            # Saved before conditionings were parts: the kind, and the film_* keys whatever
            # the kind (the old decoder ignored them unless it was "film").
            settings = pop_settings(config["conditioning"], config)
            for other in CONDITIONINGS:
                pop_settings(other, config)
            config.update(settings)
        return cls(**config)
