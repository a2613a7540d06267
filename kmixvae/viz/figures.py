"""PNG figures of a trained `MixtureVAE`: latents, channels, samples, manifolds, curves.

Figures are drawn on `matplotlib.figure.Figure` objects rendered by Agg
(no pyplot state, no GUI, nothing left open), and written atomically; the
report page embeds the same figures (`figure_png`). What the model draws
(prior samples, reconstructions) comes from `viz/pictures.py`, tiling from
`viz/grids.py`, so `visualize`, the report and TensorBoard show one thing.
Images are streamed through the model in batches; point clouds keep at
most `max_points` images (a seeded random subsample); only per-image
scalars (channel, confidence) are kept for the whole set. Latents with
d > 2 are projected on their first two PCA axes, as the titles say.

Layout under the figures folder:

- `core/latent_spaces.png`, `core/model_reconstructions.png`,
  `core/training_curves.png` (with a history);
- `mixture/channel_latents_grid.png`, `mixture/channel_samples.png`,
  `mixture/channel_manifolds.png`, `mixture/channel_usage.png`.

Example:

```python
paths = make_all_figures(model, x_test, y_test, "runs/demo/figures",
                         history="runs/demo/history.csv")
```
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from kmixvae.evaluation.metrics import channel_report
from kmixvae.models.mixture_loss import LOSS_TERMS
from kmixvae.utils.files import atomic_write
from kmixvae.utils.images import as_float_images
from kmixvae.viz.grids import image_grid
from kmixvae.viz.pictures import channel_samples, reconstructions

LABEL_CMAP = colormaps["tab10"]
# Training curves: every loss term, the held-out clustering accuracy and the channel count.
CURVE_KEYS = (*LOSS_TERMS, "cluster_acc", "active_channels")
CURVE_TITLES = {
    "nelbo": "-ELBO (nats)",
    "cluster_acc": "clustering accuracy",
    "active_channels": "active channels",
}
CURVE_UNITS = {"loss": "loss", "cluster_acc": "accuracy", "active_channels": "channels"}


# ---------------------------------------------------------------------------
# Data collection
# ---------------------------------------------------------------------------


@dataclass
class LatentSummary:
    """What the figures need from one streamed pass of the encoder.

    Attributes:
        num_channels: int. K.
        active_channels: tuple of int.
        latent_dim: int. d.
        channel: `(N,)` argmax q(c|x) of every image.
        labels: `(N,)` true labels.
        confidence: `(N,)` max_c q(c|x).
        index: `(M,)` indices of the subsampled images (M <= max_points).
        points: `(M, d)` posterior mean of each subsampled image in its chosen channel.
        report: `channel_report` of the whole set.
        soft_usage: `(K,)` mean q(c|x) over the whole set.
    """

    num_channels: int
    active_channels: tuple
    latent_dim: int
    channel: np.ndarray
    labels: np.ndarray
    confidence: np.ndarray
    index: np.ndarray
    points: np.ndarray
    report: dict
    soft_usage: np.ndarray

    @property
    def point_channel(self) -> np.ndarray:
        return self.channel[self.index]

    @property
    def point_label(self) -> np.ndarray:
        return self.labels[self.index]


def collect_latents(
    model,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    max_points: int = 5000,
    batch_size: int = 256,
    seed: int = 0,
) -> LatentSummary:
    """Encodes the images in batches and keeps a subsample of chosen-channel means.

    Args:
        model: a `MixtureVAE`.
        images: `(N, H, W, C)` uint8 0-255 or floats in [0, 1].
        labels: `(N,)` true labels.
        max_points: int. Most points kept for the point clouds.
        batch_size: int. Images encoded per batch.
        seed: int. Seed of the subsample.

    Returns:
        A `LatentSummary`.
    """
    images = np.asarray(images)
    labels = np.asarray(labels).reshape(-1)
    n = images.shape[0]
    if labels.shape[0] != n:
        raise ValueError(f"labels: {labels.shape[0]} labels for {n} images")
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(n, size=min(n, int(max_points)), replace=False))
    channel = np.empty((n,), np.int64)
    confidence = np.empty((n,), np.float64)
    q_sum = np.zeros((model.num_channels,), np.float64)
    points = np.empty((len(keep), model.latent_dim), np.float32)
    from kmixvae.utils.progress import track

    for lo in track(range(0, n, batch_size), total=n, step=batch_size, label="encode"):
        enc = model.encode(as_float_images(images[lo : lo + batch_size]), batch_size=batch_size)
        b = enc["channel"].shape[0]
        channel[lo : lo + b] = enc["channel"]
        confidence[lo : lo + b] = enc["q"].max(axis=1)
        q_sum += enc["q"].sum(axis=0)
        sel = np.nonzero((keep >= lo) & (keep < lo + b))[0]
        local = keep[sel] - lo
        points[sel] = enc["mu"][local, enc["channel"][local]]
    report = channel_report(
        labels, channel, confidence, model.num_channels, active_channels=model.active_channels
    )
    return LatentSummary(
        num_channels=int(model.num_channels),
        active_channels=tuple(int(c) for c in model.active_channels),
        latent_dim=int(model.latent_dim),
        channel=channel,
        labels=labels,
        confidence=confidence,
        index=keep,
        points=points,
        report=report,
        soft_usage=q_sum / max(n, 1),
    )


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def pca_2d(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Projects `(M, d)` points on their first two principal axes (numpy SVD).

    Returns:
        `(projected (M, 2), axes (2, d), explained variance ratio (2,))`;
        for d <= 2 the points are returned unchanged (zero-padded to 2 columns).
    """
    points = np.asarray(points, np.float64)
    m, d = points.shape
    if d <= 2:
        out = np.zeros((m, 2))
        out[:, :d] = points
        return out, np.eye(2, d), np.ones(2)
    if m < 2:
        return np.zeros((m, 2)), np.eye(2, d), np.zeros(2)
    centred = points - points.mean(axis=0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    axes = vt[:2]
    var = s**2
    ratio = var[:2] / max(var.sum(), 1e-30)
    if axes.shape[0] < 2:
        axes = np.vstack([axes, np.eye(2, d)[1:]])
        ratio = np.append(ratio, 0.0)
    return centred @ axes.T, axes, ratio


def _pca_note(d: int, ratio=None) -> str:
    if d <= 2:
        return ""
    if ratio is None:
        return f" (PCA of d={d})"
    return f" (PCA of d={d}, {100 * float(np.sum(ratio)):.0f}% var.)"


def _channel_colors(k: int):
    cmap = colormaps["tab10" if k <= 10 else "tab20" if k <= 20 else "turbo"]
    if k > 20:
        return [cmap(i / max(k - 1, 1)) for i in range(k)]
    return [cmap(i) for i in range(k)]


def _label_color(label) -> tuple:
    return LABEL_CMAP(int(label) % 10)


def _label_legend(labels: np.ndarray) -> list:
    return [
        Line2D([], [], marker="o", linestyle="", color=_label_color(v), label=str(v))
        for v in np.unique(labels)
    ]


def _grid_shape(n: int, max_cols: int = 5) -> tuple[int, int]:
    cols = min(max(n, 1), max_cols)
    return math.ceil(max(n, 1) / cols), cols


def _show(ax, image: np.ndarray, cmap: str = "gray", vmin=0.0, vmax=1.0):
    image = np.clip(np.asarray(image, np.float32), vmin, vmax)
    if image.shape[-1] == 1:
        im = ax.imshow(image[..., 0], cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    else:
        im = ax.imshow(image, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    return im


def _save(fig: Figure, path: str | Path, dpi: int = 100) -> Path:
    path = Path(path)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight"))
    fig.clear()
    return path


def figure_png(fig: Figure, dpi: int = 80) -> bytes:
    """A figure as PNG bytes (for pages that embed it); the figure is cleared."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    fig.clear()
    return buf.getvalue()


def _cloud(ax, points: np.ndarray, labels: np.ndarray, size: float = 4) -> None:
    """One channel's latent means on its first two PCA axes, coloured by label."""
    if len(points):
        xy = pca_2d(points)[0]
        ax.scatter(xy[:, 0], xy[:, 1], s=size, c=[_label_color(v) for v in labels], alpha=0.7)
    else:
        ax.text(0.5, 0.5, "no images", ha="center", va="center", transform=ax.transAxes)


def _channel_title(report: dict, c: int) -> str:
    ch = report["channels"][c]
    pur = "-" if ch["purity"] is None else f"{ch['purity']:.2f}"
    return f"channel {c}: usage {ch['usage']:.1%}, purity {pur}"


# ---------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------


def plot_channel_latents_grid(summary: LatentSummary, path: str | Path) -> Path:
    """One panel per active channel: latent means of the images it owns, by label.

    Args:
        summary: from `collect_latents`.
        path: PNG to write (`mixture/channel_latents_grid.png`).

    Returns:
        The path written.
    """
    chans = summary.active_channels
    rows, cols = _grid_shape(len(chans))
    fig = Figure(figsize=(3.2 * cols + 1.2, 3.0 * rows + 0.6))
    pc, pl = summary.point_channel, summary.point_label
    d = summary.latent_dim
    for i, c in enumerate(chans):
        ax = fig.add_subplot(rows, cols, i + 1)
        own = pc == c
        _cloud(ax, summary.points[own], pl[own])
        ax.set_title(_channel_title(summary.report, c) + _pca_note(d), fontsize=8)
        ax.set_xlabel("PC 1" if d > 2 else "z1", fontsize=7)
        ax.set_ylabel("PC 2" if d > 2 else "z2", fontsize=7)
        ax.tick_params(labelsize=6)
    fig.legend(
        handles=_label_legend(summary.labels),
        title="true label",
        loc="center right",
        fontsize=8,
    )
    fig.suptitle(
        f"Latent means q(z|x,c) of each channel's images ({len(summary.index)} of "
        f"{len(summary.channel)} images shown)"
        + (f"; d={d} projected on each channel's PCA axes" if d > 2 else "")
    )
    fig.subplots_adjust(right=1 - 1.0 / (3.2 * cols + 1.2), hspace=0.45, wspace=0.3)
    return _save(fig, path)


def channel_cloud_figure(summary: LatentSummary, channel: int) -> Figure:
    """A small figure of one channel's panel of `plot_channel_latents_grid` (the report's row).

    Args:
        summary: from `collect_latents`.
        channel: int. The channel.

    Returns:
        The figure (1.7 x 1.7 inches, no axis ticks).
    """
    own = summary.point_channel == channel
    fig = Figure(figsize=(1.7, 1.7))
    ax = fig.add_subplot(1, 1, 1)
    _cloud(ax, summary.points[own], summary.point_label[own], size=3)
    ax.set_title(f"{int(own.sum())} images" + _pca_note(summary.latent_dim), fontsize=7)
    ax.set_xticks([])
    ax.set_yticks([])
    return fig


def plot_latent_spaces(summary: LatentSummary, path: str | Path) -> Path:
    """Chosen-channel latent means of all images, coloured by channel and by label.

    Args:
        summary: from `collect_latents`.
        path: PNG to write (`core/latent_spaces.png`).

    Returns:
        The path written.
    """
    d = summary.latent_dim
    xy, _, ratio = pca_2d(summary.points)
    pc, pl = summary.point_channel, summary.point_label
    colors = _channel_colors(summary.num_channels)
    fig = Figure(figsize=(13, 5.5))
    ax1, ax2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    ax1.scatter(xy[:, 0], xy[:, 1], s=3, c=[colors[c] for c in pc], alpha=0.6)
    handles = [
        Line2D([], [], marker="o", linestyle="", color=colors[c], label=f"ch {c}")
        for c in np.unique(pc)
    ]
    ax1.legend(handles=handles, title="channel", fontsize=7, loc="best", ncol=2)
    ax1.set_title("coloured by chosen channel" + _pca_note(d, ratio))
    ax2.scatter(xy[:, 0], xy[:, 1], s=3, c=[_label_color(v) for v in pl], alpha=0.6)
    ax2.legend(handles=_label_legend(pl), title="true label", fontsize=7, loc="best", ncol=2)
    ax2.set_title("coloured by true label" + _pca_note(d, ratio))
    for ax in (ax1, ax2):
        ax.set_xlabel("PC 1" if d > 2 else "z1")
        ax.set_ylabel("PC 2" if d > 2 else "z2")
    fig.suptitle(
        f"Posterior means in each image's chosen channel ({len(pc)} of "
        f"{len(summary.channel)} images; channels' latent spaces overlaid)"
    )
    return _save(fig, path)


def plot_channel_usage(summary: LatentSummary, path: str | Path) -> Path:
    """Bar chart of each channel's usage, annotated with purity and majority label.

    Args:
        summary: from `collect_latents`.
        path: PNG to write (`mixture/channel_usage.png`).

    Returns:
        The path written.
    """
    rep = summary.report
    chans = rep["channels"]
    k = len(chans)
    fig = Figure(figsize=(max(6.0, 0.6 * k + 2), 4.5))
    ax = fig.add_subplot(1, 1, 1)
    colors = [
        "tab:green" if ch["specialised"] else "tab:red" if ch["active"] else "lightgrey"
        for ch in chans
    ]
    usage = [ch["usage"] for ch in chans]
    ax.bar(range(k), usage, color=colors)
    for i, ch in enumerate(chans):
        if ch["count"]:
            ax.annotate(
                f"{ch['purity']:.2f}\n({ch['majority_label']})",
                (i, ch["usage"]),
                ha="center",
                va="bottom",
                fontsize=7,
            )
        elif not ch["active"]:
            ax.annotate("masked", (i, 0), ha="center", va="bottom", fontsize=7, rotation=90)
    ax.axhline(rep["usage_min"], color="grey", linestyle=":", linewidth=1)
    ax.set_xticks(range(k))
    ax.set_xticklabels([str(c) for c in range(k)], fontsize=7 if k > 20 else 9)
    ax.set_xlabel("channel")
    ax.set_ylabel("share of images (argmax q(c|x))")
    ax.set_ylim(0, max(max(usage) * 1.25, rep["usage_min"] * 2, 0.05))
    ax.legend(
        handles=[
            Line2D([], [], color="tab:green", linewidth=6, label="specialised"),
            Line2D([], [], color="tab:red", linewidth=6, label="garbage (active)"),
            Line2D([], [], color="lightgrey", linewidth=6, label="masked"),
            Line2D([], [], color="grey", linestyle=":", label=f"usage_min {rep['usage_min']:g}"),
        ],
        fontsize=8,
        loc="upper right",
    )
    ax.set_title(
        f"Channel usage; annotation: purity (majority label). "
        f"{rep['specialised_count']} specialised (purity >= {rep['purity_min']:g})"
    )
    return _save(fig, path)


def channel_label_counts(
    labels, channel, active_channels
) -> tuple[list, np.ndarray, np.ndarray, dict]:
    """The table behind `plot_channel_confusion`: images per (active channel, label).

    Returns:
        `(channels, classes, counts, matched)`: the active channels ordered by
        their matched label (unmatched last), the labels, int `(channels,
        classes)` image counts, and the `{channel: label}` matching.
    """
    from kmixvae.evaluation.metrics import cluster_label_matching

    labels, channel = np.asarray(labels), np.asarray(channel)
    classes = np.unique(labels)
    # A channel matched to a label it holds no image of (more channels than labels) shows unmatched.
    matched = {
        c: label
        for c, label in cluster_label_matching(labels, channel).items()
        if np.any((channel == c) & (labels == label))
    }
    order = {label: i for i, label in enumerate(classes.tolist())}
    chans = sorted(
        (int(c) for c in active_channels),
        key=lambda c: (order.get(matched.get(c), len(classes)), c),
    )
    counts = np.zeros((len(chans), len(classes)), dtype=np.int64)
    for row, c in enumerate(chans):
        own = labels[channel == c]
        counts[row] = [(own == label).sum() for label in classes]
    return chans, classes, counts, matched


def plot_channel_confusion(summary: LatentSummary, path: str | Path) -> Path:
    """Channel x label table: which labels each active channel holds.

    Rows are the active channels, ordered by the label the accuracy's
    one-to-one matching gives them (unmatched channels last); each cell is
    the share of the channel's images with that label, annotated with the
    count where it is at least 2% of the row. A channel that holds two
    labels (e.g. 4 and 9) shows two dark cells; a label split over two
    channels shows one dark column in two rows. Labels are used only here,
    to score the channels.

    Args:
        summary: from `collect_latents`.
        path: PNG to write (`mixture/channel_confusion.png`).

    Returns:
        The path written.
    """
    return _save(
        channel_confusion_figure(summary.labels, summary.channel, summary.active_channels), path
    )


def channel_confusion_figure(labels, channel, active_channels) -> Figure:
    """The figure of `plot_channel_confusion` for `(N,)` labels and channels."""
    chans, classes, counts, matched = channel_label_counts(labels, channel, active_channels)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    fig = Figure(figsize=(0.55 * len(classes) + 2.5, 0.4 * len(chans) + 1.6))
    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto")
    for r in range(len(chans)):
        for col in range(len(classes)):
            if shares[r, col] >= 0.02:
                ax.text(
                    col,
                    r,
                    str(counts[r, col]),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if shares[r, col] > 0.5 else "black",
                )
    ax.set_xticks(range(len(classes)))
    ax.set_xticklabels([str(v) for v in classes.tolist()], fontsize=8)
    ax.set_yticks(range(len(chans)))
    ax.set_yticklabels(
        [f"ch {c} -> {matched[c]}" if c in matched else f"ch {c} (unmatched)" for c in chans],
        fontsize=8,
    )
    ax.set_xlabel("label")
    ax.set_title(
        f"Images per channel and label ({int(counts.sum())} images; shade: share of the channel)",
        fontsize=9,
    )
    return fig


def plot_reconstructions(
    model, images: np.ndarray, path: str | Path, n: int = 10, batch_size: int = 256
) -> Path:
    """Originals over reconstructions (chosen channel, posterior mean), plus sigma maps.

    The sigma row is drawn for heads with a per-pixel sigma (not for the
    fixed-sigma Gaussian, whose sigma is constant).

    Args:
        model: a `MixtureVAE`.
        images: `(N, H, W, C)`; the first `n` are shown.
        path: PNG to write (`core/model_reconstructions.png`).
        n: int. Images shown.
        batch_size: int. Decoder batch.

    Returns:
        The path written.
    """
    rec = reconstructions(model, np.asarray(images)[:n], batch_size=batch_size)
    x = rec["original"]
    n = x.shape[0]
    has_sigma = "sigma" in rec
    rows = 3 if has_sigma else 2
    fig = Figure(figsize=(1.2 * n + 1.2, 1.35 * rows + 0.6))
    smax = float(rec["sigma"].max()) if has_sigma else 1.0
    im = None
    for i in range(n):
        ax = fig.add_subplot(rows, n, i + 1)
        _show(ax, x[i])
        if i == 0:
            ax.set_ylabel("original", fontsize=8)
        ax = fig.add_subplot(rows, n, n + i + 1)
        _show(ax, rec["mean"][i])
        ax.set_title(f"ch {int(rec['channel'][i])}", fontsize=7)
        if i == 0:
            ax.set_ylabel("reconstr.", fontsize=8)
        if has_sigma:
            ax = fig.add_subplot(rows, n, 2 * n + i + 1)
            im = _show(ax, rec["sigma"][i].mean(axis=-1, keepdims=True), "viridis", 0.0, smax)
            if i == 0:
                ax.set_ylabel("sigma", fontsize=8)
    if im is not None:
        fig.colorbar(im, ax=fig.axes[-n:], fraction=0.02, pad=0.01, label="sigma")
    fig.suptitle(
        "Originals (top) and reconstructions from the chosen channel's posterior mean"
        + (" with the decoder's per-pixel sigma" if has_sigma else "")
    )
    return _save(fig, path)


def _share_label(entry: dict) -> str:
    share = entry.get("sample_consistency")
    if share is None:
        return ""
    label = entry.get("matched_label")
    return f"\n{'no label' if label is None else label}: {share:.2f}"


def plot_channel_samples(
    model, path: str | Path, n_per_channel: int = 10, seed: int = 0, generation=None
) -> Path:
    """Samples from each active channel's prior p(z|c), one row per channel.

    Args:
        model: a `MixtureVAE`.
        path: PNG to write (`mixture/channel_samples.png`).
        n_per_channel: int. Samples per row.
        seed: int. Sampling seed.
        generation: optional `generation_metrics` result: each row's label
            then shows the channel's matched label and its sample
            consistency (the share of its prior draws the judge names so).

    Returns:
        The path written.
    """
    chans = model.active_channels
    rows = len(chans)
    by_channel = {ch["channel"]: ch for ch in (generation or {}).get("channels", [])}
    fig = Figure(figsize=(1.0 * n_per_channel + 1.4, 1.0 * rows + 0.8))
    samples = channel_samples(model, n_per_channel, seed=seed)
    for r, c in enumerate(chans):
        ax = fig.add_subplot(rows, 1, r + 1)
        _show(ax, image_grid(samples[c], 1, n_per_channel, pad=1))
        label = f"ch {c}" + _share_label(by_channel.get(c, {}))
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
    title = "Mean images of samples z ~ p(z|c) from each active channel (one row each)"
    if generation:
        title += (
            f"\nunder each channel: its matched label and the share of {generation['n_per_channel']} "
            f"prior draws the judge names so (all channels {generation['sample_consistency']:.2f})"
        )
    fig.suptitle(title)
    return _save(fig, path)


def plot_channel_manifolds(
    model,
    path: str | Path,
    summary: LatentSummary | None = None,
    grid: int = 8,
    span: float = 2.0,
) -> Path:
    """Each channel's decoded latent grid over [-span, span]^2 (in prior std units).

    For d = 2 the grid is `m_c + s_c * (a, b)` with `a, b` in
    [-span, span] (m_c, s_c: the channel's prior mean and scale). For
    d > 2 it runs along the first two PCA axes of the latent means of the
    images the channel owns (from `summary`; the first two coordinates when
    it owns fewer than 3), and the title says so.

    Args:
        model: a `MixtureVAE`.
        path: PNG to write (`mixture/channel_manifolds.png`).
        summary: from `collect_latents`; needed for the PCA axes when d > 2.
        grid: int. Points per side.
        span: float. Half-width of the grid.

    Returns:
        The path written.
    """
    from keras import ops

    d = model.latent_dim
    chans = model.active_channels
    m = np.asarray(ops.convert_to_numpy(model.prior.prior_means), np.float64)
    s = np.exp(np.asarray(ops.convert_to_numpy(model.prior.prior_log_scales), np.float64))
    ticks = np.linspace(-span, span, grid)
    a, b = np.meshgrid(ticks, ticks[::-1])  # row 0 = top = largest second coordinate
    ab = np.stack([a.ravel(), b.ravel()], axis=1)
    rows, cols = _grid_shape(len(chans))
    fig = Figure(figsize=(3.0 * cols, 3.1 * rows + 0.6))
    for i, c in enumerate(chans):
        if d <= 2 or summary is None:
            axes = np.eye(2, d)
        else:
            own = summary.points[summary.point_channel == c]
            axes = pca_2d(own)[1] if len(own) >= 3 else np.eye(2, d)
        z = m[c] + s[c] * (ab @ axes)
        dec = model.decode(z.astype("float32"), c)
        ax = fig.add_subplot(rows, cols, i + 1)
        _show(ax, image_grid(dec["mean"], grid, grid, pad=1))
        ax.set_title(f"channel {c}", fontsize=9)
    how = (
        f"z = m_c + s_c (a, b), a, b in [-{span:g}, {span:g}]"
        if d <= 2
        else f"d={d}: grid along the first 2 PCA axes of each channel's latent means"
    )
    fig.suptitle(f"Decoded latent grid of each channel ({grid}x{grid}); {how}", fontsize=10)
    return _save(fig, path)


def load_history(history) -> dict[str, list[float]]:
    """A Keras `History`, its `.history` dict, or a `history.csv` path -> dict of lists.

    Args:
        history: `keras.callbacks.History`, mapping of name -> list, or path
            to a CSV with one row per epoch (e.g. from `CSVLogger`).

    Returns:
        dict of metric name -> list of floats (an `epoch` column, if any, included).
    """
    if hasattr(history, "history"):
        history = history.history
    if isinstance(history, Mapping):
        return {str(k): [float(v) for v in vals] for k, vals in history.items()}
    with open(history, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    out: dict[str, list[float]] = {}
    for row in rows:
        for key, value in row.items():
            try:
                out.setdefault(key, []).append(float(value))
            except (TypeError, ValueError):
                out.setdefault(key, []).append(float("nan"))
    return out


def curve_epochs(history: Mapping[str, list], length: int) -> np.ndarray:
    """The epoch of each of `length` history values, counted from 1.

    `history.csv` (written by `HistoryWriter`) holds the completed epoch from
    1, so its `epoch` column is used as it is; a Keras `History` has no
    such column, and its values are epochs 1, 2, ...
    """
    epochs = np.asarray(history.get("epoch", []), np.float64)
    if epochs.size >= length:
        return epochs[:length]
    return np.arange(1, length + 1, dtype=np.float64)


def training_curves_figure(
    history, keys: Sequence[str] = CURVE_KEYS, max_cols: int = 3
) -> Figure | None:
    """Training (solid) and validation (dashed) curves, one panel per recorded key.

    Args:
        history: anything `load_history` reads.
        keys: metric names, one panel each (`val_<name>` is the validation
            curve); keys the history does not hold are left out.
        max_cols: int. Panels per row.

    Returns:
        The figure, or None when the history holds none of `keys`.
    """
    h = load_history(history)
    panels = [
        k for k in keys if any(np.isfinite(h.get(name, [])).any() for name in (k, f"val_{k}"))
    ]
    if not panels:
        return None
    rows, cols = _grid_shape(len(panels), max_cols=max_cols)
    height = 2.8 * rows + 0.6
    fig = Figure(figsize=(3.6 * cols, height))
    for i, key in enumerate(panels):
        ax = fig.add_subplot(rows, cols, i + 1)
        for name, style, label in ((key, "-", "train"), (f"val_{key}", "--", "validation")):
            ys = np.asarray(h.get(name, []), np.float64)
            if ys.size and np.isfinite(ys).any():
                marker = "." if ys.size < 30 else None
                ax.plot(curve_epochs(h, ys.size), ys, style, marker=marker, label=label)
        if key == "cluster_acc":
            ax.set_ylim(0, 1)
        if key == "active_channels":  # a count: from 0, whole ticks
            top = max(float(np.nanmax(line.get_ydata())) for line in ax.lines)
            ax.set_ylim(0, top + 0.5)
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(CURVE_TITLES.get(key, key), fontsize=10)
        ax.set_xlabel("epoch", fontsize=8)
        ax.set_ylabel(CURVE_UNITS.get(key, "nats"), fontsize=8)
        ax.tick_params(labelsize=7)
        if len(ax.lines) > 1:
            ax.legend(fontsize=7)
    fig.suptitle("Training curves (solid: train, dashed: validation)", fontsize=10)
    fig.subplots_adjust(top=1 - 0.6 / height, hspace=0.55, wspace=0.35)
    return fig


def plot_training_curves(history, path: str | Path, keys: Sequence[str] = CURVE_KEYS) -> Path:
    """Writes `training_curves_figure` (`core/training_curves.png`).

    Args:
        history: anything `load_history` reads.
        path: PNG to write.
        keys: metric names, one panel each (`val_<name>` is the validation curve).

    Returns:
        The path written.

    Raises:
        ValueError: the history holds none of `keys`.
    """
    fig = training_curves_figure(history, keys)
    if fig is None:
        raise ValueError(f"training curves: the history records none of {', '.join(keys)}")
    return _save(fig, path)


# The figures that colour or annotate by label: skipped for unlabelled data.
LABEL_FIGURES = (
    "mixture/channel_latents_grid.png",
    "core/latent_spaces.png",
    "mixture/channel_usage.png",
    "mixture/channel_confusion.png",
)


def make_all_figures(
    model,
    images: np.ndarray,
    labels: np.ndarray,
    out_dir: str | Path,
    history=None,
    max_points: int = 5000,
    batch_size: int = 256,
    generation=None,
) -> list[Path]:
    """Writes every figure under `out_dir` (the run's `figures/` folder).

    Args:
        model: a `MixtureVAE`.
        images: `(N, H, W, C)` uint8 0-255 or floats in [0, 1].
        labels: `(N,)` true labels, or `None` for unlabelled data: the
            figures of `LABEL_FIGURES` are then not drawn.
        out_dir: the figures folder; `core/` and `mixture/` are made inside.
        history: optional Keras history (object, dict or CSV path) for the
            training curves (skipped when None or when it records no curve).
        max_points: int. Cap on the points of each point cloud.
        batch_size: int. Images per encoder/decoder batch.
        generation: optional `generation_metrics` result, shown in the row
            labels of `channel_samples.png`.

    Returns:
        The PNG paths written.

    Example:

    ```python
    paths = make_all_figures(model, x, y, run_dir / "figures", history=run_dir / "history.csv")
    ```
    """
    out = Path(out_dir)
    labelled = labels is not None
    if not labelled:  # the manifolds read only the latent points of the summary
        labels = np.zeros(len(images), np.int64)
    summary = collect_latents(model, images, labels, max_points=max_points, batch_size=batch_size)
    paths = []
    if labelled:
        paths += [
            plot_channel_latents_grid(summary, out / "mixture" / "channel_latents_grid.png"),
            plot_latent_spaces(summary, out / "core" / "latent_spaces.png"),
        ]
    paths += [
        plot_reconstructions(
            model, images, out / "core" / "model_reconstructions.png", batch_size=batch_size
        ),
        plot_channel_samples(model, out / "mixture" / "channel_samples.png", generation=generation),
        plot_channel_manifolds(model, out / "mixture" / "channel_manifolds.png", summary=summary),
    ]
    if labelled:
        paths += [
            plot_channel_usage(summary, out / "mixture" / "channel_usage.png"),
            plot_channel_confusion(summary, out / "mixture" / "channel_confusion.png"),
        ]
    curves = None if history is None else training_curves_figure(history)
    if curves is not None:
        paths.append(_save(curves, out / "core" / "training_curves.png"))
    return paths


__all__ = [
    "CURVE_KEYS",
    "LABEL_FIGURES",
    "LatentSummary",
    "channel_cloud_figure",
    "collect_latents",
    "curve_epochs",
    "figure_png",
    "load_history",
    "make_all_figures",
    "pca_2d",
    "channel_label_counts",
    "plot_channel_confusion",
    "plot_channel_latents_grid",
    "plot_channel_manifolds",
    "plot_channel_samples",
    "plot_channel_usage",
    "plot_latent_spaces",
    "plot_reconstructions",
    "plot_training_curves",
    "training_curves_figure",
]
