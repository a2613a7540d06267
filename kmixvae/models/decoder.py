"""The channel-conditioned decoder p(x | z, c)."""

from __future__ import annotations

import math

import keras
from keras import ops

from kmixvae.layers.channel_embedding import ChannelEmbedding
from kmixvae.layers.film import FiLM

CONDITIONINGS = ("concat", "film", "none")


@keras.saving.register_keras_serializable(package="kmixvae")
class Decoder(keras.layers.Layer):
    """Dense to a small feature map, upsampling blocks, an output head.

    Each block is nearest-neighbour 2x upsampling then a 3x3 convolution
    (about 4x faster than a transposed convolution on JAX CPU). The head may
    finish with a pixel shuffle (`head.upscale`), so that no convolution runs
    at full resolution (the costliest place on CPU). The channel c reaches the decoder through a learned
    embedding e_c, by one of three strategies:

    - `"concat"`: the decoder input is `[z, e_c]`;
    - `"film"`: after the dense layer and after every block, features are
      modulated by a `FiLM` layer computed from e_c;
    - `"none"`: the channel is ignored (an ablation).

    Args:
        image_shape: tuple `(H, W, C)` of the images.
        latent_dim: int. d.
        num_channels: int. K.
        conditioning: `"concat"`, `"film"` or `"none"`.
        embedding_dim: int. Size of e_c.
        filters: list of int. Filters of the feature map and of each block.
        head: an output-head layer (see `kmixvae.layers.output_heads`).
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
        **kwargs,
    ):
        super().__init__(**kwargs)
        if conditioning not in CONDITIONINGS:
            raise ValueError(
                f"Decoder conditioning: {conditioning!r} is not one of {', '.join(CONDITIONINGS)}"
            )
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
        self.upsamples = [keras.layers.UpSampling2D(2, name=f"up_{i}") for i in range(n_up)]
        self.convs = [
            keras.layers.Conv2D(f, 3, padding="same", name=f"conv_{i}")
            for i, f in enumerate(self.filters[1:])
        ]
        self.films = (
            [FiLM(name=f"film_{i}") for i in range(len(self.filters))]
            if conditioning == "film"
            else []
        )

    def build(self, z_shape, channels_shape=None):
        n = z_shape[0]
        in_width = self.latent_dim
        if self.embedding is not None:
            self.embedding.build((n,), (n, self.latent_dim))
            if self.conditioning == "concat":
                in_width += self.embedding_dim
        self.project.build((n, in_width))
        e_shape = (n, self.embedding_dim)
        shape = (n, self._grid[0], self._grid[1], self.filters[0])
        if self.films:
            self.films[0].build(shape, e_shape)
        for i, (up, conv) in enumerate(zip(self.upsamples, self.convs)):
            shape = up.compute_output_shape(shape)
            conv.build(shape)
            shape = conv.compute_output_shape(shape)
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
            h = self.project(z)
            if self.conditioning == "film":
                e = self.embedding(channels)
        h = ops.reshape(h, (-1, self._grid[0], self._grid[1], self.filters[0]))
        if e is not None:
            h = self.films[0](h, e)
        h = ops.relu(h)
        for i, (up, conv) in enumerate(zip(self.upsamples, self.convs)):
            h = conv(up(h))
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
                "head": keras.layers.serialize(self.head),
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["head"] = keras.layers.deserialize(config["head"])
        return cls(**config)
