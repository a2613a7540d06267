"""`training.steps_per_execution`: several training steps in one compiled call."""

from __future__ import annotations

import keras
import numpy as np

from kmixvae.runs.model_files import load_model_file
from kmixvae.training.epoch_timing import EpochTiming
from kmixvae.training.fit import fit_run
from tests.helpers.cli import run_cli
from tests.helpers.runs import SMOKE, tiny_config, tiny_sets, write_patterns

STEPS = 4  # an epoch of the tiny runs: 4 batches of the endless pass sequence


def _fit(tmp, data_dir, per_call):
    config = tiny_config(
        tmp,
        data_dir,
        "training.epochs=2",
        f"training.steps_per_epoch={STEPS}",
        f"training.steps_per_execution={per_call}",
    )
    timing = EpochTiming()
    result = fit_run(
        config, run_dir=str(tmp / "run"), callbacks=[timing], full_output=False, log=lambda *_: None
    )
    return result, timing, load_model_file(tmp / "m.keras")


def test_several_steps_a_call_train_what_one_step_a_call_trains(tmp_path):
    data_dir = write_patterns(tmp_path / "data")
    _, one, single = _fit(tmp_path / "one", data_dir, 1)
    _, two, paired = _fit(tmp_path / "two", data_dir, 2)
    # Honoured: the batch callbacks see one call of two steps, half as many calls.
    assert [r["steps"] for r in one.epochs] == [STEPS, STEPS]
    assert [r["steps"] for r in two.epochs] == [STEPS // 2, STEPS // 2]
    # The same batches in the same order, the same updates.
    for a, b in zip(single.weights, paired.weights):
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b), rtol=1e-4, atol=1e-5
        )


def test_an_execution_that_does_not_divide_an_epoch_is_one_error_line(tmp_path):
    data_dir = write_patterns(tmp_path / "data")
    args = tiny_sets(
        tmp_path, f"training.steps_per_epoch={STEPS}", "training.steps_per_execution=3"
    )
    result, out, err = run_cli("fit", "--config", SMOKE, "--data-dir", data_dir, *args, expect=None)
    assert result.exit_code == 2 and "Traceback" not in out + err, (out, err)
    errors = [line for line in (out + err).splitlines() if line.startswith("error:")]
    assert len(errors) == 1, errors
    assert "training.steps_per_execution: 3" in errors[0] and "1, 2, 4" in errors[0], errors
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    assert not (tmp_path / "m.keras").exists()


def test_a_resumed_run_keeps_its_steps_per_execution(tmp_path):
    from kmixvae.training.resume import rebuild_optimizer

    data_dir = write_patterns(tmp_path / "data")
    _, _, model = _fit(tmp_path / "first", data_dir, 2)
    config = tiny_config(tmp_path, data_dir, "training.steps_per_execution=2")
    rebuild_optimizer(model, config, STEPS)
    assert model.steps_per_execution == 2
