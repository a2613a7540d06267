"""Tests of kmixvae.models.export: inference copies carry the weights, not the optimizer."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from kmixvae.config import from_dict
from kmixvae.models.export import inference_copy
from kmixvae.models.factory import build_model
from kmixvae.runs import load_model_file, save_for_inference

TINY = {
    "model": {
        "num_channels": 3,
        "decoder": {"filters": [8, 8]},
        "encoder": {"filters": [8], "dense_units": 16, "batch_norm": True},
    }
}


@pytest.fixture(scope="module")
def trained():
    model = build_model(from_dict(TINY), (28, 28, 1))
    model.compile(optimizer="adam")
    x = np.random.default_rng(0).random((32, 28, 28, 1)).astype("float32")
    model.fit(x, epochs=1, batch_size=16, verbose=0)
    model.set_active_channels([0, 2])
    return model, x


def test_copy_encodes_like_the_original(trained):
    model, x = trained
    copy = inference_copy(model)
    assert getattr(copy, "optimizer", None) is None
    assert copy.active_channels == (0, 2)
    np.testing.assert_allclose(copy.encode(x)["q"], model.encode(x)["q"], atol=1e-6)
    np.testing.assert_allclose(copy.reconstruct(x)["mean"], model.reconstruct(x)["mean"], atol=1e-6)


def test_saved_file_has_no_optimizer_and_is_smaller(trained, tmp_path):
    model, x = trained
    full, small = tmp_path / "full.keras", tmp_path / "small.keras"
    model.save(full)
    save_for_inference(model, small)
    assert small.stat().st_size < 0.6 * full.stat().st_size
    loaded = load_model_file(small)
    assert getattr(loaded, "optimizer", None) is None
    assert loaded.active_channels == (0, 2)
    np.testing.assert_allclose(loaded.encode(x)["mu"], model.encode(x)["mu"], atol=1e-6)
    # Batch-norm statistics travel too (they are non-trainable weights).
    pairs = [
        (w, v)
        for w, v in zip(model.non_trainable_weights, loaded.non_trainable_weights)
        if "moving" in w.name
    ]
    assert pairs
    for w, twin in pairs:
        assert twin.name == w.name
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(twin), keras.ops.convert_to_numpy(w), atol=0
        )


def test_save_needs_a_keras_suffix(trained, tmp_path):
    with pytest.raises(ValueError, match=".keras"):
        save_for_inference(trained[0], tmp_path / "m.h5")
