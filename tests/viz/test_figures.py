"""Tests of kmixvae.viz.figures: every PNG is written, non-empty and of a sane size."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from kmixvae.viz.figures import (
    collect_latents,
    load_history,
    make_all_figures,
    pca_2d,
    plot_training_curves,
)
from tests.helpers.tiny import tiny_model

EXPECTED = [
    "mixture/channel_latents_grid.png",
    "core/latent_spaces.png",
    "core/model_reconstructions.png",
    "mixture/channel_samples.png",
    "mixture/channel_manifolds.png",
    "mixture/channel_usage.png",
    "mixture/channel_confusion.png",
    "core/training_curves.png",
]
HISTORY = {
    "loss": [900.0, 700.0, 650.0],
    "recon": [890.0, 690.0, 640.0],
    "kl_z": [5.0, 6.0, 7.0],
    "kl_c": [0.5, 0.4, 0.3],
    "usage_entropy": [1.0, 1.05, 1.09],
    "val_loss": [910.0, 720.0, 690.0],
    "val_recon": [900.0, 710.0, 680.0],
}


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def synthetic(n=64, seed=0):
    rng = np.random.default_rng(seed)
    return ((rng.random((n, 28, 28, 1)) < 0.2) * 255).astype(np.uint8), rng.integers(0, 10, n)


@pytest.mark.parametrize("latent_dim", [2, 3])
def test_make_all_figures(tmp_path, latent_dim):
    model = tiny_model(model={"latent": {"dim": latent_dim}})
    model.set_active_channels([0, 2])  # a locked channel in the middle
    images, labels = synthetic()
    paths = make_all_figures(
        model, images, labels, tmp_path / "figures", history=HISTORY, max_points=40, batch_size=32
    )
    assert [p.relative_to(tmp_path / "figures").as_posix() for p in paths] == EXPECTED
    for path in paths:
        assert path.is_file() and path.stat().st_size > 2000, path
        width, height = png_size(path)
        assert 300 <= width <= 4000 and 150 <= height <= 4000, (path, width, height)
    leftovers = [p.name for p in (tmp_path / "figures").rglob("*.tmp*")]
    assert not leftovers


def test_channel_label_counts_show_a_shared_and_a_split_label():
    from kmixvae.viz.figures import channel_label_counts

    # Channel 3 holds labels 4 and 9; label 1 is split over channels 0 and 2; channel 5 is masked.
    labels = np.array([4] * 6 + [9] * 4 + [1] * 5 + [1] * 3 + [7] * 4)
    channel = np.array([3] * 10 + [0] * 5 + [2] * 3 + [1] * 4)
    chans, classes, counts, matched = channel_label_counts(labels, channel, (0, 1, 2, 3, 4))
    assert classes.tolist() == [1, 4, 7, 9]
    assert matched == {0: 1, 3: 4, 1: 7}
    assert chans == [0, 3, 1, 2, 4]  # by matched label, then unmatched (no masked channel 5)
    assert counts[chans.index(3)].tolist() == [0, 6, 0, 4]
    assert counts[:, 0].tolist() == [5, 0, 0, 3, 0]


def test_collect_latents_caps_points():
    model = tiny_model()
    images, labels = synthetic(50)
    s = collect_latents(model, images, labels, max_points=20, batch_size=16)
    assert s.points.shape == (20, 2) and len(s.index) == 20
    assert s.channel.shape == (50,) and np.all(np.diff(s.index) > 0)
    enc = model.encode(images[s.index].astype("float32") / 255.0)
    expected = enc["mu"][np.arange(20), enc["channel"]]
    np.testing.assert_allclose(s.points, expected, rtol=1e-4, atol=1e-5)
    assert s.report["channels"][0]["count"] == int((s.channel == 0).sum())


def test_pca_2d():
    rng = np.random.default_rng(0)
    pts = rng.standard_normal((200, 5)) * np.array([5.0, 2.0, 0.1, 0.1, 0.1])
    xy, axes, ratio = pca_2d(pts)
    assert xy.shape == (200, 2) and axes.shape == (2, 5)
    assert abs(axes[0, 0]) > 0.99 and abs(axes[1, 1]) > 0.99
    assert ratio.sum() > 0.99
    same, _, _ = pca_2d(pts[:, :2])
    np.testing.assert_allclose(same, pts[:, :2])


def _curve_xs(monkeypatch, history, tmp_path) -> dict[str, list[float]]:
    """The x values of every line `plot_training_curves` draws, by panel title and label."""
    from kmixvae.viz import figures

    drawn = {}
    save = figures._save

    def record(fig, path):  # _save clears the figure: read it first
        for ax in fig.axes:
            for line in ax.lines:
                drawn[f"{ax.get_title()}/{line.get_label()}"] = list(line.get_xdata())
        return save(fig, path)

    monkeypatch.setattr(figures, "_save", record)
    path = figures.plot_training_curves(history, tmp_path / "curves.png")
    assert path.stat().st_size > 2000
    return drawn


def test_training_curves_put_each_value_at_its_epoch(tmp_path, monkeypatch):
    """history.csv as fit writes it (HistoryWriter: epoch from 1): epoch e is drawn at e."""
    from kmixvae.training.callbacks import HistoryWriter

    csv_path = tmp_path / "history.csv"
    writer = HistoryWriter(csv_path)
    for epoch in range(3):  # Keras counts epochs from 0 in on_epoch_end
        writer.on_epoch_end(epoch, {k: v[epoch] for k, v in HISTORY.items()})
    h = load_history(csv_path)
    assert h["epoch"] == [1.0, 2.0, 3.0] and h["val_loss"] == HISTORY["val_loss"]
    drawn = _curve_xs(monkeypatch, csv_path, tmp_path)
    assert drawn["loss/train"] == [1.0, 2.0, 3.0]
    assert drawn["loss/validation"] == [1.0, 2.0, 3.0]
    assert drawn["kl_z/train"] == [1.0, 2.0, 3.0]


def test_training_curves_of_a_keras_history_start_at_epoch_one(tmp_path, monkeypatch):
    drawn = _curve_xs(monkeypatch, HISTORY, tmp_path)  # no epoch column: epochs 1, 2, 3
    assert drawn["loss/train"] == [1.0, 2.0, 3.0]


def test_training_curves_leave_out_what_was_not_recorded():
    from kmixvae.viz.figures import training_curves_figure

    fig = training_curves_figure(HISTORY)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["loss", "recon", "kl_z", "kl_c", "usage_entropy"]  # no nelbo, no accuracy
    assert training_curves_figure({"epoch": [1.0], "other": [2.0]}) is None
    with pytest.raises(ValueError, match="records none of"):
        plot_training_curves({"other": [2.0]}, "unused.png")


def test_channel_samples_rows_show_their_share(tmp_path, monkeypatch):
    from kmixvae.viz import figures

    model = tiny_model((28, 28, 1))
    model.set_active_channels([0, 2])
    generation = {
        "n_per_channel": 200,
        "sample_consistency": 0.5,
        "channels": [
            {"channel": 0, "active": True, "matched_label": 7, "sample_consistency": 0.93},
            {"channel": 1, "active": False, "matched_label": None, "sample_consistency": None},
            {"channel": 2, "active": True, "matched_label": None, "sample_consistency": 0.0},
        ],
    }
    drawn = {}
    save = figures._save

    def record(fig, path):  # _save clears the figure: read it first
        drawn["labels"] = [ax.get_ylabel() for ax in fig.axes]
        drawn["title"] = fig._suptitle.get_text()
        return save(fig, path)

    monkeypatch.setattr(figures, "_save", record)
    path = figures.plot_channel_samples(
        model, tmp_path / "s.png", n_per_channel=4, generation=generation
    )
    assert path.is_file()
    assert drawn["labels"] == ["ch 0\n7: 0.93", "ch 2\nno label: 0.00"]
    assert "200 prior draws" in drawn["title"]
    # Without generation metrics, the rows carry the channel only.
    figures.plot_channel_samples(model, tmp_path / "t.png", n_per_channel=4)
    assert drawn["labels"] == ["ch 0", "ch 2"]
