"""Typed run configuration: the root that composes each part's section, `--set` overrides, loading.

Each part owns its section and that section's own rules: `data`
(`kmixvae.data.config`), `model` (`kmixvae.models.config`), `loss` (assembled
from the objective registry, `kmixvae.objectives.loss_section`), `curriculum`,
`pruning`, `training`, `distribution` (`kmixvae.training_config`); `output`
and the run's name, seed and precision are the root's. Every default lives in
those dataclasses, and nowhere else. Loading a config checks every key
against them (`kmixvae.config_parsing`): an unknown key, a wrong type, a
value out of range or an unknown choice raises `ConfigError` naming the key
path, the value and what is allowed, e.g.

    model.decoder.conditioning: 'flim' is not one of concat, film, none

then each section's rules and the rules between sections (`validate`).

Example:

```python
config = load_config("configs/film_het.json", overrides=["training.epochs=3"])
config.model.decoder.conditioning  # 'film'
to_dict(config)                    # every default filled in
```
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from kmixvae import choices, config_parsing
from kmixvae.config_fields import only_when, option, section
from kmixvae.config_files import read_json, save_config
from kmixvae.config_parsing import check_switched_off, lookup, parse_section
from kmixvae.data.config import DataConfig, check_data
from kmixvae.errors import ConfigError
from kmixvae.models.config import (
    EncoderConfig,
    LatentConfig,
    ModelConfig,
    PriorConfig,
    check_model,
    decoder_config_class,
)
from kmixvae.objectives import OBJECTIVES
from kmixvae.objectives.loss_section import MOVED_KEYS, check_not_moved, loss_config_class
from kmixvae.objectives.views import augmenting_objectives_on, augmenting_objectives_state
from kmixvae.training_config import (
    CurriculumConfig,
    DistributionConfig,
    EarlyStoppingConfig,
    PruningConfig,
    TrainingConfig,
    check_curriculum,
    check_pruning,
    check_training,
)


@dataclass
class OutputConfig:
    runs_dir: str = option("runs")
    saved_model: Optional[str] = option(None, doc="null = saved_models/<name>.keras")
    tensorboard: bool = option(True)
    image_every: int = option(
        5,
        lo=1,
        doc="epochs between TensorBoard image summaries",
        switch=only_when("tensorboard", True),
    )
    projector: bool = option(True, switch=only_when("tensorboard", True))
    projector_samples: int = option(2000, lo=1, switch=only_when("tensorboard", True))
    report: bool = option(True, doc="write report.html (kmixvae report) at the end of fit")


@dataclass
class Config:
    name: str = option(
        "kmixvae",
        doc="names the run folder and saved_models/<name>.keras: one safe path component",
    )
    seed: int = option(0, lo=0, hi=2**32 - 1)
    precision: str = option("float32", choices=choices.PRECISIONS)
    data: DataConfig = section(DataConfig)
    model: ModelConfig = section(ModelConfig)
    loss: Any = section(None, factory=loss_config_class)
    curriculum: CurriculumConfig = section(CurriculumConfig)
    pruning: PruningConfig = section(PruningConfig)
    training: TrainingConfig = section(TrainingConfig)
    distribution: DistributionConfig = section(DistributionConfig)
    output: OutputConfig = section(OutputConfig)


_NAME_RULE = "one file name: not empty, not . or .., no / or \\ and no control characters"


def _check_name(name: str) -> None:
    """`name` is one safe path component: it names `runs/<name>__<time>/` and `<name>.keras`."""
    if name in ("", ".", "..") or any(c in name for c in "/\\") or not name.isprintable():
        raise ConfigError(f"name: {name!r} is not a safe file name ({_NAME_RULE})")


def validate(config: Config) -> Config:
    """Checks each section's own rules, then the rules that tie sections together."""
    _check_name(config.name)
    check_data(config.data)
    check_model(config.model)
    check_curriculum(config.curriculum, config.model.num_channels)
    check_pruning(
        config.pruning, config.curriculum.enabled, config.model.num_channels, config.training.epochs
    )
    check_training(config.training)
    _check_views(config)
    _check_heads(config)
    _check_term_windows(config)
    refresh, epochs = config.data.neighbor_refresh_epoch, config.training.epochs
    if refresh >= epochs:
        raise ConfigError(
            f"data.neighbor_refresh_epoch: {refresh} must be below training.epochs ({epochs})"
        )
    return config


def _check_term_windows(config: Config) -> None:
    """A term's `stop_epoch` comes after its `start_epoch` and inside the run."""
    epochs = config.training.epochs
    for name in OBJECTIVES:
        term = getattr(config.loss, name)
        if term.weight == 0 or term.stop_epoch is None:
            continue
        if term.stop_epoch <= term.start_epoch:
            raise ConfigError(
                f"loss.{name}.stop_epoch: {term.stop_epoch} must be above "
                f"loss.{name}.start_epoch ({term.start_epoch})"
            )
        if term.stop_epoch >= epochs:
            raise ConfigError(
                f"loss.{name}.stop_epoch: {term.stop_epoch} must be below training.epochs "
                f"({epochs}); null keeps the term on to the end"
            )


def _check_heads(config: Config) -> None:
    """Candidate channel heads are trained by the clustering objectives and kept by
    their stability under `loss.augment`: both must be there."""
    enc, epochs = config.model.encoder, config.training.epochs
    if enc.heads == 1:
        return
    if enc.head_selection_epoch >= epochs:
        raise ConfigError(
            f"model.encoder.head_selection_epoch: {enc.head_selection_epoch} must be below "
            f"training.epochs ({epochs})"
        )
    if not augmenting_objectives_on(config.loss):
        raise ConfigError(
            f"model.encoder.heads: {enc.heads} candidate heads need a clustering objective "
            f"that reads an augmented view to train them ({augmenting_objectives_state(config.loss)})"
        )


def _check_views(config: Config) -> None:
    """Neighbour pairs are drawn exactly when an objective that is on reads them."""
    readers = [
        f"loss.{name}.weight"
        for name, cls in OBJECTIVES.items()
        if "neighbor" in cls.views and getattr(config.loss, name).weight != 0
    ]
    if readers and config.data.neighbors == 0:
        raise ConfigError(
            f"{readers[0]}: {lookup(config, readers[0])} needs neighbour pairs; "
            "set data.neighbors (e.g. 20)"
        )
    if config.data.neighbors > 0 and not readers:
        needs = [f"loss.{n}.weight" for n, c in OBJECTIVES.items() if "neighbor" in c.views]
        raise ConfigError(
            f"data.neighbors: {config.data.neighbors} pairs images for "
            f"{' or '.join(needs) or 'an objective that reads them'}, which is 0"
        )


def from_dict(data: dict) -> Config:
    """Parses and validates a config mapping; missing keys take their defaults."""
    config = parse_section("", data, Config, check_not_moved)
    check_switched_off(config)
    return validate(config)


def to_dict(config: Config) -> dict:
    """The resolved config as plain JSON-ready data (every default filled in)."""
    return dataclasses.asdict(config)


def _parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected key=value, e.g. training.epochs=5")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"--set {item!r}: the key is empty")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw  # a bare string such as film
    except RecursionError:
        raise ConfigError(f"--set {key}: the value is nested too deeply") from None
    return key.split("."), value


def apply_overrides(data: dict, overrides: list[str] | tuple[str, ...]) -> dict:
    """Applies `key.path=value` overrides to a raw config mapping.

    Values are read as JSON when they parse (`3`, `0.5`, `true`, `null`,
    `[1, 2]`), else as strings. Unknown keys raise `ConfigError`.
    """
    data = json.loads(json.dumps(data))
    defaults = to_dict(Config())
    seen = set()
    for item in overrides:
        parts, value = _parse_override(item)
        key = ".".join(parts)
        if key in seen:
            raise ConfigError(
                f"--set {key}: given twice (each key may be set once; the last would silently win)"
            )
        seen.add(key)
        node, ref = data, defaults
        for i, part in enumerate(parts):
            path = ".".join(parts[: i + 1])
            check_not_moved(path)
            if not isinstance(ref, dict) or part not in ref:
                allowed = ", ".join(ref) if isinstance(ref, dict) else "none (not a section)"
                raise ConfigError(f"{path}: unknown key (allowed: {allowed})")
            if i == len(parts) - 1:
                node[part] = value
            else:
                if not isinstance(node.get(part, {}), dict):
                    raise ConfigError(f"{path}: expected an object in the config file")
                node = node.setdefault(part, {})
                ref = ref[part]
    return data


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Loads, overrides and validates a JSON config file."""
    return from_dict(apply_overrides(read_json(path), overrides))


def describe_fields(cls=None, prefix: str = "") -> list[tuple[str, Any, str]]:
    """(key path, default, allowed) rows of every key, for documentation."""
    return config_parsing.describe_fields(Config if cls is None else cls, prefix)


__all__ = [
    "MOVED_KEYS",
    "Config",
    "CurriculumConfig",
    "DataConfig",
    "DistributionConfig",
    "EarlyStoppingConfig",
    "EncoderConfig",
    "LatentConfig",
    "ModelConfig",
    "OutputConfig",
    "PriorConfig",
    "PruningConfig",
    "TrainingConfig",
    "apply_overrides",
    "check_switched_off",
    "decoder_config_class",
    "describe_fields",
    "from_dict",
    "load_config",
    "loss_config_class",
    "read_json",
    "save_config",
    "to_dict",
    "validate",
]
