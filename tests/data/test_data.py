"""Tests of kmixvae.data: IDX/NPZ/TFDS sources, split slicing and tf.data pipelines."""

from __future__ import annotations

import gzip
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from kmixvae.config import Config, DataConfig
from kmixvae.data import (
    DataBundle,
    load_datasets,
    load_split,
    make_dataset,
    parse_split,
    read_idx,
    resolve_split,
)
from kmixvae.data import sources as sources_mod
from kmixvae.errors import DataError
from tests.helpers.idx_files import IMAGES_MAGIC, LABELS_MAGIC, idx_bytes, write_idx

# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def fake_split(n: int, seed: int, shape=(6, 5)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, *shape), dtype=np.uint8), rng.integers(0, 10, n, dtype=np.uint8)


def write_idx_dir(folder: Path, splits=("train", "test"), gz: bool = True) -> dict:
    ext = ".gz" if gz else ""
    data = {}
    for i, split in enumerate(splits):
        prefix = {"train": "train", "test": "t10k"}[split]
        x, y = fake_split(30 if split == "train" else 20, seed=i)
        write_idx(folder / f"{prefix}-images-idx3-ubyte{ext}", x, IMAGES_MAGIC)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{ext}", y, LABELS_MAGIC)
        data[split] = (x, y)
    return data


def idx_config(folder: Path) -> DataConfig:
    return DataConfig(source="idx", dir=str(folder))


# ---------------------------------------------------------------------------
# IDX
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [True, False], ids=["gz", "plain"])
def test_idx_loads_both_splits(tmp_path, gz):
    data = write_idx_dir(tmp_path, gz=gz)
    for split in ("train", "test"):
        images, labels = load_split(idx_config(tmp_path), split)
        assert images.dtype == np.uint8 and labels.dtype == np.int64
        assert images.shape == (len(data[split][0]), 6, 5, 1)
        np.testing.assert_array_equal(images[..., 0], data[split][0])
        np.testing.assert_array_equal(labels, data[split][1])
    images, labels = load_split(idx_config(tmp_path), "train[10:20]+test[-10%:]")
    np.testing.assert_array_equal(
        labels, np.concatenate([data["train"][1][10:20], data["test"][1][18:]])
    )


def test_idx_reads_only_needed_files(tmp_path):
    write_idx_dir(tmp_path, splits=("train",))
    images, _ = load_split(idx_config(tmp_path), "train[:50%]")
    assert images.shape == (15, 6, 5, 1)
    with pytest.raises(
        DataError, match=r"no split 'test'.*train-images-idx3-ubyte\.gz.*found splits: train"
    ):
        load_split(idx_config(tmp_path), "test")
    # A corrupt file of another split is never opened.
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(b"garbage")
    load_split(idx_config(tmp_path), "train")


def test_idx_missing_labels_file(tmp_path):
    write_idx_dir(tmp_path, splits=("train",))
    (tmp_path / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte\[\.gz\]: missing"):
        load_split(idx_config(tmp_path), "train")


def test_idx_missing_dir(tmp_path):
    with pytest.raises(DataError, match="nope"):
        load_split(idx_config(tmp_path / "nope"), "train")
    with pytest.raises(DataError, match=r"data\.dir"):
        load_split(DataConfig(source="idx", dir=None), "train")


@pytest.mark.parametrize("gz", [True, False], ids=["gz", "plain"])
def test_idx_wrong_magic(tmp_path, gz):
    write_idx_dir(tmp_path, splits=("train",), gz=gz)
    ext = ".gz" if gz else ""
    x, _ = fake_split(30, 0)
    write_idx(tmp_path / f"train-images-idx3-ubyte{ext}", x, LABELS_MAGIC)
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.*wrong magic number 0x00000801"):
        load_split(idx_config(tmp_path), "train")


@pytest.mark.parametrize("gz", [True, False], ids=["gz", "plain"])
def test_idx_truncated(tmp_path, gz):
    write_idx_dir(tmp_path, splits=("train",), gz=gz)
    ext = ".gz" if gz else ""
    x, _ = fake_split(30, 0)
    data = idx_bytes(x, IMAGES_MAGIC)[:-7]
    path = tmp_path / f"train-images-idx3-ubyte{ext}"
    path.write_bytes(gzip.compress(data) if gz else data)
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.*truncated"):
        load_split(idx_config(tmp_path), "train")
    path.write_bytes(gzip.compress(b"\x00\x00") if gz else b"\x00\x00")
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.*truncated"):
        load_split(idx_config(tmp_path), "train")


def test_idx_mismatched_counts(tmp_path):
    write_idx_dir(tmp_path, splits=("train",))
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(29, np.uint8), LABELS_MAGIC)
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte\.gz: 29 labels.*30 images"):
        load_split(idx_config(tmp_path), "train")


def test_idx_corrupt_gzip(tmp_path):
    write_idx_dir(tmp_path, splits=("train",))
    path = tmp_path / "train-images-idx3-ubyte.gz"
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2])  # gzip stream cut short
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz: corrupt gzip"):
        load_split(idx_config(tmp_path), "train")
    path.write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz: corrupt gzip"):
        read_idx(path)


# ---------------------------------------------------------------------------
# NPZ
# ---------------------------------------------------------------------------


def write_npz(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


def test_npz_loads_file_or_dir(tmp_path):
    (xtr, ytr), (xte, yte) = fake_split(30, 0), fake_split(20, 1)
    write_npz(tmp_path / "mnist.npz", x_train=xtr, y_train=ytr, x_test=xte, y_test=yte)
    for where in (tmp_path, tmp_path / "mnist.npz"):
        cfg = DataConfig(source="npz", dir=str(where))
        images, labels = load_split(cfg, "test[:50%]")
        assert images.shape == (10, 6, 5, 1) and images.dtype == np.uint8
        assert labels.dtype == np.int64
        np.testing.assert_array_equal(labels, yte[:10])


def test_npz_bad_keys(tmp_path):
    x, y = fake_split(30, 0)
    path = write_npz(tmp_path / "data.npz", images=x, labels=y)
    cfg = DataConfig(source="npz", dir=str(path))
    with pytest.raises(
        DataError, match=r"data\.npz.*keys found: images, labels.*found splits: none"
    ):
        load_split(cfg, "train")
    write_npz(tmp_path / "mnist.npz", x_train=x, y_train=y)
    with pytest.raises(
        DataError, match=r"no split 'test' in .*mnist\.npz \(keys found: x_train, y_train\)"
    ):
        load_split(DataConfig(source="npz", dir=str(tmp_path)), "test")


def test_npz_mismatched_counts_and_missing(tmp_path):
    x, y = fake_split(30, 0)
    write_npz(tmp_path / "mnist.npz", x_train=x, y_train=y[:25])
    with pytest.raises(DataError, match=r"mnist\.npz: 25 labels in 'y_train' but 30 images"):
        load_split(DataConfig(source="npz", dir=str(tmp_path)), "train")
    with pytest.raises(DataError, match=r"other\.npz: missing"):
        load_split(DataConfig(source="npz", dir=str(tmp_path / "other.npz")), "train")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match=r"bad\.npz: not a readable \.npz"):
        load_split(DataConfig(source="npz", dir=str(tmp_path / "bad.npz")), "train")


# ---------------------------------------------------------------------------
# Splits
# ---------------------------------------------------------------------------

SPECS = [
    "train",
    "test",
    "test[:80%]",
    "test[80%:]",
    "test[-10%:]",
    "test[:-10%]",
    "train[:100]",
    "train[1000:2000]",
    "train[-100:]",
    "train[10%:20%]",
    "train[33%:67%]",
    "train[12.5%:50.5%]",
    "train[:50%]+test[50%:]",
    "all",
]


@pytest.mark.parametrize("sizes", [(60000, 10000), (2001, 2049), (3001, 2501), (4014, 2005)])
def test_split_slicing_matches_tfds(sizes):
    from tensorflow_datasets.core.splits import ReadInstruction

    infos = {
        "train": SimpleNamespace(num_examples=sizes[0]),
        "test": SimpleNamespace(num_examples=sizes[1]),
    }
    counts = {name: info.num_examples for name, info in infos.items()}
    for spec in SPECS:
        expected = [
            (a.splitname, a.from_ or 0, counts[a.splitname] if a.to is None else a.to)
            for a in ReadInstruction.from_spec(spec).to_absolute(infos)
        ]
        assert resolve_split(spec, counts) == expected, spec


def test_split_examples():
    assert resolve_split("test[:80%]", {"test": 10000}) == [("test", 0, 8000)]
    assert resolve_split("test[80%:]", {"test": 10000}) == [("test", 8000, 10000)]
    assert resolve_split("test[-10%:]", {"test": 10000}) == [("test", 9000, 10000)]
    assert resolve_split("test[:50%]", {"test": 5}) == [("test", 0, 2)]  # round half to even
    assert parse_split("train[1_000:2_000]")[0].stop == 2000


@pytest.mark.parametrize(
    "spec",
    ["", "train[", "train[:]", "train[1:2:3]", "train[5]", "train[a:b]", "train[1.5:]",
     "test[:200%]", "train[:2shard]", "train[10:50%]", "all[:10%]", "tra in"],
)  # fmt: skip
def test_malformed_split_raises(spec):
    with pytest.raises(DataError, match="split"):
        parse_split(spec)


def test_split_out_of_range_and_unknown():
    with pytest.raises(DataError, match=r"out of range.*50 examples"):
        resolve_split("train[:100]", {"train": 50})
    with pytest.raises(DataError, match=r"no split 'validation'.*found splits: train, test"):
        resolve_split("validation", {"train": 5, "test": 5})


# ---------------------------------------------------------------------------
# TFDS
# ---------------------------------------------------------------------------


def test_tfds_mock_data(monkeypatch, tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    # mock_data serves random examples without files; the "is it on disk" check is bypassed.
    monkeypatch.setattr(sources_mod, "_tfds_is_prepared", lambda builder: True)
    with tfds.testing.mock_data(num_examples=12):
        images, labels = load_split(DataConfig(source="tfds", dir=str(tmp_path)), "train")
    assert images.shape == (12, 28, 28, 1) and images.dtype == np.uint8
    assert labels.shape == (12,) and labels.dtype == np.int64


def test_tfds_prepared_dataset(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    tfds.testing.DummyMnist(data_dir=str(tmp_path)).download_and_prepare()  # 20+20 examples
    cfg = DataConfig(name="dummy_mnist", source="tfds", dir=str(tmp_path))
    images, labels = load_split(cfg, "train[:50%]")
    assert images.shape == (10, 28, 28, 1) and images.dtype == np.uint8 and labels.dtype == np.int64
    with pytest.raises(DataError, match=r"no split 'validation'.*found splits: train, test"):
        load_split(cfg, "validation")


def test_tfds_not_prepared_fails_fast():
    with tempfile.TemporaryDirectory() as empty:
        start = time.monotonic()
        with pytest.raises(DataError) as info:
            load_split(DataConfig(name="mnist", source="tfds", dir=empty), "train")
        elapsed = time.monotonic() - start
    assert elapsed < 5.0, f"took {elapsed:.1f} s"
    message = str(info.value)
    assert "not prepared" in message and "without network" in message
    assert "local files" in message and "data.source=idx" in message and "\n" not in message


# ---------------------------------------------------------------------------
# Pipeline
# ---------------------------------------------------------------------------


def indexed_images(n: int) -> np.ndarray:
    """Image i is filled with the value i, so batches reveal the order."""
    return np.repeat(np.arange(n, dtype=np.uint8), 4).reshape(n, 2, 2, 1)


def first_values(ds) -> list[int]:
    return [int(round(v * 255)) for x in ds for v in np.asarray(x)[:, 0, 0, 0]]


def test_pipeline_dtype_range_and_batches():
    images = np.full((10, 3, 3, 1), 255, np.uint8)
    images[0] = 0
    batches = list(make_dataset(images, None, 4))
    assert [b.shape[0] for b in batches] == [4, 4, 2]
    assert all(b.dtype.name == "float32" and b.shape[1:] == (3, 3, 1) for b in batches)
    values = np.concatenate([np.asarray(b) for b in batches])
    assert values.min() == 0.0 and values.max() == 1.0
    dropped = list(make_dataset(images, None, 4, drop_remainder=True))
    assert [b.shape[0] for b in dropped] == [4, 4]


def test_pipeline_labels_only_when_asked():
    images, labels = indexed_images(6), np.arange(6) % 3
    x = next(iter(make_dataset(images, labels, 6)))
    assert not isinstance(x, tuple) and x.shape == (6, 2, 2, 1)
    x, y = next(iter(make_dataset(images, labels, 6, with_labels=True)))
    assert y.dtype.name == "int64"
    np.testing.assert_array_equal(np.asarray(y), labels)


def test_pipeline_shuffle_reproducible():
    images = indexed_images(50)
    assert first_values(make_dataset(images, None, 8)) == list(range(50))
    a = make_dataset(images, None, 8, shuffle=True, seed=3, shuffle_buffer=0)
    b = make_dataset(images, None, 8, shuffle=True, seed=3, shuffle_buffer=0)
    epoch1, epoch2 = first_values(a), first_values(a)
    assert epoch1 == first_values(b) and sorted(epoch1) == list(range(50))
    assert epoch1 != list(range(50)) and epoch2 != epoch1  # reshuffled every epoch
    assert first_values(make_dataset(images, None, 8, shuffle=True, seed=4)) != epoch1


def test_pipeline_feeds_keras():
    import keras

    model = keras.Sequential(
        [keras.Input((2, 2, 1)), keras.layers.Flatten(), keras.layers.Dense(1)]
    )
    out = model.predict(make_dataset(indexed_images(10), None, 4), verbose=0)
    assert out.shape == (10, 1)


def test_load_datasets_bundle(tmp_path):
    (xtr, ytr), (xte, yte) = fake_split(30, 0), fake_split(20, 1)
    write_npz(tmp_path / "mnist.npz", x_train=xtr, y_train=ytr, x_test=xte, y_test=yte)
    config = Config(seed=7, data=DataConfig(source="npz", dir=str(tmp_path), batch_size=8))
    bundle = load_datasets(config)
    assert isinstance(bundle, DataBundle)
    assert (bundle.num_train, bundle.num_val, bundle.image_shape, bundle.seed) == (
        30,
        20,
        (6, 5, 1),
        7,
    )
    assert bundle.steps_per_epoch() == 4 and bundle.steps_per_epoch(drop_remainder=True) == 3
    assert [b.shape[0] for b in bundle.train_dataset()] == [8, 8, 8, 6]
    x, y = next(iter(bundle.val_dataset(with_labels=True)))
    np.testing.assert_allclose(np.asarray(x)[..., 0], xte[:8] / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(y), yte[:8])
    no_val = load_datasets(DataConfig(source="npz", dir=str(tmp_path), val_split=""))
    assert no_val.val_dataset() is None and no_val.num_val == 0


# ---------------------------------------------------------------------------
# Real MNIST (integration)
# ---------------------------------------------------------------------------


@pytest.mark.integration
def test_real_mnist_test_split(mnist10k_dir):
    cfg = DataConfig(
        source="idx", dir=str(mnist10k_dir), train_split="test[:80%]", val_split="test[80%:]"
    )
    bundle = load_datasets(cfg)
    assert (bundle.num_train, bundle.num_val) == (8000, 2000)
    assert bundle.image_shape == (28, 28, 1)
    for labels, n in ((bundle.train_labels, 8000), (bundle.val_labels, 2000)):
        counts = np.bincount(labels, minlength=10)
        assert len(counts) == 10 and counts.sum() == n
        assert counts.min() > 0.07 * n and counts.max() < 0.14 * n, counts
    assert bundle.train_images.max() == 255 and bundle.train_images.min() == 0
    x = next(iter(bundle.train_dataset()))
    assert x.shape == (128, 28, 28, 1)
    assert 0.0 <= float(np.min(x)) and float(np.max(x)) <= 1.0
    assert 0.05 < float(np.mean(x)) < 0.25  # MNIST mean intensity is about 0.13


def test_tfds_unprepared_is_downloaded_when_online(monkeypatch, tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    # DummyMnist "downloads" by generating its examples: the online path without a network.
    monkeypatch.setattr(
        tfds, "builder", lambda name, data_dir: tfds.testing.DummyMnist(data_dir=data_dir)
    )
    monkeypatch.setattr(sources_mod, "_network_available", lambda timeout=3.0: True)
    cfg = DataConfig(name="dummy_mnist", source="tfds", dir=str(tmp_path))
    images, labels = load_split(cfg, "test")
    assert images.shape == (20, 28, 28, 1) and labels.shape == (20,)
    assert (tmp_path / "dummy_mnist").is_dir()


def test_tfds_unprepared_offline_never_downloads(monkeypatch, tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    monkeypatch.setattr(
        tfds, "builder", lambda name, data_dir: tfds.testing.DummyMnist(data_dir=data_dir)
    )
    monkeypatch.setattr(sources_mod, "_network_available", lambda timeout=3.0: False)
    with pytest.raises(DataError, match="without network access"):
        load_split(DataConfig(name="dummy_mnist", source="tfds", dir=str(tmp_path)), "test")
    assert not (tmp_path / "dummy_mnist").exists()
