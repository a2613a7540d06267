"""ModelDescription: what a MixtureVAE actually built, read off its layers."""

from __future__ import annotations

import math


class ModelDescription:
    """`describe` / `describe_text` of a `MixtureVAE` (a mixin): the built layers, not the config."""

    def describe(self) -> dict:
        """What was actually built, read off the layers (not off the config)."""
        dec = self.decoder
        head = dec.head
        info = {
            "num_channels": self.num_channels,
            "active_channels": list(self._active),
            "latent_dim": self.latent_dim,
            "latent_layout": self.encoder.layout,
            "decoder_conditioning": dec.conditioning,
            **dec.strategy.settings(),
            "film_layers": len(dec.films),
            "embedding_dim": dec.embedding_dim if dec.embedding is not None else 0,
            "decoder_filters": dec.filters,
            "decoder_block": dec.block,
            "encoder_filters": self.encoder.filters,
            "head": type(head).__name__,
            "likelihood": head.likelihood,
            "discrete_likelihood": head.discrete_likelihood,
            "prior": {"pi": self.prior.pi, "means": self.prior.means, "scales": self.prior.scales},
            "elbo": self.elbo.to_dict(),
            "objectives": {o.section: o.get_config() for o in self.objectives},
            "augmentation": self.augmentation.get_config(),
            "encoder_batch_norm": self.encoder.batch_norm,
            "channel_heads": self.encoder.heads,
        }
        if hasattr(head, "sigma_min"):
            info["sigma_bounds"] = [head.sigma_min, head.sigma_max]
            info["nll_beta"] = head.nll_beta
        if hasattr(head, "fixed_sigma"):
            info["fixed_sigma"] = head.fixed_sigma
        if self.built:
            info["parameters"] = int(sum(math.prod(v.shape) for v in self.trainable_weights))
        return info

    def describe_text(self) -> str:
        """`describe()` as one readable line per item."""
        return "\n".join(f"  {key}: {value}" for key, value in self.describe().items())
