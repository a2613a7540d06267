"""How often neighbour pairs share a label: pixel vs feature space, all vs mutual pairs.

The neighbour-consistency term pulls an image and its neighbour into the same
channel, so the share of pairs with the same label bounds what it can teach.
Labels are used here only to score the graphs.

Usage:

    python apps/neighbour_purity.py [--data-dir ../shared/data/mnist-10k]
        [--split 'test[:80%]'] [--k 5,10,20,40] [--model RUN_OR_KERAS ...]

For each k it prints the share of same-label pairs among all k-NN pairs and
among the mutual ones (with the share of pairs kept and of images left with
none), in pixel space and, for each `--model`, in the space of its encoder's
trunk features.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np


def purity(neighbors: np.ndarray, labels: np.ndarray) -> dict:
    """Same-label share of all pairs and of the mutual pairs of a k-NN table."""
    from kmixvae.data.neighbors import mutual_mask

    mask = mutual_mask(neighbors)
    mutual = mask.ravel()
    same = (labels[:, None] == labels[neighbors]).ravel()
    per_image = mask.any(axis=1)
    return {
        "all": float(same.mean()),
        "mutual": float(same[mutual].mean()) if mutual.any() else float("nan"),
        "mutual_kept": float(mutual.mean()),
        "no_mutual": float(1.0 - per_image.mean()),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data/mnist-10k")
    parser.add_argument("--split", default="test[:80%]")
    parser.add_argument("--k", default="5,10,20,40")
    parser.add_argument("--model", nargs="*", default=[], help="run folders or .keras files")
    args = parser.parse_args(argv)

    from kmixvae.data.neighbors import cosine_neighbors, pixel_neighbors
    from kmixvae.data.sources import load_split
    from kmixvae.errors import KmixvaeError
    from kmixvae.runs import folder_data, load_model_file

    try:
        ks = [int(k) for k in args.k.split(",")]
        images, labels = load_split(folder_data(args.data_dir), args.split)
        spaces = [("pixels", lambda k: pixel_neighbors(images, k))]
        if args.model:
            from kmixvae.utils.images import as_float_images

            for path in args.model:
                model = load_model_file(path)
                features = model.features(as_float_images(images))
                spaces.append((path, lambda k, f=features: cosine_neighbors(f, k)))
    except (KmixvaeError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    labels = np.asarray(labels)
    print(f"{len(images)} images of {args.split}")
    for name, graph in spaces:
        for k in ks:
            p = purity(graph(k), labels)
            print(
                f"{name}  k={k:<3} same label: all {p['all']:.3f}, mutual {p['mutual']:.3f} "
                f"(pairs kept {p['mutual_kept']:.2f}, images without one {p['no_mutual']:.3f})",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
