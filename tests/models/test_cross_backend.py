"""A `.keras` file saved under TensorFlow loads under JAX, and vice versa, with the same outputs.

The backend of this process saves one model and loads the other; one subprocess
on the other backend does the opposite, so both directions cost one import.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

HELPER = textwrap.dedent(
    """
    import sys

    import keras
    import numpy as np

    from kmixvae.config import from_dict
    from kmixvae.models.factory import build_model


    def outputs(model, x):
        enc = model.encode(x)
        rec = model.reconstruct(x)
        return {
            "q": enc["q"], "mu": enc["mu"], "var": enc["var"],
            "rec_mean": rec["mean"], "rec_sigma": rec["sigma"], "rec_channel": rec["channel"],
            "mask": keras.ops.convert_to_numpy(model.channel_mask),
        }


    def save(path, npz, seed, conditioning, active):
        cfg = from_dict({
            "seed": seed,
            "model": {
                "num_channels": 3,
                "encoder": {"filters": [8], "dense_units": 16},
                "decoder": {"filters": [8, 8], "embedding_dim": 4,
                            "conditioning": conditioning},
            },
            "loss": {"usage_entropy": {"weight": -1.0}},
        })
        model = build_model(cfg, (12, 10, 1))
        rng = np.random.default_rng(seed)
        # Non-trivial weights everywhere (FiLM starts as the identity otherwise).
        for v in model.trainable_variables:
            v.assign(rng.normal(scale=0.3, size=v.shape).astype("float32"))
        model.set_active_channels(active)
        x = rng.random((5, 12, 10, 1)).astype("float32")
        model.save(path)
        np.savez(npz, x=x, backend=keras.backend.backend(), **outputs(model, x))


    def load(path, npz_in, npz_out):
        model = keras.models.load_model(path)
        x = np.load(npz_in)["x"]
        np.savez(npz_out, backend=keras.backend.backend(),
                 active=np.asarray(model.active_channels), **outputs(model, x))


    if __name__ == "__main__":
        # One process: load the first backend's file, then save a model of its own.
        in_model, in_npz, loaded_npz, out_model, out_npz = sys.argv[1:6]
        load(in_model, in_npz, loaded_npz)
        save(out_model, out_npz, 2, "concat", [0, 1])
    """
)

KEYS = ("q", "mu", "var", "rec_mean", "rec_sigma")


def run_helper(script, backend, *args):
    env = dict(os.environ, KERAS_BACKEND=backend, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run(
        [sys.executable, str(script), *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


def assert_same(saved, loaded, expect_backend):
    assert str(loaded["backend"]) == expect_backend
    np.testing.assert_array_equal(loaded["mask"], saved["mask"])
    for key in KEYS:
        np.testing.assert_allclose(loaded[key], saved[key], atol=1e-4, err_msg=key)
    np.testing.assert_array_equal(loaded["rec_channel"], saved["rec_channel"])


def test_model_file_loads_on_the_other_backend(tmp_path):
    here = keras.backend.backend()
    if here not in ("tensorflow", "jax"):
        pytest.skip(f"cross-backend test runs under tensorflow or jax, not {here}")
    other = "jax" if here == "tensorflow" else "tensorflow"
    script = tmp_path / "helper.py"
    script.write_text(HELPER)
    spec = importlib.util.spec_from_file_location("kmixvae_cross_backend_helper", script)
    helper = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(helper)

    # This backend saves a FiLM model with channel 1 locked.
    here_model, here_npz = tmp_path / f"{here}.keras", tmp_path / f"{here}.npz"
    helper.save(here_model, here_npz, 1, "film", [0, 2])
    # The other backend loads it, then saves its own (concat, channel 2 locked).
    other_model, other_npz = tmp_path / f"{other}.keras", tmp_path / f"{other}.npz"
    loaded_npz = tmp_path / f"{here}_loaded_by_{other}.npz"
    run_helper(script, other, here_model, here_npz, loaded_npz, other_model, other_npz)

    saved = np.load(here_npz)
    loaded = np.load(loaded_npz)
    assert str(saved["backend"]) == here
    np.testing.assert_array_equal(loaded["active"], [0, 2])
    assert np.all(loaded["q"][:, 1] == 0.0)
    assert_same(saved, loaded, other)

    # This backend loads the other's file.
    saved_other = np.load(other_npz)
    assert str(saved_other["backend"]) == other
    model = keras.models.load_model(other_model)
    assert model.active_channels == (0, 1)
    assert model.decoder.conditioning == "concat"
    mine = tmp_path / f"{other}_loaded_by_{here}.npz"
    helper.load(other_model, other_npz, mine)
    assert_same(saved_other, np.load(mine), here)
