"""Does a SimCLR pretext phase give the encoder trunk better neighbours than the pixels?

Trains `configs/film_het.json`'s encoder trunk (two stride-2 convs, 32 and
64 filters, a 256-unit dense layer, batch norm 0.9) with SimCLR's NT-Xent
loss: two augmented views of each image, a 2-layer projection (256, 128),
temperature `--tau`, Adam. The views are the library's `ViewAugmentation`
(rotation, shift, shear, zoom, brightness, gamma) and optionally a
horizontal flip. At the epochs of `--eval` it prints the share of
same-label pairs among the 20 nearest neighbours (cosine, trunk features)
of the training images, all and mutual, against the pixels' (the graph the
library builds its neighbour pairs from), and the accuracy of k-means (K =
10) on the features. Labels only score.

Usage (Fashion-MNIST small protocol's training images):

    KERAS_BACKEND=tensorflow python apps/contrastive_neighbours.py \
        --data-dir ../shared/data/fashion-mnist-train --split 'train[:8000]' \
        --epochs 150 --eval 10,20,40,80,150 --flip --scale 0.4 --shift 0.15 \
        --brightness 0.4 --gamma 0.5
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import keras
import numpy as np
from keras import ops


class ContrastiveTrunk(keras.Model):
    """The encoder trunk with a projection head, trained by NT-Xent on two views."""

    def __init__(self, augmentation, flip, tau, seed):
        super().__init__()
        from kmixvae.models.encoder import Encoder

        self.enc = Encoder(10, 2, batch_norm=True, batch_norm_momentum=0.9)
        self.proj = keras.Sequential(
            [keras.layers.Dense(256, activation="relu"), keras.layers.Dense(128)]
        )
        self.aug, self.flip, self.tau = augmentation, flip, float(tau)
        self.gen = keras.random.SeedGenerator(seed + 1)

    def view(self, x):
        v = self.aug(x, self.gen)
        if self.flip:
            mirror = keras.random.uniform((ops.shape(x)[0], 1, 1, 1), seed=self.gen) < 0.5
            v = ops.where(mirror, ops.flip(v, axis=2), v)
        return v

    def call(self, x, training=False):
        views = ops.concatenate([self.view(x), self.view(x)], 0)
        z = self.proj(self.enc.features(views, training=training))
        return z / ops.norm(z, axis=1, keepdims=True)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        n = ops.shape(x)[0]
        sim = ops.matmul(y_pred, ops.transpose(y_pred)) / self.tau - 1e9 * ops.eye(2 * n)
        target = ops.concatenate([ops.arange(n) + n, ops.arange(n)], 0)
        return ops.mean(keras.losses.sparse_categorical_crossentropy(target, sim, from_logits=True))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data/fashion-mnist-train")
    parser.add_argument("--split", default="train[:8000]")
    parser.add_argument("--epochs", type=int, default=150)
    parser.add_argument("--eval", default="10,20,40,80,150", help="epochs to score after")
    parser.add_argument("--tau", type=float, default=0.5)
    parser.add_argument("--flip", action="store_true", help="mirror half the views")
    parser.add_argument("--rotation", type=float, default=10.0)
    parser.add_argument("--shift", type=float, default=0.08)
    parser.add_argument("--shear", type=float, default=0.3)
    parser.add_argument("--scale", type=float, default=0.2)
    parser.add_argument("--brightness", type=float, default=0.0)
    parser.add_argument("--gamma", type=float, default=0.0)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    from sklearn.cluster import KMeans

    from kmixvae.data.neighbors import cosine_neighbors, pixel_neighbors
    from kmixvae.data.sources import load_split
    from kmixvae.errors import KmixvaeError
    from kmixvae.evaluation.metrics import clustering_accuracy
    from kmixvae.objectives.views import ViewAugmentation
    from kmixvae.runs import folder_data
    from kmixvae.utils.images import as_float_images

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from neighbour_purity import purity

    try:
        images, labels = load_split(folder_data(args.data_dir), args.split)
    except (KmixvaeError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    x, labels = as_float_images(images), np.asarray(labels)
    keras.utils.set_random_seed(args.seed)
    p = purity(pixel_neighbors(images, 20), labels)
    print(f"pixels: k=20 same label all {p['all']:.3f}, mutual {p['mutual']:.3f}", flush=True)
    augmentation = ViewAugmentation(
        args.rotation, args.shift, args.shear, args.scale, args.brightness, args.gamma
    )
    model = ContrastiveTrunk(augmentation, args.flip, args.tau, args.seed)
    model(x[:2])
    model.compile(optimizer=keras.optimizers.Adam(args.lr))
    evals = sorted(int(e) for e in args.eval.split(","))
    t0, done = time.perf_counter(), 0
    for epoch in evals:
        model.fit(x, epochs=epoch, initial_epoch=done, batch_size=args.batch, verbose=0)
        done = epoch
        f = ops.convert_to_numpy(model.enc.features(ops.convert_to_tensor(x)))
        p = purity(cosine_neighbors(f, 20), labels)
        unit = f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-8)
        km = KMeans(10, n_init=5, random_state=0).fit_predict(unit)
        print(
            f"epoch {epoch}: k=20 same label all {p['all']:.3f}, mutual {p['mutual']:.3f}; "
            f"k-means accuracy {clustering_accuracy(labels, km):.3f}; "
            f"{time.perf_counter() - t0:.0f} s",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
