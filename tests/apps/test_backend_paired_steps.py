"""apps/backend_paired_steps.py: the first phase from given weights, with nothing drawn."""

from __future__ import annotations

import numpy as np

from tests.helpers.apps import load_app
from tests.helpers.idx_files import IMAGES_MAGIC, LABELS_MAGIC, write_idx


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


def test_missing_images_or_a_first_run_off_tensorflow_is_one_error_line(tmp_path, capsys):
    import keras

    app = load_app("backend_paired_steps")
    empty = tmp_path / "no_data"
    empty.mkdir()
    assert app.main(["--data-dir", str(empty), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and err.count("\n") == 1
    if keras.backend.backend() != "tensorflow":  # no TensorFlow weights to start from yet
        rng = np.random.default_rng(0)
        data = tmp_path / "data"
        data.mkdir()
        write_idx(
            data / "train-images-idx3-ubyte.gz", rng.integers(0, 255, (40, 28, 28)), IMAGES_MAGIC
        )
        write_idx(data / "train-labels-idx1-ubyte.gz", np.arange(40) % 10, LABELS_MAGIC)
        argv = ["--data-dir", str(data), "--split", "train", "--out", str(tmp_path / "fresh")]
        assert app.main(argv) == 2
        assert "KERAS_BACKEND=tensorflow first" in capsys.readouterr().err
