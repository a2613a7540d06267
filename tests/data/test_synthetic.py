"""Synthetic glyph mixtures: a known number of separable clusters, and the app that writes them."""

from __future__ import annotations

import numpy as np
import pytest

from kmixvae.config import DataConfig
from kmixvae.data.neighbors import pixel_neighbors
from kmixvae.data.sources import load_split
from kmixvae.data.synthetic import glyph_mixture
from tests.helpers.apps import load_app


def test_glyph_mixture_is_balanced_deterministic_and_separable():
    x, y = glyph_mixture(4, 400, seed=3)
    assert x.shape == (400, 28, 28, 1) and x.dtype == np.uint8
    assert np.bincount(y).tolist() == [100, 100, 100, 100]
    x2, y2 = glyph_mixture(4, 400, seed=3)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    assert not np.array_equal(glyph_mixture(4, 400, seed=4)[0], x)
    # Images of a glyph vary, and their nearest pixel neighbours are mostly the same glyph.
    assert x[y == 0].std(axis=0).mean() > 5
    nbr = pixel_neighbors(x, 5)
    assert (y[nbr] == y[:, None]).mean() > 0.9


def test_app_writes_an_npz_the_loader_reads(tmp_path, capsys):
    app = load_app("synthetic_mixture")
    assert (
        app.main(["--clusters", "3", "--train", "60", "--test", "30", "--out", str(tmp_path)]) == 0
    )
    x, y = load_split(DataConfig(source="npz", dir=str(tmp_path)), "test")
    assert x.shape == (30, 28, 28, 1) and set(y.tolist()) <= {0, 1, 2}
    assert not list(tmp_path.glob("*.tmp*"))


@pytest.mark.parametrize("argv", [["--clusters", "0"], ["--clusters", "3", "--train", "0"]])
def test_app_rejects_bad_counts_with_one_line(tmp_path, capsys, argv):
    app = load_app("synthetic_mixture")
    assert app.main([*argv, "--out", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:")
    assert not (tmp_path / "d").exists()
