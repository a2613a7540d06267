"""Your own images: folders of PNG/JPEG files, .npz of any H x W x C, any TFDS image set.

A synthetic folder of coloured shapes (32x32 RGB, three classes as
sub-folders) trains with `kmixvae fit`, then `evaluate` and `sample` work on
the model; a flat folder trains without labels and every label metric and
figure says it is skipped; an .npz of 24x24x3 trains; bad folders end with
one `error:` line and exit 2; the model adapts its decoder to the image
shape, and the default 28x28x1 model is unchanged.

Runs on the backend in KERAS_BACKEND (tensorflow or jax).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from kmixvae.config import DataConfig, from_dict, load_config
from kmixvae.data import load_split
from kmixvae.data import sources as sources_mod
from kmixvae.data.image_folder import read_image_folder
from kmixvae.errors import ConfigError, DataError
from kmixvae.models.factory import build_model
from kmixvae.runs import detect_source
from tests.helpers.cli import assert_one_error_line, run_cli, set_args
from tests.helpers.runs import SMOKE

CLASSES = ("circle", "square", "triangle")
COLOURS = {"circle": (230, 40, 40), "square": (40, 200, 40), "triangle": (40, 60, 230)}
# Parameter counts of the 28x28x1 models as built on main before images of any shape were read
# (`build_model(from_dict({}), (28, 28, 1)).count_params()`, and the same for configs/smoke.json).
MAIN_PARAMS = {"default": 927030, "smoke": 31289}


def _shape_image(kind: str, rng, size: int = 32):
    from PIL import Image, ImageDraw

    background = tuple(int(v) for v in rng.integers(0, 40, 3))
    im = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(im)
    r = int(rng.integers(size // 5, size // 3))
    cx, cy = (int(v) for v in rng.integers(r + 1, size - r - 1, 2))
    box = (cx - r, cy - r, cx + r, cy + r)
    if kind == "circle":
        draw.ellipse(box, fill=COLOURS[kind])
    elif kind == "square":
        draw.rectangle(box, fill=COLOURS[kind])
    else:
        draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=COLOURS[kind])
    return im


def write_shapes(folder: Path, per_class: int = 20, labelled: bool = True, seed: int = 0) -> Path:
    """`per_class` images of each shape, 32x32 RGB; class sub-folders, or one flat folder."""
    rng = np.random.default_rng(seed)
    for kind in CLASSES:
        out = folder / kind if labelled else folder
        out.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            # A few JPEGs among the PNGs: both are read.
            suffix = ".jpg" if i % 5 == 4 else ".png"
            _shape_image(kind, rng).save(out / f"{kind}_{i:03d}{suffix}")
    return folder


@pytest.fixture(scope="module")
def shapes_dir(tmp_path_factory) -> Path:
    return write_shapes(tmp_path_factory.mktemp("shapes"))


def tiny_sets(tmp: Path, *extra: str) -> list[str]:
    """The tiny 1-epoch run: 45 training images, 15 validation, batches of 15."""
    return set_args(
        "data.train_split=train[:75%]",
        "data.val_split=train[75%:]",
        "data.batch_size=15",
        "training.epochs=1",
        "curriculum.enabled=false",
        "output.report=false",
        f"output.saved_model={tmp / 'm.keras'}",
        f"output.runs_dir={tmp / 'runs'}",
        *extra,
    )


def fit(tmp: Path, data: Path, *extra: str) -> str:
    _, out, _ = run_cli("fit", "--config", SMOKE, "--data-dir", data, *tiny_sets(tmp, *extra))
    return out


# ---------------------------------------------------------------------- reading


def test_folder_of_class_folders_gives_labels(shapes_dir):
    images, labels, classes = read_image_folder(shapes_dir)
    assert images.shape == (60, 32, 32, 3) and images.dtype == np.uint8
    assert classes == list(CLASSES)
    assert labels.dtype == np.int64 and np.bincount(labels).tolist() == [20, 20, 20]
    # circles are red: the red channel dominates the shape's pixels of class 0
    circle = images[labels == 0].reshape(-1, 3).astype(int)
    bright = circle[circle.max(axis=1) > 150]
    assert (bright[:, 0] > bright[:, 2]).mean() > 0.9
    assert detect_source(shapes_dir) == "folder"
    x, y = load_split(DataConfig(source="folder", dir=str(shapes_dir)), "train[:50%]")
    assert x.shape == (30, 32, 32, 3) and y.shape == (30,)


def test_split_folders_and_grey_images(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("test", 4)):
        for cls in ("a", "b") if split == "train" else ("b",):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 255, (20, 24), dtype=np.uint8)
                Image.fromarray(pixels, "L").save(tmp_path / split / cls / f"{i}.png")
    cfg = DataConfig(source="folder", dir=str(tmp_path))
    assert sources_mod.available_splits(cfg) == ["test", "train"]
    x_train, y_train = load_split(cfg, "train")
    x_test, y_test = load_split(cfg, "test")
    assert x_train.shape == (12, 20, 24, 1) and x_test.shape == (4, 20, 24, 1)
    # classes are numbered over both splits: test's only class "b" is 1, as in train
    assert sorted(set(y_train.tolist())) == [0, 1] and set(y_test.tolist()) == {1}


def test_flat_folder_and_npz_without_y_are_unlabelled(tmp_path):
    flat = write_shapes(tmp_path / "flat", per_class=2, labelled=False)
    images, labels = load_split(DataConfig(source="folder", dir=str(flat)), "train")
    assert images.shape == (6, 32, 32, 3) and labels is None
    np.savez(tmp_path / "x.npz", x_train=np.zeros((5, 16, 16, 3), np.uint8))
    images, labels = load_split(DataConfig(source="npz", dir=str(tmp_path / "x.npz")), "train")
    assert images.shape == (5, 16, 16, 3) and labels is None


def test_npz_with_wrong_channel_count_is_rejected(tmp_path):
    np.savez(tmp_path / "x.npz", x_train=np.zeros((5, 8, 8, 2), np.uint8))
    with pytest.raises(DataError, match=r"2 channels; kmixvae reads 1 \(grey\), 3 \(RGB\)"):
        load_split(DataConfig(source="npz", dir=str(tmp_path / "x.npz")), "train")


# ---------------------------------------------------------------------- config


def test_config_takes_folder_source_and_any_tfds_name():
    assert from_dict({"data": {"source": "folder", "dir": "x"}}).data.source == "folder"
    assert from_dict({"data": {"name": "cifar10"}}).data.name == "cifar10"
    assert from_dict({"data": {"name": "emnist/digits"}}).data.name == "emnist/digits"
    with pytest.raises(ConfigError, match=r"data.source: 'folders' is not one of .*folder"):
        from_dict({"data": {"source": "folders"}})
    with pytest.raises(ConfigError, match=r"data.name: 'CIFAR 10' is not a TFDS dataset name"):
        from_dict({"data": {"name": "CIFAR 10"}})


def test_tfds_rgb_dataset_with_mock_data(monkeypatch, tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    monkeypatch.setattr(sources_mod, "_tfds_is_prepared", lambda builder: True)
    with tfds.testing.mock_data(num_examples=12):
        images, labels = load_split(
            DataConfig(name="cifar10", source="tfds", dir=str(tmp_path)), "train"
        )
    assert images.shape == (12, 32, 32, 3) and images.dtype == np.uint8
    assert labels.shape == (12,) and labels.dtype == np.int64


# ---------------------------------------------------------------------- model


@pytest.mark.parametrize("shape", [(28, 28, 1), (32, 32, 3), (64, 64, 3), (30, 26, 3)])
def test_model_adapts_to_the_image_shape(shape):
    config = load_config(SMOKE)
    model = build_model(config, shape)
    x = np.random.default_rng(0).random((2, *shape)).astype("float32")
    rec = model.reconstruct(x)["mean"]
    assert rec.shape == (2, *shape)
    assert model.sample(3, seed=0)["mean"].shape == (3, *shape)
    # the decoder starts from a grid computed from the shape: 2 upsampling blocks (x2 each
    # from filters [8, 8] and the head's pixel shuffle) -> ceil(H / 4) x ceil(W / 4)
    assert model.decoder._grid == (-(-shape[0] // 4), -(-shape[1] // 4))


def _network_params(model) -> int:
    """`count_params()` without the train step's schedule switches (not saved, not the network)."""
    switches = int(np.prod(model.term_switches.shape)) + int(np.prod(model.head_weights.shape))
    return model.count_params() - switches


def test_mnist_shape_builds_the_same_model_as_before():
    assert _network_params(build_model(from_dict({}), (28, 28, 1))) == MAIN_PARAMS["default"]
    assert _network_params(build_model(load_config(SMOKE), (28, 28, 1))) == MAIN_PARAMS["smoke"]


# ---------------------------------------------------------------------- CLI


def test_fit_evaluate_sample_on_an_rgb_folder(tmp_path, shapes_dir):
    out = fit(tmp_path, shapes_dir)
    assert "data.source=folder" in out
    model = tmp_path / "m.keras"
    run = next((tmp_path / "runs").iterdir())
    assert json.loads((run / "config.json").read_text())["data"]["source"] == "folder"
    _, out, _ = run_cli(
        "evaluate",
        run,
        "--iwae-samples",
        "2",
        "--samples-per-channel",
        "0",
        "--out",
        tmp_path / "e.json",
    )
    metrics = json.loads((tmp_path / "e.json").read_text())
    assert metrics["image_shape"] == [32, 32, 3] and metrics["num_images"] == 15
    assert 0.0 <= metrics["accuracy"] <= 1.0 and "labels_skipped" not in metrics
    assert "accuracy (1-to-1)" in out
    run_cli("sample", model, "--n", "9", "--out", tmp_path / "s.png")
    from PIL import Image

    with Image.open(tmp_path / "s.png") as im:
        assert im.mode in ("RGB", "RGBA") and im.width > 32


def test_flat_folder_trains_and_label_metrics_say_skipped(tmp_path):
    flat = write_shapes(tmp_path / "flat", per_class=20, labelled=False)
    fit(tmp_path, flat, "output.report=true")
    run = next((tmp_path / "runs").iterdir())
    assert (run / "model.keras").is_file()
    _, out, _ = run_cli("evaluate", run, "--iwae-samples", "2", "--out", tmp_path / "e.json")
    skipped = [line for line in out.splitlines() if "skipped" in line]
    assert len(skipped) == 1 and skipped[0].startswith("label metrics skipped"), out
    metrics = json.loads((tmp_path / "e.json").read_text())
    assert metrics["accuracy"] is None and metrics["specialised_count"] is None
    assert "generation" not in metrics
    _, out, _ = run_cli("visualize", run, "--samples-per-channel", "4", "--out", tmp_path / "f")
    assert "figures skipped (the data has no labels)" in out
    assert (tmp_path / "f" / "mixture" / "channel_samples.png").is_file()
    assert not (tmp_path / "f" / "mixture" / "channel_confusion.png").exists()
    _, out, _ = run_cli("encode", run, "--out", tmp_path / "z.npz")
    with np.load(tmp_path / "z.npz") as z:
        assert "label" not in z.files and z["q"].shape[0] == 15


def test_npz_of_rgb_images_trains(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (60, 24, 24, 3), dtype=np.uint8)
    np.savez(tmp_path / "rgb.npz", x_train=x, y_train=np.arange(60) % 3)
    out = fit(tmp_path, tmp_path / "rgb.npz")
    assert "data.source=npz" in out
    from kmixvae.runs import load_model_file

    assert load_model_file(tmp_path / "m.keras").decoder.image_shape == (24, 24, 3)


def _bad(tmp_path, name):
    folder = tmp_path / name
    folder.mkdir()
    return folder


@pytest.mark.parametrize(
    "make, needles",
    [
        (lambda d: (d / "notes.txt").write_text("x"), ["holds neither", "image files"]),
        (
            lambda d: (write_shapes(d, per_class=2), (d / "circle" / "bad.png").write_bytes(b"no")),
            ["bad.png", "not a readable image"],
        ),
        (
            lambda d: (
                write_shapes(d, per_class=2),
                __import__("PIL.Image").Image.new("RGB", (28, 28)).save(d / "square" / "big.png"),
            ),
            ["images of different sizes", "32x32 (6 images", "28x28 (1 images", "big.png"],
        ),
        (
            lambda d: (
                write_shapes(d, per_class=2),
                _shape_image("circle", np.random.default_rng(0)).save(d / "x.png"),
            ),
            ["both image files", "class folders"],
        ),
    ],
    ids=["no-images", "unreadable", "mixed-sizes", "files-beside-classes"],
)
def test_bad_folder_is_one_error_line(tmp_path, make, needles):
    folder = _bad(tmp_path, "bad")
    make(folder)
    result, out, err = run_cli(
        "fit", "--config", SMOKE, "--data-dir", folder, *tiny_sets(tmp_path), expect=None
    )
    if result.exit_code == 2:  # the --data-dir line comes before the data is read
        out = "\n".join(line for line in out.splitlines() if not line.startswith("--data-dir:"))
    assert_one_error_line(result, out, err, *needles)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_mixed_sizes_are_resized_only_when_data_image_size_asks(tmp_path):
    from PIL import Image

    folder = write_shapes(tmp_path / "mixed", per_class=2)
    Image.new("RGB", (40, 20), (255, 0, 0)).save(folder / "circle" / "wide.png")
    with pytest.raises(DataError, match=r"different sizes.*set data.image_size=\[H,W\]"):
        load_split(DataConfig(source="folder", dir=str(folder)), "train")
    cfg = from_dict({"data": {"source": "folder", "dir": str(folder), "image_size": [16, 16]}})
    images, labels = load_split(cfg.data, "train")
    assert images.shape == (7, 16, 16, 3) and labels.tolist().count(0) == 3
    # the all-red 40x20 image stays all red once resized
    wide = images[2].reshape(-1, 3)
    assert (wide == [255, 0, 0]).all()
    with pytest.raises(ConfigError, match=r"data.image_size: \[16, 16\] is set, but it is only"):
        from_dict({"data": {"source": "npz", "image_size": [16, 16]}})
    with pytest.raises(ConfigError, match=r"data.image_size: \[16\] must be \[height, width\]"):
        from_dict({"data": {"source": "folder", "image_size": [16]}})
