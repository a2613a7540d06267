"""Tests of kmixvae.evaluation: clustering metrics, channel report, evaluate_model."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from kmixvae.config import from_dict
from kmixvae.evaluation.evaluate import evaluate_model, format_report, write_metrics_json
from kmixvae.evaluation.metrics import (
    ari,
    channel_report,
    clustering_accuracy,
    nmi,
    purity,
)
from kmixvae.models.factory import build_model
from tests.helpers.tiny import TINY_MODEL
from tests.helpers.tiny import tiny_model as shared_tiny_model


def tiny_model(**overrides):
    return shared_tiny_model(model=overrides)


# iwae_samples = num_channels below: the IWAE decodes then have the shape of the
# model(x) decodes, which spares JAX's eager mode from compiling new shapes.
def synthetic(n=64, seed=0):
    rng = np.random.default_rng(seed)
    images = ((rng.random((n, 28, 28, 1)) < 0.2) * 255).astype(np.uint8)
    return images, rng.integers(0, 10, size=n)


# ---------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------


def test_perfect_and_permuted_clustering():
    y = np.array([0, 0, 1, 1, 2, 2, 2])
    assert clustering_accuracy(y, y) == 1.0
    perm = np.array([7, 7, 3, 3, 5, 5, 5])
    assert clustering_accuracy(y, perm) == 1.0
    assert nmi(y, perm) == pytest.approx(1.0)
    assert ari(y, perm) == pytest.approx(1.0)
    assert purity(y, perm) == 1.0


def test_constant_and_partial_clustering():
    y = np.array([0, 0, 0, 1, 1, 2, 3, 3])
    assert clustering_accuracy(y, np.zeros_like(y)) == pytest.approx(3 / 8)
    assert nmi(y, np.zeros_like(y)) == pytest.approx(0.0)
    assert ari(y, np.zeros_like(y)) == pytest.approx(0.0)
    # One error: image 2 (label 0) put with the label-1 cluster.
    a = np.array([4, 4, 9, 9, 9, 1, 2, 2])
    assert clustering_accuracy(y, a) == pytest.approx(7 / 8)


def test_more_clusters_than_labels():
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    a = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    # One-to-one: only 2 of the 4 clusters can be matched -> half the images.
    assert clustering_accuracy(y, a) == pytest.approx(0.5)
    # Many-to-one: every cluster is pure.
    assert purity(y, a) == 1.0
    with pytest.raises(ValueError):
        clustering_accuracy(y, a[:-1])


def test_channel_report_counts_specialised_and_garbage():
    # 100 images, 5 channels: ch0 pure (40), ch1 90% pure (30), ch2 mixed (29),
    # ch3 pure but rare (1 image = 1% < 2%), ch4 unused and locked.
    labels = np.array([0] * 40 + [1] * 27 + [2] * 3 + [0, 1, 2] * 9 + [3, 3] + [5])
    assign = np.array([0] * 40 + [1] * 30 + [2] * 29 + [3])
    q = np.full((100, 5), 0.0)
    q[np.arange(100), assign] = 0.9
    q[:, 4] = 0.1
    rep = channel_report(labels, assign, q, 5, active_channels=[0, 1, 2, 3])
    chans = rep["channels"]
    assert [c["count"] for c in chans] == [40, 30, 29, 1, 0]
    assert chans[0]["purity"] == 1.0 and chans[0]["majority_label"] == 0
    assert chans[1]["purity"] == pytest.approx(0.9) and chans[1]["majority_label"] == 1
    assert chans[0]["confidence"] == pytest.approx(0.9)
    assert chans[4]["usage"] == 0.0 and chans[4]["purity"] is None
    assert rep["specialised_count"] == 2
    assert rep["specialised_channels"] == [0, 1]
    assert rep["garbage_channels"] == [2, 3]  # 4 is locked, so not garbage
    # Stricter purity: channel 1 (0.9) drops out; looser usage: channel 3 joins.
    strict = channel_report(labels, assign, q.max(1), 5, purity_min=0.95, usage_min=0.01)
    assert strict["specialised_channels"] == [0, 3]
    assert strict["garbage_channels"] == [1, 2, 4]


# ---------------------------------------------------------------------------
# evaluate_model
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def evaluated():
    model = tiny_model()
    images, labels = synthetic()
    return model, evaluate_model(model, images, labels, batch_size=64, iwae_samples=3)


def test_evaluate_model_keys_and_values(evaluated):
    model, m = evaluated
    for key in (
        "accuracy",
        "purity",
        "nmi",
        "ari",
        "nelbo",
        "recon",
        "kl_z",
        "kl_c",
        "iwae_log_px",
        "recon_mse",
        "usage_entropy",
        "elbo_log_px",
    ):
        assert math.isfinite(m[key]), key
    assert m["num_images"] == 64 and m["num_channels"] == 3
    assert 0.0 <= m["accuracy"] <= 1.0
    assert m["nelbo"] == pytest.approx(m["recon"] + m["kl_z"] + m["kl_c"], rel=1e-5)
    assert m["kl_z"] >= 0 and m["kl_c"] >= -1e-6
    assert m["likelihood_scale"] == model.decoder.head.likelihood
    assert m["bits_per_dim"] is None  # heteroscedastic Gaussian: a density
    assert len(m["channels"]) == 3
    assert sum(c["count"] for c in m["channels"]) == 64
    assert sum(c["soft_usage"] for c in m["channels"]) == pytest.approx(1.0, abs=1e-5)
    assert 0.0 <= m["recon_mse"] <= 1.0


def test_iwae_bound_not_below_elbo(evaluated):
    _, m = evaluated
    tol = 0.005 * abs(m["nelbo"]) + 1.0  # Monte Carlo noise of both estimates
    assert m["iwae_log_px"] >= -m["nelbo"] - tol


def test_locked_channels_get_no_usage():
    model = tiny_model()
    model.set_active_channels([0, 1])
    images, labels = synthetic(32, seed=1)
    m = evaluate_model(model, images, labels, batch_size=32, iwae_samples=4)
    locked = m["channels"][2]
    assert not locked["active"]
    assert locked["count"] == 0 and locked["usage"] == 0.0 and locked["soft_usage"] == 0.0
    assert 2 not in m["garbage_channels"]
    assert m["active_channels"] == [0, 1]
    assert math.isfinite(m["iwae_log_px"])


def test_bernoulli_reports_bits_per_dim():
    model = tiny_model(decoder={"filters": [8, 8], "head": "bernoulli"})
    images, labels = synthetic(16, seed=2)
    m = evaluate_model(model, images, labels, batch_size=16, iwae_samples=3)
    assert "discrete" in m["likelihood_scale"].lower()
    assert m["bits_per_dim"] == pytest.approx(-m["iwae_log_px"] / (784 * math.log(2)))
    assert m["bits_per_dim"] > 0


def test_format_report_and_json(evaluated, tmp_path):
    _, m = evaluated
    text = format_report(m)
    assert "IWAE" in text and "accuracy" in text and m["likelihood_scale"] in text
    path = write_metrics_json(m, tmp_path / "sub" / "metrics.json")
    loaded = json.loads(path.read_text())
    assert loaded["accuracy"] == m["accuracy"]
    assert loaded["channels"][0]["channel"] == 0
    assert [p.name for p in path.parent.iterdir()] == ["metrics.json"]


@pytest.mark.integration
def test_evaluate_real_mnist(mnist10k_dir):
    from kmixvae.data import load_split

    config = from_dict({"data": {"source": "idx", "dir": str(mnist10k_dir)}, "model": TINY_MODEL})
    images, labels = load_split(config.data, "test[:500]")
    model = build_model(config, images.shape[1:])
    m = evaluate_model(model, images, labels, batch_size=250, iwae_samples=3)
    assert m["num_images"] == 500
    assert set(np.unique(labels)) == set(range(10))
    assert sum(c["count"] for c in m["channels"]) == 500
    assert math.isfinite(m["nelbo"]) and math.isfinite(m["iwae_log_px"])
    # An untrained model: at best chance-level clustering, but the numbers are sane.
    assert 0.0 < m["accuracy"] <= 0.5
