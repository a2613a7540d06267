"""The in-memory `keras.utils.PyDataset` pipelines (`data.pipeline=arrays`).

They must make the batches the `tf.data` pipelines make: every image once an
epoch, a new seeded order each epoch, float32 in [0, 1], neighbour pairs
drawn from the current table (so a refresh takes effect), and `fit` must
train on them. Runs on the backend in KERAS_BACKEND.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras.src.trainers.epoch_iterator import EpochIterator

from kmixvae.config import DataConfig
from kmixvae.data.array_dataset import ImageBatches, NeighborPairBatches, NeighborTable
from kmixvae.data.batching import buffered_permutation
from kmixvae.data.pipeline import DataBundle, neighbor_dataset, resolve_pipeline
from kmixvae.errors import ConfigError, DataError


def _images(n=10, size=4):
    # image i is filled with the value i, so a batch tells which images it holds
    return np.repeat(np.arange(n, dtype=np.uint8), size * size).reshape(n, size, size, 1)


def _ids(batch) -> np.ndarray:
    return np.rint(np.asarray(batch)[:, 0, 0, 0] * 255.0).astype(int)


def _epoch(ds) -> list[np.ndarray]:
    out = [ds[i] for i in range(ds.num_batches)]
    ds.on_epoch_end()
    return out


def test_image_batches_cover_every_image_once_per_epoch_in_a_new_seeded_order():
    x = _images(10)
    ds = ImageBatches(x, batch_size=4, shuffle=True, seed=3)
    assert ds.num_batches == 3
    first = np.concatenate([_ids(b[0]) for b in _epoch(ds)])
    second = np.concatenate([_ids(b[0]) for b in _epoch(ds)])
    assert sorted(first) == list(range(10)) and sorted(second) == list(range(10))
    assert list(first) != list(second)
    again = ImageBatches(x, batch_size=4, shuffle=True, seed=3)
    assert list(np.concatenate([_ids(b[0]) for b in _epoch(again)])) == list(first)
    other = ImageBatches(x, batch_size=4, shuffle=True, seed=4)
    assert list(np.concatenate([_ids(b[0]) for b in _epoch(other)])) != list(first)
    (b,) = ds[0]
    assert b.dtype == np.float32 and 0.0 <= b.min() and b.max() <= 10 / 255 + 1e-6
    with pytest.raises(IndexError):
        ds[3]


def test_image_batches_labels_drop_remainder_repeat_and_order():
    x, y = _images(10), np.arange(10) * 7
    ds = ImageBatches(x, y, batch_size=4, with_labels=True, drop_remainder=True)
    assert ds.num_batches == 2
    xb, yb = ds[1]
    assert list(_ids(xb)) == [4, 5, 6, 7] and list(yb) == [28, 35, 42, 49]
    endless = ImageBatches(x, batch_size=4, shuffle=True, seed=0, repeat=True)
    assert endless.num_batches is None
    batches = [_ids(endless[i][0]) for i in range(6)]  # 2 passes of 4 + 4 + 2
    assert [len(b) for b in batches] == [4, 4, 2] * 2
    ids = np.concatenate(batches)
    assert sorted(ids[:10]) == sorted(ids[10:]) == list(range(10))
    assert list(ids[:10]) != list(ids[10:])
    with pytest.raises(DataError, match="labels"):
        ImageBatches(x, None, 4, with_labels=True)
    with pytest.raises(DataError, match="expected"):
        ImageBatches(x[..., 0], batch_size=4)


def test_buffered_permutation_is_a_windowed_shuffle():
    rng = np.random.default_rng(0)
    for buffer in (1, 3, 50):
        order = buffered_permutation(40, buffer, rng)
        assert sorted(order) == list(range(40))
        # the t-th element comes from the first buffer + t inputs (what a buffer can hold)
        assert all(order[t] < buffer + t for t in range(40))
    assert list(buffered_permutation(5, 1, rng)) == [0, 1, 2, 3, 4]


def test_neighbor_pairs_come_from_the_current_table():
    x = _images(8)
    table = NeighborTable(np.array([[(i + 1) % 8, (i + 2) % 8] for i in range(8)]))
    ds = NeighborPairBatches(x, table, batch_size=3, seed=0)
    for batch in _epoch(ds):
        i, j = _ids(batch["x"]), _ids(batch["neighbor"])
        assert all(jj in ((ii + 1) % 8, (ii + 2) % 8) for ii, jj in zip(i, j))
    table.assign(np.array([[(i + 4) % 8] * 2 for i in range(8)]))
    for batch in _epoch(ds):
        assert list(_ids(batch["neighbor"])) == [(i + 4) % 8 for i in _ids(batch["x"])]
    with pytest.raises(DataError, match="shape"):
        table.assign(np.zeros((8, 3)))
    with pytest.raises(DataError, match="expected shape"):
        NeighborPairBatches(x, np.zeros((7, 2), "int64"), 3)


def test_pipeline_choice_and_bundle():
    assert resolve_pipeline("arrays") == "arrays"
    with pytest.raises(ConfigError, match="data.pipeline"):
        resolve_pipeline("grain")
    bundle = DataBundle(_images(10), np.arange(10), _images(4), np.arange(4), 4, pipeline="arrays")
    assert isinstance(bundle.train_dataset(), ImageBatches)
    assert isinstance(bundle.val_dataset(with_labels=True), ImageBatches)
    assert isinstance(
        neighbor_dataset(_images(10), np.zeros((10, 2), "int64"), 4, pipeline="arrays"),
        NeighborPairBatches,
    )
    assert DataConfig().pipeline == "auto"


@pytest.mark.skipif(
    resolve_pipeline("auto") != "tf_data",
    reason="TensorFlow is not installed: no tf.data to compare",
)
def test_both_pipelines_make_the_same_batches():
    """One seed, one sequence of batches: the same orders and neighbour picks on both."""
    x, y = _images(10), np.arange(10)
    for pipeline_kwargs in ({}, {"with_labels": True}):
        bundles = {
            p: DataBundle(x, y, x, y, batch_size=4, pipeline=p) for p in ("tf_data", "arrays")
        }
        tf_ds = bundles["tf_data"].train_dataset(**pipeline_kwargs)
        arr = bundles["arrays"].train_dataset(**pipeline_kwargs)
        for _ in range(2):  # two passes, the second reshuffled on both
            tf_batches = list(tf_ds)
            arr_batches = _epoch(arr)
            assert len(tf_batches) == len(arr_batches) == 3
            for a, b in zip(tf_batches, arr_batches):
                a = a if isinstance(a, tuple) else (a,)
                assert len(a) == len(b)
                for u, v in zip(a, b):
                    assert np.asarray(u).dtype == np.asarray(v).dtype
                    np.testing.assert_array_equal(np.asarray(u), v)
        assert sorted(np.concatenate([_ids(b[0]) for b in arr_batches])) == list(range(10))
    nbr = np.array([[(i + 1) % 10, (i + 4) % 10] for i in range(10)])
    tf_pairs = list(neighbor_dataset(x, nbr, 4, seed=0, pipeline="tf_data"))
    arr_pairs = _epoch(neighbor_dataset(x, nbr, 4, seed=0, pipeline="arrays"))
    for a, b in zip(tf_pairs, arr_pairs):
        assert set(a) == set(b) == {"x", "neighbor"}
        for key in ("x", "neighbor"):
            assert np.asarray(a[key]).dtype == b[key].dtype
            np.testing.assert_array_equal(np.asarray(a[key]), b[key])
        assert all(j in nbr[i] for i, j in zip(_ids(b["x"]), _ids(b["neighbor"])))


def test_fit_trains_on_array_pairs():
    import keras

    from kmixvae.config import load_config
    from kmixvae.models.factory import build_model

    cfg = load_config(
        "configs/smoke.json",
        overrides=["curriculum.enabled=false", "loss.neighbor.weight=1", "data.neighbors=2"],
    )
    rng = np.random.default_rng(0)
    x = (rng.random((16, 28, 28, 1)) * 255).astype(np.uint8)
    nbr = np.array([[(i + 1) % 16, (i + 2) % 16] for i in range(16)])
    keras.utils.set_random_seed(0)
    model = build_model(cfg, (28, 28, 1))
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    history = model.fit(
        NeighborPairBatches(x, nbr, batch_size=8, seed=0), epochs=2, verbose=0, shuffle=False
    )
    losses = history.history["loss"]
    assert len(losses) == 2 and all(np.isfinite(losses))
    assert history.history["neighbor_agreement"][-1] > 0


def _keras_epochs(ds, epochs: int, steps_per_epoch: int) -> list[np.ndarray]:
    """The image ids of each batch Keras' fit loop reads from `ds`, epoch after epoch.

    Drives `EpochIterator` (what `fit` iterates a `PyDataset` with) the way the
    trainers do: `reset()` once before the first epoch, then one pass of the
    iterator per epoch (each pass calls `on_epoch_begin` / `on_epoch_end`).
    """
    iterator = EpochIterator(ds, steps_per_epoch=steps_per_epoch)
    iterator.reset()
    out = []
    for _ in range(epochs):
        for _, _, batches in iterator:
            for batch in batches:
                x = batch["x"] if isinstance(batch, dict) else batch[0]
                out.append(_ids(x))
    return out


@pytest.mark.parametrize("kind", ["images", "neighbor_pairs"])
def test_steps_per_epoch_reads_each_pass_whole(kind):
    """With `steps_per_epoch` Keras keeps one endless iterator across epochs and
    still calls `on_epoch_end`: every window of one pass (10 batches) must hold
    each of the 40 images once, not a splice of several shuffles."""
    x = _images(40)
    if kind == "images":
        ds = ImageBatches(x, batch_size=4, shuffle=True, seed=0, repeat=True)
    else:
        nbr = np.array([[(i + 1) % 40] for i in range(40)])
        ds = NeighborPairBatches(x, nbr, batch_size=4, seed=0, repeat=True)
    batches = _keras_epochs(ds, epochs=6, steps_per_epoch=5)  # 3 passes
    assert len(batches) == 30
    passes = [np.concatenate(batches[i : i + 10]) for i in range(0, 30, 10)]
    for ids in passes:
        assert sorted(ids) == list(range(40))
    assert list(passes[0]) != list(passes[1]) != list(passes[2])  # reshuffled each pass


class _BatchRecorder(keras.Model):
    """Records the image ids of every training batch `fit` gives it (run eagerly)."""

    def __init__(self):
        super().__init__()
        self.w = self.add_weight(shape=(), initializer="zeros")
        self.built = True  # fit calls it on real batches only
        self.seen = []

    def call(self, inputs):
        x = inputs["x"] if isinstance(inputs, dict) else inputs
        pair = [_ids(x)]
        if isinstance(inputs, dict):
            pair.append(_ids(inputs["neighbor"]))
        self.seen.append(np.stack(pair))
        return self.w * keras.ops.mean(x)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        return keras.ops.square(y_pred - 1.0)


def _fit_batches(ds, epochs: int, initial_epoch: int, steps_per_epoch) -> list[np.ndarray]:
    model = _BatchRecorder()
    model.compile(optimizer=keras.optimizers.SGD(0.0), run_eagerly=True)
    model.fit(
        ds,
        epochs=epochs,
        initial_epoch=initial_epoch,
        steps_per_epoch=steps_per_epoch,
        shuffle=False,
        verbose=0,
    )
    return model.seen


PIPELINES_HERE = ["arrays"] + (["tf_data"] if resolve_pipeline("auto") == "tf_data" else [])


def _train_data(kind, pipeline, x, nbr, start_batch=0):
    """What `kmixvae fit` trains on: an endless sequence of passes, seed 5."""
    if kind == "images":
        bundle = DataBundle(x, np.arange(len(x)), batch_size=4, seed=5, pipeline=pipeline)
        return bundle.train_dataset(repeat=True, start_batch=start_batch)
    return neighbor_dataset(
        x, nbr, 4, seed=5, repeat=True, pipeline=pipeline, start_batch=start_batch
    )


@pytest.mark.parametrize("pipeline", PIPELINES_HERE)
@pytest.mark.parametrize("kind", ["images", "neighbor_pairs"])
@pytest.mark.parametrize("steps_per_epoch", [3, 2])  # one pass an epoch (fit's default), or not
def test_a_resumed_fit_reads_what_an_uninterrupted_fit_reads(pipeline, kind, steps_per_epoch):
    """A run resumed at epoch 3 (`start_batch` = the batches read before it) gets
    the same batches, and neighbour draws, in epochs 3-4 as a run never
    interrupted; every pass reads each image once, in a new order."""
    x = _images(10)
    nbr = np.array([[(i + 1) % 10, (i + 3) % 10, (i + 7) % 10] for i in range(10)])
    whole = _fit_batches(_train_data(kind, pipeline, x, nbr), 4, 0, steps_per_epoch)
    resumed_ds = _train_data(kind, pipeline, x, nbr, start_batch=2 * steps_per_epoch)
    resumed = _fit_batches(resumed_ds, 4, 2, steps_per_epoch)
    assert len(whole) == 4 * steps_per_epoch and len(resumed) == 2 * steps_per_epoch
    for a, b in zip(whole[2 * steps_per_epoch :], resumed):
        np.testing.assert_array_equal(a, b)
    ids = np.concatenate([b[0] for b in whole])  # passes of 4 + 4 + 2 ids
    assert all(sorted(ids[i : i + 10]) == list(range(10)) for i in range(0, len(ids) - 9, 10))
    assert list(ids[:10]) != list(ids[10:20])
    if kind == "neighbor_pairs":
        pairs = np.concatenate(whole, axis=1).T
        assert all(j in nbr[i] for i, j in pairs)
        assert any(len({j for i, j in pairs if i == k}) > 1 for k in range(10))  # drawn anew


@pytest.mark.skipif(
    resolve_pipeline("auto") != "tf_data",
    reason="TensorFlow is not installed: no tf.data to compare",
)
@pytest.mark.parametrize("kind", ["images", "neighbor_pairs"])
def test_fit_reads_the_same_batches_from_both_pipelines(kind):
    """Through Keras' fit loop a seed gives the same batches, and neighbour
    picks, on `tf_data` and `arrays`: runs on the two pipelines are paired."""
    x = _images(10)
    nbr = np.array([[(i + 1) % 10, (i + 3) % 10] for i in range(10)])
    seen = [_fit_batches(_train_data(kind, p, x, nbr), 3, 0, 3) for p in ("tf_data", "arrays")]
    assert len(seen[0]) == len(seen[1]) == 9
    for a, b in zip(*seen):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("pipeline", PIPELINES_HERE)
@pytest.mark.parametrize("kind", ["images", "neighbor_pairs", "validation"])
def test_each_process_reads_its_own_part_of_every_batch(pipeline, kind):
    """shard=(i, 2): process i reads the i-th contiguous half of each global batch, so
    the halves put together are the batch one process reads."""
    x = _images(12)
    nbr = np.array([[(i + 1) % 12, (i + 5) % 12] for i in range(12)])

    def batches(shard):
        if kind == "neighbor_pairs":
            ds = neighbor_dataset(x, nbr, 4, seed=1, repeat=True, shard=shard, pipeline=pipeline)
        else:
            bundle = DataBundle(x, np.arange(12), x, np.arange(12), 4, seed=1, pipeline=pipeline)
            bundle.shard = shard
            ds = bundle.train_dataset(repeat=True) if kind == "images" else bundle.val_dataset()
        return _fit_batches(ds, 2, 0, 3)

    whole, first, second = batches((0, 1)), batches((0, 2)), batches((1, 2))
    assert len(whole) == len(first) == len(second) == 6
    for w, a, b in zip(whole, first, second):
        assert a.shape[1] == b.shape[1] == 2
        np.testing.assert_array_equal(np.concatenate([a, b], axis=1), w)
