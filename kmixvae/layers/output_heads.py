"""Decoder output heads: the likelihood p(x | z, c) and its parameters.

Each head maps decoder features `(N, H, W, F)` to distribution parameters
`(N, H, W, P)` with one convolution, and knows its negative log-likelihood,
mean image and (where it has one) per-pixel sigma. Likelihoods are computed
in float32 whatever the layer's compute dtype.

A head is a registered part: `@register_head` files it under its `kind`, the
value of `model.decoder.head`; its `Settings` dataclass declares its own keys
of `model.decoder` (used only while it is the chosen head), which `build_head`
passes to `from_settings`; `discrete_likelihood` says whether its NLL is a
discrete likelihood (bits per dimension are reported only then). Adding a
head is its module, its registration and a test:

```python
@dataclass
class LaplaceSettings:
    laplace_scale: float = option(0.1, lo=1e-6, doc="scale b of the `laplace` head")

@register_head
class Laplace(OutputHead):
    kind = "laplace"
    Settings = LaplaceSettings
    discrete_likelihood = False
    likelihood = "continuous Laplace density (nats)"
    ...  # __init__(laplace_scale=...), mean, nll, get_config
```
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import keras
from keras import ops

from kmixvae.config_fields import NoSettings, option
from kmixvae.errors import ConfigError

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)

# Registered heads by `kind` (the value of `model.decoder.head`), in registration order.
HEADS: dict[str, type] = {}


def register_head(cls):
    """Registers an output head under its `kind` (and with Keras' serialiser)."""
    if not cls.kind or not isinstance(cls.discrete_likelihood, bool):
        raise ValueError(f"{cls.__name__}: a head needs a `kind` and a bool `discrete_likelihood`")
    if cls.kind in HEADS and HEADS[cls.kind].__qualname__ != cls.__qualname__:
        raise ValueError(f"{cls.__name__}: head {cls.kind!r} is already {HEADS[cls.kind].__name__}")
    HEADS[cls.kind] = cls
    return keras.saving.register_keras_serializable(package="kmixvae")(cls)


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


class OutputHead(keras.layers.Layer):
    """Base of the heads: the projection convolution, the pixel shuffle and the config.

    Subclasses set the class attributes and `mean` / `nll` (and `sigma` where
    they have one). Their output is the distribution's parameters in the
    layer's compute dtype; `mean`, `sigma` and `nll` are float32.

    Class attributes:
        kind: str. The value of `model.decoder.head` that picks the head.
        Settings: dataclass of the head's own `model.decoder` keys (`option`s),
            with an optional `check(path)` for the rules between them.
        discrete_likelihood: bool. True when `nll` is the negative log of a
            probability (so that bits per dimension mean something), False for
            a density.
        likelihood: str. What the NLL is, for people (reports, `describe`).
        params_per_channel: int. Parameters per image channel.
    """

    kind: ClassVar[str] = ""
    Settings: ClassVar[type] = NoSettings
    discrete_likelihood: ClassVar[bool] = False
    params_per_channel = 1
    likelihood = ""

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

    @classmethod
    def from_settings(cls, image_channels, upscale, name="head", **settings):
        """The head for a config: its `Settings` keys, by the names the config uses."""
        return cls(image_channels=image_channels, upscale=upscale, name=name, **settings)

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


@dataclass
class HeteroscedasticSettings:
    sigma_min: float = option(0.05, lo=1e-6)
    sigma_max: float = option(0.5, lo=1e-6)
    nll_beta: float = option(0.0, lo=0.0, hi=1.0, doc="beta-NLL exponent (0 = plain NLL)")

    def check(self, path: str) -> None:
        """The rule between its keys (`path`: the section's, for messages)."""
        if self.sigma_min >= self.sigma_max:
            raise ConfigError(
                f"{path}.sigma_min: {self.sigma_min} must be below "
                f"{path}.sigma_max ({self.sigma_max})"
            )


@register_head
class HeteroscedasticGaussian(OutputHead):
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

    kind = "heteroscedastic"
    Settings = HeteroscedasticSettings
    discrete_likelihood = False
    params_per_channel = 2
    likelihood = "continuous Gaussian density (nats; can be negative)"

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


@register_head
class Bernoulli(OutputHead):
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

    kind = "bernoulli"
    discrete_likelihood = True
    likelihood = "Bernoulli (nats, discrete)"

    def mean(self, params):
        return ops.sigmoid(ops.cast(params, "float32"))

    def nll(self, x, params):
        logits = ops.cast(params, "float32")
        x = ops.cast(x, "float32")
        # Stable BCE with logits: max(l, 0) - l * x + log(1 + exp(-|l|)).
        per_pixel = ops.relu(logits) - logits * x + ops.log1p(ops.exp(-ops.abs(logits)))
        return _sum_per_image(per_pixel)


@dataclass
class GaussianSettings:
    fixed_sigma: float = option(0.1, lo=1e-6, doc="sigma of the `gaussian` head")


@register_head
class Gaussian(OutputHead):
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

    kind = "gaussian"
    Settings = GaussianSettings
    discrete_likelihood = False
    likelihood = "continuous Gaussian density, fixed sigma (nats; can be negative)"

    def __init__(self, image_channels=1, sigma=0.1, kernel_size=3, upscale=1, **kwargs):
        super().__init__(
            image_channels=image_channels, kernel_size=kernel_size, upscale=upscale, **kwargs
        )
        self.fixed_sigma = float(sigma)

    @classmethod
    def from_settings(cls, image_channels, upscale, name="head", fixed_sigma=0.1):
        # The config's key says which sigma it is (`model.decoder.fixed_sigma`).
        return cls(image_channels=image_channels, upscale=upscale, name=name, sigma=fixed_sigma)

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
