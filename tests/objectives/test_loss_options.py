"""The clustering-design options: neighbour pairs, detached ELBO, sub-batch ELBO,
delayed decoding, self-labelling, and the objectives as parts."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import ops

from kmixvae.config import from_dict
from kmixvae.data.neighbors import pixel_neighbors
from kmixvae.data.pipeline import make_neighbor_dataset
from kmixvae.errors import ConfigError
from kmixvae.objectives.self_labelling import self_label_loss
from tests.helpers.tiny import tiny_model

# The shared tiny model with a batch-normalised encoder (as in configs/film_het.json).
BATCH_NORM = {"encoder": {"batch_norm": True, "batch_norm_momentum": 0.9}}


def _images(n=48, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.random((3, 28, 28, 1)) > 0.6
    idx = np.arange(n) % 3
    x = base[idx].astype("float32")
    x = np.clip(x + 0.1 * rng.standard_normal(x.shape), 0, 1).astype("float32")
    return x, idx


def _model(**loss):
    model = tiny_model(model=BATCH_NORM, loss={"usage_entropy": {"weight": 0.0}, **loss})
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    return model


def _snapshot(model):
    return {
        "logits": np.array(model.encoder.channel_logits.kernel.numpy()),
        "trunk": np.array(model.encoder.convs[0].kernel.numpy()),
        "mu": np.array(model.encoder.mu_head.kernel.numpy()),
        "decoder": np.array(model.decoder.project.kernel.numpy()),
    }


def test_pixel_neighbors_match_brute_force():
    x, _ = _images(30)
    nbr = pixel_neighbors(x, 4, block=7)
    f = x.reshape(30, -1) - x.reshape(30, -1).mean(1, keepdims=True)
    f /= np.linalg.norm(f, axis=1, keepdims=True)
    sim = f @ f.T
    np.fill_diagonal(sim, -np.inf)
    for i in range(30):
        expected = np.sort(sim[i])[::-1][:4]
        np.testing.assert_allclose(sim[i, nbr[i]], expected, rtol=1e-5)
    assert not np.any(nbr == np.arange(30)[:, None])
    with pytest.raises(ValueError, match="k: 30"):
        pixel_neighbors(x, 30)


def test_neighbor_dataset_pairs_each_image_with_one_of_its_neighbours():
    x, _ = _images(20)
    u8 = (x * 255).astype("uint8")
    nbr = pixel_neighbors(u8, 3)
    ds = make_neighbor_dataset(u8, nbr, 20, seed=1)
    batch = next(iter(ds))
    xs, ns = batch["x"].numpy(), batch["neighbor"].numpy()
    assert xs.shape == ns.shape == (20, 28, 28, 1) and xs.max() <= 1.0
    flat = (u8.reshape(20, -1) / 255.0).astype("float32")
    for xi, ni in zip(xs.reshape(20, -1), ns.reshape(20, -1)):
        i = int(np.argmin(np.abs(flat - xi).sum(1)))
        j = int(np.argmin(np.abs(flat - ni).sum(1)))
        assert j in nbr[i]


def test_detached_elbo_trains_only_the_channel_vaes():
    """elbo.assignment_gradient=false: the ELBO moves decoder and latent heads, never q(c|x) or the trunk."""
    x, _ = _images()
    model = _model(elbo={"assignment_gradient": False})
    before = _snapshot(model)
    model.fit(x, batch_size=16, epochs=1, verbose=0, shuffle=False)
    after = _snapshot(model)
    np.testing.assert_array_equal(before["logits"], after["logits"])
    np.testing.assert_array_equal(before["trunk"], after["trunk"])
    assert not np.array_equal(before["mu"], after["mu"])
    assert not np.array_equal(before["decoder"], after["decoder"])


def test_exact_elbo_trains_the_channel_posterior_too():
    x, _ = _images()
    model = _model()
    before = _snapshot(model)
    model.fit(x, batch_size=16, epochs=1, verbose=0, shuffle=False)
    assert not np.array_equal(before["logits"], _snapshot(model)["logits"])


def test_decoding_off_leaves_the_decoder_untouched_and_zeroes_the_reconstruction():
    x, _ = _images()
    model = _model(elbo={"start_epoch": 1})
    model.start_epoch(0)
    before = _snapshot(model)
    history = model.fit(x, batch_size=16, epochs=1, verbose=0, shuffle=False).history
    np.testing.assert_array_equal(before["decoder"], _snapshot(model)["decoder"])
    assert history["recon"][0] == 0.0
    model.start_epoch(1)
    history = model.fit(x, batch_size=16, epochs=1, verbose=0, shuffle=False).history
    assert history["recon"][0] != 0.0


def test_elbo_subbatch_decodes_only_the_first_images():
    x, _ = _images(16)
    model = _model(elbo={"subbatch": 4})
    terms = model(ops.convert_to_tensor(x), training=True)
    assert tuple(terms["nll"].shape) == (4, 3) and tuple(terms["q"].shape) == (16, 3)
    terms = model(ops.convert_to_tensor(x), training=False)
    assert tuple(terms["nll"].shape) == (16, 3)


def test_neighbour_term_trains_from_pairs_and_is_logged():
    x, _ = _images()
    nbr = pixel_neighbors(x, 3)
    model = tiny_model(
        model=BATCH_NORM,
        data={"neighbors": 3},
        loss={
            "usage_entropy": {"weight": -1.0},
            "neighbor": {"weight": 1.0},
            "elbo": {"assignment_gradient": False},
        },
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    ds = make_neighbor_dataset(x, nbr, 16, seed=0)
    history = model.fit(ds, epochs=3, verbose=0).history
    assert "neighbor_agreement" in history
    assert history["neighbor_agreement"][-1] > history["neighbor_agreement"][0]


def test_self_label_loss_against_numpy():
    q = np.array(
        [[0.95, 0.03, 0.02], [0.5, 0.4, 0.1], [0.01, 0.97, 0.02], [0.92, 0.04, 0.04]], "float32"
    )
    q_aug = np.array(
        [[0.7, 0.2, 0.1], [0.3, 0.3, 0.4], [0.2, 0.6, 0.2], [0.5, 0.25, 0.25]], "float32"
    )
    loss, share = self_label_loss(ops.convert_to_tensor(q), ops.convert_to_tensor(q_aug), 0.9)
    # Confident: rows 0, 3 (class 0, count 2) and 2 (class 1, count 1).
    w = np.array([0.5, 0.0, 1.0, 0.5])
    w = w / w.sum() * 3
    ce = -np.log(np.array([0.7, 1.0, 0.6, 0.5]))
    expected = (w * ce)[[0, 2, 3]].sum() / 3
    assert float(ops.convert_to_numpy(loss)) == pytest.approx(expected, rel=1e-5)
    assert float(ops.convert_to_numpy(share)) == pytest.approx(0.75)


def test_self_labelling_starts_at_its_start_epoch():
    x, _ = _images()
    model = _model(self_label={"weight": 1.0, "threshold": 0.0, "start_epoch": 1})
    history = model.fit(x, batch_size=16, epochs=1, verbose=0).history
    assert history["self_label_share"][0] == 0.0
    model.start_epoch(1)
    history = model.fit(x, batch_size=16, epochs=1, verbose=0).history
    assert history["self_label_share"][0] == pytest.approx(1.0)


@pytest.mark.parametrize(
    "loss, data, message",
    [
        ({"neighbor": {"weight": 1.0}}, {}, "loss.neighbor.weight: 1.0 needs neighbour pairs"),
        ({}, {"neighbors": 5}, "data.neighbors: 5 pairs images for loss.neighbor.weight"),
    ],
)
def test_neighbour_options_must_come_together(loss, data, message):
    with pytest.raises(ConfigError, match=message):
        from_dict({"loss": loss, "data": data})


def test_the_options_survive_saving(tmp_path):
    x, _ = _images(8)
    model = _model(
        self_label={"weight": 0.5, "start_epoch": 3, "stop_epoch": 5},
        elbo={"assignment_gradient": False, "subbatch": 4},
        augment={"rotation": 5.0},
    )
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    info = loaded.describe()
    assert info["objectives"] == {
        "self_label": {"weight": 0.5, "start_epoch": 3, "stop_epoch": 5, "threshold": 0.9}
    }
    assert [loaded.objectives[0].is_on_at(e) for e in range(6)] == [0, 0, 0, 1, 1, 0]
    assert info["elbo"]["assignment_gradient"] is False and info["augmentation"]["rotation"] == 5.0
    assert loaded.elbo.subbatch == 4 and loaded.encoder.batch_norm_momentum == 0.9
    np.testing.assert_allclose(loaded.encode(x)["q"], model.encode(x)["q"], atol=1e-6)


def test_epoch_switches_turn_their_term_on_at_the_given_epoch():
    from kmixvae.training.callbacks import TermSchedule

    x, _ = _images()
    model = _model(
        elbo={"start_epoch": 1}, self_label={"weight": 1.0, "threshold": 0.0, "start_epoch": 2}
    )
    history = model.fit(x, batch_size=16, epochs=3, verbose=0, callbacks=[TermSchedule()]).history
    assert history["recon"][0] == 0.0 and history["recon"][1] != 0.0
    assert history["self_label_share"][:2] == [0.0, 0.0] and history["self_label_share"][2] > 0.0


def test_a_term_with_a_stop_epoch_trains_only_in_its_window():
    from kmixvae.training.callbacks import TermSchedule

    x, _ = _images()
    model = _model(self_label={"weight": 1.0, "threshold": 0.0, "start_epoch": 1, "stop_epoch": 2})
    history = model.fit(x, batch_size=16, epochs=3, verbose=0, callbacks=[TermSchedule()]).history
    share = history["self_label_share"]
    assert share[0] == 0.0 and share[1] > 0.0 and share[2] == 0.0
    # Its augmented view is no longer drawn once no term that is on reads it.
    assert not model.objectives[0].active


@pytest.mark.parametrize(
    "term, message",
    [
        ({"start_epoch": 3, "stop_epoch": 3}, "loss.self_label.stop_epoch: 3 must be above"),
        (
            {"stop_epoch": 15},
            r"loss.self_label.stop_epoch: 15 must be below training.epochs \(15\)",
        ),
        ({"stop_epoch": 0}, "loss.self_label.stop_epoch"),
    ],
)
def test_a_stop_epoch_outside_the_run_or_before_the_start_is_rejected(term, message):
    with pytest.raises(ConfigError, match=message):
        from_dict({"loss": {"self_label": {"weight": 1.0, **term}}, "training": {"epochs": 15}})
