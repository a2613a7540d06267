"""An epoch that follows the data size: `training.epoch_images` (issue 26, item 3).

The rule (steps per epoch for N below and above the cap), its place in the
config (a conflict with `training.steps_per_epoch` is one `error:` line,
exit 2), and tiny fits on both input pipelines that train exactly the
steps the rule gives.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from kmixvae.config import from_dict
from kmixvae.training.epoch_schedule import describe_epoch, epoch_steps
from tests.helpers.cli import assert_one_error_line, run_cli
from tests.helpers.runs import N_TRAIN, SMOKE, tiny_sets, write_patterns

DEFAULT = from_dict({}).training.epoch_images


def test_the_default_keeps_todays_runs_one_pass_an_epoch():
    assert DEFAULT == 10_000
    for n in (96, 8_000, 10_000):  # up to the cap: one pass, as before the cap existed
        assert epoch_steps(n, 256, DEFAULT) == math.ceil(n / 256)


@pytest.mark.parametrize(
    "n, batch, cap, expected",
    [
        (50_000, 256, 10_000, 40),  # the 50,000-image Fashion run costs a 10,000-image epoch
        (60_000, 256, 10_000, 40),
        (1_000_000, 256, 10_000, 40),
        (10_001, 256, 10_000, 40),
        (50_000, 256, None, 196),  # null: one pass over all N
        (96, 16, 40, 3),  # rounded up to whole batches
        (5, 16, 40, 1),
    ],
)
def test_steps_per_epoch_follow_min_of_n_and_epoch_images(n, batch, cap, expected):
    assert epoch_steps(n, batch, cap) == expected


def test_steps_per_epoch_takes_the_place_of_the_rule():
    assert epoch_steps(50_000, 256, None, steps_per_epoch=7) == 7


def test_the_epoch_is_described_in_one_line():
    assert describe_epoch(8_000, 256, 32) == "32 steps of 256 images (one pass over the 8,000)"
    assert describe_epoch(50_000, 256, 40) == "40 steps of 256 images (10,240 of the 50,000)"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return write_patterns(tmp_path_factory.mktemp("data"))


def _fit(tmp: Path, data_dir: Path, *sets: str, expect=0):
    args = tiny_sets(
        tmp,
        "curriculum.enabled=false",
        "output.tensorboard=false",
        "output.image_every=5",
        "output.projector_samples=2000",
        "output.report=false",
        "data.batch_size=16",
        *sets,
    )
    return run_cli(
        "fit",
        "--config",
        SMOKE,
        "--data-dir",
        data_dir,
        *args,
        "--run-dir",
        tmp / "run",
        expect=expect,
    )


def test_setting_both_epoch_keys_is_an_error(tmp_path, data_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result, out, err = _fit(
        tmp_path,
        data_dir,
        "training.steps_per_epoch=3",
        "training.epoch_images=40",
        expect=None,
    )
    # stdout names the data source first; the error is stderr's one line
    assert_one_error_line(result, "", err, "training.epoch_images", "training.steps_per_epoch")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("pipeline", ["auto", "arrays"])
def test_a_fit_trains_the_steps_the_rule_gives(tmp_path, data_dir, pipeline):
    epochs, cap = 3, 40
    steps = epoch_steps(N_TRAIN, 16, cap)
    assert steps == 3 and steps < N_TRAIN // 16  # an epoch shorter than a pass
    _, out, err = _fit(
        tmp_path,
        data_dir,
        f"training.epochs={epochs}",
        f"training.epoch_images={cap}",
        f"data.pipeline={pipeline}",
    )
    run = tmp_path / "run"
    state = json.loads((run / "checkpoints" / "last.json").read_text())
    assert state["epochs_done"] == epochs
    assert state["iterations"] == epochs * steps
    assert f"epoch: 3 steps of 16 images (48 of the {N_TRAIN})" in out + err
