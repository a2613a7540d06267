"""Every committed study grid (`apps/grids/*.json`) is one `apps/study.py` can run as written.

A grid is a record of a study: its variants must still name existing configs
and settings the config accepts (a renamed or removed key would otherwise
surface only when someone reruns the study, or on a GPU machine), and its
seeds and splits must be there.
"""

from __future__ import annotations

import json

import pytest

from kmixvae import config as config_lib
from tests.helpers.paths import REPO_ROOT

GRIDS = sorted((REPO_ROOT / "apps" / "grids").glob("*.json"))
REQUIRED = ("name", "data_dir", "train_split", "eval_split", "seeds", "variants")


def test_grids_are_found():
    assert len(GRIDS) >= 10


@pytest.mark.parametrize("path", GRIDS, ids=lambda p: p.stem)
def test_grid_runs_as_written(path):
    grid = json.loads(path.read_text())
    assert [k for k in REQUIRED if k not in grid] == []
    assert grid["seeds"] and all(isinstance(s, int) for s in grid["seeds"])
    for name, variant in grid["variants"].items():
        config = REPO_ROOT / variant["config"]
        assert config.is_file(), f"{name}: {variant['config']} does not exist"
        raw = config_lib.apply_overrides(config_lib.read_json(config), list(variant["set"]))
        config_lib.from_dict(raw)  # raises on an unknown key or a value out of range
