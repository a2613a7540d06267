"""How well label-free rules pick one of several clustering heads: a standalone study.

Trains H clustering heads (default 10) on one shared encoder trunk with the
library's clustering recipe of `configs/film_het.json`'s first phase: SCAN
agreement of an image with an augmented mutual pixel neighbour (k = 20) and
the usage-entropy reward (5), batch norm 0.9, Adam 3e-3 cosine, 10 epochs,
no decoder. Then it scores every head on held-out images (labels only score)
and reports which head each label-free rule would keep:

- `stability`: the share of training images whose argmax q(c|x) survives the
  training augmentation (10 degrees, 8%) -- the rule `kmixvae` uses;
- `stability_x4`: the same averaged over four draws of the augmentation;
- `balance`: the entropy of the heads' argmax channel sizes (the partition
  closest to the uniform channel prior the model trains with);
- `balanced_stability`: the most stable head among the more balanced half;
- `strong`: the same with a stronger augmentation (20 degrees, 10%);
- `doubled`: the same with the training augmentation doubled (20 degrees,
  16%, twice the shear and the zoom, the zoom at most 0.5);
- `pairs`: the share of mutual neighbour pairs put in one channel;
- `confidence`: the mean max q(c|x);
- `agreement`: the mean adjusted Rand index of a head's argmax with every
  other head's (the most central partition of the ensemble);
- `nearest_vote`: the head whose argmax agrees most (adjusted Rand index)
  with the heads' vote (below), on the training images.

Beside the rules it scores the **vote** of all heads, a partition of its
own: every head's channels renamed to the most central head's by the
one-to-one matching of their co-occurrence counts on the training images
(Hungarian; no labels), then each image goes to the channel most heads give
it (`consensus`).

Usage (MNIST-10k, `test[:80%]` -> `test[80%:]`):

    KERAS_BACKEND=tensorflow python apps/head_selection_rule.py --data-dir ../shared/data/mnist-10k \
        --seeds 0 1 2 3 4 5 6 7 8 --out docs/study_head_selection_rule.md

Fashion-MNIST (`train[:8000]` -> `train[50000:52000]`, the small protocol,
which a `--data-dir` with a `train` split gets; `--train-split` and
`--val-split` choose others), with the shipped config's shear:

    KERAS_BACKEND=tensorflow python apps/head_selection_rule.py \
        --data-dir ../shared/data/fashion-mnist-train --shear 0.3 \
        --seeds 0 1 2 3 4 5 6 7 8 9 --out docs/study_head_selection_rule_fashion.md
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import keras
import numpy as np
from keras import ops
from scipy import stats
from sklearn.metrics import adjusted_rand_score

from kmixvae.data.neighbors import mutual_neighbors, pixel_neighbors
from kmixvae.data.sources import available_splits, load_splits
from kmixvae.errors import DataError, KmixvaeError
from kmixvae.evaluation.metrics import clustering_accuracy
from kmixvae.models.encoder import Encoder
from kmixvae.objectives.neighbor_agreement import agreement_loss
from kmixvae.objectives.views import ViewAugmentation
from kmixvae.training.head_selection import matching_order
from kmixvae.utils.images import as_float_images

K = 10


class HeadsModel(keras.Model):
    """A film_het encoder trunk with `heads` channel heads trained by SCAN + usage entropy."""

    def __init__(
        self,
        heads,
        seed,
        shear=0.0,
        scale=0.0,
        consistency=0.0,
        filters=(32, 64),
        dense=256,
        flip=0.0,
        erase=0.0,
        brightness=0.0,
        gamma=0.0,
    ):
        super().__init__()
        self.consistency = float(consistency)
        self.enc = Encoder(
            K,
            2,
            filters=filters,
            dense_units=dense,
            batch_norm=True,
            batch_norm_momentum=0.9,
            heads=heads,
        )
        self.aug = ViewAugmentation(
            10.0,
            0.08,
            shear=shear,
            scale=scale,
            brightness=brightness,
            gamma=gamma,
            flip=flip,
            erase=erase,
        )
        self.gen = keras.random.SeedGenerator(seed + 1)

    def probs(self, x, training=False):
        return ops.softmax(self.enc.head_logits(self.enc.features(x, training=training)), -1)

    def call(self, pairs, training=False):
        x, neighbour = pairs[..., :1], pairs[..., 1:]
        views = [x, self.aug(neighbour, self.gen)]
        if self.consistency > 0:  # loss.consistency: the image's own augmented view
            views.append(self.aug(x, self.gen))
        q = self.probs(ops.concatenate(views, 0), training)
        return ops.transpose(q, (1, 0, 2))  # (heads, 2B or 3B, K)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        b = ops.shape(x)[0]
        qx, qn = y_pred[:, :b], y_pred[:, b : 2 * b]
        usage = ops.mean(qx, axis=1)
        entropy = ops.mean(-ops.sum(usage * ops.log(usage + 1e-8), -1))
        loss = agreement_loss(qx, qn)[0] - 5.0 * entropy
        if self.consistency > 0:
            loss = loss + self.consistency * agreement_loss(qx, y_pred[:, 2 * b :])[0]
        return loss


def _argmax(model, x, augmentation=None, seed=123):
    gen = keras.random.SeedGenerator(seed)
    out = []
    for i in range(0, len(x), 1000):
        batch = ops.convert_to_tensor(x[i : i + 1000])
        if augmentation is not None:
            batch = augmentation(batch, gen)
        out.append(keras.ops.convert_to_numpy(model.probs(batch)))
    q = np.concatenate(out)  # (N, heads, K)
    return q.argmax(-1).T, q.max(-1).mean(0)


def _size_entropy(assignment, k=K):
    """Entropy (nats) of the share of images each channel's argmax holds."""
    return float(stats.entropy(np.bincount(assignment, minlength=k)))


def _agreement(assignments):
    """Each head's mean adjusted Rand index with every other head's assignments."""
    h = len(assignments)
    ari = np.eye(h)
    for i in range(h):
        for j in range(i + 1, h):
            ari[i, j] = ari[j, i] = adjusted_rand_score(assignments[i], assignments[j])
    return (ari.sum(1) - 1.0) / max(h - 1, 1)


def renaming(assignments, reference, k=K):
    """int `(heads, k)`: for each head, its channel -> the reference's, matched one to one
    by the count of images the two put together (`matching_order`, Hungarian)."""
    out = np.empty((len(assignments), k), "int64")
    for h, a in enumerate(assignments):
        out[h, matching_order(reference, a, k)] = np.arange(k)
    return out


def consensus(assignments, names, k=K):
    """The vote of the heads: each image's channel that most heads give it, after renaming."""
    votes = np.zeros((assignments.shape[1], k))
    for h, a in enumerate(assignments):
        votes[np.arange(len(a)), names[h][a]] += 1
    return votes.argmax(1)


def redraw_trunk(model, initializer: str, seed: int) -> None:
    """Draws the trunk's kernels (convolutions and dense) again with a Keras initializer.

    Args:
        model: a built `HeadsModel`.
        initializer: a Keras initializer's class name, e.g. `"Orthogonal"`.
        seed: the initializer's seed (each layer draws its own shape).
    """
    for layer in [*model.enc.convs, model.enc.dense]:
        draw = keras.initializers.get({"class_name": initializer, "config": {"seed": seed}})
        layer.kernel.assign(draw(layer.kernel.shape))


def run_seed(
    x_train,
    x_val,
    y_val,
    heads,
    seed,
    epochs=10,
    batch=256,
    shear=0.0,
    k=20,
    scale=0.0,
    consistency=0.0,
    filters=(32, 64),
    dense=256,
    flip=0.0,
    erase=0.0,
    brightness=0.0,
    gamma=0.0,
    init_dir=None,
    init_mode=None,
    learning_rate=3e-3,
    initializer=None,
):
    keras.utils.set_random_seed(seed)
    neighbours = mutual_neighbors(pixel_neighbors(x_train, k))
    model = HeadsModel(
        heads, seed, shear, scale, consistency, filters, dense, flip, erase, brightness, gamma
    )
    model(np.zeros((2,) + x_train.shape[1:3] + (2,), "float32"))
    if initializer is not None:
        redraw_trunk(model, initializer, seed)
    if init_mode is not None:  # the initial weights shared between runs (e.g. two backends)
        path = Path(init_dir) / f"initial_seed{seed}.weights.h5"
        if init_mode == "save":
            path.parent.mkdir(parents=True, exist_ok=True)
            model.save_weights(path)
        else:
            model.load_weights(path)
    steps = len(x_train) // batch
    lr = keras.optimizers.schedules.CosineDecay(
        learning_rate, epochs * steps, alpha=1e-4 / learning_rate
    )
    model.compile(optimizer=keras.optimizers.Adam(lr))
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    for epoch in range(epochs):
        pick = neighbours[
            np.arange(len(x_train)), rng.integers(0, neighbours.shape[1], len(x_train))
        ]
        pairs = np.concatenate([x_train, x_train[pick]], -1)
        model.fit(pairs, epochs=epoch + 1, initial_epoch=epoch, batch_size=batch, verbose=0)
    seconds = time.perf_counter() - t0
    plain, confidence = _argmax(model, x_train)
    moved, _ = _argmax(model, x_train, model.aug)
    # The same rule averaged over four augmentation draws (less noise from one draw).
    draws = [moved] + [_argmax(model, x_train, model.aug, seed=124 + i)[0] for i in range(3)]
    strong, _ = _argmax(model, x_train, ViewAugmentation(20.0, 0.1))
    doubled = ViewAugmentation(20.0, 0.16, shear=2 * shear, scale=min(2 * scale, 0.5))
    double, _ = _argmax(model, x_train, doubled)
    val, _ = _argmax(model, x_val)
    accuracy = np.array([clustering_accuracy(y_val, v) for v in val])
    central = _agreement(plain)
    names = renaming(plain, plain[int(np.argmax(central))])
    train_vote = consensus(plain, names)
    vote_accuracy = clustering_accuracy(y_val, consensus(val, names))
    stability = (plain == moved).mean(1)
    balance = np.array([_size_entropy(a) for a in plain])
    scores = {
        "stability": stability,
        "stability_x4": np.mean([(plain == d).mean(1) for d in draws], axis=0),
        "balance": balance,
        "balanced_stability": np.where(balance >= np.median(balance), stability, -1.0),
        "strong": (plain == strong).mean(1),
        "doubled": (plain == double).mean(1),
        "pairs": np.array([(a[:, None] == a[neighbours]).mean() for a in plain]),
        "confidence": confidence,
        "agreement": central,
        "nearest_vote": np.array([adjusted_rand_score(a, train_vote) for a in plain]),
    }
    return accuracy, scores, seconds, vote_accuracy


def read_protocol(data_dir, train_split=None, val_split=None):
    """The training images, held-out images and held-out labels, as float arrays.

    Through kmixvae's own loader (`load_splits`: IDX, npz or image folders).
    Unset splits follow the data: one with a `train` split gets the small
    protocol `train[:8000]` -> `train[50000:52000]`, anything else
    (MNIST-10k, the test set alone) `test[:80%]` -> `test[80%:]`.

    Raises:
        KmixvaeError: an unreadable folder, a bad split, or held-out images
            without labels.
    """
    from kmixvae.runs import folder_data

    data = folder_data(data_dir)
    # A training set gets the small protocol, anything else (MNIST-10k) the test set's.
    has_train = "train" in (available_splits(data) or [])
    train_default, val_default = (
        ("train[:8000]", "train[50000:52000]") if has_train else ("test[:80%]", "test[80%:]")
    )
    val_split = val_split or val_default
    (x_train, _), (x_val, y_val) = load_splits(data, [train_split or train_default, val_split])
    if y_val is None:
        raise DataError(f"--val-split {val_split!r} of {data_dir} has no labels")
    return as_float_images(x_train), as_float_images(x_val), y_val.astype("int64")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data/mnist-10k")
    parser.add_argument(
        "--train-split",
        default=None,
        help="default: train[:8000] when --data-dir holds a training set, else test[:80%%]",
    )
    parser.add_argument(
        "--val-split",
        default=None,
        help="labelled; default: train[50000:52000] with a training set, else test[80%%:]",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(9)))
    parser.add_argument("--heads", type=int, default=10)
    parser.add_argument("--shear", type=float, default=0.0, help="loss.augment.shear of the views")
    parser.add_argument("--scale", type=float, default=0.0, help="loss.augment.scale of the views")
    parser.add_argument("--epochs", type=int, default=10, help="epochs of the clustering phase")
    parser.add_argument("--k", type=int, default=20, help="data.neighbors of the pixel graph")
    parser.add_argument(
        "--consistency", type=float, default=0.0, help="loss.consistency.weight (0 = off)"
    )
    parser.add_argument(
        "--filters",
        type=int,
        nargs="+",
        default=[32, 64],
        help="model.encoder.filters of the trunk (stride-2 convs)",
    )
    parser.add_argument("--dense", type=int, default=256, help="model.encoder.dense_units")
    parser.add_argument("--flip", type=float, default=0.0, help="loss.augment.flip of the views")
    parser.add_argument("--erase", type=float, default=0.0, help="loss.augment.erase of the views")
    parser.add_argument(
        "--brightness", type=float, default=0.0, help="loss.augment.brightness of the views"
    )
    parser.add_argument("--gamma", type=float, default=0.0, help="loss.augment.gamma of the views")
    parser.add_argument(
        "--lr", type=float, default=3e-3, help="training.learning_rate (cosine to 1e-4)"
    )
    parser.add_argument(
        "--initializer",
        default=None,
        help="a Keras initializer for the trunk's kernels (default: Keras' own, glorot_uniform)",
    )
    init = parser.add_mutually_exclusive_group()
    init.add_argument(
        "--save-init", default=None, help="folder: write each seed's initial weights there"
    )
    init.add_argument(
        "--load-init",
        default=None,
        help="folder: start each seed from the initial weights written there (--save-init)",
    )
    parser.add_argument("--out", default=None, help="Markdown report (default: print only)")
    args = parser.parse_args(argv)
    if args.initializer is not None:
        try:
            keras.initializers.get(args.initializer)
        except ValueError:
            parser.exit(
                2, f"error: --initializer {args.initializer!r} is not a Keras initializer\n"
            )
    if args.load_init is not None:
        wanted = [Path(args.load_init) / f"initial_seed{s}.weights.h5" for s in args.seeds]
        missing = [str(p) for p in wanted if not p.exists()]
        if missing:
            parser.exit(2, f"error: --load-init: no {missing[0]} (write it with --save-init)\n")
    try:
        x_train, x_val, y_val = read_protocol(args.data_dir, args.train_split, args.val_split)
    except KmixvaeError as e:
        parser.exit(2, f"error: {e}\n")
    rules = (
        "stability",
        "stability_x4",
        "balance",
        "balanced_stability",
        "strong",
        "doubled",
        "pairs",
        "confidence",
        "agreement",
        "nearest_vote",
    )
    lines = [
        "| seed | every head's held-out accuracy % | random head | best | "
        + " | ".join(rules)
        + " | vote | s |",
        "|---|---|---|---|" + "---|" * len(rules) + "---|---|",
    ]
    picked = {r: [] for r in rules}
    best_hits = {r: 0 for r in rules}
    means, bests, votes = [], [], []
    for seed in args.seeds:
        accuracy, scores, seconds, vote = run_seed(
            x_train,
            x_val,
            y_val,
            args.heads,
            seed,
            args.epochs,
            shear=args.shear,
            k=args.k,
            scale=args.scale,
            consistency=args.consistency,
            filters=tuple(args.filters),
            dense=args.dense,
            flip=args.flip,
            erase=args.erase,
            brightness=args.brightness,
            gamma=args.gamma,
            learning_rate=args.lr,
            initializer=args.initializer,
            init_dir=args.save_init or args.load_init,
            init_mode="save" if args.save_init else ("load" if args.load_init else None),
        )
        votes.append(vote)
        means.append(accuracy.mean())
        bests.append(accuracy.max())
        cells = []
        for r in rules:
            choice = int(np.argmax(scores[r]))
            picked[r].append(accuracy[choice])
            best_hits[r] += int(accuracy[choice] == accuracy.max())
            cells.append(f"{100 * accuracy[choice]:.1f}")
        heads = " ".join(f"{100 * a:.1f}" for a in accuracy)
        lines.append(
            f"| {seed} | {heads} | {100 * accuracy.mean():.1f} | {100 * accuracy.max():.1f} | "
            + " | ".join(cells)
            + f" | {100 * vote:.1f} | {seconds:.0f} |"
        )
        print(lines[-1], flush=True)
    n = len(args.seeds)
    lines.append(
        f"| **mean** | | **{100 * np.mean(means):.1f}** | **{100 * np.mean(bests):.1f}** | "
        + " | ".join(f"**{100 * np.mean(picked[r]):.1f}** ({best_hits[r]}/{n} best)" for r in rules)
        + f" | **{100 * np.mean(votes):.1f}** | |"
    )
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
