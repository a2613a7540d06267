"""Learned per-channel embedding e_c that tells the decoder which channel it decodes."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="kmixvae")
class ChannelEmbedding(keras.layers.Layer):
    """Maps channel indices to learned vectors e_c.

    With `concatenate=True` the layer is the concatenation conditioning: it
    returns `[z, e_c]`, the decoder input of the `concat` strategy.

    Args:
        num_channels: int. K, the number of channels.
        embedding_dim: int. Size of e_c.
        concatenate: bool. Return `[z, e_c]` instead of `e_c`.
        **kwargs: standard `keras.layers.Layer` arguments.

    Call arguments:
        channels: `(N,)` integer channel indices.
        z: `(N, d)` latents; required when `concatenate=True`.

    Example:

    ```python
    embed = ChannelEmbedding(10, 32)
    e = embed(ops.array([0, 3]))                      # (2, 32)
    zc = ChannelEmbedding(10, 32, concatenate=True)(ops.array([0, 3]), z)  # (2, d + 32)
    ```
    """

    def __init__(self, num_channels, embedding_dim, concatenate=False, **kwargs):
        super().__init__(**kwargs)
        self.num_channels = int(num_channels)
        self.embedding_dim = int(embedding_dim)
        self.concatenate = bool(concatenate)

    def build(self, channels_shape=None, z_shape=None):
        self.embeddings = self.add_weight(
            shape=(self.num_channels, self.embedding_dim),
            initializer=keras.initializers.RandomNormal(stddev=1.0),
            name="embeddings",
        )
        self.built = True

    def call(self, channels, z=None):
        e = ops.take(self.embeddings, ops.cast(channels, "int32"), axis=0)
        if not self.concatenate:
            return e
        if z is None:
            raise ValueError("ChannelEmbedding(concatenate=True) needs `z`.")
        return ops.concatenate([ops.cast(z, e.dtype), e], axis=-1)

    def compute_output_shape(self, channels_shape, z_shape=None):
        width = self.embedding_dim + (int(z_shape[-1]) if self.concatenate and z_shape else 0)
        return tuple(channels_shape) + (width,)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_channels": self.num_channels,
                "embedding_dim": self.embedding_dim,
                "concatenate": self.concatenate,
            }
        )
        return config
