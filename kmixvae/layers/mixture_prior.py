"""The mixture prior p(c) p(z|c) over K channels."""

from __future__ import annotations

import math

import keras
from keras import ops

from kmixvae.choices import PRIOR_MODES

LOG_2PI = math.log(2.0 * math.pi)


@keras.saving.register_keras_serializable(package="kmixvae")
class MixturePrior(keras.layers.Layer):
    """Mixture prior: p(c) = pi over active channels, p(z|c) = N(m_c, diag s_c^2).

    Holds the mixture weights and the per-channel Gaussians, and computes the
    two KL terms of the mixture ELBO in closed form. Locked channels (mask 0)
    get probability exactly 0 and no gradient.

    Args:
        num_channels: int. K, the number of mixture channels.
        latent_dim: int. d, the size of each channel's latent space.
        pi: `"fixed"` (uniform over the active channels) or `"learnable"`.
        means: `"fixed"` (zero) or `"learnable"` (initialised at random so
            that channels start apart).
        scales: `"fixed"` (one) or `"learnable"`.
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:

    ```python
    prior = MixturePrior(num_channels=10, latent_dim=2)
    prior.build()
    kl = prior.kl_z(mu, log_var)             # (B, K)
    kl_c = prior.kl_c(q, mask)               # (B,)
    z = prior.sample(16, channel=3, seed=keras.random.SeedGenerator(0))
    ```

    Reference:
        Dilokthanakul et al. 2016, "Deep Unsupervised Clustering with
        Gaussian Mixture Variational Autoencoders".
    """

    def __init__(
        self, num_channels, latent_dim, pi="fixed", means="fixed", scales="fixed", **kwargs
    ):
        super().__init__(**kwargs)
        for key, value in (("pi", pi), ("means", means), ("scales", scales)):
            if value not in PRIOR_MODES:
                raise ValueError(
                    f"MixturePrior {key}: {value!r} is not one of {', '.join(PRIOR_MODES)}"
                )
        self.num_channels = int(num_channels)
        self.latent_dim = int(latent_dim)
        self.pi = pi
        self.means = means
        self.scales = scales

    def build(self, input_shape=None):
        k, d = self.num_channels, self.latent_dim
        self.pi_logits = self.add_weight(
            shape=(k,), initializer="zeros", trainable=self.pi == "learnable", name="pi_logits"
        )
        self.prior_means = self.add_weight(
            shape=(k, d),
            initializer=(
                keras.initializers.RandomNormal(stddev=1.0, seed=1)
                if self.means == "learnable"
                else "zeros"
            ),
            trainable=self.means == "learnable",
            name="prior_means",
        )
        self.prior_log_scales = self.add_weight(
            shape=(k, d),
            initializer="zeros",
            trainable=self.scales == "learnable",
            name="prior_log_scales",
        )
        self.built = True

    def call(self, inputs=None):
        return self.log_pi(ops.ones((self.num_channels,)))

    def log_pi(self, mask):
        """log p(c) renormalised over the active channels; -inf-free (locked: large negative)."""
        logits = ops.cast(self.pi_logits, "float32")
        logits = ops.where(ops.cast(mask, "bool"), logits, ops.full_like(logits, -1e9))
        return ops.log_softmax(logits)

    def kl_z(self, mu, log_var, channels=None):
        """KL(N(mu, exp(log_var)) || p(z|c)) per channel, summed over z dims.

        Args:
            mu, log_var: `(B, k, d)` posterior parameters for k channels.
            channels: optional int tuple of the k channel indices (default: all K).

        Returns:
            `(B, k)` KL divergences in nats.
        """
        m, log_s = self.prior_means, self.prior_log_scales
        if channels is not None:
            idx = ops.convert_to_tensor(list(channels), dtype="int32")
            m, log_s = ops.take(m, idx, axis=0), ops.take(log_s, idx, axis=0)
        m = ops.cast(m, "float32")[None]
        log_s = ops.cast(log_s, "float32")[None]
        mu, log_var = ops.cast(mu, "float32"), ops.cast(log_var, "float32")
        var_ratio = ops.exp(log_var - 2.0 * log_s)
        mean_term = ops.square(mu - m) * ops.exp(-2.0 * log_s)
        kl = 0.5 * (var_ratio + mean_term - 1.0 - log_var + 2.0 * log_s)
        return ops.sum(kl, axis=-1)

    def kl_z_at(self, mu, log_var, channels):
        """KL(N(mu, exp(log_var)) || p(z|c)) with one channel per row.

        Args:
            mu, log_var: `(B, d)` posterior parameters.
            channels: `(B,)` int channel of each row.

        Returns:
            `(B,)` KL divergences in nats.
        """
        m = ops.cast(ops.take(self.prior_means, channels, axis=0), "float32")
        log_s = ops.cast(ops.take(self.prior_log_scales, channels, axis=0), "float32")
        var_ratio = ops.exp(log_var - 2.0 * log_s)
        mean_term = ops.square(mu - m) * ops.exp(-2.0 * log_s)
        return ops.sum(0.5 * (var_ratio + mean_term - 1.0 - log_var + 2.0 * log_s), axis=-1)

    def kl_c(self, q, mask):
        """KL(q(c|x) || p(c)) over the active channels; `q` is `(B, K)`, zero where locked."""
        q = ops.cast(q, "float32")
        log_pi = self.log_pi(mask)[None]
        active = ops.cast(mask, "float32")[None]
        safe_q = ops.where(q > 0, q, ops.ones_like(q))
        return ops.sum(active * q * (ops.log(safe_q) - log_pi), axis=-1)

    def sample(self, n, channel, seed=None):
        """Draws `n` latents from p(z|c=channel); returns `(n, d)`."""
        m = ops.cast(self.prior_means[channel], "float32")
        s = ops.exp(ops.cast(self.prior_log_scales[channel], "float32"))
        eps = keras.random.normal((n, self.latent_dim), seed=seed)
        return m[None] + s[None] * eps

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_channels": self.num_channels,
                "latent_dim": self.latent_dim,
                "pi": self.pi,
                "means": self.means,
                "scales": self.scales,
            }
        )
        return config
