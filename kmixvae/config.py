"""Typed run configuration: JSON loading, strict validation, `--set` overrides.

Every default lives in the dataclasses below, and nowhere else. Loading a
config checks every key against them: an unknown key, a wrong type, a value
out of range or an unknown choice raises `ConfigError` naming the key path,
the value and what is allowed, e.g.

    model.decoder.conditioning: 'flim' is not one of concat, film, none

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
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Optional

from kmixvae import choices
from kmixvae.config_fields import Switch, only_unless, only_when, option, section, section_class
from kmixvae.errors import ConfigError
from kmixvae.objectives import OBJECTIVES, AugmentConfig, ElboConfig
from kmixvae.objectives.views import augmenting_objectives_on, augmenting_objectives_state


def _opt(default: Any = None, **kwargs):
    return option(default, **kwargs)


def _sub(cls):
    return section(cls)


# ---------------------------------------------------------------------------
# Sections
# ---------------------------------------------------------------------------


@dataclass
class DataConfig:
    name: str = _opt(
        "mnist",
        doc="TFDS dataset with an `image` feature (`label` optional), e.g. mnist, "
        "fashion_mnist, cifar10, svhn_cropped, emnist/digits (data.source=tfds only)",
    )
    source: str = _opt(
        "tfds",
        choices=("tfds", "idx", "npz", "folder"),
        doc="tfds, IDX files, an .npz (x_<split>, optional y_<split>), or a folder of "
        "PNG/JPEG files (one sub-folder per class gives labels); --data-dir picks it "
        "from what DIR holds",
    )
    dir: Optional[str] = _opt(
        None, doc="folder of IDX files, of image files or of an .npz; an .npz file; TFDS data_dir"
    )
    image_size: Optional[list[int]] = _opt(
        None,
        lo=1,
        doc="[height, width]: resize every image of the folder to it (Pillow, bilinear); "
        "null = every image must already have the same size (data.source=folder only)",
        switch=only_when("source", "folder"),
    )
    train_split: str = _opt("train")
    val_split: str = _opt("test")
    batch_size: int = _opt(128, lo=1, doc="global batch size (across all replicas)")
    shuffle_buffer: int = _opt(10000, lo=0, doc="shuffle buffer of the tf_data pipeline (0 = all)")
    pipeline: str = _opt(
        "auto",
        choices=("auto", "tf_data", "arrays"),
        doc="input pipeline: tf.data (needs TensorFlow), in-memory arrays "
        "(keras.utils.PyDataset, no TensorFlow), or auto (tf_data where TensorFlow is installed)",
    )
    neighbors: int = _opt(
        0, lo=0, doc="k of the pixel-space k-NN graph that pairs training images (0 = no pairs)"
    )
    neighbor_mutual: bool = _opt(
        False,
        doc="keep only mutual k-NN pairs (j in kNN(i) and i in kNN(j))",
        switch=only_unless("neighbors", 0),
    )
    neighbor_refresh_epoch: int = _opt(
        0,
        lo=0,
        doc="from this epoch the pairs come from the k-NN graph of the encoder's trunk "
        "features, computed once at that epoch (0 = pixel pairs throughout)",
        switch=only_unless("neighbors", 0),
    )


@dataclass
class LatentConfig:
    dim: int = _opt(2, lo=1, hi=512)
    layout: str = _opt("decentralized", choices=choices.LAYOUTS)


@dataclass
class PriorConfig:
    pi: str = _opt("fixed", choices=choices.PRIOR_MODES)
    means: str = _opt("fixed", choices=choices.PRIOR_MODES)
    scales: str = _opt("fixed", choices=choices.PRIOR_MODES)


@dataclass
class EncoderConfig:
    filters: list[int] = _opt([32, 64], lo=1)
    dense_units: int = _opt(256, lo=1)
    batch_norm: bool = _opt(False)
    batch_norm_momentum: float = _opt(0.99, lo=0.0, hi=1.0)
    heads: int = _opt(
        1,
        lo=1,
        doc="candidate channel heads trained together on the trunk; at head_selection_epoch "
        "the one whose channels are most stable under loss.augment is kept (no labels)",
    )
    head_selection_epoch: int = _opt(
        1,
        lo=1,
        doc="epoch (0-based) at which one candidate head is kept and the others stop",
        switch=only_unless("heads", 1),
    )


@dataclass
class DecoderConfig:
    conditioning: str = _opt("film", choices=choices.CONDITIONINGS)
    embedding_dim: int = _opt(32, lo=1, switch=only_unless("conditioning", "none"))
    film_init: str = _opt(
        "identity",
        choices=choices.FILM_INITS,
        doc="FiLM layers at creation: exactly the identity, or a small random projection so "
        "that each channel modulates the decoder from the first step",
        switch=only_when("conditioning", "film"),
    )
    film_input: bool = _opt(
        False,
        doc="FiLM also feeds e_c to the decoder's first (dense) layer",
        switch=only_when("conditioning", "film"),
    )
    filters: list[int] = _opt([64, 32], lo=1)
    block: str = _opt(
        "subpixel",
        choices=choices.BLOCKS,
        doc="2x upsampling block: 3x3 conv at low resolution to 4x the filters then pixel "
        "shuffle (`subpixel`), or nearest upsampling then a 3x3 conv (`upsample`)",
    )
    head: str = _opt("heteroscedastic", choices=choices.HEADS)
    head_upscale: int = _opt(2, choices=(1, 2), doc="pixel-shuffle factor of the output head")
    sigma_min: float = _opt(0.05, lo=1e-6, switch=only_when("head", "heteroscedastic"))
    sigma_max: float = _opt(0.5, lo=1e-6, switch=only_when("head", "heteroscedastic"))
    fixed_sigma: float = _opt(
        0.1, lo=1e-6, doc="sigma of the `gaussian` head", switch=only_when("head", "gaussian")
    )
    nll_beta: float = _opt(
        0.0,
        lo=0.0,
        hi=1.0,
        doc="beta-NLL exponent (0 = plain NLL)",
        switch=only_when("head", "heteroscedastic"),
    )


@dataclass
class ModelConfig:
    num_channels: int = _opt(10, lo=1, hi=1024)
    latent: LatentConfig = _sub(LatentConfig)
    prior: PriorConfig = _sub(PriorConfig)
    encoder: EncoderConfig = _sub(EncoderConfig)
    decoder: DecoderConfig = _sub(DecoderConfig)


# Flat loss keys of configs written before the loss sections, and where they went.
MOVED_KEYS = {
    "loss.diversity_weight": "loss.usage_entropy.weight",
    "loss.neighbor_weight": "loss.neighbor.weight",
    "loss.elbo_weight": "loss.elbo.weight",
    "loss.elbo_subbatch": "loss.elbo.subbatch",
    "loss.elbo_assignment_gradient": "loss.elbo.assignment_gradient",
    "loss.elbo_start_epoch": "loss.elbo.start_epoch",
    "loss.augment_rotation": "loss.augment.rotation",
    "loss.augment_shift": "loss.augment.shift",
    "loss.self_label_weight": "loss.self_label.weight",
    "loss.self_label_threshold": "loss.self_label.threshold",
    "loss.self_label_start_epoch": "loss.self_label.start_epoch",
    "loss.iic_weight": "nothing (IIC was removed)",
    "loss.confidence_weight": "nothing (the confidence term was removed)",
    "loss.kl_warmup_epochs": "nothing (the KL warm-up was removed)",
}


def _check_not_moved(path: str) -> None:
    if path in MOVED_KEYS:
        raise ConfigError(
            f"{path}: this key predates the loss sections; it is now {MOVED_KEYS[path]}"
        )


_LOSS_CLASSES: dict[tuple, type] = {}


def loss_config_class() -> type:
    """The `loss` section: `elbo`, one section per registered objective, then `augment`.

    Assembled from the objective registry (`kmixvae.objectives`), so that a
    new objective's section is accepted without an edit here.
    """
    key = tuple((name, cls.Config) for name, cls in OBJECTIVES.items())
    if key not in _LOSS_CLASSES:
        fields = [("elbo", ElboConfig, _sub(ElboConfig))]
        fields += [(name, cfg, _sub(cfg)) for name, cfg in key]
        fields.append(("augment", AugmentConfig, _sub(AugmentConfig)))
        _LOSS_CLASSES[key] = dataclasses.make_dataclass("LossConfig", fields)
    return _LOSS_CLASSES[key]


@dataclass
class CurriculumConfig:
    SWITCH: ClassVar[Switch] = only_when("enabled", True)
    enabled: bool = _opt(False)
    start_channels: int = _opt(1, lo=1)
    max_channels: Optional[int] = _opt(None, lo=1, doc="null = model.num_channels")
    schedule: str = _opt("fixed", choices=("fixed", "plateau"))
    unlock_every: int = _opt(
        1, lo=1, doc="fixed schedule: epochs between unlocks", switch=only_when("schedule", "fixed")
    )
    unlock_epochs: Optional[list[int]] = _opt(
        None, lo=1, doc="fixed schedule: explicit epochs", switch=only_when("schedule", "fixed")
    )
    monitor: str = _opt("val_loss", switch=only_when("schedule", "plateau"))
    patience: int = _opt(2, lo=1, doc="plateau schedule", switch=only_when("schedule", "plateau"))
    min_delta: float = _opt(
        0.0, lo=0.0, doc="plateau schedule", switch=only_when("schedule", "plateau")
    )
    unlock_init: str = _opt("fresh", choices=("fresh", "split"))
    split_noise: float = _opt(0.05, lo=0.0, switch=only_when("unlock_init", "split"))


@dataclass
class PruningConfig:
    """Channel pruning (`kmixvae.training.channel_pruning`): model.num_channels is an upper bound."""

    SWITCH: ClassVar[Switch] = only_when("enabled", True)
    enabled: bool = _opt(False)
    check_epochs: list[int] = _opt(
        [3, 4, 5, 6, 7, 8, 9, 10],
        lo=1,
        doc="epochs (counted as training.restart_epoch) at whose start channels are checked",
    )
    merge_ratio: float = _opt(
        0.75,
        lo=0.0,
        doc="two channels joined by this many times the neighbour pairs chance would give "
        "(for their sizes) are merged (1.0: whenever merging raises the modularity)",
    )
    min_usage: float = _opt(
        0.01, lo=0.0, hi=1.0, doc="a channel holding a smaller share of the images is masked"
    )
    neighbors: int = _opt(20, lo=1, doc="k of the mutual k-NN graph the links are counted on")
    graph: str = _opt(
        "pixels",
        choices=choices.PRUNING_GRAPHS,
        doc="the graph: the training images' pixels (fixed) or the encoder's current features",
    )
    min_channels: int = _opt(2, lo=1, doc="never keep fewer channels")


@dataclass
class EarlyStoppingConfig:
    SWITCH: ClassVar[Switch] = only_when("enabled", True)
    enabled: bool = _opt(False)
    monitor: str = _opt("val_loss")
    patience: int = _opt(5, lo=1)
    min_delta: float = _opt(0.0, lo=0.0)


@dataclass
class TrainingConfig:
    epochs: int = _opt(30, lo=1)
    steps_per_epoch: Optional[int] = _opt(None, lo=1, doc="null = one pass over the data")
    optimizer: str = _opt("adam", choices=("adam", "adamw", "sgd", "rmsprop"))
    learning_rate: float = _opt(1e-3, lo=0.0)
    lr_schedule: str = _opt("constant", choices=("constant", "cosine"))
    lr_final: float = _opt(
        0.0,
        lo=0.0,
        doc="cosine schedule: the final learning rate",
        switch=only_when("lr_schedule", "cosine"),
    )
    restart_epoch: int = _opt(
        0,
        lo=0,
        doc="from this epoch the optimizer starts afresh (moments and step count reset) and "
        "the learning-rate schedule restarts at restart_learning_rate (0 = never)",
    )
    restart_learning_rate: Optional[float] = _opt(
        None,
        lo=0.0,
        doc="learning rate after the restart (null = training.learning_rate)",
        switch=only_unless("restart_epoch", 0),
    )
    clipnorm: Optional[float] = _opt(None, lo=0.0)
    early_stopping: EarlyStoppingConfig = _sub(EarlyStoppingConfig)


@dataclass
class DistributionConfig:
    strategy: str = _opt(
        "auto",
        choices=("auto", "none", "data_parallel", "mirrored", "multi_worker_mirrored", "tpu"),
    )


@dataclass
class OutputConfig:
    runs_dir: str = _opt("runs")
    saved_model: Optional[str] = _opt(None, doc="null = saved_models/<name>.keras")
    tensorboard: bool = _opt(True)
    image_every: int = _opt(
        5,
        lo=1,
        doc="epochs between TensorBoard image summaries",
        switch=only_when("tensorboard", True),
    )
    projector: bool = _opt(True, switch=only_when("tensorboard", True))
    projector_samples: int = _opt(2000, lo=1, switch=only_when("tensorboard", True))
    report: bool = _opt(True, doc="write report.html (kmixvae report) at the end of fit")


@dataclass
class Config:
    name: str = _opt(
        "kmixvae",
        doc="names the run folder and saved_models/<name>.keras: one safe path component",
    )
    seed: int = _opt(0, lo=0, hi=2**32 - 1)
    precision: str = _opt("float32", choices=("float32", "mixed_float16", "mixed_bfloat16"))
    data: DataConfig = _sub(DataConfig)
    model: ModelConfig = _sub(ModelConfig)
    loss: Any = section(None, factory=loss_config_class)
    curriculum: CurriculumConfig = _sub(CurriculumConfig)
    pruning: PruningConfig = _sub(PruningConfig)
    training: TrainingConfig = _sub(TrainingConfig)
    distribution: DistributionConfig = _sub(DistributionConfig)
    output: OutputConfig = _sub(OutputConfig)


# ---------------------------------------------------------------------------
# Parsing and validation
# ---------------------------------------------------------------------------


def _type_name(tp) -> str:
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def _unwrap_optional(tp):
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _check_scalar(path: str, value: Any, tp, meta: dict) -> Any:
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: {value!r} is not true or false")
    elif tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: {value!r} is not an integer")
    elif tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: {value!r} is not a number")
        value = float(value)
        if value != value or value in (float("inf"), float("-inf")):
            raise ConfigError(f"{path}: {value!r} is not a finite number")
    elif tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: {value!r} is not a string")
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        raise ConfigError(f"{path}: {value!r} is not one of {', '.join(str(c) for c in choices)}")
    lo, hi = meta.get("min"), meta.get("max")
    if lo is not None and value < lo:
        raise ConfigError(f"{path}: {value!r} is below the minimum {lo}")
    if hi is not None and value > hi:
        raise ConfigError(f"{path}: {value!r} is above the maximum {hi}")
    return value


def _parse_value(path: str, value: Any, tp, meta: dict) -> Any:
    tp, optional = _unwrap_optional(tp)
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{path}: null is not allowed (expected {_type_name(tp)})")
    if dataclasses.is_dataclass(tp):
        return _parse_section(path, value, tp)
    if typing.get_origin(tp) is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"{path}: {value!r} is not a list of {_type_name(item_tp)}s")
        if not value:
            raise ConfigError(f"{path}: the list must not be empty")
        return [_check_scalar(f"{path}[{i}]", v, item_tp, meta) for i, v in enumerate(value)]
    return _check_scalar(path, value, tp, meta)


def _parse_section(path: str, data: Any, cls):
    if not isinstance(data, dict):
        raise ConfigError(f"{path or 'config'}: expected an object, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = f"{path}.{unknown[0]}" if path else unknown[0]
        _check_not_moved(where)
        raise ConfigError(f"{where}: unknown key (allowed: {', '.join(fields)})")
    kwargs = {}
    for name, value in data.items():
        sub = f"{path}.{name}" if path else name
        tp = section_class(fields[name], hints[name])
        kwargs[name] = _parse_value(sub, value, tp, dict(fields[name].metadata))
    return cls(**kwargs)


def _lookup(config: Config, path: str):
    node = config
    for part in path.split("."):
        node = getattr(node, part)
    return node


def check_switched_off(config: Config, node=None, path: str = "") -> None:
    """Rejects a key set away from its default while the key that switches it on is off.

    Switches are declared with the keys (`kmixvae.config_fields`): per key
    (`option(..., switch=...)`) or per section (a `SWITCH` class attribute),
    so every section, new ones included, gets this check.
    """
    node = config if node is None else node
    cls = type(node)
    defaults = cls()
    section_switch = getattr(cls, "SWITCH", None)
    for f in dataclasses.fields(cls):
        key = f"{path}.{f.name}" if path else f.name
        value = getattr(node, f.name)
        if dataclasses.is_dataclass(value):
            check_switched_off(config, value, key)
            continue
        if value == getattr(defaults, f.name):
            continue
        switches = [f.metadata.get("switch")]
        if section_switch is not None and f.name != section_switch.key:
            switches.insert(0, section_switch)  # a section that is off says so first
        for switch in filter(None, switches):
            if switch.key.startswith("/"):
                switch_path = switch.key[1:]
            else:
                switch_path = f"{path}.{switch.key}" if path else switch.key
            switch_value = _lookup(config, switch_path)
            if not switch.is_on(switch_value):
                raise ConfigError(
                    f"{key}: {value!r} is set, but it is only used when "
                    f"{switch.condition(switch_path)} "
                    f"({switch.describe(switch_path, switch_value)}); remove it or switch it on"
                )


# A TFDS dataset name: `name`, `name/config`, optionally `:version`.
_TFDS_NAME = re.compile(r"^[a-z][a-z0-9_]*(/[A-Za-z0-9_.-]+)?(:[0-9.*]+)?$")


def _check_data_name(data: DataConfig) -> None:
    if data.image_size is not None and len(data.image_size) != 2:
        raise ConfigError(
            f"data.image_size: {data.image_size!r} must be [height, width] (two numbers) or null"
        )
    if not _TFDS_NAME.match(data.name):
        raise ConfigError(
            f"data.name: {data.name!r} is not a TFDS dataset name (e.g. mnist, cifar10, "
            "emnist/digits, mnist:3.*)"
        )


def _check_splits(data: DataConfig) -> None:
    """Split specs follow the TFDS grammar (checked here, before any data is read)."""
    from kmixvae.data.splits import parse_split
    from kmixvae.errors import DataError

    for key in ("train_split", "val_split"):
        spec = getattr(data, key)
        if key == "val_split" and spec == "":
            continue  # no validation data
        try:
            parse_split(spec)
        except DataError as e:
            raise ConfigError(f"data.{key}: {e}") from None


def _check_increasing(path: str, values: list) -> None:
    if sorted(set(values)) != list(values):
        raise ConfigError(f"{path}: {values!r} must be strictly increasing")


def _check_pruning(config: Config) -> None:
    pr = config.pruning
    if not pr.enabled:
        return
    if config.curriculum.enabled:
        raise ConfigError(
            "pruning.enabled: channel pruning and the curriculum both drive the channel mask; "
            "switch one off"
        )
    epochs = pr.check_epochs
    if not epochs:
        raise ConfigError("pruning.check_epochs: must list at least one epoch")
    _check_increasing("pruning.check_epochs", epochs)
    if epochs[-1] >= config.training.epochs:
        raise ConfigError(
            f"pruning.check_epochs: {epochs[-1]} must be below training.epochs "
            f"({config.training.epochs})"
        )
    if pr.min_channels > config.model.num_channels:
        raise ConfigError(
            f"pruning.min_channels: {pr.min_channels} exceeds model.num_channels "
            f"({config.model.num_channels})"
        )
    if pr.merge_ratio <= 0.0:
        raise ConfigError("pruning.merge_ratio: must be above 0 (0 would merge every linked pair)")


_NAME_RULE = "one file name: not empty, not . or .., no / or \\ and no control characters"


def _check_name(name: str) -> None:
    """`name` is one safe path component: it names `runs/<name>__<time>/` and `<name>.keras`."""
    if name in ("", ".", "..") or any(c in name for c in "/\\") or not name.isprintable():
        raise ConfigError(f"name: {name!r} is not a safe file name ({_NAME_RULE})")


def validate(config: Config) -> Config:
    """Checks rules that tie several keys together; returns the config."""
    _check_name(config.name)
    _check_data_name(config.data)
    _check_splits(config.data)
    m, cur, dec = config.model, config.curriculum, config.model.decoder
    k = m.num_channels
    if dec.sigma_min >= dec.sigma_max:
        raise ConfigError(
            f"model.decoder.sigma_min: {dec.sigma_min} must be below "
            f"model.decoder.sigma_max ({dec.sigma_max})"
        )
    if m.latent.layout == "shared" and m.prior.means == "fixed" and k > 1:
        raise ConfigError(
            "model.prior.means: 'fixed' with model.latent.layout='shared' gives every channel "
            "the same prior p(z|c); use 'learnable'"
        )
    max_ch = cur.max_channels if cur.max_channels is not None else k
    if max_ch > k:
        raise ConfigError(f"curriculum.max_channels: {max_ch} exceeds model.num_channels ({k})")
    if cur.enabled:
        if cur.start_channels > max_ch:
            raise ConfigError(
                f"curriculum.start_channels: {cur.start_channels} exceeds the maximum of "
                f"{max_ch} channels"
            )
        if cur.unlock_epochs is not None:
            _check_increasing("curriculum.unlock_epochs", cur.unlock_epochs)
            needed = max_ch - cur.start_channels
            if len(cur.unlock_epochs) != needed:
                raise ConfigError(
                    f"curriculum.unlock_epochs: {len(cur.unlock_epochs)} epochs listed, but "
                    f"{needed} unlocks are needed to go from {cur.start_channels} to {max_ch}"
                )
    _check_pruning(config)
    _check_views(config)
    _check_heads(config)
    if config.training.lr_final > config.training.learning_rate:
        raise ConfigError(
            f"training.lr_final: {config.training.lr_final} exceeds training.learning_rate "
            f"({config.training.learning_rate})"
        )
    t = config.training
    refresh = config.data.neighbor_refresh_epoch
    if refresh >= t.epochs:
        raise ConfigError(
            f"data.neighbor_refresh_epoch: {refresh} must be below training.epochs ({t.epochs})"
        )
    if t.restart_epoch >= t.epochs:
        raise ConfigError(
            f"training.restart_epoch: {t.restart_epoch} must be below training.epochs ({t.epochs})"
        )
    if t.restart_learning_rate is not None:
        if t.lr_final > t.restart_learning_rate:
            raise ConfigError(
                f"training.lr_final: {t.lr_final} exceeds training.restart_learning_rate "
                f"({t.restart_learning_rate})"
            )
    return config


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
            f"{readers[0]}: {_lookup(config, readers[0])} needs neighbour pairs; "
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
    config = _parse_section("", data, Config)
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
            _check_not_moved(path)
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


def read_json(path: str | Path) -> dict:
    """Reads a JSON config file, with a one-line error for every failure."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"config file {str(p)!r} does not exist")
    if p.is_dir():
        raise ConfigError(f"config file {str(p)!r} is a directory")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"config file {str(p)!r} cannot be read: {e}") from None
    too_deep = ConfigError(f"config file {str(p)!r}: its JSON is nested too deeply")
    try:
        data = json.loads(text, object_pairs_hook=_object_without_duplicates)
    except json.JSONDecodeError as e:
        raise ConfigError(
            f"config file {str(p)!r} is not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}"
        ) from None
    except RecursionError:
        raise too_deep from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(p)!r}: the top level must be a JSON object")
    try:
        duplicate = _first_duplicate_key(data)
    except RecursionError:
        raise too_deep from None
    if duplicate is not None:
        raise ConfigError(
            f"config file {str(p)!r}: {duplicate}: duplicate key (each key may appear once "
            "in an object; JSON would silently keep the last one)"
        )
    return data


class _ObjectWithDuplicateKey(dict):
    """A JSON object in which `duplicate` appeared more than once."""

    duplicate = ""


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict:
    """`object_pairs_hook` that marks an object whose keys repeat (the path is found later)."""
    obj = {}
    for key, value in pairs:
        if key in obj:
            marked = _ObjectWithDuplicateKey(pairs)
            marked.duplicate = key
            return marked
        obj[key] = value
    return obj


def _first_duplicate_key(node: Any, path: str = "") -> str | None:
    """The key path of the first repeated key in parsed JSON, or None."""
    if isinstance(node, _ObjectWithDuplicateKey):
        return f"{path}.{node.duplicate}" if path else node.duplicate
    if isinstance(node, dict):
        children = node.items()
    elif isinstance(node, list):
        children = enumerate(node)
    else:
        return None
    for key, value in children:
        sub = f"{path}[{key}]" if isinstance(key, int) else (f"{path}.{key}" if path else key)
        found = _first_duplicate_key(value, sub)
        if found is not None:
            return found
    return None


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Loads, overrides and validates a JSON config file."""
    return from_dict(apply_overrides(read_json(path), overrides))


def save_config(config: Config, path: str | Path) -> None:
    """Writes the resolved config as JSON (atomically)."""
    from kmixvae.utils.files import atomic_write_text

    atomic_write_text(path, json.dumps(to_dict(config), indent=2) + "\n")


def describe_fields(cls=Config, prefix: str = "") -> list[tuple[str, Any, str]]:
    """(key path, default, allowed) rows for documentation."""
    rows = []
    instance = cls()
    for f in dataclasses.fields(cls):
        path = f"{prefix}{f.name}"
        value = getattr(instance, f.name)
        if dataclasses.is_dataclass(value):
            rows.extend(describe_fields(type(value), path + "."))
            continue
        meta = f.metadata
        allowed = []
        if meta.get("choices"):
            allowed.append(" | ".join(str(c) for c in meta["choices"]))
        if meta.get("min") is not None:
            allowed.append(f">= {meta['min']}")
        if meta.get("max") is not None:
            allowed.append(f"<= {meta['max']}")
        rows.append((path, value, ", ".join(allowed) or meta.get("doc", "")))
    return rows
