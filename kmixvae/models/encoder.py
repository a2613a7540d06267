"""The encoder q(c|x) q(z|x,c): a convolutional trunk, channel heads and latent heads."""

from __future__ import annotations

import keras
from keras import ops

from kmixvae.choices import LAYOUTS
from kmixvae.layers.chunked_input_gradient import chunk_input_gradient


@keras.saving.register_keras_serializable(package="kmixvae")
class Encoder(keras.layers.Layer):
    """Conv trunk, then channel logits a(x) and Gaussian latent posteriors.

    In the `decentralized` layout each channel c has its own mu_c(x) and
    sigma_c(x); in the `shared` layout one (mu, sigma) serves every channel
    (returned with a channel axis of size 1, which broadcasts).

    Args:
        num_channels: int. K.
        latent_dim: int. d.
        layout: `"decentralized"` or `"shared"`.
        filters: list of int. Filters of the stride-2 conv layers.
        dense_units: int. Width of the dense layer after the trunk.
        batch_norm_momentum: float. Momentum of the moving statistics (with few
            steps per epoch, 0.9 keeps evaluation-mode statistics current).
        batch_norm: bool. Batch-normalise the trunk (conv/dense without bias, then BN, then ReLU).
        heads: int. Candidate channel heads on the trunk (1: just the channel head).
            The extra heads are trained beside the first one until a head is
            chosen (`MixtureVAE.select_head` copies the chosen head into the
            first); q(c|x) is always the first head's.
        **kwargs: standard `keras.layers.Layer` arguments.

    Call arguments:
        x: `(B, H, W, C)` images in [0, 1].
        training: bool.
        detach_latents: bool. Stop the latent heads' gradient into the trunk.
        all_heads: bool. Return every candidate head's logits, `(B, heads, K)`.

    Returns:
        `(logits, mu, log_var)` with shapes `(B, K)` (`(B, heads, K)` with
        `all_heads`), `(B, K or 1, d)`, `(B, K or 1, d)`.

    Example:

    ```python
    enc = Encoder(num_channels=10, latent_dim=2)
    logits, mu, log_var = enc(x)   # (B, 10), (B, 10, 2), (B, 10, 2)
    ```
    """

    def __init__(
        self,
        num_channels,
        latent_dim,
        layout="decentralized",
        filters=(32, 64),
        dense_units=256,
        batch_norm=False,
        batch_norm_momentum=0.99,
        heads=1,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if layout not in LAYOUTS:
            raise ValueError(f"Encoder layout: {layout!r} is not one of {', '.join(LAYOUTS)}")
        self.num_channels = int(num_channels)
        self.latent_dim = int(latent_dim)
        self.layout = layout
        self.filters = [int(f) for f in filters]
        self.dense_units = int(dense_units)
        self.batch_norm = bool(batch_norm)
        self.batch_norm_momentum = float(batch_norm_momentum)
        self.heads = int(heads)
        if self.heads < 1:
            raise ValueError(f"Encoder heads: {heads} must be at least 1")
        act = None if self.batch_norm else "relu"
        # On JAX's CPU their input gradient is taken in batch chunks (XLA:CPU's is
        # ~3x slower a row past 512-700 rows; a real run's batch is 768).
        self.convs = [
            chunk_input_gradient(
                keras.layers.Conv2D(
                    f,
                    3,
                    strides=2,
                    padding="same",
                    activation=act,
                    use_bias=not self.batch_norm,
                    name=f"conv_{i}",
                )
            )
            for i, f in enumerate(self.filters)
        ]
        self.flatten = keras.layers.Flatten()
        self.dense = keras.layers.Dense(
            self.dense_units, activation=act, use_bias=not self.batch_norm, name="dense"
        )
        self.norms = (
            [
                keras.layers.BatchNormalization(momentum=self.batch_norm_momentum, name=f"bn_{i}")
                for i in range(len(self.filters) + 1)
            ]
            if self.batch_norm
            else []
        )
        self.channel_logits = keras.layers.Dense(self.num_channels, name="channel_logits")
        self.candidate_logits = [
            keras.layers.Dense(self.num_channels, name=f"channel_logits_{i}")
            for i in range(1, self.heads)
        ]
        heads = self.num_channels if layout == "decentralized" else 1
        self._heads = heads
        self.mu_head = keras.layers.Dense(heads * self.latent_dim, name="mu")
        self.log_var_head = keras.layers.Dense(
            heads * self.latent_dim, kernel_initializer="zeros", name="log_var"
        )

    def build(self, input_shape):
        shape = tuple(input_shape)
        for i, conv in enumerate(self.convs):
            conv.build(shape)
            shape = conv.compute_output_shape(shape)
            if self.norms:
                self.norms[i].build(shape)
        shape = self.flatten.compute_output_shape(shape)
        self.dense.build(shape)
        shape = (shape[0], self.dense_units)
        if self.norms:
            self.norms[-1].build(shape)
        for head in (self.channel_logits, *self.candidate_logits, self.mu_head, self.log_var_head):
            head.build(shape)
        self.built = True

    def features(self, x, training=False):
        """The trunk's `(N, dense_units)` features, from which every head reads."""
        h = x
        for i, conv in enumerate(self.convs):
            h = conv(h)
            if self.norms:
                h = ops.relu(self.norms[i](h, training=training))
        h = self.dense(self.flatten(h))
        if self.norms:
            h = ops.relu(self.norms[-1](h, training=training))
        return h

    def head_logits(self, h):
        """Every candidate head's channel logits `(B, heads, K)` from trunk features `h`."""
        return ops.stack([head(h) for head in (self.channel_logits, *self.candidate_logits)], 1)

    def copy_head(self, source: int, order=None) -> None:
        """Makes the first channel head a copy of candidate head `source` (0-based).

        Args:
            source: int. The candidate head to copy.
            order: optional sequence of K ints: channel `c` of the first head
                becomes channel `order[c]` of the source (default: the same
                channel), so that channel numbers the rest of the model has
                learned can be kept.
        """
        if not 0 <= source < self.heads:
            raise ValueError(f"head {source} is out of range 0..{self.heads - 1}")
        order = list(range(self.num_channels)) if order is None else [int(c) for c in order]
        if sorted(order) != list(range(self.num_channels)):
            raise ValueError(f"order: {order} is not a permutation of 0..{self.num_channels - 1}")
        src = self.channel_logits if source == 0 else self.candidate_logits[source - 1]
        index = ops.convert_to_tensor(order, dtype="int32")
        kernel = ops.take(src.kernel, index, axis=1)
        bias = ops.take(src.bias, index, axis=0)
        self.channel_logits.kernel.assign(kernel)
        self.channel_logits.bias.assign(bias)

    def call(self, x, training=False, detach_latents=False, all_heads=False):
        h = self.features(x, training=training)
        logits = self.head_logits(h) if all_heads else self.channel_logits(h)
        if detach_latents:
            # The latent heads learn on the trunk's features without training the trunk.
            h = ops.stop_gradient(h)
        mu = ops.reshape(self.mu_head(h), (-1, self._heads, self.latent_dim))
        log_var = ops.reshape(self.log_var_head(h), (-1, self._heads, self.latent_dim))
        return logits, mu, log_var

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_channels": self.num_channels,
                "latent_dim": self.latent_dim,
                "layout": self.layout,
                "filters": self.filters,
                "dense_units": self.dense_units,
                "batch_norm": self.batch_norm,
                "batch_norm_momentum": self.batch_norm_momentum,
                "heads": self.heads,
            }
        )
        return config
