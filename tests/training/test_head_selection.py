"""Candidate channel heads: trained together, one kept by its stability under augmentation."""

from __future__ import annotations

import json
import re
import warnings

import keras
import numpy as np
import pytest

from kmixvae.config import from_dict
from kmixvae.errors import ConfigError
from kmixvae.evaluation.metrics import clustering_accuracy
from kmixvae.objectives import ViewAugmentation
from kmixvae.training.fit import UNUSED_HEADS_WARNING
from kmixvae.training.head_selection import (
    HeadSelection,
    augmentation_stability,
    matching_order,
)
from tests.helpers.runs import fit_smoke, write_patterns
from tests.helpers.tiny import tiny_config_dict, tiny_model

SELF_LABEL = {"self_label": {"weight": 1.0, "threshold": 0.0}}


def _bars(n=64, size=16, seed=0):
    """Vertical or horizontal bars (the kind) anywhere across the image (the place)."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, size, size, 1), "float32")
    kind = np.arange(n) % 2
    for i in range(n):
        at = rng.integers(3, size - 4)
        if kind[i]:
            x[i, 4:-4, at : at + 2] = 1.0
        else:
            x[i, at : at + 2, 4:-4] = 1.0
    return x, kind


class _TwoHeads:
    """A stand-in model with two heads: one cuts by the bar's kind, one by where it lies."""

    augmentation = ViewAugmentation(rotation=0.0, shift=0.2)
    num_channels = 2

    def head_channels(self, x):
        x = np.asarray(x)[..., 0]
        cols, rows = x.sum(axis=1), x.sum(axis=2)
        kind = (cols.max(axis=1) > rows.max(axis=1)).astype("int64")
        mass = x.sum(axis=(1, 2)) + 1e-8
        centre_x = (cols * np.arange(x.shape[2])).sum(axis=1) / mass
        centre_y = (rows * np.arange(x.shape[1])).sum(axis=1) / mass
        place = (centre_x + centre_y > x.shape[1] - 1).astype("int64")
        return np.stack([place, kind])

    def augmented_head_channels(self, x, seed):
        views = keras.ops.convert_to_numpy(self.augmentation(x, keras.random.SeedGenerator(seed)))
        return self.head_channels(x), self.head_channels(views)


def test_the_rule_prefers_the_head_that_cuts_by_what_augmentation_keeps():
    x, kind = _bars()
    stability, channels = augmentation_stability(_TwoHeads(), x, seed=0)
    assert channels.shape == (2, len(x))
    assert np.array_equal(channels[1], kind)
    assert stability[1] == 1.0
    assert stability[0] < 0.9, stability


def test_the_rule_scores_a_fixed_sample_of_a_large_set():
    x, _ = _bars(n=40)
    stability, channels = augmentation_stability(_TwoHeads(), x, seed=0, sample=16)
    assert channels.shape == (2, 16)
    again, same = augmentation_stability(_TwoHeads(), x, seed=0, sample=16)
    assert np.array_equal(channels, same) and np.array_equal(stability, again)


def test_the_views_are_drawn_in_the_compiled_pass_as_the_augmentation_draws_them():
    # The compiled pass (augmentation and heads in one function) must score
    # the views the eager augmentation draws from the same seed, batch by batch.
    model = _heads_model(3, 2)
    x, _ = _bars(n=32)
    plain, moved = model.augmented_head_channels(x, seed=7, batch_size=16)
    generator = keras.random.SeedGenerator(7)
    views = np.concatenate(
        [keras.ops.convert_to_numpy(model.augmentation(x[i : i + 16], generator)) for i in (0, 16)]
    )
    assert not np.allclose(views, x)
    assert np.array_equal(plain, model.head_channels(x))
    eager = model.head_channels(views)
    assert plain.shape == moved.shape == (3, 32)
    assert (moved == eager).mean() >= 0.97, (moved == eager).mean()
    # The same seed, the same views.
    assert model.augmented_head_channels(x, seed=7, batch_size=16)[1].tolist() == moved.tolist()


def test_matching_order_renumbers_a_permuted_partition():
    rng = np.random.default_rng(0)
    reference = rng.integers(0, 4, 200)
    perm = np.array([2, 0, 3, 1])  # the other head calls channel c perm[c]
    other = perm[reference]
    other[:10] = rng.integers(0, 4, 10)  # a few disagreements
    order = matching_order(reference, other, 4)
    assert order == perm.tolist()
    assert (np.asarray(order)[reference] == other).mean() > 0.9


def _heads_model(heads, selection_epoch):
    """The tiny model for 16x16 bars with `heads` candidate heads, trained by self-labelling."""
    return tiny_model(
        image_shape=(16, 16, 1),
        model={"encoder": {"heads": heads, "head_selection_epoch": selection_epoch}},
        loss=SELF_LABEL,
    )


def _kernels(model):
    enc = model.encoder
    heads = [enc.channel_logits, *enc.candidate_logits]
    return [keras.ops.convert_to_numpy(h.kernel).copy() for h in heads]


def test_every_head_trains_until_the_selection_then_only_the_first():
    model = _heads_model(3, 1)
    # Plain SGD: with momentum the other heads would drift on zero gradients (JAX).
    model.compile(optimizer=keras.optimizers.SGD(0.5))
    x, _ = _bars(n=32)
    before = _kernels(model)
    model.fit(x, batch_size=16, epochs=1, verbose=0, shuffle=False)
    after = _kernels(model)
    assert all(not np.allclose(b, a) for b, a in zip(before, after))
    model.start_epoch(1)
    assert not model.candidate_heads_on
    model.fit(x, batch_size=16, epochs=1, verbose=0, shuffle=False)
    last = _kernels(model)
    assert not np.allclose(last[0], after[0])
    assert np.allclose(last[1], after[1]) and np.allclose(last[2], after[2])


def test_select_head_copies_the_chosen_head_renumbered():
    model = _heads_model(3, 1)
    x, _ = _bars(n=8)
    channels = model.head_channels(x)
    order = [2, 0, 1]
    model.select_head(2, order)
    assert not model.candidate_heads_on
    kernels = _kernels(model)
    assert np.allclose(kernels[0], kernels[2][:, order])
    # Channel c of the first head is channel order[c] of head 2.
    expected = np.argsort(order)[channels[2]]
    assert np.array_equal(model.head_channels(x)[0], expected)
    assert np.array_equal(model.encode(x)["channel"], expected)


def test_the_callback_keeps_the_most_stable_head_at_its_epoch():
    model = _heads_model(3, 2)
    x, _ = _bars(n=32)
    stability, _ = augmentation_stability(model, x, seed=5)
    channels = model.head_channels(x)
    best = int(np.argmax(stability))
    labels = np.arange(32) % 3
    callback = HeadSelection(x, seed=5, log=lambda m: None, val_images=x, val_labels=labels)
    callback.set_model(model)
    callback.on_epoch_begin(1)
    assert callback.events == [] and model.candidate_heads_on
    callback.on_epoch_begin(2)
    assert callback.events[0]["head"] == best
    assert callback.events[0]["epoch"] == 3
    # The held-out accuracy of every head as it was trained, recorded beside the choice.
    expected = [clustering_accuracy(labels, c) for c in channels]
    assert callback.events[0]["val_accuracy"] == pytest.approx(expected, abs=1e-4)
    assert not model.candidate_heads_on
    assert np.allclose(
        sorted(_kernels(model)[0].sum(axis=0)), sorted(_kernels(model)[best].sum(axis=0))
    )


def test_the_selection_survives_saving(tmp_path):
    model = _heads_model(2, 3)
    model.select_head(1)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.encoder.heads == 2 and loaded.head_selection_epoch == 3
    x, _ = _bars(n=8)
    assert np.array_equal(loaded.encode(x)["channel"], model.encode(x)["channel"])


@pytest.mark.parametrize(
    ("encoder", "loss", "message"),
    [
        ({"heads": 2, "head_selection_epoch": 5}, SELF_LABEL, "must be below training.epochs"),
        ({"heads": 2}, {}, "need a clustering objective that reads an augmented view"),
        ({"head_selection_epoch": 2}, SELF_LABEL, "model.encoder.head_selection_epoch"),
        ({"heads": 0}, SELF_LABEL, "model.encoder.heads"),
    ],
)
def test_head_keys_are_checked(encoder, loss, message):
    config = tiny_config_dict({"encoder": encoder}, loss=loss, training={"epochs": 5})
    with pytest.raises(ConfigError, match=message):
        from_dict(config)


def test_fit_records_which_head_it_kept_and_does_not_warn_about_the_rest(tmp_path):
    """Also: TensorFlow's optimizer warned that the unused candidate heads get no gradient."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run, out, _ = fit_smoke(
            tmp_path,
            write_patterns(tmp_path / "data"),
            "training.epochs=2",
            "curriculum.enabled=false",
            "model.encoder.heads=3",
            "model.encoder.head_selection_epoch=1",
            "loss.self_label.weight=1",
        )
    selection = json.loads((run / "metrics.json").read_text())["head_selection"]
    assert selection["epoch"] == 2
    assert len(selection["stability"]) == 3
    assert selection["head"] == int(np.argmax(selection["stability"]))
    assert len(selection["val_accuracy"]) == 3
    assert "channel heads: kept head" in out
    assert not [w for w in caught if "Gradients do not exist" in str(w.message)]


def test_only_the_unused_heads_warning_is_hidden():
    def message(paths):
        return f"Gradients do not exist for variables {paths} when minimizing the loss."

    heads = [
        "mixture_vae/encoder/channel_logits_2/bias",
        "mixture_vae/encoder/channel_logits_1/kernel",
    ]
    assert re.match(UNUSED_HEADS_WARNING, message(heads))
    assert not re.match(
        UNUSED_HEADS_WARNING, message(["mixture_vae/encoder/channel_logits/kernel"])
    )
    assert not re.match(UNUSED_HEADS_WARNING, message([*heads, "mixture_vae/decoder/dense/kernel"]))
