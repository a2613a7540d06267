"""Feature-wise linear modulation of decoder features by a channel embedding."""

from __future__ import annotations

import keras
from keras import ops

from kmixvae.choices import FILM_INITS


@keras.saving.register_keras_serializable(package="kmixvae")
class FiLM(keras.layers.Layer):
    """FiLM: `h -> (1 + delta(e)) * h + beta(e)`, per feature channel.

    `delta` and `beta` are one dense projection of the conditioning vector
    `e`. With `init="identity"` the projection starts at zero, so a new FiLM
    layer is exactly the identity; with `init="random"` it starts as a small
    random projection (variance scaling 0.1, fan-in), so different
    conditioning vectors modulate the features differently from the first
    step.

    Args:
        init: `"identity"` or `"random"`, the projection at creation.
        **kwargs: standard `keras.layers.Layer` arguments.

    Call arguments:
        features: `(N, ..., C)` tensor to modulate.
        embedding: `(N, E)` conditioning vectors.

    Example:

    ```python
    film = FiLM()
    y = film(h, e)  # h: (N, 14, 14, 32), e: (N, 32) -> (N, 14, 14, 32)
    ```

    Reference:
        Perez et al. 2018, "FiLM: Visual Reasoning with a General
        Conditioning Layer".
    """

    def __init__(self, init="identity", **kwargs):
        super().__init__(**kwargs)
        if init not in FILM_INITS:
            raise ValueError(f"FiLM init: {init!r} is not one of {', '.join(FILM_INITS)}")
        self.init = init

    def build(self, features_shape, embedding_shape):
        units = int(features_shape[-1])
        self.projection = keras.layers.Dense(
            2 * units,
            kernel_initializer=(
                "zeros"
                if self.init == "identity"
                else keras.initializers.VarianceScaling(scale=0.1, mode="fan_in")
            ),
            bias_initializer="zeros",
            name="projection",
        )
        self.projection.build(embedding_shape)
        self.built = True

    def call(self, features, embedding):
        params = self.projection(embedding)
        delta, beta = ops.split(params, 2, axis=-1)
        shape = [-1] + [1] * (len(features.shape) - 2) + [features.shape[-1]]
        delta = ops.reshape(delta, shape)
        beta = ops.reshape(beta, shape)
        return features * (1.0 + delta) + beta

    def compute_output_shape(self, features_shape, embedding_shape):
        return features_shape

    def get_config(self):
        config = super().get_config()
        config.update({"init": self.init})
        return config
