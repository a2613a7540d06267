"""kmixvae: mixture-of-VAEs with decentralized latents on Keras 3."""

__version__ = "0.1.0"
