"""`training.validation_freq` and `training.validation_images`: honoured, not ignored."""

from __future__ import annotations

import numpy as np

from kmixvae.config import TrainingConfig
from kmixvae.data import load_datasets
from kmixvae.training.fit import validation_epochs
from tests.helpers.runs import N_TEST, fit_smoke, read_history, tiny_config, write_patterns


def test_validation_epochs_are_every_nth_and_the_last():
    assert validation_epochs(TrainingConfig(epochs=4)) == [1, 2, 3, 4]
    assert validation_epochs(TrainingConfig(epochs=10, validation_freq=4)) == [4, 8, 10]
    assert validation_epochs(TrainingConfig(epochs=3, validation_freq=5)) == [3]


def test_a_run_validates_only_at_its_validation_epochs(tmp_path):
    data_dir = write_patterns(tmp_path / "data")
    run, _, err = fit_smoke(
        tmp_path,
        data_dir,
        "training.epochs=3",
        "training.validation_freq=2",
        "training.early_stopping.enabled=true",
    )
    rows = read_history(run / "history.csv")
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]
    assert [bool(r.get("val_nelbo")) for r in rows] == [False, True, True]
    # The held-out clustering is measured every epoch all the same.
    assert all(r.get("val_cluster_acc") for r in rows)
    # Early stopping skips the epochs without validation, without a warning about them.
    assert "conditioned on metric" not in err


def _bundle(tmp_path, *sets):
    return load_datasets(tiny_config(tmp_path, write_patterns(tmp_path / "data"), *sets))


def _images_of(dataset) -> np.ndarray:
    batches = [b[0] if isinstance(b, tuple) else b for b in dataset]
    return np.concatenate([np.asarray(b) for b in batches])


def test_the_validation_pass_reads_a_fixed_sample_of_at_most_the_cap(tmp_path):
    data = _bundle(tmp_path)
    whole = _images_of(data.val_dataset())
    assert len(whole) == N_TEST
    # Up to the cap: every image, in order (runs below it are unchanged).
    np.testing.assert_array_equal(_images_of(data.val_dataset(max_images=N_TEST)), whole)
    sample = _images_of(data.val_dataset(max_images=20, seed=3))
    assert len(sample) == 20
    again = _images_of(data.val_dataset(max_images=20, seed=3))
    np.testing.assert_array_equal(sample, again)
    # Real validation images, distinct rows.
    flat = whole.reshape(len(whole), -1)
    rows = [int(np.flatnonzero((flat == s.reshape(-1)).all(axis=1))[0]) for s in sample]
    assert len(set(rows)) == 20


def test_fit_validates_on_the_sample(tmp_path):
    import keras

    from kmixvae.training.fit import fit_run

    class CountValidationBatches(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.batches = 0

        def on_test_batch_end(self, batch, logs=None):
            self.batches += 1

    data_dir = write_patterns(tmp_path / "data")
    config = tiny_config(
        tmp_path,
        data_dir,
        "data.batch_size=16",
        "training.epochs=1",
        "training.validation_images=16",
    )
    counter = CountValidationBatches()
    fit_run(
        config,
        run_dir=str(tmp_path / "run"),
        callbacks=[counter],
        full_output=False,
        log=lambda *_: None,
    )
    assert counter.batches == 1  # 16 of the 48 validation images, not 3 batches
