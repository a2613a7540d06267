"""`data.neighbor_space`: a run's neighbour pairs come from the configured input graph."""

from __future__ import annotations

import numpy as np
import pytest

from kmixvae.data.neighbors import input_neighbors
from kmixvae.training import fit as fit_module
from kmixvae.training.fit import fit_run
from tests.helpers.runs import tiny_config, write_patterns


@pytest.mark.parametrize("space, name", [("hog", "HOG"), ("pixels", "pixel")])
def test_fit_pairs_images_in_the_configured_space(tmp_path, monkeypatch, space, name):
    data_dir = write_patterns(tmp_path / "data")
    config = tiny_config(
        tmp_path,
        data_dir,
        "training.epochs=1",
        "curriculum.enabled=false",
        "data.neighbors=4",
        f"data.neighbor_space={space}",
        "loss.neighbor.weight=1.0",
    )
    seen = {}
    real = fit_module.neighbor_dataset

    def recording(images, neighbors, *args, **kwargs):
        seen["images"], seen["neighbors"] = np.array(images), np.array(neighbors)
        return real(images, neighbors, *args, **kwargs)

    monkeypatch.setattr(fit_module, "neighbor_dataset", recording)
    messages = []
    fit_run(config, run_dir=str(tmp_path / "run"), full_output=False, log=messages.append)
    expected = input_neighbors(seen["images"], 4, space=space)
    np.testing.assert_array_equal(seen["neighbors"], expected)
    other = input_neighbors(seen["images"], 4, space="pixels" if space == "hog" else "hog")
    assert not np.array_equal(expected, other)  # the two spaces give different pairs here
    assert any(f"in {name} space" in m for m in messages)
