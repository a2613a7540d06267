"""Channel curriculum: unlocking, locked channels untouched, plateau/fixed schedules,
split initialisation, and early stopping gated on the last stage.

Runs on the backend in KERAS_BACKEND (tensorflow or jax).
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from kmixvae import config as config_lib
from kmixvae.models.factory import build_model
from kmixvae.training.callbacks import CurriculumGate, GatedEarlyStopping
from kmixvae.training.curriculum import ChannelCurriculum

IMAGE_SHAPE = (16, 16, 1)


def tiny_config(**curriculum) -> config_lib.Config:
    return config_lib.from_dict(
        {
            "seed": 0,
            "model": {
                "num_channels": 3,
                "latent": {"dim": 2},
                "encoder": {"filters": [4, 8], "dense_units": 16},
                "decoder": {"embedding_dim": 4, "filters": [4, 4], "conditioning": "film"},
            },
            "loss": {"usage_entropy": {"weight": -1.0}},
            "curriculum": {"enabled": True, "start_channels": 1, **curriculum},
        }
    )


def tiny_model(**curriculum):
    keras.utils.set_random_seed(0)
    return build_model(tiny_config(**curriculum), IMAGE_SHAPE)


def synthetic_images(n=48, seed=0) -> np.ndarray:
    """Three simple patterns (vertical bar, horizontal bar, square) plus noise, in [0, 1]."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n,) + IMAGE_SHAPE, "float32")
    for i in range(n):
        kind = i % 3
        if kind == 0:
            x[i, 2:14, 6:10] = 1.0
        elif kind == 1:
            x[i, 6:10, 2:14] = 1.0
        else:
            x[i, 4:12, 4:12] = 0.8
    return np.clip(x + 0.05 * rng.random(x.shape, dtype="float32"), 0.0, 1.0)


def to_np(variable) -> np.ndarray:
    return np.array(keras.ops.convert_to_numpy(variable.value))


class Snapshot(keras.callbacks.Callback):
    """Records, per epoch, the active channels and some channel-2 weights at begin/end.

    Must come after the curriculum in the callback list (so `begin` sees the
    epoch's mask). On JAX the variables are synced at both points.
    """

    def __init__(self):
        super().__init__()
        self.begin, self.end, self.active = [], [], []

    def _weights(self):
        enc = self.model.encoder
        d = self.model.latent_dim
        return {
            "logit_kernel": to_np(enc.channel_logits.kernel).copy(),
            "logit_bias": to_np(enc.channel_logits.bias).copy(),
            "mu_kernel": to_np(enc.mu_head.kernel).copy(),
            "embedding": to_np(self.model.decoder.embedding.embeddings).copy(),
            "d": d,
        }

    def on_epoch_begin(self, epoch, logs=None):
        self.active.append(tuple(self.model.active_channels))
        self.begin.append(self._weights())

    def on_epoch_end(self, epoch, logs=None):
        self.end.append(self._weights())


@pytest.fixture(scope="module")
def curriculum_fit(tmp_path_factory):
    """A 3-epoch fit with one more channel each epoch (1 -> 2 -> 3)."""
    model = tiny_model()
    assert model.active_channels == (0,)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    curriculum = ChannelCurriculum(max_channels=3, unlock_every=1, verbose=False)
    snap = Snapshot()
    history = model.fit(
        synthetic_images(),
        batch_size=16,
        epochs=3,
        shuffle=False,
        verbose=0,
        callbacks=[curriculum, snap],
    )
    path = tmp_path_factory.mktemp("curriculum") / "model.keras"
    model.save(path)
    return model, curriculum, snap, history.history, path


def test_history_active_channels_one_two_three(curriculum_fit):
    _, curriculum, snap, hist, _ = curriculum_fit
    assert hist["active_channels"] == [1.0, 2.0, 3.0]
    assert snap.active == [(0,), (0, 1), (0, 1, 2)]
    assert [(e["epoch"], e["channel"]) for e in curriculum.events] == [(1, 1), (2, 2)]
    assert hist["unlocked_channel"] == [-1.0, 1.0, 2.0]
    assert curriculum.complete


def test_locked_channels_have_exactly_zero_usage(curriculum_fit):
    _, _, _, hist, _ = curriculum_fit
    assert hist["usage_1"][0] == 0.0
    assert hist["usage_2"][0] == 0.0
    assert hist["usage_2"][1] == 0.0
    # Epoch 1 alone: usage of channel 0 is everything.
    assert hist["usage_0"][0] == pytest.approx(1.0, abs=1e-6)


def test_new_mask_reaches_the_train_step(curriculum_fit):
    """Fails if the unlocked mask stays outside the compiled step (the JAX pitfall):
    the usage of channel 1 (computed inside the train step) must become positive
    in the epoch it is unlocked, and the step's own mask count must be 2 then 3."""
    _, _, _, hist, _ = curriculum_fit
    assert hist["usage_1"][1] > 0.0
    assert hist["usage_2"][2] > 0.0
    for epoch, k in enumerate((1, 2, 3)):
        total = sum(hist[f"usage_{c}"][epoch] for c in range(3))
        assert total == pytest.approx(1.0, abs=1e-4)
        assert hist["active_channels"][epoch] == k


def test_locked_channel_weights_unchanged_while_locked(curriculum_fit):
    _, _, snap, _, _ = curriculum_fit
    start, end_locked = snap.begin[0], snap.end[1]  # channel 2 locked in epochs 1-2
    d = start["d"]
    np.testing.assert_array_equal(end_locked["logit_kernel"][:, 2], start["logit_kernel"][:, 2])
    assert end_locked["logit_bias"][2] == start["logit_bias"][2]
    np.testing.assert_array_equal(
        end_locked["mu_kernel"][:, 2 * d : 3 * d], start["mu_kernel"][:, 2 * d : 3 * d]
    )
    np.testing.assert_array_equal(end_locked["embedding"][2], start["embedding"][2])
    # Channel 1 is locked only in epoch 1, then trains.
    np.testing.assert_array_equal(snap.end[0]["logit_kernel"][:, 1], start["logit_kernel"][:, 1])
    assert not np.array_equal(snap.end[1]["logit_kernel"][:, 1], start["logit_kernel"][:, 1])
    # The active channel 0 trained from the first epoch (the check is not vacuous).
    assert not np.array_equal(snap.end[0]["mu_kernel"][:, :d], start["mu_kernel"][:, :d])
    assert not np.array_equal(snap.end[0]["embedding"][0], start["embedding"][0])
    # Once unlocked, channel 2 trains too.
    assert not np.array_equal(snap.end[2]["logit_kernel"][:, 2], start["logit_kernel"][:, 2])


def test_saved_model_restores_the_mask(tmp_path, curriculum_fit):
    from kmixvae.runs import load_model_file

    _, _, _, _, path = curriculum_fit
    restored = load_model_file(path)
    assert restored.active_channels == (0, 1, 2)

    # A partial, non-prefix mask survives a save/load round trip too.
    model = tiny_model()
    model.set_active_channels([0, 2])
    model.save(tmp_path / "partial.keras")
    loaded = load_model_file(tmp_path / "partial.keras")
    assert loaded.active_channels == (0, 2)
    np.testing.assert_array_equal(to_np(loaded.channel_mask), [1.0, 0.0, 1.0])
    q = loaded.encode(synthetic_images(6))["q"]
    assert np.all(q[:, 1] == 0.0)
    np.testing.assert_allclose(q.sum(axis=1), 1.0, atol=1e-5)


def test_resumed_fixed_schedule_continues_the_stage(curriculum_fit):
    """A run resumed at epoch 2 (0-based) with a model saved at 2 channels gets 3."""
    model = tiny_model()
    model.set_active_channels([0, 1])
    curriculum = ChannelCurriculum(max_channels=3, unlock_every=1, verbose=False)
    curriculum.set_model(model)
    curriculum.on_epoch_begin(2)
    assert model.active_channels == (0, 1, 2)
    assert [e["channel"] for e in curriculum.events] == [2]


# ---------------------------------------------------------------------- schedules


def drive_plateau(curriculum, model, values):
    """Feeds `val_loss` values epoch by epoch; returns the active count at each epoch."""
    counts = []
    for epoch, value in enumerate(values):
        curriculum.on_epoch_begin(epoch)
        counts.append(len(model.active_channels))
        curriculum.on_epoch_end(epoch, {"val_loss": value, "loss": value})
    return counts


def test_plateau_unlocks_only_after_patience_flat_epochs():
    model = tiny_model()
    cur = ChannelCurriculum(max_channels=3, schedule="plateau", patience=2, verbose=False)
    cur.set_model(model)
    # improve, improve, flat, flat -> unlock at epoch 4; values reset at the new stage.
    counts = drive_plateau(cur, model, [10.0, 9.0, 9.5, 9.2, 50.0, 49.0, 49.0, 49.5, 1.0])
    assert counts == [1, 1, 1, 1, 2, 2, 2, 2, 3]
    assert [(e["epoch"], e["channel"]) for e in cur.events] == [(4, 1), (8, 2)]
    assert "plateau" in cur.events[0]["reason"]


def test_plateau_does_not_unlock_while_improving_or_after_one_flat_epoch():
    model = tiny_model()
    cur = ChannelCurriculum(max_channels=3, schedule="plateau", patience=2, verbose=False)
    cur.set_model(model)
    # Flat epochs separated by an improvement never reach patience=2.
    counts = drive_plateau(cur, model, [10.0, 10.5, 9.0, 9.1, 8.0, 8.2, 7.0, 7.0 - 1e-3])
    assert counts == [1] * 8
    assert cur.events == []


def test_plateau_min_delta_counts_small_gains_as_flat():
    model = tiny_model()
    cur = ChannelCurriculum(
        max_channels=2, schedule="plateau", patience=1, min_delta=0.5, verbose=False
    )
    cur.set_model(model)
    counts = drive_plateau(cur, model, [10.0, 9.8, 1.0, 0.0])
    assert counts == [1, 1, 2, 2]  # 9.8 is not 0.5 better than 10.0: unlock at epoch 2
    assert cur.complete


def test_plateau_missing_monitor_is_named():
    model = tiny_model()
    cur = ChannelCurriculum(max_channels=3, schedule="plateau", monitor="val_nelbo")
    cur.set_model(model)
    cur.on_epoch_begin(0)
    with pytest.raises(ValueError, match="val_nelbo"):
        cur.on_epoch_end(0, {"val_loss": 1.0})


def test_plateau_state_round_trip_keeps_a_pending_unlock():
    model = tiny_model()
    cur = ChannelCurriculum(max_channels=3, schedule="plateau", patience=1, verbose=False)
    cur.set_model(model)
    drive_plateau(cur, model, [5.0, 6.0])  # pending unlock after epoch 1
    state = cur.get_state()
    assert state["pending"] is True
    again = ChannelCurriculum(max_channels=3, schedule="plateau", patience=1, verbose=False)
    again.set_state(state)
    again.set_model(model)
    again.on_epoch_begin(2)
    assert model.active_channels == (0, 1)


@pytest.mark.parametrize(
    "kwargs,expected",
    [
        ({"unlock_epochs": [2, 4]}, [1, 1, 2, 2, 3, 3]),
        ({"unlock_epochs": [1, 5]}, [1, 2, 2, 2, 2, 3]),
        ({"unlock_every": 2}, [1, 1, 2, 2, 3, 3]),
        ({"unlock_every": 1, "start_channels": 2}, [2, 3, 3, 3, 3, 3]),
    ],
)
def test_fixed_schedule(kwargs, expected):
    start = kwargs.get("start_channels", 1)
    model = tiny_model()
    model.set_active_channels(list(range(start)))
    cur = ChannelCurriculum(max_channels=3, verbose=False, **kwargs)
    cur.set_model(model)
    counts = []
    for epoch in range(6):
        assert cur.target_count(epoch) == expected[epoch]
        cur.on_epoch_begin(epoch)
        counts.append(len(model.active_channels))
        cur.on_epoch_end(epoch, {"loss": 1.0})
    assert counts == expected


def test_fixed_schedule_respects_max_channels_below_num_channels():
    model = tiny_model()
    cur = ChannelCurriculum(max_channels=2, unlock_every=1, verbose=False)
    cur.set_model(model)
    for epoch in range(4):
        cur.on_epoch_begin(epoch)
    assert model.active_channels == (0, 1)
    assert cur.complete


def test_on_train_begin_rejects_more_active_than_max():
    model = tiny_model()
    model.set_active_channels([0, 1, 2])
    cur = ChannelCurriculum(max_channels=2)
    cur.set_model(model)
    with pytest.raises(ValueError, match="max_channels=2"):
        cur.on_train_begin()


# ---------------------------------------------------------------------- split init


def test_split_init_copies_the_busiest_channel_with_noise():
    model = tiny_model()
    model.set_active_channels([0, 1])
    enc = model.encoder
    d = model.latent_dim
    before = {
        "kernel": to_np(enc.channel_logits.kernel).copy(),
        "bias": to_np(enc.channel_logits.bias).copy(),
        "mu": to_np(enc.mu_head.kernel).copy(),
        "emb": to_np(model.decoder.embedding.embeddings).copy(),
    }
    cur = ChannelCurriculum(
        max_channels=3, start_channels=2, unlock_init="split", split_noise=0.05, verbose=False
    )
    cur.set_model(model)
    cur.on_epoch_begin(0)
    assert model.active_channels == (0, 1)
    # Channel 1 is the busiest: the new channel 2 must copy it.
    cur.on_epoch_end(0, {"usage_0": 0.2, "usage_1": 0.8, "usage_2": 0.0, "loss": 1.0})
    cur.on_epoch_begin(1)
    assert model.active_channels == (0, 1, 2)
    assert cur.events[-1]["channel"] == 2 and cur.events[-1]["split_from"] == 1

    kernel = to_np(enc.channel_logits.kernel)
    src, new = kernel[:, 1], kernel[:, 2]
    tol = 0.05 * (np.std(src) + 1e-3) * 6
    assert not np.array_equal(new, src)  # noisy
    assert np.max(np.abs(new - src)) <= tol  # but close
    assert not np.allclose(new, before["kernel"][:, 2], atol=tol)  # it moved
    np.testing.assert_array_equal(kernel[:, :2], before["kernel"][:, :2])  # sources untouched
    assert to_np(enc.channel_logits.bias)[2] == to_np(enc.channel_logits.bias)[1]

    emb = to_np(model.decoder.embedding.embeddings)
    assert not np.array_equal(emb[2], emb[1])
    assert np.max(np.abs(emb[2] - emb[1])) <= 0.05 * (np.std(emb[1]) + 1e-3) * 6
    assert not np.allclose(emb[2], before["emb"][2], atol=1e-3)

    mu = to_np(enc.mu_head.kernel)
    np.testing.assert_allclose(
        mu[:, 2 * d : 3 * d], mu[:, d : 2 * d], atol=0.05 * (np.std(mu[:, d : 2 * d]) + 1e-3) * 6
    )
    assert not np.array_equal(mu[:, 2 * d : 3 * d], mu[:, d : 2 * d])

    means = to_np(model.prior.prior_means)
    np.testing.assert_array_equal(means[2], means[1])


def test_split_init_prefers_validation_usage_and_uses_the_busiest():
    model = tiny_model()
    model.set_active_channels([0, 1])
    cur = ChannelCurriculum(max_channels=3, start_channels=2, unlock_init="split", verbose=False)
    cur.set_model(model)
    logs = {"val_usage_0": 0.9, "val_usage_1": 0.1, "val_usage_2": 0.0}
    logs.update({"usage_0": 0.1, "usage_1": 0.9, "usage_2": 0.0})
    cur.on_epoch_end(0, logs)
    cur.on_epoch_begin(1)
    assert cur.events[-1]["split_from"] == 0


def test_fresh_init_leaves_the_new_channel_untouched():
    model = tiny_model()
    kernel_before = to_np(model.encoder.channel_logits.kernel).copy()
    cur = ChannelCurriculum(max_channels=3, unlock_every=1, verbose=False)
    cur.set_model(model)
    cur.on_epoch_begin(1)
    assert model.active_channels == (0, 1)
    np.testing.assert_array_equal(to_np(model.encoder.channel_logits.kernel), kernel_before)
    assert "split_from" not in cur.events[-1]


# ---------------------------------------------------------------------- early stopping


def drive_early_stopping(es, model, values, start_epoch=0):
    stopped = []
    for i, value in enumerate(values):
        model.stop_training = False
        es.on_epoch_end(start_epoch + i, {"val_loss": value})
        stopped.append(bool(model.stop_training))
    return stopped


def test_early_stopping_waits_for_the_last_stage():
    model = tiny_model()
    cur = ChannelCurriculum(max_channels=3, unlock_every=1, verbose=False)
    cur.set_model(model)
    es = GatedEarlyStopping(CurriculumGate(cur), monitor="val_loss", patience=1)
    es.set_model(model)
    es.on_train_begin()
    # Incomplete curriculum: worsening losses never stop training.
    assert not cur.complete
    assert drive_early_stopping(es, model, [1.0, 2.0, 3.0, 4.0, 5.0]) == [False] * 5
    model.set_active_channels([0, 1])
    assert drive_early_stopping(es, model, [6.0, 7.0], start_epoch=5) == [False] * 2
    # Complete: the first epoch sets the reference, one worse epoch (patience 1) stops.
    model.set_active_channels([0, 1, 2])
    assert cur.complete
    assert drive_early_stopping(es, model, [8.0, 9.0], start_epoch=7) == [False, True]


def test_early_stopping_after_completion_keeps_going_while_improving():
    model = tiny_model()
    model.set_active_channels([0, 1, 2])
    cur = ChannelCurriculum(max_channels=3, verbose=False)
    cur.set_model(model)
    es = GatedEarlyStopping(CurriculumGate(cur), monitor="val_loss", patience=2)
    es.set_model(model)
    es.on_train_begin()
    stopped = drive_early_stopping(es, model, [10.0, 9.0, 8.0, 7.0, 7.5, 7.2, 7.1])
    assert stopped == [False, False, False, False, False, True, True]


def test_early_stopping_without_curriculum_is_plain():
    model = tiny_model()
    es = GatedEarlyStopping(CurriculumGate(None), monitor="val_loss", patience=1)
    es.set_model(model)
    es.on_train_begin()
    assert drive_early_stopping(es, model, [3.0, 2.0, 2.5]) == [False, False, True]
