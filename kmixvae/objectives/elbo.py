"""`loss.elbo`: the settings of the exact negative ELBO that `MixtureVAE` trains.

The ELBO is the model's own term (it needs the decoder); only its settings
live here, beside the clustering objectives' sections, so that the config
and the model read one declaration.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

from kmixvae.choices import ELBO_CHANNELS
from kmixvae.config_fields import only_when, option


@dataclass
class ElboConfig:
    """`loss.elbo`: weight, sub-batch, assignment gradient and start epoch of the ELBO."""

    weight: float = option(1.0, lo=0.0, doc="weight of the negative ELBO in the loss")
    subbatch: Optional[int] = option(
        None, lo=1, doc="decode only the first n images of each batch for the ELBO (null = all)"
    )
    assignment_gradient: bool = option(
        True,
        doc="false: the ELBO trains the latent heads, decoder and prior, not q(c|x) nor the "
        "encoder trunk",
    )
    start_epoch: int = option(0, lo=0, doc="training skips decoding (the ELBO) before this epoch")
    channels: str = option(
        "all",
        choices=ELBO_CHANNELS,
        doc="decode every active channel of each image (`all`: the exact sum over q(c|x)) or "
        "one channel drawn from q(c|x) (`sampled`: the same expectation without bias, one "
        "decode per image; q(c|x) gets no ELBO gradient, so it needs assignment_gradient false)",
        switch=only_when("assignment_gradient", False),
    )

    @classmethod
    def from_dict(cls, data: dict) -> ElboConfig:
        return cls(**data)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
