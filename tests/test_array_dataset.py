"""The in-memory `keras.utils.PyDataset` pipelines (`data.pipeline=arrays`).

They must make the batches the `tf.data` pipelines make: every image once an
epoch, a new seeded order each epoch, float32 in [0, 1], neighbour pairs
drawn from the current table (so a refresh takes effect), and `fit` must
train on them. Runs on the backend in KERAS_BACKEND.
"""

from __future__ import annotations

import numpy as np
import pytest

from kmixvae.config import DataConfig
from kmixvae.data.array_dataset import (
    ImageBatches,
    NeighborPairBatches,
    NeighborTable,
    buffered_permutation,
)
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
    ids = np.concatenate([_ids(endless[i][0]) for i in range(6)])  # 2 passes of 4 + 4 + 2
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
def test_both_pipelines_make_the_same_batches_up_to_order():
    x, y = _images(10), np.arange(10)
    for pipeline_kwargs in ({}, {"with_labels": True}):
        bundles = {
            p: DataBundle(x, y, x, y, batch_size=4, pipeline=p) for p in ("tf_data", "arrays")
        }
        tf_batches = list(bundles["tf_data"].train_dataset(**pipeline_kwargs))
        arr = bundles["arrays"].train_dataset(**pipeline_kwargs)
        arr_batches = [arr[i] for i in range(arr.num_batches)]
        assert len(tf_batches) == len(arr_batches) == 3
        for a, b in zip(tf_batches, arr_batches):
            a = a if isinstance(a, tuple) else (a,)
            assert len(a) == len(b)
            for u, v in zip(a, b):
                assert np.asarray(u).shape == np.asarray(v).shape
                assert np.asarray(u).dtype == np.asarray(v).dtype

        def ids(batches):
            return sorted(
                np.concatenate([_ids(b[0] if isinstance(b, tuple) else b) for b in batches])
            )

        assert ids(tf_batches) == ids(arr_batches) == list(range(10))
    nbr = np.array([[(i + 1) % 10] for i in range(10)])
    tf_pairs = next(iter(neighbor_dataset(x, nbr, 4, seed=0, pipeline="tf_data")))
    arr_pairs = neighbor_dataset(x, nbr, 4, seed=0, pipeline="arrays")[0]
    assert set(tf_pairs) == set(arr_pairs) == {"x", "neighbor"}
    for key in ("x", "neighbor"):
        assert np.asarray(tf_pairs[key]).dtype == arr_pairs[key].dtype
    for pairs in (tf_pairs, arr_pairs):
        assert list(_ids(pairs["neighbor"])) == [(i + 1) % 10 for i in _ids(pairs["x"])]


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
