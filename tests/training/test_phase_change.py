"""The phase change compiles nothing: terms, candidate heads and the learning-rate phase are data.

`configs/film_het.json` changes phase at epoch 10: view consistency stops,
self-labelling starts (both read the same augmented view), the chosen
channel head alone trains and the optimizer restarts. Each is a switch in a
variable (`MixtureVAE.term_switches`, `head_weights`, the schedule's
`learning_rate_phase`), so the training step compiled in the first epoch
serves the whole run. A phase change that draws another view still
compiles once.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from kmixvae.models.mixture_vae import MixtureVAE
from kmixvae.training.fit import fit_run
from tests.helpers.runs import tiny_config, write_patterns

# One phase change at epoch 1 (0-based) of a 3-epoch run, as film_het's at epoch 10.
PHASES = (
    "curriculum.enabled=false",
    "training.epochs=3",
    "data.drop_remainder=true",
    "data.neighbors=4",
    "loss.neighbor.weight=1.0",
    "model.encoder.heads=2",
    "model.encoder.head_selection_epoch=1",
    "loss.self_label.weight=1.0",
    "loss.self_label.start_epoch=1",
    "loss.self_label.threshold=0.0",
    "training.restart_epoch=1",
    "training.lr_schedule=cosine",
)
CONSISTENCY_FIRST_PHASE = ("loss.consistency.weight=1.0", "loss.consistency.stop_epoch=1")


class _Epoch(keras.callbacks.Callback):
    """Keeps the epoch that is running (0-based) in `now`."""

    now = -1

    def on_epoch_begin(self, epoch, logs=None):
        _Epoch.now = epoch


def _traced_epochs(tmp_path, monkeypatch, *sets):
    """The epochs in which the training step was traced, and the run's history."""
    traced = []
    real = MixtureVAE.call

    def recording(self, inputs, training=False):
        if training:  # Python runs here only while a compiled step is traced
            traced.append(_Epoch.now)
        return real(self, inputs, training=training)

    monkeypatch.setattr(MixtureVAE, "call", recording)
    _Epoch.now = -1
    data_dir = write_patterns(tmp_path / "data")
    config = tiny_config(tmp_path, data_dir, *PHASES, *sets)
    result = fit_run(
        config,
        run_dir=str(tmp_path / "run"),
        full_output=False,
        callbacks=[_Epoch()],
        log=lambda message: None,
    )
    history = {key: [row.get(key) for row in result.history] for key in result.history[-1]}
    return sorted(set(traced) - {-1}), history, result.model


def test_the_film_het_phase_change_compiles_nothing(tmp_path, monkeypatch):
    traced, history, model = _traced_epochs(tmp_path, monkeypatch, *CONSISTENCY_FIRST_PHASE)
    assert traced == [0]
    # ... and the phase did change: the terms switched, one head kept, the rate restarted.
    consistency = history["view_agreement"]
    self_label = history["self_label_share"]
    assert consistency[0] > 0 and consistency[1] == 0 and consistency[2] == 0
    assert self_label[0] == 0 and self_label[1] > 0
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(model.head_weights), [1.0, 0.0])
    switches = keras.ops.convert_to_numpy(model.term_switches)
    on = {o.section: bool(switch) for o, switch in zip(model.objectives, switches)}
    assert on == {"usage_entropy": True, "neighbor": True, "self_label": True, "consistency": False}
    rates = history["learning_rate"]
    assert rates[1] > rates[0]  # the second phase starts again from its initial rate
    assert float(keras.ops.convert_to_numpy(model.optimizer._learning_rate.phase_variable)) == 1.0


def test_a_phase_change_that_draws_another_view_compiles_once(tmp_path, monkeypatch):
    # Without view consistency the first phase draws no augmented view of the image;
    # self-labelling adds it at epoch 1, a new batch for the encoder: one more trace.
    traced, history, _ = _traced_epochs(tmp_path, monkeypatch)
    assert traced == [0, 1]
    assert history["self_label_share"][0] == 0
    assert history["self_label_share"][1] > 0


@pytest.mark.parametrize("after_selection", [False, True])
def test_head_weights_train_every_head_then_only_the_kept_one(after_selection):
    from tests.helpers.tiny import tiny_model

    model = tiny_model(
        model={"encoder": {"heads": 3, "head_selection_epoch": 1}},
        loss={"usage_entropy": {"weight": -1.0}, "consistency": {"weight": 1.0}},
    )
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    if after_selection:
        model.start_epoch(1)
    before = [keras.ops.convert_to_numpy(w).copy() for w in model.encoder.trainable_weights]
    x = np.random.default_rng(0).random((16, 28, 28, 1)).astype("float32")
    model.fit(x, batch_size=16, epochs=1, verbose=0)
    after = [keras.ops.convert_to_numpy(w) for w in model.encoder.trainable_weights]
    moved = {
        w.path
        for w, b, a in zip(model.encoder.trainable_weights, before, after)
        if not np.array_equal(b, a)
    }
    extra_heads = {p for p in moved if "channel_logits_1" in p or "channel_logits_2" in p}
    assert bool(extra_heads) != after_selection
