"""Tests of kmixvae.evaluation.generation: the judge and the generation metrics.

The constructed cases use ten classes of synthetic 12x12 images (a bright
block whose place is the class, plus noise) and fake models whose channels
draw, reconstruct and own chosen classes, so the expected scores are known
(both in `tests/helpers/generation.py`).
"""

from __future__ import annotations

import numpy as np
import pytest

from kmixvae.evaluation import generation as gen
from kmixvae.evaluation.generation import (
    generation_metrics,
    judge_fingerprint,
    load_or_train_judge,
    train_judge,
)
from kmixvae.evaluation.metrics import cluster_label_matching, clustering_accuracy
from tests.helpers.generation import IDENTITY, NUM_CLASSES, FakeModel, class_images

SMALL_JUDGE = {"hidden_units": 32, "epochs": 15}


@pytest.fixture(scope="module")
def judge():
    train_classes = np.arange(2000) % NUM_CLASSES
    return train_judge(class_images(train_classes, seed=1), train_classes, seed=0, **SMALL_JUDGE)


@pytest.fixture(scope="module")
def eval_set():
    y = np.random.default_rng(5).integers(0, NUM_CLASSES, size=300)
    return class_images(y, seed=2), y


def test_cluster_label_matching_is_the_accuracy_matching():
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    assign = np.array([7, 7, 5, 5, 5, 3, 3, 3, 9])
    match = cluster_label_matching(labels, assign)
    assert match == {3: 2, 5: 1, 7: 0}  # 9 loses label 2 to 3: unmatched
    hits = sum(match.get(a) == y for a, y in zip(assign, labels))
    assert hits / len(labels) == pytest.approx(clustering_accuracy(labels, assign))


def test_judge_reads_the_classes_and_reports_holdout(judge, eval_set):
    x, y = eval_set
    assert judge.holdout_accuracy > 0.95
    assert judge.accuracy(x, y) > 0.95
    assert judge.train_images == 1800  # 10% held out
    info = judge.describe()
    assert info["holdout_accuracy"] == judge.holdout_accuracy
    assert info["fingerprint"] == judge.fingerprint


def test_channels_that_draw_their_digits_score_high(judge, eval_set):
    x, y = eval_set
    perm = np.random.default_rng(3).permutation(NUM_CLASSES)
    owner = {k: int(perm[k]) for k in range(NUM_CLASSES)}  # channel perm[k] owns class k
    draws = {c: k for k, c in owner.items()}  # and draws it
    m = generation_metrics(FakeModel(owner, draws), judge, x, y, n_per_channel=40, seed=0)
    assert m["sample_consistency"] > 0.95
    assert m["recon_consistency"] > 0.95
    assert m["judge_accuracy"] > 0.95
    assert m["unmatched_channels"] == []
    for ch in m["channels"]:
        assert ch["matched_label"] == draws[ch["channel"]]
        assert ch["judged_label"] == draws[ch["channel"]]
        assert ch["sample_consistency"] > 0.9


def test_shuffled_channels_score_low(judge, eval_set):
    x, y = eval_set
    shuffled = {c: (c + 1) % NUM_CLASSES for c in range(NUM_CLASSES)}  # draws a neighbour's class
    wrong_recon = {k: (k + 3) % NUM_CLASSES for k in range(NUM_CLASSES)}
    m = generation_metrics(
        FakeModel(IDENTITY, shuffled, recon=wrong_recon), judge, x, y, n_per_channel=40, seed=0
    )
    assert m["sample_consistency"] < 0.05
    assert m["recon_consistency"] < 0.05
    assert m["judge_accuracy"] > 0.95  # the judge is fine: the model is not
    assert all(ch["judged_label"] == shuffled[ch["channel"]] for ch in m["channels"])


def test_inactive_channels_are_not_sampled_or_counted(judge, eval_set):
    x, y = eval_set
    # Channels 8 and 9 are locked; their classes fall to channel 0.
    owner = {**IDENTITY, 8: 0, 9: 0}
    draws = {c: c for c in range(8)}
    model = FakeModel(owner, draws, active=range(8))
    m = generation_metrics(model, judge, x, y, n_per_channel=30, seed=0)
    assert sorted(model.sampled) == list(range(8))
    for c in (8, 9):
        assert not m["channels"][c]["active"] and m["channels"][c]["sample_consistency"] is None
    # Channel 0 owns classes 0, 8, 9 but is matched to the one with most images:
    # it draws 0s, so it scores high only if that is 0; the others score ~1.
    match0 = m["channels"][0]["matched_label"]
    expected = np.mean([float(match0 == 0)] + [1.0] * 7)
    assert m["sample_consistency"] == pytest.approx(expected, abs=0.03)


def test_unmatched_active_channel_scores_zero_and_counts(judge, eval_set):
    x, y = eval_set
    owner = {**IDENTITY, 9: 8}  # channel 9 owns no image: no matched label
    m = generation_metrics(FakeModel(owner, IDENTITY), judge, x, y, n_per_channel=30, seed=0)
    assert m["unmatched_channels"] == [9]
    assert m["channels"][9]["matched_label"] is None
    assert m["channels"][9]["sample_consistency"] == 0.0
    assert m["channels"][9]["judged_label"] == 9  # still reported: what it draws
    assert m["sample_consistency"] == pytest.approx(0.9, abs=0.02)
    assert m["sample_consistency_matched"] == pytest.approx(1.0, abs=0.02)


def test_deterministic_given_the_seed(judge, eval_set):
    x, y = eval_set
    half = {c: (c if c % 2 else (c + 2) % NUM_CLASSES) for c in range(NUM_CLASSES)}
    model = FakeModel(IDENTITY, half)
    a = generation_metrics(model, judge, x, y, n_per_channel=20, seed=4)
    b = generation_metrics(model, judge, x, y, n_per_channel=20, seed=4)
    a.pop("elapsed_s"), b.pop("elapsed_s")
    assert a == b
    # Each channel draws with its own seed, different per seed and channel.
    seeds = {gen._channel_seed(s, c) for s in (0, 1) for c in range(NUM_CLASSES)}
    assert len(seeds) == 2 * NUM_CLASSES


def test_judge_training_is_deterministic_and_cached(tmp_path, monkeypatch):
    y = np.arange(400) % NUM_CLASSES
    x = class_images(y, seed=7)
    probe = class_images(np.arange(50) % NUM_CLASSES, seed=8)
    j1 = load_or_train_judge(x, y, seed=0, source="a", cache_dir=tmp_path, **SMALL_JUDGE)
    assert [p.name for p in tmp_path.iterdir()] == [f"judge_{j1.fingerprint}.pkl"]
    j2 = train_judge(x, y, seed=0, **SMALL_JUDGE)
    np.testing.assert_array_equal(
        j1.classifier.predict_proba(probe.reshape(50, -1)),
        j2.classifier.predict_proba(probe.reshape(50, -1)),
    )

    def no_training(*args, **kwargs):
        raise AssertionError("retrained although cached")

    monkeypatch.setattr(gen, "train_judge", no_training)
    j3 = load_or_train_judge(x, y, seed=0, source="b", cache_dir=tmp_path, **SMALL_JUDGE)
    assert j3.source == "b" and j3.fingerprint == j1.fingerprint
    np.testing.assert_array_equal(j3.predict(probe), j1.predict(probe))
    # Other data, seed or settings: another key, so a retrain.
    assert judge_fingerprint(x[1:], y[1:], 0, **SMALL_JUDGE) != j1.fingerprint
    assert judge_fingerprint(x, y, 1, **SMALL_JUDGE) != j1.fingerprint
    assert judge_fingerprint(x, y, 0) != j1.fingerprint
    with pytest.raises(AssertionError, match="retrained"):
        load_or_train_judge(x, y, seed=1, cache_dir=tmp_path, **SMALL_JUDGE)


def test_broken_cache_entry_is_retrained(tmp_path):
    y = np.arange(200) % NUM_CLASSES
    x = class_images(y, seed=7)
    key = judge_fingerprint(x, y, 0, **SMALL_JUDGE)
    (tmp_path / f"judge_{key}.pkl").write_bytes(b"not a pickle")
    j = load_or_train_judge(x, y, seed=0, cache_dir=tmp_path, **SMALL_JUDGE)
    assert j.fingerprint == key
    assert load_or_train_judge(x, y, seed=0, cache_dir=tmp_path, **SMALL_JUDGE).fingerprint == key


def test_bad_inputs_are_rejected(judge, eval_set):
    x, y = eval_set
    with pytest.raises(ValueError, match="unknown setting"):
        train_judge(x, y, hidden=3)
    with pytest.raises(ValueError, match="two labels"):
        train_judge(x[:5], np.zeros(5))
    with pytest.raises(ValueError, match="n_per_channel"):
        generation_metrics(FakeModel(IDENTITY, IDENTITY), judge, x, y, n_per_channel=0)
    with pytest.raises(ValueError, match="labels for"):
        generation_metrics(FakeModel(IDENTITY, IDENTITY), judge, x, y[:-1])
    with pytest.raises(ValueError, match="trained on"):
        judge.predict(np.zeros((2, 28, 28, 1), "float32"))


def test_real_model_is_deterministic():
    """A (tiny, untrained) MixtureVAE goes through the same calls on this backend."""
    from kmixvae.config import from_dict
    from kmixvae.models.factory import build_model

    cfg = from_dict(
        {
            "model": {
                "num_channels": 3,
                "decoder": {"filters": [8, 8]},
                "encoder": {"filters": [8], "dense_units": 16},
            }
        }
    )
    model = build_model(cfg, (28, 28, 1))
    model.set_active_channels([0, 2])
    rng = np.random.default_rng(0)
    y = np.arange(60) % 3
    x = ((rng.random((60, 28, 28, 1)) < 0.2) * 255).astype(np.uint8)
    judge = train_judge(x, y, seed=0, hidden_units=8, epochs=2)
    a = generation_metrics(model, judge, x, y, n_per_channel=8, seed=1)
    b = generation_metrics(model, judge, x, y, n_per_channel=8, seed=1)
    a.pop("elapsed_s"), b.pop("elapsed_s")
    assert a == b
    assert a["channels"][1]["sample_consistency"] is None
    assert 0.0 <= a["recon_mse"] <= 1.0


@pytest.mark.integration
def test_judge_on_real_mnist(mnist10k_dir):
    from kmixvae.config import from_dict
    from kmixvae.data import load_split

    data = from_dict({"data": {"source": "idx", "dir": str(mnist10k_dir)}}).data
    x_train, y_train = load_split(data, "test[:3000]")
    x_eval, y_eval = load_split(data, "test[8000:]")
    judge = train_judge(x_train, y_train, seed=0, epochs=10)
    assert judge.holdout_accuracy > 0.85
    assert judge.accuracy(x_eval, y_eval) > 0.9


def test_end_of_run_generation_skips_what_it_cannot_judge(judge, eval_set):
    from kmixvae.data.pipeline import DataBundle

    x, y = eval_set
    model = FakeModel(IDENTITY, IDENTITY)
    y_train = np.arange(400) % NUM_CLASSES
    x_train = class_images(y_train, seed=11)
    no_val = DataBundle(train_images=x_train, train_labels=y_train)
    assert "no validation" in gen.end_of_run_generation(model, no_val, "train")["skipped"]
    same = DataBundle(x_train, y_train, val_images=x_train, val_labels=y_train)
    assert "judge's training images" in gen.end_of_run_generation(model, same, "t")["skipped"]
    one_label = DataBundle(x_train, np.zeros_like(y_train), val_images=x, val_labels=y)
    assert "two labels" in gen.end_of_run_generation(model, one_label, "t")["skipped"]
    ok = DataBundle(x_train, y_train, val_images=x, val_labels=y)
    m = gen.end_of_run_generation(model, ok, "train", n_per_channel=20)
    assert m["judge"]["source"] == "train" and m["sample_consistency"] > 0.9
