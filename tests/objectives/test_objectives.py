"""Objectives are parts: a new one is its module, its config section and its test.

`Constant` below is such an objective, written here and nowhere else: the
config accepts `loss.constant`, `build_model` composes it, and it trains,
logs, saves and is switched off like the built-in ones.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass

import keras
import numpy as np
import pytest
from keras import ops

from kmixvae.config import from_dict, to_dict
from kmixvae.config_fields import option
from kmixvae.errors import ConfigError, ModelFileError
from kmixvae.objectives import OBJECTIVES, Objective, ObjectiveConfig, register_objective
from kmixvae.runs import load_model_file


@dataclass
class ConstantConfig(ObjectiveConfig):
    value: float = option(1.0, doc="the constant")


class Constant(Objective):
    """A term that is `value` whatever the batch (no gradient)."""

    section = "constant"
    Config = ConstantConfig
    metrics = ("constant",)

    def term(self, q):
        value = ops.convert_to_tensor(self.value, "float32")
        return value, {"constant": value}


@pytest.fixture
def constant_objective():
    register_objective(Constant)
    yield Constant
    OBJECTIVES.pop("constant")


def _images(n=32):
    return np.random.default_rng(0).random((n, 8, 8, 1)).astype("float32")


def test_a_new_objective_is_configured_trained_and_logged(constant_objective, tiny_model, tmp_path):
    loss = {"usage_entropy": {"weight": 0.0}, "constant": {"weight": 2.0, "value": 3.0}}
    assert to_dict(from_dict({"loss": loss}))["loss"]["constant"] == {
        "weight": 2.0,
        "start_epoch": 0,
        "stop_epoch": None,
        "value": 3.0,
    }
    model = tiny_model((8, 8, 1), loss=loss)
    assert [type(o) for o in model.objectives] == [Constant]
    model.compile(optimizer="adam")
    history = model.fit(_images(), batch_size=16, epochs=1, verbose=0).history
    assert history["constant"] == [pytest.approx(3.0)]
    # The loss is the ELBO plus weight * value, step by step.
    assert history["loss"][0] == pytest.approx(history["nelbo"][0] + 6.0, rel=1e-5)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.describe()["objectives"] == {
        "constant": {"weight": 2.0, "start_epoch": 0, "stop_epoch": None, "value": 3.0}
    }


def test_a_new_objective_starts_at_its_epoch(constant_objective, tiny_model):
    model = tiny_model((8, 8, 1), loss={"constant": {"weight": 1.0, "start_epoch": 1}})
    model.compile(optimizer="adam")
    model.start_epoch(0)
    assert model.fit(_images(), batch_size=16, verbose=0).history["constant"] == [0.0]
    model.start_epoch(1)
    assert model.fit(_images(), batch_size=16, verbose=0).history["constant"] == [1.0]


def test_a_new_objective_switched_off_rejects_its_settings(constant_objective):
    with pytest.raises(
        ConfigError, match=r"loss\.constant\.value: 4\.0 is set, .* loss\.constant\.weight"
    ):
        from_dict({"loss": {"constant": {"value": 4.0}}})


def test_objective_sections_are_off_by_default_and_unknown_sections_rejected():
    assert "constant" not in OBJECTIVES
    with pytest.raises(ConfigError, match="loss.constant: unknown key"):
        from_dict({"loss": {"constant": {"weight": 1.0}}})


def test_model_files_saved_before_objectives_fail_with_one_line(tiny_model, tmp_path):
    model = tiny_model((8, 8, 1))
    new, old = tmp_path / "new.keras", tmp_path / "old.keras"
    model.save(new)
    # A pre-objective file: the same archive with the flat loss arguments of the old MixtureVAE.
    with zipfile.ZipFile(new) as src, zipfile.ZipFile(old, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "config.json":
                config = json.loads(data)
                inner = config["config"]
                for key in ("elbo", "objectives", "augmentation"):
                    inner.pop(key)
                inner.update({"diversity_weight": -1.0, "neighbor_weight": 0.0, "elbo_weight": 1.0})
                data = json.dumps(config).encode()
            dst.writestr(item, data)
    with pytest.raises(ModelFileError, match="predates") as err:
        load_model_file(old)
    assert "\n" not in str(err.value)
    assert isinstance(load_model_file(new), type(model))
