"""The `model` section (channels, latents, prior, encoder, decoder) and its own rules."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any

from kmixvae import choices
from kmixvae.config_fields import (
    only_unless,
    only_when,
    option,
    section,
    setting_names,
    with_switch,
)
from kmixvae.errors import ConfigError
from kmixvae.layers.conditioning import CONDITIONINGS, conditioning_kinds
from kmixvae.layers.output_heads import HEADS


@dataclass
class LatentConfig:
    dim: int = option(2, lo=1, hi=512)
    layout: str = option("decentralized", choices=choices.LAYOUTS)


@dataclass
class PriorConfig:
    pi: str = option("fixed", choices=choices.PRIOR_MODES)
    means: str = option("fixed", choices=choices.PRIOR_MODES)
    scales: str = option("fixed", choices=choices.PRIOR_MODES)


@dataclass
class EncoderConfig:
    filters: list[int] = option([32, 64], lo=1)
    dense_units: int = option(256, lo=1)
    batch_norm: bool = option(False)
    batch_norm_momentum: float = option(0.99, lo=0.0, hi=1.0)
    heads: int = option(
        1,
        lo=1,
        doc="candidate channel heads trained together on the trunk; at head_selection_epoch "
        "the one whose channels are most stable under loss.augment is kept (no labels)",
    )
    head_selection_epoch: int = option(
        1,
        lo=1,
        doc="epoch (0-based) at which one candidate head is kept and the others stop",
        switch=only_unless("heads", 1),
    )


# The decoder's own keys; `decoder_config_class` adds the chosen conditioning's and head's.
_DECODER_KEYS = {
    "filters": (list[int], option([64, 32], lo=1)),
    "block": (
        str,
        option(
            "subpixel",
            choices=choices.BLOCKS,
            doc="2x upsampling block: 3x3 conv at low resolution to 4x the filters then pixel "
            "shuffle (`subpixel`), or nearest upsampling then a 3x3 conv (`upsample`)",
        ),
    ),
}
_DECODER_CLASSES: dict[tuple, type] = {}


def _part_fields(registry: dict, key: str, taken: set) -> list:
    """The `Settings` keys of every registered part, each used only while `key` names its part."""
    out = []
    for kind, cls in registry.items():
        hints = typing.get_type_hints(cls.Settings)
        for f in dataclasses.fields(cls.Settings):
            if f.name in taken:
                raise ValueError(f"{cls.__name__}: model.decoder.{f.name} is already a decoder key")
            taken.add(f.name)
            out.append((f.name, hints[f.name], with_switch(f, only_when(key, kind))))
    return out


def part_settings(part, decoder_config):
    """A conditioning's or head's `Settings`, read off the `model.decoder` section."""
    return part.Settings(
        **{name: getattr(decoder_config, name) for name in setting_names(part.Settings)}
    )


def decoder_config_class() -> type:
    """The `model.decoder` section, assembled from the conditioning and head registries.

    Keys: `conditioning` (a registered conditioning's kind), `embedding_dim`
    (used by the conditionings that read e_c), each conditioning's `Settings`
    keys, `filters`, `block`, `head` (a registered head's kind),
    `head_upscale`, then each head's `Settings` keys. A part's keys are used
    only while it is the chosen one. A new conditioning or head is accepted
    without an edit here.
    """
    key = tuple((kind, cls.Settings, cls.uses_embedding) for kind, cls in CONDITIONINGS.items())
    key += tuple((kind, cls.Settings) for kind, cls in HEADS.items())
    if key not in _DECODER_CLASSES:
        kinds = conditioning_kinds()
        readers = [kind for kind in kinds if CONDITIONINGS[kind].uses_embedding]
        fields = [
            ("conditioning", str, option("film" if "film" in kinds else kinds[0], choices=kinds)),
            ("embedding_dim", int, option(32, lo=1, switch=only_when("conditioning", *readers))),
        ]
        taken = {"conditioning", "embedding_dim", "head", "head_upscale", *_DECODER_KEYS}
        fields += _part_fields(CONDITIONINGS, "conditioning", taken)
        fields += [(name, tp, f) for name, (tp, f) in _DECODER_KEYS.items()]
        fields += [
            ("head", str, option(next(iter(HEADS)), choices=tuple(HEADS))),
            (
                "head_upscale",
                int,
                option(2, choices=(1, 2), doc="pixel-shuffle factor of the output head"),
            ),
        ]
        fields += _part_fields(HEADS, "head", taken)
        _DECODER_CLASSES[key] = dataclasses.make_dataclass("DecoderConfig", fields)
    return _DECODER_CLASSES[key]


@dataclass
class ModelConfig:
    num_channels: int = option(10, lo=1, hi=1024)
    latent: LatentConfig = section(LatentConfig)
    prior: PriorConfig = section(PriorConfig)
    encoder: EncoderConfig = section(EncoderConfig)
    decoder: Any = section(None, factory=decoder_config_class)


def check_model(m: ModelConfig) -> None:
    """Rules between the model section's own keys."""
    dec = m.decoder
    for part in (CONDITIONINGS[dec.conditioning], HEADS[dec.head]):
        if hasattr(part.Settings, "check"):
            part_settings(part, dec).check("model.decoder")
    if m.latent.layout == "shared" and m.prior.means == "fixed" and m.num_channels > 1:
        raise ConfigError(
            "model.prior.means: 'fixed' with model.latent.layout='shared' gives every channel "
            "the same prior p(z|c); use 'learnable'"
        )
