"""apps/contrastive_neighbours.py: SimCLR's NT-Xent loss on constructed embeddings."""

from __future__ import annotations

import numpy as np
from keras import ops
from scipy.special import log_softmax

from kmixvae.objectives.views import ViewAugmentation
from tests.helpers.apps import load_app


def _loss(model, z):
    x = np.zeros((len(z) // 2, 28, 28, 1), "float32")
    return float(ops.convert_to_numpy(model.compute_loss(x=x, y_pred=ops.convert_to_tensor(z))))


def test_nt_xent_is_low_when_each_view_finds_its_twin():
    app = load_app("contrastive_neighbours")
    model = app.ContrastiveTrunk(ViewAugmentation(0.0, 0.0), flip=False, tau=0.1, seed=0)
    rng = np.random.default_rng(0)
    z = rng.standard_normal((16, 32)).astype("float32")
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    twins = np.concatenate([z, z])  # view i and view i + n are the same point
    strangers = np.concatenate([z, z[rng.permutation(16)]])
    assert _loss(model, twins) < 0.5 * _loss(model, strangers)
    # Each row's target is its twin: the loss is the cross-entropy of 2n rows.
    sim = twins @ twins.T / 0.1 - 1e9 * np.eye(32)
    target = np.concatenate([np.arange(16) + 16, np.arange(16)])
    log_p = log_softmax(sim, axis=1)
    assert abs(_loss(model, twins) - float(-log_p[np.arange(32), target].mean())) < 1e-4


def test_the_views_are_unit_vectors_of_both_augmented_copies():
    app = load_app("contrastive_neighbours")
    model = app.ContrastiveTrunk(ViewAugmentation(10.0, 0.1), flip=True, tau=0.5, seed=0)
    x = np.random.default_rng(1).random((6, 28, 28, 1)).astype("float32")
    z = ops.convert_to_numpy(model(x, training=True))
    assert z.shape == (12, 128)
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-5)
