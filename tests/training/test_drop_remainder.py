"""`data.drop_remainder`: a run trains on full batches only, so its training step has one shape."""

from __future__ import annotations

import keras
import pytest

from kmixvae.models.mixture_vae import MixtureVAE
from kmixvae.training import fit as fit_module
from kmixvae.training.epoch_schedule import epoch_steps
from kmixvae.training.fit import fit_run
from tests.helpers.runs import N_TRAIN, tiny_config, write_patterns

BATCH = 40  # 96 training images: two batches of 40 and one of 16 a pass


def test_epoch_steps_count_only_full_batches():
    assert epoch_steps(96, BATCH) == 3
    assert epoch_steps(96, BATCH, drop_remainder=True) == 2
    assert epoch_steps(50_000, 256, epoch_images=10_000, drop_remainder=True) == 39
    assert epoch_steps(50_000, 256, epoch_images=10_240, drop_remainder=True) == 40
    assert epoch_steps(96, 96, drop_remainder=True) == 1


def _images_of(batch):
    """The images of a training batch: a dict's "x", a tuple's first entry, or the batch."""
    if isinstance(batch, dict):
        return batch["x"]
    return batch[0] if isinstance(batch, tuple) else batch


def _trained_batch_sizes(tmp_path, monkeypatch, *sets):
    """The batch sizes the training step was traced (compiled) for in a 2-epoch run."""
    sizes = []
    real = MixtureVAE.call

    def recording(self, inputs, training=False):
        if training:
            x = inputs["x"] if isinstance(inputs, dict) else inputs
            sizes.append(x.shape[0])
        return real(self, inputs, training=training)

    monkeypatch.setattr(MixtureVAE, "call", recording)
    data_dir = write_patterns(tmp_path / "data")
    config = tiny_config(tmp_path, data_dir, "training.epochs=2", f"data.batch_size={BATCH}", *sets)
    messages = []
    fit_run(config, run_dir=str(tmp_path / "run"), full_output=False, log=messages.append)
    return sizes, messages


PAIRS = ("data.neighbors=4", "loss.neighbor.weight=1.0")


@pytest.mark.parametrize("pipeline", ["tf_data", "arrays"])
@pytest.mark.parametrize("pairs", [False, True], ids=["images", "neighbour_pairs"])
def test_a_run_reads_full_batches_only(tmp_path, monkeypatch, pipeline, pairs):
    datasets = []
    real = fit_module._train_dataset

    def keeping(*args, **kwargs):
        datasets.append(real(*args, **kwargs))
        return datasets[-1]

    monkeypatch.setattr(fit_module, "_train_dataset", keeping)
    sizes, messages = _trained_batch_sizes(
        tmp_path,
        monkeypatch,
        "data.drop_remainder=true",
        f"data.pipeline={pipeline}",
        *(PAIRS if pairs else ()),
    )
    steps = N_TRAIN // BATCH
    assert any(
        f"{steps} steps of {BATCH} images ({steps * BATCH} of the {N_TRAIN})" in m for m in messages
    )
    batches = iter(datasets[0])
    read = [len(_images_of(next(batches))) for _ in range(3 * steps)]  # three passes
    assert read == [BATCH] * (3 * steps)
    if keras.backend.backend() == "jax":  # one compiled shape (TensorFlow traces batch None)
        assert sizes and set(sizes) == {BATCH}


def test_without_it_the_last_batch_is_a_second_shape_on_jax(tmp_path, monkeypatch):
    if keras.backend.backend() != "jax":
        pytest.skip("TensorFlow traces one step for every batch size (its batch dimension is None)")
    sizes, _ = _trained_batch_sizes(tmp_path, monkeypatch, "data.pipeline=arrays")
    assert set(sizes) == {BATCH, N_TRAIN % BATCH}
