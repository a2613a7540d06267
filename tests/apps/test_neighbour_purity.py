"""apps/neighbour_purity.py: label shares of all and mutual pairs."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers.apps import load_app
from tests.helpers.runs import write_patterns


@pytest.fixture(scope="module")
def app():
    return load_app("neighbour_purity")


def test_purity_counts_pairs(app):
    # 0<->1 mutual and same label; 2->0 one-way, different label; 3<->2 mutual, different.
    nbr = np.array([[1], [0], [0], [2]])
    labels = np.array([5, 5, 7, 8])
    p = app.purity(nbr, labels)
    assert p["all"] == pytest.approx(2 / 4)
    assert p["mutual"] == pytest.approx(2 / 2)  # 0->1, 1->0 (2->3 is not listed: 2 lists 0)
    assert p["mutual_kept"] == pytest.approx(2 / 4)
    assert p["no_mutual"] == pytest.approx(2 / 4)


def test_runs_on_local_files_and_rejects_bad_ones(app, tmp_path, capsys):
    data = write_patterns(tmp_path / "data")
    assert app.main(["--data-dir", str(data), "--split", "train", "--k", "3"]) == 0
    out = capsys.readouterr().out
    assert "pixels  k=3" in out and "96 images of train" in out
    assert app.main(["--data-dir", str(tmp_path / "nope"), "--k", "3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --data-dir") and len(err.splitlines()) == 1
