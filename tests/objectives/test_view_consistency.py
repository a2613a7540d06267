"""The view-consistency objective (`loss.consistency`): an image and its augmented view agree."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import ops

from kmixvae.config import from_dict
from kmixvae.errors import ConfigError
from kmixvae.objectives import ViewAugmentation, ViewConsistency
from kmixvae.objectives.neighbor_agreement import agreement_loss
from tests.helpers.tiny import tiny_model

SHIFT = 0.15


def _squares(n=96, size=16, side=4, seed=0):
    """Images of one bright square at a random place: nothing but the place tells them apart."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, size, size, 1), "float32")
    for i, (r, c) in enumerate(rng.integers(0, size - side, (n, 2))):
        x[i, r : r + side, c : c + side] = 1.0
    return x


def _stability(model, x, seed=7):
    """Share of images whose argmax q(c|x) survives a shift of up to `SHIFT` of the size."""
    moved = ViewAugmentation(rotation=0.0, shift=SHIFT)(
        ops.convert_to_tensor(x), keras.random.SeedGenerator(seed)
    )
    before = np.argmax(model.encode(x)["q"], -1)
    after = np.argmax(model.encode(ops.convert_to_numpy(moved))["q"], -1)
    return float(np.mean(before == after))


def _trained(consistency, x):
    keras.utils.set_random_seed(0)
    loss = {"usage_entropy": {"weight": -1.0}, "elbo": {"assignment_gradient": False}}
    if consistency:
        loss["consistency"] = {"weight": consistency}
        loss["augment"] = {"rotation": 0.0, "shift": SHIFT}
    model = tiny_model(image_shape=x.shape[1:], model={"encoder": {"batch_norm": True}}, loss=loss)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    history = model.fit(x, batch_size=32, epochs=12, verbose=0).history
    return model, history


def test_agreement_loss_against_numpy():
    q = np.array([[0.9, 0.1, 0.0], [0.2, 0.3, 0.5]], "float32")
    q_other = np.array([[0.6, 0.4, 0.0], [0.1, 0.1, 0.8]], "float32")
    loss, agreement = agreement_loss(ops.convert_to_tensor(q), ops.convert_to_tensor(q_other))
    dots = np.array([0.9 * 0.6 + 0.1 * 0.4, 0.02 + 0.03 + 0.4])
    assert float(ops.convert_to_numpy(loss)) == pytest.approx(np.mean(-np.log(dots)), rel=1e-5)
    assert float(ops.convert_to_numpy(agreement)) == pytest.approx(dots.mean(), rel=1e-5)


def test_the_term_reads_the_augmented_view_of_the_same_images():
    q = ops.convert_to_tensor(np.array([[1.0, 0.0], [0.0, 1.0]], "float32"))
    swapped = ops.convert_to_tensor(np.array([[0.0, 1.0], [1.0, 0.0]], "float32"))
    term = ViewConsistency(weight=1.0)
    assert ViewConsistency.views == ("augmented",)
    same, metrics = term.term({"x": q, "augmented": q})
    moved, _ = term.term({"x": q, "augmented": swapped})
    assert float(ops.convert_to_numpy(same)) == pytest.approx(0.0, abs=1e-5)
    assert float(ops.convert_to_numpy(moved)) > 10.0
    assert float(ops.convert_to_numpy(metrics["view_agreement"])) == pytest.approx(1.0)


def test_the_term_makes_the_channel_survive_the_augmentation():
    x = _squares()
    with_term, history = _trained(1.0, x)
    without, _ = _trained(0.0, x)
    assert history["view_agreement"][-1] > history["view_agreement"][0]
    assert _stability(with_term, x) >= _stability(without, x) + 0.1


def test_the_section_is_off_by_default_and_checked_by_name():
    assert from_dict({}).loss.consistency.weight == 0.0
    with pytest.raises(ConfigError, match="loss.consistency.weight"):
        from_dict({"loss": {"consistency": {"weight": -1.0}}})
