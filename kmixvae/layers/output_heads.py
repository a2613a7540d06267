"""Decoder output heads: the likelihood p(x | z, c) and its parameters.

Each head maps decoder features `(N, H, W, F)` to distribution parameters
`(N, H, W, P)` with one convolution, and knows its negative log-likelihood,
mean image and (where it has one) per-pixel sigma. Likelihoods are computed
in float32 whatever the layer's compute dtype.

A head is a registered part: `@register_output_head(name)` is all it takes
for the config to accept `model.decoder.head: <name>` and for `build_model`
to build it. A head declares `discrete_likelihood` (True where its NLL is
that of a discrete distribution, so that evaluation reports bits per
dimension) and `config_settings`, the `model.decoder` keys its constructor
reads (constructor argument -> key); `build_model` passes it those and
`image_channels`, `upscale` and `name`.

Example:

```python
@register_output_head("unit_gaussian")
class UnitGaussian(Gaussian):
    config_settings = {}

    def __init__(self, **kwargs):
        kwargs.pop("sigma", None)
        super().__init__(sigma=1.0, **kwargs)
```
"""

from __future__ import annotations

import math

import keras
from keras import ops

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)

OUTPUT_HEADS: dict[str, type] = {}


def register_output_head(name: str):
    """Registers an output-head class under `name` (and with Keras' serialiser).

    Args:
        name: str. The value of `model.decoder.head` that selects the head.

    Returns:
        A class decorator that returns the class unchanged.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"an output head's name must be a non-empty string, got {name!r}")

    def register(cls):
        if not (isinstance(cls, type) and issubclass(cls, keras.layers.Layer)):
            raise TypeError(f"output head {name!r}: {cls!r} is not a keras.layers.Layer class")
        for method in ("nll", "mean"):
            if not callable(getattr(cls, method, None)):
                raise TypeError(f"output head {name!r}: {cls.__name__} has no {method}()")
        taken = OUTPUT_HEADS.get(name)
        if taken is not None and taken is not cls:
            raise ValueError(f"output head {name!r} is already registered ({taken.__name__})")
        OUTPUT_HEADS[name] = cls
        return keras.saving.register_keras_serializable(package="kmixvae")(cls)

    return register


def depth_to_space(x, block):
    """Pixel shuffle: `(N, h, w, b*b*P)` -> `(N, h*b, w*b, P)`.

    Lets the last convolution run at 1/b of the output resolution, where
    convolutions with few output filters are far cheaper on CPU.
    """
    h, w, c = (x.shape[i] if x.shape[i] is not None else ops.shape(x)[i] for i in (1, 2, 3))
    p = c // (block * block)
    x = ops.reshape(x, (-1, h, w, block, block, p))
    x = ops.transpose(x, (0, 1, 3, 2, 4, 5))
    return ops.reshape(x, (-1, h * block, w * block, p))


def _sum_per_image(t):
    """Sums a `(N, H, W, C)` tensor over everything but the batch axis."""
    return ops.sum(t, axis=tuple(range(1, len(t.shape))))


class _OutputHead(keras.layers.Layer):
    """Shared parts of the heads: the projection convolution and the config."""

    params_per_channel = 1
    likelihood = ""
    # True where `nll` is the NLL of a discrete distribution (evaluation then reports bits/dim).
    discrete_likelihood = False
    # Constructor argument -> `model.decoder` key that `build_model` passes it.
    config_settings: dict[str, str] = {}

    def __init__(self, image_channels=1, kernel_size=3, upscale=1, **kwargs):
        super().__init__(**kwargs)
        self.image_channels = int(image_channels)
        self.kernel_size = int(kernel_size)
        self.upscale = int(upscale)
        self.projection = keras.layers.Conv2D(
            self.params_per_channel * self.image_channels * self.upscale**2,
            self.kernel_size,
            padding="same",
            name="projection",
        )

    def build(self, features_shape):
        self.projection.build(features_shape)
        self.built = True

    def call(self, features):
        params = self.projection(features)
        if self.upscale == 1:
            return params
        return depth_to_space(params, self.upscale)

    def compute_output_shape(self, features_shape):
        n, h, w = features_shape[:3]
        s = self.upscale
        return (
            n,
            h * s if h else None,
            w * s if w else None,
            self.params_per_channel * self.image_channels,
        )

    def sigma(self, params):
        """Per-pixel sigma, or None for heads without one."""
        return None

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "image_channels": self.image_channels,
                "kernel_size": self.kernel_size,
                "upscale": self.upscale,
            }
        )
        return config


@register_output_head("heteroscedastic")
class HeteroscedasticGaussian(_OutputHead):
    """Gaussian likelihood with a per-pixel mean in [0, 1] and a bounded sigma.

    mean = sigmoid(a), sigma = sigma_min + (sigma_max - sigma_min) * sigmoid(b).
    With `nll_beta > 0` each pixel's NLL is weighted by stop_gradient(sigma^(2 beta))
    (beta-NLL), which keeps the mean from being neglected where sigma is large.

    Args:
        image_channels: int. C of the images.
        sigma_min: float. Lower bound of sigma.
        sigma_max: float. Upper bound of sigma.
        nll_beta: float in [0, 1]. beta-NLL exponent; 0 is the plain NLL.
        kernel_size: int. Kernel of the projection convolution.
        upscale: int. Pixel-shuffle factor from the features to the image
            (1: same resolution).
        **kwargs: standard `keras.layers.Layer` arguments.

    Call arguments:
        features: `(N, H, W, F)` decoder features.

    Example:

    ```python
    head = HeteroscedasticGaussian(image_channels=1)
    params = head(features)          # (N, 28, 28, 2)
    nll = head.nll(x, params)        # (N,) nats per image
    ```

    Reference:
        Seitzer et al. 2022, "On the Pitfalls of Heteroscedastic Uncertainty
        Estimation with Probabilistic Neural Networks".
    """

    params_per_channel = 2
    likelihood = "continuous Gaussian density (nats; can be negative)"
    config_settings = {"sigma_min": "sigma_min", "sigma_max": "sigma_max", "nll_beta": "nll_beta"}

    def __init__(
        self, image_channels=1, sigma_min=0.05, sigma_max=0.5, nll_beta=0.0, kernel_size=3, **kwargs
    ):
        super().__init__(image_channels=image_channels, kernel_size=kernel_size, **kwargs)
        if not 0 < sigma_min < sigma_max:
            raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
        self.sigma_min = float(sigma_min)
        self.sigma_max = float(sigma_max)
        self.nll_beta = float(nll_beta)

    def _split(self, params):
        params = ops.cast(params, "float32")
        return params[..., : self.image_channels], params[..., self.image_channels :]

    def mean(self, params):
        return ops.sigmoid(self._split(params)[0])

    def sigma(self, params):
        raw = self._split(params)[1]
        return self.sigma_min + (self.sigma_max - self.sigma_min) * ops.sigmoid(raw)

    def nll(self, x, params):
        mean, sigma = self.mean(params), self.sigma(params)
        x = ops.cast(x, "float32")
        per_pixel = 0.5 * ops.square((x - mean) / sigma) + ops.log(sigma) + _HALF_LOG_2PI
        if self.nll_beta > 0:
            per_pixel = per_pixel * ops.stop_gradient(ops.power(sigma, 2.0 * self.nll_beta))
        return _sum_per_image(per_pixel)

    def get_config(self):
        config = super().get_config()
        config.update(
            {"sigma_min": self.sigma_min, "sigma_max": self.sigma_max, "nll_beta": self.nll_beta}
        )
        return config


@register_output_head("bernoulli")
class Bernoulli(_OutputHead):
    """Bernoulli likelihood on pixel intensities (binary cross-entropy on logits).

    Args:
        image_channels: int. C of the images.
        kernel_size: int. Kernel of the projection convolution.
        upscale: int. Pixel-shuffle factor from the features to the image
            (1: same resolution).
        **kwargs: standard `keras.layers.Layer` arguments.

    Call arguments:
        features: `(N, H, W, F)` decoder features.

    Example:

    ```python
    head = Bernoulli()
    nll = head.nll(x, head(features))  # (N,) nats per image
    ```
    """

    likelihood = "Bernoulli (nats, discrete)"
    discrete_likelihood = True

    def mean(self, params):
        return ops.sigmoid(ops.cast(params, "float32"))

    def nll(self, x, params):
        logits = ops.cast(params, "float32")
        x = ops.cast(x, "float32")
        # Stable BCE with logits: max(l, 0) - l * x + log(1 + exp(-|l|)).
        per_pixel = ops.relu(logits) - logits * x + ops.log1p(ops.exp(-ops.abs(logits)))
        return _sum_per_image(per_pixel)


@register_output_head("gaussian")
class Gaussian(_OutputHead):
    """Gaussian likelihood with a mean in [0, 1] and a fixed sigma.

    Args:
        image_channels: int. C of the images.
        sigma: float. The fixed standard deviation.
        kernel_size: int. Kernel of the projection convolution.
        upscale: int. Pixel-shuffle factor from the features to the image
            (1: same resolution).
        **kwargs: standard `keras.layers.Layer` arguments.

    Call arguments:
        features: `(N, H, W, F)` decoder features.

    Example:

    ```python
    head = Gaussian(sigma=0.1)
    nll = head.nll(x, head(features))
    ```
    """

    likelihood = "continuous Gaussian density, fixed sigma (nats; can be negative)"
    config_settings = {"sigma": "fixed_sigma"}

    def __init__(self, image_channels=1, sigma=0.1, kernel_size=3, upscale=1, **kwargs):
        super().__init__(
            image_channels=image_channels, kernel_size=kernel_size, upscale=upscale, **kwargs
        )
        self.fixed_sigma = float(sigma)

    def mean(self, params):
        return ops.sigmoid(ops.cast(params, "float32"))

    def sigma(self, params):
        return ops.full_like(self.mean(params), self.fixed_sigma)

    def nll(self, x, params):
        x = ops.cast(x, "float32")
        per_pixel = 0.5 * ops.square((x - self.mean(params)) / self.fixed_sigma)
        per_pixel = per_pixel + math.log(self.fixed_sigma) + _HALF_LOG_2PI
        return _sum_per_image(per_pixel)

    def get_config(self):
        config = super().get_config()
        config.update({"sigma": self.fixed_sigma})
        return config
