"""The tf.data pipelines run without tf.data's autotuner (it cost whole epochs on 2 cores)."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow", reason="the tf_data pipeline needs TensorFlow")

from kmixvae.data.pipeline import make_dataset, make_neighbor_dataset  # noqa: E402


def _images(n=16):
    return (np.random.default_rng(0).random((n, 28, 28, 1)) * 255).astype("uint8")


def test_image_batches_run_without_the_autotuner_and_still_read_every_image():
    x = _images()
    ds = make_dataset(x, None, 4, shuffle=True, seed=0)
    assert ds.options().autotune.enabled is False
    seen = np.concatenate([b.numpy() for b in ds])
    assert seen.shape == (16, 28, 28, 1)
    np.testing.assert_allclose(
        np.sort(seen.reshape(16, -1).sum(1)), np.sort(x.reshape(16, -1).sum(1) / 255.0), rtol=1e-5
    )


def test_neighbour_pairs_run_without_the_autotuner_and_keep_their_own_options():
    x = _images()
    nbr = np.tile(np.arange(16)[:, None], (1, 3))
    ds = make_neighbor_dataset(x, nbr, 4, seed=0, repeat=True)
    options = ds.options()
    assert options.autotune.enabled is False
    assert options.experimental_optimization.inject_prefetch is False
    batch = next(iter(ds))
    np.testing.assert_array_equal(batch["x"].numpy(), batch["neighbor"].numpy())
