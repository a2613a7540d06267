"""Config validation through the CLI: `kmixvae config validate|show` and `--set`.

Every malformed config must end with exit code 2 and exactly one line,
`error: ...`, naming the offending key path.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kmixvae import config as config_lib
from kmixvae.cli import main
from kmixvae.errors import ConfigError
from tests.helpers.cli import assert_one_error_line, cli_runner
from tests.helpers.paths import REPO_ROOT

SHIPPED_CONFIGS = sorted((REPO_ROOT / "configs").glob("*.json"))


def invoke(*args):
    result = cli_runner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    try:
        err = result.stderr
    except ValueError:  # pragma: no cover - stderr not captured separately
        err = ""
    return result, result.stdout, err


def write_json(path: Path, data) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


# (id, config mapping, text the error line must contain)
MALFORMED = [
    ("unknown-top-level-key", {"nmae": "x"}, "nmae"),
    (
        "unknown-nested-key",
        {"model": {"decoder": {"condition": "film"}}},
        "model.decoder.condition",
    ),
    (
        "unknown-deep-key",
        {"training": {"early_stopping": {"patiense": 3}}},
        "training.early_stopping.patiense",
    ),
    ("string-for-int", {"training": {"epochs": "3"}}, "training.epochs"),
    ("float-for-int", {"data": {"batch_size": 32.5}}, "data.batch_size"),
    ("bool-for-int", {"model": {"num_channels": True}}, "model.num_channels"),
    ("int-for-bool", {"curriculum": {"enabled": 1}}, "curriculum.enabled"),
    ("string-for-float", {"training": {"learning_rate": "fast"}}, "training.learning_rate"),
    ("null-not-allowed", {"model": {"latent": {"dim": None}}}, "model.latent.dim"),
    ("null-section", {"data": None}, "data"),
    ("section-not-object", {"model": [1, 2]}, "model"),
    ("num-channels-zero", {"model": {"num_channels": 0}}, "model.num_channels"),
    ("batch-size-zero", {"data": {"batch_size": 0}}, "data.batch_size"),
    ("nll-beta-above-max", {"model": {"decoder": {"nll_beta": 2}}}, "model.decoder.nll_beta"),
    ("negative-learning-rate", {"training": {"learning_rate": -0.1}}, "training.learning_rate"),
    (
        "unknown-conditioning",
        {"model": {"decoder": {"conditioning": "flim"}}},
        "model.decoder.conditioning",
    ),
    ("unknown-head", {"model": {"decoder": {"head": "poisson"}}}, "model.decoder.head"),
    ("unknown-layout", {"model": {"latent": {"layout": "global"}}}, "model.latent.layout"),
    ("unknown-strategy", {"distribution": {"strategy": "horovod"}}, "distribution.strategy"),
    ("unknown-precision", {"precision": "float16"}, "precision"),
    ("unknown-optimizer", {"training": {"optimizer": "lbfgs"}}, "training.optimizer"),
    ("unknown-schedule", {"curriculum": {"schedule": "cosine"}}, "curriculum.schedule"),
    ("empty-filters", {"model": {"encoder": {"filters": []}}}, "model.encoder.filters"),
    ("filters-not-list", {"model": {"decoder": {"filters": 8}}}, "model.decoder.filters"),
    ("filters-bad-item", {"model": {"encoder": {"filters": [8, 0]}}}, "model.encoder.filters[1]"),
    (
        "sigma-min-equals-max",
        {"model": {"decoder": {"sigma_min": 0.5, "sigma_max": 0.5}}},
        "model.decoder.sigma_min",
    ),
    (
        "sigma-min-above-max",
        {"model": {"decoder": {"sigma_min": 0.9, "sigma_max": 0.5}}},
        "model.decoder.sigma_min",
    ),
    ("shared-layout-fixed-means", {"model": {"latent": {"layout": "shared"}}}, "model.prior.means"),
    (
        "curriculum-start-above-channels",
        {"model": {"num_channels": 3}, "curriculum": {"enabled": True, "start_channels": 4}},
        "curriculum.start_channels",
    ),
    (
        "curriculum-max-above-channels",
        {"model": {"num_channels": 3}, "curriculum": {"max_channels": 5}},
        "curriculum.max_channels",
    ),
    (
        "unlock-epochs-wrong-length",
        {"model": {"num_channels": 3}, "curriculum": {"enabled": True, "unlock_epochs": [2]}},
        "curriculum.unlock_epochs",
    ),
    (
        "unlock-epochs-not-increasing",
        {"model": {"num_channels": 3}, "curriculum": {"enabled": True, "unlock_epochs": [3, 2]}},
        "curriculum.unlock_epochs",
    ),
    (
        "unlock-epochs-repeated",
        {"model": {"num_channels": 3}, "curriculum": {"enabled": True, "unlock_epochs": [2, 2]}},
        "curriculum.unlock_epochs",
    ),
    ("nan-learning-rate", {"training": {"learning_rate": float("nan")}}, "training.learning_rate"),
]


@pytest.mark.parametrize("data,needle", [c[1:] for c in MALFORMED], ids=[c[0] for c in MALFORMED])
def test_malformed_config_exits_2_with_one_line(tmp_path, data, needle):
    path = tmp_path / "bad.json"
    # json.dumps writes NaN as a bare token, which json.loads reads back.
    path.write_text(json.dumps(data), encoding="utf-8")
    result, out, err = invoke("config", "validate", path)
    line = assert_one_error_line(result, out, err, needle)
    assert "valid" not in out  # nothing claimed valid
    # The same problem raised as a ConfigError through the library.
    with pytest.raises(ConfigError) as info:
        config_lib.load_config(path)
    assert needle in str(info.value)
    assert str(info.value) in line


@pytest.mark.parametrize(
    "text,needle",
    [
        ("[1, 2, 3]", "top level must be a JSON object"),
        ('"just a string"', "top level must be a JSON object"),
        ('{"training": {"epochs": 3,}}', "not valid JSON"),
        ("", "not valid JSON"),
        ('{"name": "x"', "not valid JSON"),
    ],
    ids=["list", "string", "trailing-comma", "empty-file", "unterminated"],
)
def test_unparseable_or_non_object_config(tmp_path, text, needle):
    path = tmp_path / "bad.json"
    path.write_text(text, encoding="utf-8")
    result, out, err = invoke("config", "validate", path)
    assert_one_error_line(result, out, err, needle, "bad.json")


def test_missing_and_directory_config(tmp_path):
    result, out, err = invoke("config", "validate", tmp_path / "nope.json")
    assert_one_error_line(result, out, err, "nope.json", "does not exist")
    folder = tmp_path / "cfg.json"
    folder.mkdir()
    result, out, err = invoke("config", "validate", folder)
    assert result.exit_code == 2
    lines = [line for line in (out + err).splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:")


@pytest.mark.parametrize("path", SHIPPED_CONFIGS, ids=[p.name for p in SHIPPED_CONFIGS])
def test_shipped_configs_validate(path):
    result, out, err = invoke("config", "validate", path)
    assert result.exit_code == 0, (out, err)
    assert "valid" in out


def test_shipped_configs_exist():
    assert SHIPPED_CONFIGS, "configs/*.json is empty"
    assert any(p.name == "smoke.json" for p in SHIPPED_CONFIGS)


def _show(*args):
    result, out, err = invoke("config", "show", *args)
    assert result.exit_code == 0, (out, err)
    return json.loads(out)


def test_show_prints_every_default(tmp_path):
    path = write_json(tmp_path / "min.json", {})
    shown = _show(path)
    assert shown == config_lib.to_dict(config_lib.Config())
    assert shown["data"]["shuffle_buffer"] == 10000
    assert shown["training"]["early_stopping"]["patience"] == 5
    assert shown["curriculum"]["max_channels"] is None
    # Every documented key path appears in the shown JSON.
    for key, default, _ in config_lib.describe_fields():
        node = shown
        for part in key.split("."):
            node = node[part]
        assert node == default, key


def test_show_smoke_keeps_file_values_and_fills_defaults():
    shown = _show(REPO_ROOT / "configs" / "smoke.json")
    assert shown["name"] == "smoke"
    assert shown["model"]["num_channels"] == 3
    assert shown["model"]["encoder"]["filters"] == [8, 16]
    assert shown["data"]["shuffle_buffer"] == 10000  # not in the file: a default


@pytest.mark.parametrize(
    "override,path,expected",
    [
        ("training.epochs=7", ("training", "epochs"), 7),
        ("model.decoder.conditioning=concat", ("model", "decoder", "conditioning"), "concat"),
        ("model.decoder.nll_beta=0.5", ("model", "decoder", "nll_beta"), 0.5),
        ("curriculum.enabled=false", ("curriculum", "enabled"), False),
        ("model.encoder.filters=[4, 4, 4]", ("model", "encoder", "filters"), [4, 4, 4]),
        ("output.saved_model=/tmp/x.keras", ("output", "saved_model"), "/tmp/x.keras"),
        ("training.steps_per_epoch=null", ("training", "steps_per_epoch"), None),
        ("data.train_split=train[:10%]", ("data", "train_split"), "train[:10%]"),
    ],
)
def test_set_overrides_change_the_resolved_config(override, path, expected):
    smoke = REPO_ROOT / "configs" / "smoke.json"
    before = _show(smoke)
    after = _show(smoke, "--set", override)
    node_before, node_after = before, after
    for part in path:
        node_before, node_after = node_before[part], node_after[part]
    assert node_after == expected
    if node_before != expected:
        assert node_after != node_before


def test_several_set_overrides_apply_in_order():
    smoke = REPO_ROOT / "configs" / "smoke.json"
    # A section, then one key inside it: the later key applies to the section set before.
    shown = _show(
        smoke,
        "--set",
        'training={"epochs": 4, "clipnorm": 2.0}',
        "--set",
        "training.epochs=9",
        "--set",
        "seed=3",
    )
    assert shown["training"]["epochs"] == 9
    assert shown["training"]["clipnorm"] == 2.0
    assert shown["seed"] == 3


@pytest.mark.parametrize(
    "override,needle",
    [
        ("training.epoch=3", "training.epoch"),
        ("nosuch=1", "nosuch"),
        ("model.decoder.film.gain=1", "model.decoder.film"),
        ("training.early_stopping.x=1", "training.early_stopping.x"),
    ],
)
@pytest.mark.parametrize("command", ["validate", "show"])
def test_set_unknown_key_exits_2(command, override, needle):
    result, out, err = invoke(
        "config", command, REPO_ROOT / "configs" / "smoke.json", "--set", override
    )
    assert_one_error_line(result, out, err, needle, "unknown key")


def test_set_below_a_scalar_exits_2():
    # training.epochs is a number (in smoke.json too), not a section.
    result, out, err = invoke(
        "config", "validate", REPO_ROOT / "configs" / "smoke.json", "--set", "training.epochs.x=1"
    )
    assert_one_error_line(result, out, err, "training.epochs")


@pytest.mark.parametrize("override", ["training.epochs", "justtext", "=3"])
def test_set_without_key_value_exits_2(override):
    result, out, err = invoke(
        "config", "validate", REPO_ROOT / "configs" / "smoke.json", "--set", override
    )
    assert_one_error_line(result, out, err, "--set")


@pytest.mark.parametrize(
    "override,needle",
    [
        ("training.epochs=three", "training.epochs"),
        ("model.num_channels=0", "model.num_channels"),
        ("model.decoder.conditioning=flim", "model.decoder.conditioning"),
        ("curriculum.start_channels=5", "curriculum.start_channels"),
    ],
)
def test_set_invalid_value_is_validated(override, needle):
    result, out, err = invoke(
        "config", "validate", REPO_ROOT / "configs" / "smoke.json", "--set", override
    )
    assert_one_error_line(result, out, err, needle)


def test_error_message_names_value_and_choices(tmp_path):
    path = write_json(tmp_path / "c.json", {"model": {"decoder": {"conditioning": "flim"}}})
    result, out, err = invoke("config", "validate", path)
    line = assert_one_error_line(result, out, err)
    assert line == "error: model.decoder.conditioning: 'flim' is not one of concat, film, none"


def test_config_round_trips_through_save(tmp_path):
    cfg = config_lib.load_config(REPO_ROOT / "configs" / "smoke.json", ["training.epochs=5"])
    config_lib.save_config(cfg, tmp_path / "saved.json")
    again = config_lib.load_config(tmp_path / "saved.json")
    assert config_lib.to_dict(again) == config_lib.to_dict(cfg)
    assert again.training.epochs == 5


# "--set overrides, the last one a key away from its default" -> the switch that is off.
SWITCHED_OFF = {
    "model.decoder.head=bernoulli model.decoder.nll_beta=0.5": "model.decoder.head",
    "model.decoder.head=gaussian model.decoder.sigma_max=0.3": "model.decoder.head",
    "model.decoder.fixed_sigma=0.2": "model.decoder.head",
    "model.decoder.conditioning=none model.decoder.embedding_dim=8": "model.decoder.conditioning",
    "loss.self_label.threshold=0.5": "loss.self_label.weight",
    "loss.self_label.start_epoch=3": "loss.self_label.weight",
    "loss.usage_entropy.weight=0 loss.usage_entropy.start_epoch=2": "loss.usage_entropy.weight",
    "loss.augment.rotation=5": "loss.self_label.weight, loss.neighbor.weight, loss.consistency.weight are 0",
    "curriculum.start_channels=2": "curriculum.enabled",
    "curriculum.schedule=plateau": "curriculum.enabled",
    "curriculum.enabled=true curriculum.patience=4": "curriculum.schedule",
    "curriculum.enabled=true curriculum.schedule=plateau curriculum.unlock_every=2": (
        "curriculum.schedule"
    ),
    "curriculum.enabled=true curriculum.split_noise=0.1": "curriculum.unlock_init",
    "curriculum.enabled=true curriculum.schedule=plateau curriculum.unlock_epochs=[1,2]": (
        "curriculum.schedule"
    ),
    "training.early_stopping.patience=3": "training.early_stopping.enabled",
    "output.tensorboard=false output.image_every=2": "output.tensorboard",
    "data.neighbor_mutual=true": "data.neighbors",
    "training.lr_final=1e-4": "training.lr_schedule",
    "training.restart_learning_rate=1e-4": "training.restart_epoch",
}


def test_switching_film_het_to_concat_follows_the_hints_of_the_errors():
    """`--set model.decoder.conditioning=concat` on film_het.json (the FiLM vs concat comparison):
    each FiLM-only key it leaves set is rejected with the `--set KEY=DEFAULT` that clears it,
    and following those hints gives a valid concat config."""
    raw = config_lib.read_json(REPO_ROOT / "configs" / "film_het.json")
    sets = ["model.decoder.conditioning=concat"]
    hinted = []
    for _ in range(5):
        try:
            config = config_lib.from_dict(config_lib.apply_overrides(raw, sets))
            break
        except ConfigError as err:
            hint = str(err).split("(or --set ", 1)[1].split(", its default)")[0]
            hinted.append(hint.split("=")[0])
            sets.append(hint)
    else:
        pytest.fail(f"still rejected after following {hinted}")
    assert config.model.decoder.conditioning == "concat"
    assert "model.decoder.film_init" in hinted


@pytest.mark.parametrize("sets, switch", SWITCHED_OFF.items(), ids=list(SWITCHED_OFF))
def test_a_value_in_a_switched_off_part_is_rejected_naming_key_and_switch(sets, switch):
    overrides = sets.split()
    key = overrides[-1].split("=")[0]
    with pytest.raises(ConfigError) as err:
        config_lib.from_dict(config_lib.apply_overrides({}, overrides))
    message = str(err.value)
    assert message.startswith(f"{key}: ") and switch in message.split("only used when")[1]
    assert "\n" not in message


def test_switched_off_keys_at_their_defaults_are_fine():
    config_lib.from_dict(
        {
            "model": {"decoder": {"head": "bernoulli", "nll_beta": 0.0, "conditioning": "none"}},
            "loss": {"self_label": {"weight": 0.0, "threshold": 0.9}, "augment": {"shift": 0.1}},
            "curriculum": {"enabled": False, "patience": 2},
            "output": {"tensorboard": False, "image_every": 5},
        }
    )
    # Switched on, the same keys are used and accepted.
    cfg = config_lib.from_dict(
        {
            "loss": {"self_label": {"weight": 1.0, "threshold": 0.5}, "augment": {"rotation": 5.0}},
            "curriculum": {"enabled": True, "schedule": "plateau", "patience": 4},
            "training": {"early_stopping": {"enabled": True, "patience": 3}},
        }
    )
    assert cfg.loss.self_label.threshold == 0.5 and cfg.curriculum.patience == 4


def test_a_config_with_the_old_flat_loss_keys_says_where_they_went():
    with pytest.raises(
        ConfigError, match="loss.neighbor_weight: this key predates .* loss.neighbor.weight"
    ):
        config_lib.from_dict({"loss": {"neighbor_weight": 1.0}})
