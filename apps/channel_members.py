"""What each channel of a trained model holds: its images' labels and how much ink they carry.

Labels only describe the channels here (the model never saw them). For each
channel of the argmax of q(c|x): how many images it holds, the labels among
them, and the mean grey level of its images (all pixels) against the mean
of the same labels' images elsewhere, which shows whether a channel that
mixes labels cuts them by brightness. With `--figure`, a grid of each
mixed channel's images, one row per label it mixes.

    python apps/channel_members.py fashion_mnist_film_het \\
        --data-dir ../shared/data/fashion-mnist-train --split 'train[:8000]' --figure members.png
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from kmixvae.utils.images import as_float_images


def channel_members(channels, labels, images, min_share: float = 0.05) -> list[dict]:
    """One row per channel that holds images.

    Args:
        channels: int `(N,)` channel of each image.
        labels: int `(N,)` label of each image.
        images: `(N, H, W, C)` floats in [0, 1].
        min_share: a label is listed for a channel when it is at least this
            share of the channel's images.

    Returns:
        list of dicts: `channel`, `count`, `labels` ({label: count}, largest
        first, labels under `min_share` left out), `ink` (mean grey level
        of the channel's images), `ink_elsewhere` (the same labels' images in
        the other channels, weighted as in this channel: what the ink would
        be if the channel held a fair draw of its labels).
    """
    channels, labels = np.asarray(channels), np.asarray(labels)
    ink = np.asarray(images, "float64").reshape(len(images), -1).mean(1)
    rows = []
    for c in np.unique(channels):
        inside = channels == c
        counts = np.bincount(labels[inside])
        kept = {
            int(k): int(counts[k])
            for k in np.argsort(-counts)
            if counts[k] >= min_share * inside.sum()
        }
        elsewhere = [
            (n, ink[(labels == k) & ~inside].mean())
            for k, n in kept.items()
            if ((labels == k) & ~inside).any()
        ]
        weight = sum(n for n, _ in elsewhere)
        rows.append(
            {
                "channel": int(c),
                "count": int(inside.sum()),
                "labels": kept,
                "ink": float(ink[inside].mean()),
                "ink_elsewhere": float(sum(n * m for n, m in elsewhere) / weight)
                if weight
                else float("nan"),
            }
        )
    return rows


def _figure(rows, channels, labels, images, path, per_row=12):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mixed = [(r["channel"], k) for r in rows if len(r["labels"]) > 1 for k in r["labels"]]
    fig, axes = plt.subplots(
        len(mixed), per_row, figsize=(per_row * 0.8, len(mixed) * 0.9), squeeze=False
    )
    for row, (c, k) in enumerate(mixed):
        picked = np.flatnonzero((channels == c) & (labels == k))[:per_row]
        for i, ax in enumerate(axes[row]):
            ax.axis("off")
            if i < len(picked):
                ax.imshow(images[picked[i], :, :, 0], cmap="gray", vmin=0, vmax=1)
        axes[row, 0].set_title(f"channel {c}, label {k}", fontsize=7, loc="left")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a .keras file, a run folder or a preset name")
    parser.add_argument("--data-dir", default="../shared/data/fashion-mnist-train")
    parser.add_argument("--split", default="train[:8000]", help="a labelled split of --data-dir")
    parser.add_argument("--figure", default=None, help="PNG of the mixed channels' images")
    args = parser.parse_args(argv)
    from kmixvae.data.sources import load_split
    from kmixvae.errors import KmixvaeError
    from kmixvae.presets import resolve_model_path
    from kmixvae.runs import folder_data
    from kmixvae.runs.model_files import load_model_file

    try:
        model = load_model_file(resolve_model_path(args.model))
        images, y = load_split(folder_data(args.data_dir), args.split)
    except KmixvaeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if y is None:
        print(f"error: --split {args.split!r} of {args.data_dir} has no labels", file=sys.stderr)
        return 2
    x, y = as_float_images(images), np.asarray(y, "int64")
    channels = model.encode(x)["channel"]
    rows = channel_members(channels, y, x)
    print("| channel | images | labels (count) | mean grey level | the same labels elsewhere |")
    print("|---|---|---|---|---|")
    for r in rows:
        held = ", ".join(f"{k} ({n})" for k, n in r["labels"].items())
        print(
            f"| {r['channel']} | {r['count']} | {held} | {r['ink']:.3f} | {r['ink_elsewhere']:.3f} |"
        )
    if args.figure:
        _figure(rows, channels, y, x, args.figure)
        print(f"wrote {args.figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
