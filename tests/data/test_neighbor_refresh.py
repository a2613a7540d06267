"""Neighbour pairs re-computed in the encoder's feature space (data.neighbor_refresh_epoch)."""

from __future__ import annotations

import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from kmixvae.config import from_dict
from kmixvae.data.neighbors import (
    agreed_neighbors,
    cosine_neighbors,
    input_neighbors,
    mutual_neighbors,
    pixel_neighbors,
)
from kmixvae.data.pipeline import make_neighbor_dataset
from kmixvae.errors import ConfigError
from kmixvae.training.callbacks import NeighborRefresh
from tests.helpers.tiny import tiny_model


def _images(n=24, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random((n, 28, 28, 1)) * 255).astype("uint8")


def test_cosine_neighbors_of_vectors_match_brute_force():
    v = np.random.default_rng(0).standard_normal((30, 5)).astype("float32")
    nbr = cosine_neighbors(v, 4)
    c = v - v.mean(1, keepdims=True)
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    sim = c @ c.T
    np.fill_diagonal(sim, -np.inf)
    np.testing.assert_array_equal(nbr, np.argsort(-sim, axis=1)[:, :4])
    x = _images(30)
    np.testing.assert_array_equal(pixel_neighbors(x, 4), cosine_neighbors(x.reshape(30, -1), 4))


def test_neighbour_dataset_follows_its_variable():
    n = 12
    # Image i is the constant i: a pair's neighbour image tells its index.
    x = np.repeat(np.arange(n, dtype="uint8"), 28 * 28).reshape(n, 28, 28, 1)
    table = tf.Variable(((np.arange(n) + 1) % n)[:, None], dtype=tf.int64)
    ds = make_neighbor_dataset(x, table, n, seed=0)

    def pairs():
        batch = next(iter(ds))
        i = np.rint(batch["x"].numpy()[:, 0, 0, 0] * 255).astype(int)
        j = np.rint(batch["neighbor"].numpy()[:, 0, 0, 0] * 255).astype(int)
        return i, j

    i, j = pairs()
    np.testing.assert_array_equal(j, (i + 1) % n)
    table.assign(((np.arange(n) + 5) % n)[:, None])
    i, j = pairs()
    np.testing.assert_array_equal(j, (i + 5) % n)


def test_a_refresh_pairs_every_batch_taken_after_it_however_far_the_pipeline_read_ahead():
    # One endless iterator, as `fit` reads it: the batches it has prefetched
    # when the table changes must not keep the old pairs.
    n = 64
    x = np.repeat(np.arange(n, dtype="uint8"), 28 * 28).reshape(n, 28, 28, 1)
    table = tf.Variable(((np.arange(n) + 1) % n)[:, None], dtype=tf.int64)
    batches = iter(make_neighbor_dataset(x, table, 4, seed=0, repeat=True))

    def take():
        batch = next(batches)
        i = np.rint(batch["x"].numpy()[:, 0, 0, 0] * 255).astype(int)
        return i, np.rint(batch["neighbor"].numpy()[:, 0, 0, 0] * 255).astype(int)

    i, j = take()
    np.testing.assert_array_equal(j, (i + 1) % n)
    time.sleep(0.5)  # the prefetch fills its buffer meanwhile
    table.assign(((np.arange(n) + 5) % n)[:, None])
    for _ in range(20):
        i, j = take()
        np.testing.assert_array_equal(j, (i + 5) % n)


def _model():
    model = tiny_model(loss={"usage_entropy": {"weight": 0.0}})
    model.compile(optimizer=keras.optimizers.SGD(0.01))
    return model


def test_refresh_uses_the_encoder_features_and_saves_them(tmp_path):
    x = _images()
    model = _model()
    table = tf.Variable(pixel_neighbors(x, 3), dtype=tf.int64)
    path = tmp_path / "neighbors_refreshed.npy"
    messages = []
    refresh = NeighborRefresh(1, x, table, path, log=messages.append)
    seen = []

    class Probe(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            seen.append(table.numpy().copy())
            if epoch == 1:
                features = self.model.features(x.astype("float32") / 255.0)
                seen.append(cosine_neighbors(features, 3))

    model.fit(
        x.astype("float32") / 255.0, batch_size=8, epochs=2, verbose=0, callbacks=[refresh, Probe()]
    )
    pixel, refreshed, expected = seen
    np.testing.assert_array_equal(pixel, pixel_neighbors(x, 3))
    np.testing.assert_array_equal(refreshed, expected)
    assert not np.array_equal(refreshed, pixel)
    np.testing.assert_array_equal(np.load(path), refreshed)
    assert len(messages) == 1 and "refreshed at epoch 2" in messages[0]

    # A resumed run loads the saved graph rather than recomputing it.
    other = tf.Variable(pixel_neighbors(x, 3), dtype=tf.int64)
    again = NeighborRefresh(1, x, other, path, log=messages.append)
    again.set_model(model)
    model.features = None  # recomputing would fail
    again.on_epoch_begin(3)
    np.testing.assert_array_equal(other.numpy(), refreshed)
    assert "loaded from" in messages[-1]


@pytest.mark.parametrize(
    "data, loss, message",
    [
        (
            {"neighbor_refresh_epoch": 2},
            {},
            "data.neighbor_refresh_epoch: 2 is set, but it is only used when data.neighbors",
        ),
        (
            {"neighbors": 5, "neighbor_refresh_epoch": 9},
            {"neighbor": {"weight": 1.0}},
            "data.neighbor_refresh_epoch: 9 must be below training.epochs",
        ),
    ],
)
def test_refresh_keys_are_checked(data, loss, message):
    with pytest.raises(ConfigError, match=message):
        from_dict({"data": data, "loss": loss, "training": {"epochs": 9}})


def test_mutual_neighbors_keep_only_pairs_that_point_both_ways():
    # 0<->1 and 2<->3 are mutual; 0->2, 1->3, 2->1 and 3->0 point one way only.
    out = mutual_neighbors(np.array([[1, 2], [0, 3], [3, 1], [2, 0]]))
    np.testing.assert_array_equal(out, [[1, 1], [0, 0], [3, 3], [2, 2]])
    # Each image lists the next two of a 4-cycle: only i <-> i+2 is mutual.
    out = mutual_neighbors(np.array([[1, 2], [2, 3], [3, 0], [0, 1]]))
    np.testing.assert_array_equal(out, [[2, 2], [3, 3], [0, 0], [1, 1]])
    # A 5-cycle listing the next two has no mutual pair: each keeps its nearest.
    nbr = np.array([[(i + 1) % 5, (i + 2) % 5] for i in range(5)])
    np.testing.assert_array_equal(mutual_neighbors(nbr), nbr[:, [0, 0]])


def test_mutual_neighbors_repeat_to_fill_the_row():
    nbr = np.array([[1, 2, 3], [0, 3, 4], [0, 3, 4], [0, 1, 2], [0, 2, 3]])
    out = mutual_neighbors(nbr)
    np.testing.assert_array_equal(out[0], [1, 2, 3])  # 1, 2 and 3 all list 0
    np.testing.assert_array_equal(out[1], [0, 3, 0])  # 4 does not list 1: 0, 3 repeated


def test_agreed_neighbors_keep_the_pairs_both_graphs_list():
    features = np.array([[1, 2, 3], [0, 2, 3], [3, 0, 1], [2, 1, 0]])
    pixels = np.array([[3, 2, 1], [3, 2, 0], [1, 3, 0], [1, 0, 2]])
    # Row 0 keeps all three (pixels list 1, 2, 3 in another order), row 1 keeps 0, 2 and 3;
    # row 2 keeps 3, 0 and 1; row 3 keeps 2, 1, 0: nothing is dropped.
    np.testing.assert_array_equal(agreed_neighbors(features, pixels), features)
    pixels = np.array([[2, 3, 3], [3, 3, 3], [0, 0, 0], [0, 0, 0]])
    out = agreed_neighbors(features, pixels)
    np.testing.assert_array_equal(out[0], [2, 3, 2])  # 1 is not a pixel neighbour of 0
    np.testing.assert_array_equal(out[1], [3, 3, 3])  # only 3 agreed: repeated
    np.testing.assert_array_equal(out[2], [0, 0, 0])
    np.testing.assert_array_equal(out[3], [0, 0, 0])
    # A row that agrees on nothing keeps its nearest feature neighbour.
    out = agreed_neighbors(features, np.array([[0, 0, 0]] * 4))
    np.testing.assert_array_equal(out[0], [1, 1, 1])
    np.testing.assert_array_equal(out[1:, 0], [0, 0, 0])


def test_agreed_neighbors_can_also_require_mutual_pairs():
    features = np.array([[1, 2], [0, 3], [3, 1], [2, 0]])  # mutual: 0<->1, 2<->3
    pixels = np.array([[1, 2], [0, 2], [3, 0], [1, 2]])
    np.testing.assert_array_equal(
        agreed_neighbors(features, pixels), [[1, 2], [0, 0], [3, 3], [2, 2]]
    )
    out = agreed_neighbors(features, pixels, mutual=True)
    np.testing.assert_array_equal(out, [[1, 1], [0, 0], [3, 3], [2, 2]])
    with pytest.raises(ValueError, match="graphs of 4 and 3 images"):
        agreed_neighbors(features, pixels[:3])


def _agreement_refresh(tmp_path, **kwargs):
    """Runs an agreement refresh of 40 random images at epoch 0.

    Returns the images, the refreshed table, the features' graph and the log.
    """
    x = _images(40)
    model = _model()
    table = tf.Variable(pixel_neighbors(x, 4), dtype=tf.int64)
    messages = []
    refresh = NeighborRefresh(
        0, x, table, tmp_path / "nbr.npy", graph="agreement", log=messages.append, **kwargs
    )
    refresh.set_model(model)
    refresh.on_epoch_begin(0)
    features = cosine_neighbors(model.features(x.astype("float32") / 255.0), 4)
    return x, table.numpy(), features, messages


def test_agreement_refresh_keeps_only_pairs_the_pixel_graph_lists(tmp_path):
    x, table, features, messages = _agreement_refresh(tmp_path)
    expected = agreed_neighbors(features, pixel_neighbors(x, 4))
    np.testing.assert_array_equal(table, expected)
    pixels = pixel_neighbors(x, 4)
    agreed = [(table[i] == pixels[i][:, None]).any(0).all() for i in range(40)]
    fallback = [(table[i] == features[i, 0]).all() for i in range(40)]
    assert all(a or f for a, f in zip(agreed, fallback))
    assert sum(agreed) > 0 and not np.array_equal(expected, features)
    assert "agreed with pixels" in messages[0]
    with pytest.raises(ValueError, match="'cosine' is not one of"):
        NeighborRefresh(0, x, tf.Variable(pixels), tmp_path / "n.npy", graph="cosine")


def test_agreement_refresh_uses_the_configured_input_space(tmp_path):
    x, table, features, messages = _agreement_refresh(tmp_path, space="hog")
    hog = input_neighbors(x, 4, space="hog")
    assert not np.array_equal(hog, pixel_neighbors(x, 4))
    np.testing.assert_array_equal(table, agreed_neighbors(features, hog))
    assert "agreed with hog" in messages[0]


def _refresh_config(**data):
    return from_dict(
        {
            "data": {"neighbors": 5, **data},
            "loss": {"neighbor": {"weight": 1.0}},
            "training": {"epochs": 4},
        }
    )


def test_refresh_graph_key_is_checked():
    config = _refresh_config(neighbor_refresh_epoch=2, neighbor_refresh_graph="agreement")
    assert config.data.neighbor_refresh_graph == "agreement"
    with pytest.raises(ConfigError, match="data.neighbor_refresh_graph: 'agreement' is set"):
        _refresh_config(neighbor_refresh_graph="agreement")  # no refresh: rejected by name
    with pytest.raises(ConfigError, match="data.neighbor_refresh_graph"):
        _refresh_config(neighbor_refresh_epoch=2, neighbor_refresh_graph="x")


def test_neighbor_space_key_is_checked():
    assert _refresh_config().data.neighbor_space == "pixels"
    assert _refresh_config(neighbor_space="hog").data.neighbor_space == "hog"
    with pytest.raises(ConfigError, match="data.neighbor_space: 'edges'"):
        _refresh_config(neighbor_space="edges")
    with pytest.raises(ConfigError, match="data.neighbor_space: 'hog' is set"):
        from_dict({"data": {"neighbors": 0, "neighbor_space": "hog"}})  # no pairs: by name
