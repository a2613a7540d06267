"""The stages after the neighbour graph stay bounded on a large set (issue 26, item 2).

Each sampled stage reads at most its cap of images on a set larger than the
cap (a small cap passed in, not a giant set), and below the cap it reads
every image and gives what it gave before the cap existed. The refresh's
feature pass reads every image, in chunks, and gives what one call gives.
"""

from __future__ import annotations

import numpy as np
import pytest

from kmixvae.data.neighbors import clear_pixel_cache
from kmixvae.data.pipeline import DataBundle
from kmixvae.data.sampling import SAMPLE_CAP, fixed_sample, sample_indices
from kmixvae.evaluation import generation as gen
from kmixvae.training.callbacks import image_features
from kmixvae.training.channel_pruning import ChannelPruning, pixel_pairs, plan_pruning
from kmixvae.training.head_selection import HeadSelection
from kmixvae.utils.images import as_float_images
from tests.helpers.generation import IDENTITY, NUM_CLASSES, FakeModel, class_images


def test_the_cap_keeps_todays_runs_whole():
    assert SAMPLE_CAP >= 10_000  # 8,000-image runs read every image, as before


def test_sample_indices_are_all_rows_up_to_the_cap_and_a_fixed_sample_above():
    assert sample_indices(50, cap=50) is None
    pick = sample_indices(500, cap=50, seed=3)
    assert len(pick) == 50 and len(np.unique(pick)) == 50
    assert np.all(np.diff(pick) > 0) and pick.min() >= 0 and pick.max() < 500
    np.testing.assert_array_equal(pick, sample_indices(500, cap=50, seed=3))
    assert not np.array_equal(pick, sample_indices(500, cap=50, seed=4))
    with pytest.raises(ValueError, match="cap"):
        sample_indices(5, cap=0)


def test_fixed_sample_returns_the_arrays_themselves_below_the_cap():
    x, y = np.arange(40).reshape(10, 2, 2, 1).astype("uint8"), np.arange(10)
    got_x, got_y = fixed_sample(x, y, cap=10)
    assert got_x is x and got_y is y
    small_x, small_y, none = fixed_sample(x, y, None, cap=4, seed=1)
    assert small_x.dtype == np.uint8 and len(small_x) == 4 and none is None
    np.testing.assert_array_equal(small_x[:, 0, 0, 0] // 4, small_y)  # rows stay paired


class _PruningModel:
    """A stand-in for the pruning callback: channel = brightest quarter, sizes recorded."""

    def __init__(self, num_channels=4):
        self.num_channels = num_channels
        self.active_channels = list(range(num_channels))
        self.encoded = []

    def encode(self, x, batch_size=512):
        self.encoded.append(len(x))
        x = np.asarray(x)
        return {"channel": (x.reshape(len(x), -1).mean(axis=1) * self.num_channels).astype(int)}

    def set_active_channels(self, channels):
        self.active_channels = list(channels)


def _graded_images(n, seed=0):
    """uint8 images whose brightness puts each in one of four bands (four clusters)."""
    rng = np.random.default_rng(seed)
    band = rng.integers(0, 4, n)
    base = (band[:, None, None, None] * 64 + 8).astype(float)
    return np.clip(base + rng.normal(0, 6, (n, 4, 4, 1)), 0, 255).astype("uint8")


def test_pruning_checks_read_at_most_the_cap():
    images = _graded_images(300)
    model = _PruningModel()
    pruning = ChannelPruning(images, [0], neighbors=5, sample_cap=80, seed=0, log=lambda m: None)
    pruning.set_model(model)
    assert len(pruning.images) == 80 and pruning.images.dtype == np.uint8
    pruning.on_epoch_begin(0)
    assert model.encoded == [80]


def test_pruning_below_the_cap_reads_every_image_as_before():
    clear_pixel_cache()
    images = _graded_images(120, seed=1)
    messages = []
    pruning = ChannelPruning(images, [0], neighbors=5, min_usage=0.0, log=messages.append)
    model = _PruningModel()
    pruning.set_model(model)
    assert pruning.images is images
    pruning.on_epoch_begin(0)
    assert model.encoded == [120]
    # What the check did before the cap: every image, the pixel graph of all of them.
    before = plan_pruning(
        _PruningModel().encode(as_float_images(images))["channel"],
        pixel_pairs(images, 5),
        list(range(4)),
        pruning.merge_ratio,
        0.0,
        1,
    )
    assert [e["channel"] for e in pruning.events] == [e["channel"] for e in before]
    assert "sample" not in messages[-1]


def test_head_selection_records_at_most_the_cap_of_held_out_images():
    x, y = np.zeros((300, 4, 4, 1), "uint8"), np.arange(300) % 3
    capped = HeadSelection(x, val_images=x, val_labels=y, sample_cap=50)
    assert len(capped.val_images) == 50 and len(capped.val_labels) == 50
    whole = HeadSelection(x, val_images=x, val_labels=y, sample_cap=300)
    assert whole.val_images is x and whole.val_labels is y


def _old_check_disjoint(train_images, eval_images, max_shared=0.01):
    """check_disjoint before it streamed (a set of every training row)."""
    seen = {row.tobytes() for row in gen._as_flat_floats(train_images)}
    evaluated = gen._as_flat_floats(eval_images)
    shared = sum(row.tobytes() in seen for row in evaluated)
    if shared > max_shared * len(evaluated):
        raise ValueError(f"{shared} of the {len(evaluated)} evaluated images")


@pytest.mark.parametrize("shared", [0, 1, 3])
def test_streamed_disjointness_check_decides_as_before(shared):
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, (40, 3, 3, 1)).astype("uint8")
    evaluated = rng.integers(0, 256, (20, 3, 3, 1)).astype("uint8")
    evaluated[: shared + 1] = train[5]  # one training image evaluated shared + 1 times
    if shared == 0:
        evaluated[0] = rng.integers(0, 256, (3, 3, 1))
    outcomes = []
    for check in (
        lambda: _old_check_disjoint(train, evaluated, max_shared=0.1),
        lambda: gen.check_disjoint(train, evaluated, max_shared=0.1, chunk=3),
    ):
        try:
            check()
            outcomes.append(None)
        except ValueError as e:
            outcomes.append(str(e).split(" evaluated")[0])
    assert outcomes[0] == outcomes[1]
    assert (outcomes[0] is None) == (shared + 1 <= 2)


class _CountingModel(FakeModel):
    def __init__(self):
        super().__init__(IDENTITY, IDENTITY)
        self.encoded = []

    def encode(self, x, batch_size=512):
        self.encoded.append(len(x))
        return super().encode(x, batch_size)


def _bundle(n_train, n_val):
    y_train = np.arange(n_train) % NUM_CLASSES
    y_val = np.random.default_rng(5).integers(0, NUM_CLASSES, size=n_val)
    return DataBundle(
        class_images(y_train, seed=11),
        y_train,
        val_images=class_images(y_val, seed=2),
        val_labels=y_val,
    )


def _untimed(metrics):
    out = {k: v for k, v in metrics.items() if k != "elapsed_s"}
    out["judge"] = {k: v for k, v in out["judge"].items() if k != "train_seconds"}
    return out


def test_end_of_run_generation_reads_at_most_the_cap(tmp_path, monkeypatch):
    monkeypatch.setenv("KMIXVAE_CACHE_DIR", str(tmp_path))
    data, model = _bundle(400, 300), _CountingModel()
    m = gen.end_of_run_generation(model, data, "train", n_per_channel=5, sample_cap=100)
    assert m["judge"]["train_images"] == 90  # 100 sampled, 10% held out by the judge
    assert model.encoded == [100, 100]  # the validation sample: encoded, then reconstructed


def test_end_of_run_generation_below_the_cap_is_what_it_was(tmp_path, monkeypatch):
    monkeypatch.setenv("KMIXVAE_CACHE_DIR", str(tmp_path))
    data = _bundle(400, 300)
    now = gen.end_of_run_generation(FakeModel(IDENTITY, IDENTITY), data, "train", n_per_channel=5)
    judge = gen.load_or_train_judge(data.train_images, data.train_labels, seed=0, source="train")
    before = gen.generation_metrics(
        FakeModel(IDENTITY, IDENTITY), judge, data.val_images, data.val_labels, n_per_channel=5
    )
    assert _untimed(now) == _untimed(before)
    assert now["judge"]["train_images"] == 360


class _FeatureModel:
    """Features = the first pixels of each image; every call's size recorded."""

    def __init__(self):
        self.calls = []

    def features(self, x, batch_size=512):
        self.calls.append(len(x))
        assert x.dtype == np.float32
        return np.asarray(x).reshape(len(x), -1)[:, :3] * 2.0


def test_refresh_features_are_one_chunked_pass_over_every_image():
    x = np.random.default_rng(0).integers(0, 256, (2100, 2, 2, 1)).astype("uint8")
    model = _FeatureModel()
    got = image_features(model, x, chunk=1024)
    # chunks cut on 512-image batches; a last chunk of <= 512 images joins the one before
    assert model.calls == [1024, 1076]
    np.testing.assert_array_equal(got, as_float_images(x).reshape(2100, -1)[:, :3] * 2.0)
    assert got.dtype == np.float32
    model.calls.clear()
    image_features(model, x[:300], chunk=1024)
    assert model.calls == [300]


def test_refresh_features_equal_one_call_on_a_real_model():
    from tests.helpers.tiny import tiny_model

    model = tiny_model(image_shape=(8, 8, 1))
    x = np.random.default_rng(1).integers(0, 256, (1100, 8, 8, 1)).astype("uint8")
    np.testing.assert_array_equal(
        image_features(model, x, chunk=512), model.features(as_float_images(x))
    )
