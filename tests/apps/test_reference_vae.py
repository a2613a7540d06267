"""apps/reference_vae.py: the keras-io reference VAEs of issue 14, on tiny synthetic data."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kmixvae.evaluation.generation import train_judge
from tests.helpers.apps import load_app
from tests.helpers.runs import write_patterns


@pytest.fixture(scope="module")
def app():
    return load_app("reference_vae")


def patterns(n, seed):
    """Three 28x28 patterns (labels 0, 1, 2) plus noise, floats in [0, 1]."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = rng.uniform(0, 0.1, (n, 28, 28, 1)).astype("float32")
    x[y == 0, 4:24, 12:16] = 1.0
    x[y == 1, 12:16, 4:24] = 1.0
    x[y == 2, 6:22, 6:22] = 0.8
    return x, y


@pytest.mark.parametrize("conditional", [False, True])
def test_reference_vae_trains_and_scores(app, conditional):
    x, y = patterns(96, seed=0)
    x_eval, y_eval = patterns(30, seed=1)
    judge = train_judge(x, y, seed=0, hidden_units=16, epochs=10)
    vae = app.train_reference_vae(x, y, conditional, epochs=3, batch_size=32, verbose=0)
    assert vae.latent_dim == 2
    s = app.score_reference_vae(vae, judge, x_eval, y_eval, samples_per_class=5)
    assert 0.0 <= s["recon_mse"] <= 1.0 and 0.0 <= s["recon_consistency"] <= 1.0
    assert s["judge_accuracy"] == pytest.approx(judge.accuracy(x_eval, y_eval))
    if conditional:
        assert set(s["sample_consistency_per_class"]) == set(range(10))
        assert 0.0 <= s["sample_consistency"] <= 1.0
        # The decoder reads the label: the same z decodes differently per label.
        z = np.zeros((2, 2), "float32")
        onehot = np.eye(10, dtype="float32")[[0, 1]]
        out = np.asarray(vae.decode(z, onehot))
        assert np.abs(out[0] - out[1]).max() > 1e-4
    else:
        assert s["sample_consistency"] is None
        assert sum(s["sample_judged_labels"].values()) == pytest.approx(1.0)


def test_reference_vae_main_writes_json(app, tmp_path, capsys):
    data = write_patterns(tmp_path / "data")
    out = tmp_path / "scores.json"
    common = ["--variant", "conditional", "--data-dir", str(data), "--epochs", "1"]
    common += ["--eval-split", "test", "--samples-per-class", "3"]
    assert app.main([*common, "--train-split", "train", "--json", str(out)]) == 0
    scores = json.loads(out.read_text())
    assert scores["variant"] == "conditional" and scores["epochs"] == 1
    assert scores["judge"]["source"] == "train"
    assert "recon MSE" in capsys.readouterr().out
    # The judge may not learn from the evaluated images.
    assert app.main([*common, "--train-split", "test"]) == 2
    assert "judge's training images" in capsys.readouterr().err
