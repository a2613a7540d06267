"""apps/backend_paired_steps.py: the first phase from given weights, with nothing drawn."""

from __future__ import annotations

import numpy as np

from tests.helpers.apps import load_app


def test_a_run_from_written_weights_takes_the_same_steps_as_the_run_that_wrote_them(tmp_path):
    app = load_app("backend_paired_steps")
    rng = np.random.default_rng(0)
    x = rng.random((64, 28, 28, 1)).astype("float32")
    weights = tmp_path / "initial.weights.h5"
    first = app.paired_steps(x, weights, write=True, epochs=2, batch=32)
    again = app.paired_steps(x, weights, write=False, epochs=2, batch=32)
    assert weights.exists() and len(first["losses"]) == 4
    np.testing.assert_allclose(again["losses"], first["losses"], rtol=1e-5)
    np.testing.assert_allclose(again["weights"], first["weights"], atol=1e-5)
    # The steps train: the loss moves, and other initial weights give another run.
    assert first["losses"][-1] != first["losses"][0]
    other = app.paired_steps(
        x, tmp_path / "other.weights.h5", write=True, epochs=2, batch=32, seed=1
    )
    assert not np.allclose(other["weights"], first["weights"])
