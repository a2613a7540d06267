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
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from kmixvae.errors import ConfigError


def _opt(default: Any = None, *, choices: tuple | None = None, lo=None, hi=None, doc: str = ""):
    """A dataclass field carrying its allowed choices and range."""
    meta = {"choices": choices, "min": lo, "max": hi, "doc": doc}
    if isinstance(default, list):
        return field(default_factory=lambda d=default: list(d), metadata=meta)
    return field(default=default, metadata=meta)


def _sub(cls):
    return field(default_factory=cls, metadata={})


# ---------------------------------------------------------------------------
# Sections
# ---------------------------------------------------------------------------


@dataclass
class DataConfig:
    name: str = _opt("mnist", choices=("mnist", "fashion_mnist", "kmnist"))
    source: str = _opt("tfds", choices=("tfds", "idx", "npz"))
    dir: Optional[str] = _opt(None, doc="folder of IDX files or of mnist.npz; TFDS data_dir")
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
        False, doc="keep only mutual k-NN pairs (j in kNN(i) and i in kNN(j))"
    )
    neighbor_refresh_epoch: int = _opt(
        0,
        lo=0,
        doc="from this epoch the pairs come from the k-NN graph of the encoder's trunk "
        "features, computed once at that epoch (0 = pixel pairs throughout)",
    )


@dataclass
class LatentConfig:
    dim: int = _opt(2, lo=1, hi=512)
    layout: str = _opt("decentralized", choices=("decentralized", "shared"))


@dataclass
class PriorConfig:
    pi: str = _opt("fixed", choices=("fixed", "learnable"))
    means: str = _opt("fixed", choices=("fixed", "learnable"))
    scales: str = _opt("fixed", choices=("fixed", "learnable"))


@dataclass
class EncoderConfig:
    filters: list[int] = _opt([32, 64], lo=1)
    dense_units: int = _opt(256, lo=1)
    batch_norm: bool = _opt(False)
    batch_norm_momentum: float = _opt(0.99, lo=0.0, hi=1.0)


@dataclass
class DecoderConfig:
    conditioning: str = _opt("film", choices=("concat", "film", "none"))
    embedding_dim: int = _opt(32, lo=1)
    filters: list[int] = _opt([64, 32], lo=1)
    block: str = _opt(
        "subpixel",
        choices=("subpixel", "upsample"),
        doc="2x upsampling block: 3x3 conv at low resolution to 4x the filters then pixel "
        "shuffle (`subpixel`), or nearest upsampling then a 3x3 conv (`upsample`)",
    )
    head: str = _opt("heteroscedastic", choices=("heteroscedastic", "bernoulli", "gaussian"))
    head_upscale: int = _opt(2, choices=(1, 2), doc="pixel-shuffle factor of the output head")
    sigma_min: float = _opt(0.05, lo=1e-6)
    sigma_max: float = _opt(0.5, lo=1e-6)
    fixed_sigma: float = _opt(0.1, lo=1e-6, doc="sigma of the `gaussian` head")
    nll_beta: float = _opt(0.0, lo=0.0, hi=1.0, doc="beta-NLL exponent (0 = plain NLL)")


@dataclass
class ModelConfig:
    num_channels: int = _opt(10, lo=1, hi=1024)
    latent: LatentConfig = _sub(LatentConfig)
    prior: PriorConfig = _sub(PriorConfig)
    encoder: EncoderConfig = _sub(EncoderConfig)
    decoder: DecoderConfig = _sub(DecoderConfig)


@dataclass
class LossConfig:
    diversity_weight: float = _opt(
        -30.0, doc="weight on H(p_bar); negative rewards using many channels"
    )
    kl_warmup_epochs: int = _opt(
        0, lo=0, doc="linear warm-up of the KL weights over this many epochs"
    )
    elbo_weight: float = _opt(1.0, lo=0.0, doc="weight of the negative ELBO in the loss")
    elbo_subbatch: Optional[int] = _opt(
        None, lo=1, doc="decode only the first n images of each batch for the ELBO (null = all)"
    )
    confidence_weight: float = _opt(0.0, doc="weight on the mean per-image entropy H(q(c|x))")
    iic_weight: float = _opt(
        0.0, lo=0.0, doc="weight on -I(c; c') between q(c|x) and q(c|aug x) (IIC)"
    )
    augment_rotation: float = _opt(15.0, lo=0.0, hi=180.0, doc="degrees, for iic_weight > 0")
    augment_shift: float = _opt(0.1, lo=0.0, hi=0.5, doc="fraction of the size, for iic_weight > 0")
    neighbor_weight: float = _opt(
        0.0, lo=0.0, doc="weight on -log <q(c|x), q(c|aug x_nbr)> (needs data.neighbors > 0)"
    )
    elbo_assignment_gradient: bool = _opt(
        True,
        doc="false: the ELBO trains the latent heads, decoder and prior, not q(c|x) nor the encoder trunk",
    )
    elbo_start_epoch: int = _opt(
        0, lo=0, doc="training skips decoding (the ELBO) before this epoch"
    )
    self_label_weight: float = _opt(
        0.0, lo=0.0, doc="weight of the class-balanced self-labelling cross-entropy"
    )
    self_label_threshold: float = _opt(0.9, lo=0.0, hi=1.0, doc="confidence of a pseudo-label")
    self_label_start_epoch: int = _opt(0, lo=0, doc="self-labelling is on from this epoch")


@dataclass
class CurriculumConfig:
    enabled: bool = _opt(False)
    start_channels: int = _opt(1, lo=1)
    max_channels: Optional[int] = _opt(None, lo=1, doc="null = model.num_channels")
    schedule: str = _opt("fixed", choices=("fixed", "plateau"))
    unlock_every: int = _opt(1, lo=1, doc="fixed schedule: epochs between unlocks")
    unlock_epochs: Optional[list[int]] = _opt(None, lo=1, doc="fixed schedule: explicit epochs")
    monitor: str = _opt("val_loss")
    patience: int = _opt(2, lo=1, doc="plateau schedule")
    min_delta: float = _opt(0.0, lo=0.0, doc="plateau schedule")
    unlock_init: str = _opt("fresh", choices=("fresh", "split"))
    split_noise: float = _opt(0.05, lo=0.0)


@dataclass
class EarlyStoppingConfig:
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
    lr_final: float = _opt(0.0, lo=0.0, doc="cosine schedule: the final learning rate")
    restart_epoch: int = _opt(
        0,
        lo=0,
        doc="from this epoch the optimizer starts afresh (moments and step count reset) and "
        "the learning-rate schedule restarts at restart_learning_rate (0 = never)",
    )
    restart_learning_rate: Optional[float] = _opt(
        None, lo=0.0, doc="learning rate after the restart (null = training.learning_rate)"
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
    image_every: int = _opt(5, lo=1, doc="epochs between TensorBoard image summaries")
    projector: bool = _opt(True)
    projector_samples: int = _opt(2000, lo=1)
    report: bool = _opt(True, doc="write report.html (kmixvae report) at the end of fit")


@dataclass
class Config:
    name: str = _opt("kmixvae")
    seed: int = _opt(0, lo=0)
    precision: str = _opt("float32", choices=("float32", "mixed_float16", "mixed_bfloat16"))
    data: DataConfig = _sub(DataConfig)
    model: ModelConfig = _sub(ModelConfig)
    loss: LossConfig = _sub(LossConfig)
    curriculum: CurriculumConfig = _sub(CurriculumConfig)
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
        raise ConfigError(f"{where}: unknown key (allowed: {', '.join(fields)})")
    kwargs = {}
    for name, value in data.items():
        sub = f"{path}.{name}" if path else name
        kwargs[name] = _parse_value(sub, value, hints[name], dict(fields[name].metadata))
    return cls(**kwargs)


def validate(config: Config) -> Config:
    """Checks rules that tie several keys together; returns the config."""
    m, cur, dec = config.model, config.curriculum, config.model.decoder
    k = m.num_channels
    if dec.sigma_min >= dec.sigma_max:
        raise ConfigError(
            f"model.decoder.sigma_min: {dec.sigma_min} must be below "
            f"model.decoder.sigma_max ({dec.sigma_max})"
        )
    unused = {
        "sigma_min": "heteroscedastic",
        "sigma_max": "heteroscedastic",
        "nll_beta": "heteroscedastic",
        "fixed_sigma": "gaussian",
    }
    for key, head in unused.items():
        value = getattr(dec, key)
        if dec.head != head and value != getattr(DecoderConfig(), key):
            raise ConfigError(
                f"model.decoder.{key}: {value} is only used by the {head} head, "
                f"but model.decoder.head is {dec.head!r}"
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
            if cur.schedule != "fixed":
                raise ConfigError(
                    "curriculum.unlock_epochs: only used by schedule 'fixed', "
                    f"but curriculum.schedule is {cur.schedule!r}"
                )
            if sorted(set(cur.unlock_epochs)) != cur.unlock_epochs:
                raise ConfigError(
                    f"curriculum.unlock_epochs: {cur.unlock_epochs!r} must be strictly increasing"
                )
            needed = max_ch - cur.start_channels
            if len(cur.unlock_epochs) != needed:
                raise ConfigError(
                    f"curriculum.unlock_epochs: {len(cur.unlock_epochs)} epochs listed, but "
                    f"{needed} unlocks are needed to go from {cur.start_channels} to {max_ch}"
                )
    if config.loss.neighbor_weight > 0 and config.data.neighbors == 0:
        raise ConfigError(
            f"loss.neighbor_weight: {config.loss.neighbor_weight} needs neighbour pairs; "
            "set data.neighbors (e.g. 20)"
        )
    if config.data.neighbors > 0 and config.loss.neighbor_weight == 0:
        raise ConfigError(
            f"data.neighbors: {config.data.neighbors} pairs images for loss.neighbor_weight, which is 0"
        )
    if config.training.lr_final > config.training.learning_rate:
        raise ConfigError(
            f"training.lr_final: {config.training.lr_final} exceeds training.learning_rate "
            f"({config.training.learning_rate})"
        )
    if config.training.lr_schedule == "constant" and config.training.lr_final > 0:
        raise ConfigError("training.lr_final: only used by lr_schedule 'cosine'")
    t = config.training
    refresh = config.data.neighbor_refresh_epoch
    if refresh > 0 and config.data.neighbors == 0:
        raise ConfigError(
            f"data.neighbor_refresh_epoch: {refresh} refreshes neighbour pairs, "
            "but data.neighbors is 0"
        )
    if config.data.neighbor_mutual and config.data.neighbors == 0:
        raise ConfigError(
            "data.neighbor_mutual: true filters neighbour pairs, but data.neighbors is 0"
        )
    if refresh >= t.epochs:
        raise ConfigError(
            f"data.neighbor_refresh_epoch: {refresh} must be below training.epochs ({t.epochs})"
        )
    if t.restart_epoch >= t.epochs:
        raise ConfigError(
            f"training.restart_epoch: {t.restart_epoch} must be below training.epochs ({t.epochs})"
        )
    if t.restart_learning_rate is not None:
        if t.restart_epoch == 0:
            raise ConfigError(
                "training.restart_learning_rate: only used with training.restart_epoch > 0"
            )
        if t.lr_final > t.restart_learning_rate:
            raise ConfigError(
                f"training.lr_final: {t.lr_final} exceeds training.restart_learning_rate "
                f"({t.restart_learning_rate})"
            )
    return config


def from_dict(data: dict) -> Config:
    """Parses and validates a config mapping; missing keys take their defaults."""
    return validate(_parse_section("", data, Config))


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
    return key.split("."), value


def apply_overrides(data: dict, overrides: list[str] | tuple[str, ...]) -> dict:
    """Applies `key.path=value` overrides to a raw config mapping.

    Values are read as JSON when they parse (`3`, `0.5`, `true`, `null`,
    `[1, 2]`), else as strings. Unknown keys raise `ConfigError`.
    """
    data = json.loads(json.dumps(data))
    defaults = to_dict(Config())
    for item in overrides:
        parts, value = _parse_override(item)
        node, ref = data, defaults
        for i, part in enumerate(parts):
            path = ".".join(parts[: i + 1])
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
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(
            f"config file {str(p)!r} is not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}"
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(p)!r}: the top level must be a JSON object")
    return data


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
