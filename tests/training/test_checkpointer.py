"""`Checkpointer`: one model serialisation an epoch; `best.keras` is that epoch's `last.keras`."""

from __future__ import annotations

import json

import keras
import numpy as np

from kmixvae.training import callbacks as cb


def _model():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer="adam", loss="mse")
    return model


def test_best_checkpoint_is_a_copy_of_last_not_a_second_save(tmp_path, monkeypatch):
    saves = []
    real = cb.save_model_atomic

    def counting(model, path, *args, **kwargs):
        saves.append(path.name)
        return real(model, path, *args, **kwargs)

    monkeypatch.setattr(cb, "save_model_atomic", counting)
    model = _model()
    checkpoints = tmp_path / "checkpoints"
    saver = cb.Checkpointer(checkpoints, cb.CurriculumGate(), monitor="val_loss")
    saver.set_model(model)
    last, best = checkpoints / "last.keras", checkpoints / "best.keras"
    for epoch, val_loss in enumerate([3.0, 2.0, 2.5]):
        model.layers[0].kernel.assign(np.full((3, 2), float(epoch), "float32"))
        saver.on_epoch_end(epoch, {"loss": 1.0, "val_loss": val_loss})
        if epoch == 1:  # improved: best is this epoch's last, byte for byte
            assert best.read_bytes() == last.read_bytes()
            best_bytes = best.read_bytes()
    assert saves == ["last.keras"] * 3  # one serialisation an epoch, best included
    assert best.read_bytes() == best_bytes  # epoch 3 did not improve: best kept
    assert json.loads((checkpoints / "last.json").read_text())["best_epoch"] == 2
    kernel = keras.saving.load_model(best, compile=False).layers[0].kernel
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(kernel), np.ones((3, 2)))
    assert not [p for p in checkpoints.iterdir() if ".tmp" in p.name]
