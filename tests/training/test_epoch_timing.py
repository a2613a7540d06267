"""`EpochTiming` and `fit_run(callbacks=...)`: a user's callbacks see the real run."""

from __future__ import annotations

import keras

from kmixvae.training.epoch_timing import EpochTiming
from kmixvae.training.fit import fit_run
from tests.helpers.runs import BATCH, N_TRAIN, tiny_config, write_patterns


class _Order(keras.callbacks.Callback):
    """Records, at each epoch end, whether this epoch's checkpoint was already written."""

    def __init__(self, folder):
        super().__init__()
        self.folder = folder
        self.seen = []

    def on_epoch_end(self, epoch, logs=None):
        last = self.folder / "checkpoints" / "last.json"
        self.seen.append(
            (epoch, last.is_file() and f'"epochs_done": {epoch + 1}' in last.read_text())
        )


def test_user_callbacks_run_after_the_checkpoint_and_time_every_epoch(tmp_path):
    data_dir = write_patterns(tmp_path / "data")
    epochs = 2
    config = tiny_config(tmp_path, data_dir, f"training.epochs={epochs}")
    timing = EpochTiming()
    order = _Order(tmp_path / "run")
    fit_run(
        config,
        run_dir=str(tmp_path / "run"),
        callbacks=[timing, order],
        full_output=False,
        log=lambda *_: None,
    )
    # Called by the run, after its checkpoint of the same epoch was written.
    assert order.seen == [(0, True), (1, True)]
    rows = timing.epochs
    assert [r["epoch"] for r in rows] == [1, 2]
    for r in rows:
        assert r["steps"] == N_TRAIN // BATCH
        assert r["step_s"] > 0 and r["validation_s"] > 0
        # The parts add up to the wall time, and the steps and validation fit inside it.
        assert abs(r["step_s"] + r["validation_s"] + r["other_s"] - r["wall_s"]) < 1e-9
        assert r["step_s"] + r["validation_s"] <= r["wall_s"]
