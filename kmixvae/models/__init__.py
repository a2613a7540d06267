"""kmixvae models. Importing this registers every kmixvae class, so that
`keras.models.load_model("x.keras")` needs no `custom_objects`."""

import kmixvae.layers  # noqa: F401  (registers the layers)
import kmixvae.models.learning_rate_schedule  # noqa: F401  (registers the saved optimizer's schedule)
from kmixvae.models.decoder import Decoder
from kmixvae.models.encoder import Encoder
from kmixvae.models.factory import build_model
from kmixvae.models.mixture_vae import MixtureVAE

__all__ = ["Decoder", "Encoder", "MixtureVAE", "build_model"]
