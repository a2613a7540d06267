"""The warm restart: PhasedLearningRate, OptimizerRestart and the training.restart_* keys."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from kmixvae.errors import ConfigError
from kmixvae.models.factory import build_model
from kmixvae.models.learning_rate_schedule import PhasedLearningRate
from kmixvae.training.callbacks import LearningRateLogger, OptimizerRestart
from kmixvae.training.optimizers import make_optimizer, prepare_optimizer
from tests.helpers.tiny import tiny_config


def _lr(schedule, step):
    return float(keras.ops.convert_to_numpy(schedule(step)))


def test_phased_learning_rate_values():
    lr = PhasedLearningRate([[3e-3, 1e-4, 10], [1e-3, 1e-4, 4]])
    assert _lr(lr, 0) == pytest.approx(3e-3)
    assert _lr(lr, 5) == pytest.approx(1e-4 + (3e-3 - 1e-4) * 0.5 * (1 + math.cos(math.pi / 2)))
    assert _lr(lr, 10) == pytest.approx(1e-4) and _lr(lr, 50) == pytest.approx(1e-4)
    lr.phase = 1
    assert _lr(lr, 0) == pytest.approx(1e-3) and _lr(lr, 4) == pytest.approx(1e-4)
    constant = PhasedLearningRate([[3e-3, 0.0, 10], [1e-3, 0.0, 4]], cosine=False, phase=1)
    assert _lr(constant, 3) == pytest.approx(1e-3)
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(lr))
    assert again.phases == lr.phases and again.phase == 1


def _config(**training):
    return tiny_config(
        loss={"usage_entropy": {"weight": 0.0}},
        training={"epochs": 3, "learning_rate": 0.01, "lr_schedule": "cosine", **training},
    )


def _compiled(config, steps):
    model = build_model(config, (28, 28, 1))
    model.compile(optimizer=make_optimizer(config, steps))
    prepare_optimizer(model)
    return model


class _MomentProbe(keras.callbacks.Callback):
    """Records, at each epoch start, the step count and the largest Adam moment."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def on_epoch_begin(self, epoch, logs=None):
        opt = self.model.optimizer
        moments = [
            v
            for v in opt.variables
            if v is not opt.iterations and v is not opt._learning_rate.phase_variable
        ]
        largest = max(
            (float(np.abs(keras.ops.convert_to_numpy(v)).max()) for v in moments), default=0.0
        )
        self.seen.append((int(keras.ops.convert_to_numpy(opt.iterations)), largest))


def test_restart_resets_the_optimizer_and_restarts_the_schedule():
    x = np.random.default_rng(0).random((32, 28, 28, 1)).astype("float32")
    config = _config(epochs=4, restart_epoch=2, restart_learning_rate=0.005, lr_final=0.001)
    steps = 4
    model = _compiled(config, steps)
    probe = _MomentProbe()
    history = model.fit(
        x,
        batch_size=8,
        epochs=4,
        verbose=0,
        callbacks=[OptimizerRestart(2), probe, LearningRateLogger()],
    ).history
    # Epoch 2 starts from a fresh optimizer: no steps, zero moments (before: 8 steps).
    assert [s for s, _ in probe.seen] == [0, 4, 0, 4]
    assert probe.seen[1][1] > 0 and probe.seen[2][1] == 0.0 and probe.seen[3][1] > 0
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 2 * steps
    # The learning rate fell over phase 1 (8 steps) to its floor, then restarted at 0.005
    # and fell over phase 2 (8 steps): halfway through it is the cosine's midpoint.
    lrs = history["learning_rate"]
    assert lrs[1] == pytest.approx(0.001, rel=1e-4)
    assert model.optimizer._learning_rate.phase == 1
    assert lrs[2] == pytest.approx(0.003, rel=1e-4)
    assert lrs[3] == pytest.approx(0.001, rel=1e-4)


def _saved_after_restart(path, steps):
    """Trains 2 epochs of `steps` steps with a restart at epoch 1, saves to `path`."""
    x = np.random.default_rng(0).random((8 * steps, 28, 28, 1)).astype("float32")
    model = _compiled(_config(restart_epoch=1), steps)
    model.fit(x, batch_size=8, epochs=2, verbose=0, callbacks=[OptimizerRestart(1)])
    model.save(path)
    return x


def test_resumed_run_keeps_its_restarted_optimizer(tmp_path):
    path = tmp_path / "last.keras"
    x = _saved_after_restart(path, steps=4)
    loaded = keras.models.load_model(path)
    assert loaded.optimizer._learning_rate.phase == 1
    assert int(keras.ops.convert_to_numpy(loaded.optimizer.iterations)) == 4
    probe = _MomentProbe()
    loaded.fit(
        x,
        batch_size=8,
        epochs=3,
        initial_epoch=2,
        verbose=0,
        callbacks=[OptimizerRestart(1), probe],
    )
    # Resumed after the restart: the saved state goes on, nothing is reset again.
    assert probe.seen[0][0] == 4 and probe.seen[0][1] > 0
    assert int(keras.ops.convert_to_numpy(loaded.optimizer.iterations)) == 8


@pytest.mark.parametrize(
    "training, message",
    [
        ({"restart_epoch": 3}, "training.restart_epoch: 3 must be below training.epochs"),
        (
            {"restart_learning_rate": 0.1},
            "training.restart_learning_rate: 0.1 is set, but it is only used when "
            "training.restart_epoch",
        ),
        (
            {"restart_epoch": 1, "restart_learning_rate": 1e-4, "lr_final": 1e-3},
            "training.lr_final: 0.001 exceeds training.restart_learning_rate",
        ),
    ],
)
def test_restart_keys_are_checked(training, message):
    with pytest.raises(ConfigError, match=message):
        _config(**training)


def test_a_fresh_process_loads_a_model_trained_with_a_restart(tmp_path):
    """`kmixvae evaluate` & co. load checkpoints in a new process: the schedule must be registered."""
    import os
    import subprocess
    import sys

    path = tmp_path / "m.keras"
    _saved_after_restart(path, steps=2)
    code = (
        "import sys; from kmixvae.runs import load_model_file; "
        "m = load_model_file(sys.argv[1]); print(type(m.optimizer._learning_rate).__name__)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(path)],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "PhasedLearningRate"
