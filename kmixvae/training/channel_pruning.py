"""Channel pruning: a run with `model.num_channels` as an upper bound keeps the channels the data supports.

A channel pays for itself when it holds images of its own: images whose
neighbours (mutual k-NN pairs of the training images, in pixel space by
default) fall in the same channel. Two channels joined by more neighbour pairs than chance would give
for their sizes hold one cluster between them (merging them raises the
partition's modularity, Newman 2004), and the smaller one is merged into the
larger: it is masked with the model's channel mask, so its images move to
their next most likely channel, which is the one they are linked to. A
channel that holds almost no images is masked. Labels are never used.

The checks read a fixed sample of the training images (`kmixvae.data.sampling`):
all of them up to `SAMPLE_CAP` (the same pixel graph as the neighbour pairs'),
a seeded sample of `SAMPLE_CAP` above it, whose own k-NN graph the links are
counted on; so a check costs the same at 60,000 or 1,000,000 images.
"""

from __future__ import annotations

import time

import keras
import numpy as np

from kmixvae.choices import PRUNING_GRAPHS
from kmixvae.data.neighbors import cosine_neighbors, mutual_mask, pixel_neighbors
from kmixvae.data.sampling import SAMPLE_CAP, fixed_sample
from kmixvae.utils.images import as_float_images


def channel_links(assignments: np.ndarray, neighbors: np.ndarray, num_channels: int) -> np.ndarray:
    """Counts the neighbour pairs between channels.

    Args:
        assignments: int `(N,)` channel of each image.
        neighbors: int `(N, k)` neighbour table; rows may repeat entries (a
            mutual table does), each distinct pair counts once per direction.
        num_channels: int. K.

    Returns:
        float64 `(K, K)` symmetric counts: entry `(a, b)` is the number of
        pairs with one image in channel `a` and the other in `b`.
    """
    assignments = np.asarray(assignments, dtype=np.int64)
    neighbors = np.asarray(neighbors, dtype=np.int64)
    rows = np.repeat(np.arange(len(neighbors)), neighbors.shape[1])
    pairs = np.unique(np.stack([rows, neighbors.ravel()], axis=1), axis=0)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    links = np.zeros((num_channels, num_channels), dtype=np.float64)
    np.add.at(links, (assignments[pairs[:, 0]], assignments[pairs[:, 1]]), 1.0)
    return links + links.T


def plan_pruning(
    assignments: np.ndarray,
    neighbors: np.ndarray,
    active: list[int],
    merge_ratio: float,
    min_usage: float,
    min_channels: int = 1,
) -> list[dict]:
    """Decides which active channels to mask, and why.

    A channel holding less than `min_usage` of the images is masked
    (`"empty"`). Then, over pairs of active channels in decreasing order of
    their link ratio, `a` and `b` are merged when the neighbour pairs joining
    them are at least `merge_ratio` times what a random graph with the same
    degrees would give, `links[a, b] * total / (degree[a] * degree[b])`
    (a ratio above 1 is a positive modularity gain): the one holding fewer
    images is masked. A channel takes part in one merge per
    call (its links change once its partner absorbs it); the last
    `min_channels` channels are never masked.

    Args:
        assignments: int `(N,)` channel (argmax q(c|x)) of each image.
        neighbors: int `(N, k)` neighbour table.
        active: the active channels.
        merge_ratio: float > 0. Links between two channels, relative to
            chance, from which they merge (1.0: whenever merging raises the
            modularity).
        min_usage: float in [0, 1). Share of images below which a channel is masked.
        min_channels: int. Never keep fewer channels.

    Returns:
        list of dicts, one per masked channel: `channel`, `action`
        (`"empty"` or `"merged"`), `into` (merged only), `ratio` (merged) or
        `usage` (empty) and `reason` (one readable sentence).
    """
    active = sorted(int(c) for c in active)
    k = max(max(active) + 1, int(np.max(assignments)) + 1)
    n = len(assignments)
    counts = np.bincount(assignments, minlength=k).astype(np.float64)
    usage = counts / max(n, 1)
    kept = list(active)
    events: list[dict] = []
    for c in sorted(active, key=lambda c: usage[c]):
        if usage[c] < min_usage and len(kept) > min_channels:
            kept.remove(c)
            events.append(
                {
                    "channel": c,
                    "action": "empty",
                    "usage": float(usage[c]),
                    "reason": f"holds {usage[c]:.2%} of the images (< min_usage {min_usage:.2%})",
                }
            )
    links = channel_links(assignments, neighbors, k)
    degree = links.sum(axis=1)
    total = degree.sum()
    candidates = []
    for i, a in enumerate(kept):
        for b in kept[i + 1 :]:
            if links[a, b] == 0:
                continue
            candidates.append((links[a, b] * total / (degree[a] * degree[b]), a, b))
    busy: set[int] = set()
    for ratio, a, b in sorted(candidates, reverse=True):
        if ratio < merge_ratio or len(kept) <= min_channels:
            break
        if a in busy or b in busy:
            continue
        small, large = (a, b) if counts[a] < counts[b] else (b, a)
        kept.remove(small)
        busy.update((a, b))
        events.append(
            {
                "channel": small,
                "action": "merged",
                "into": large,
                "ratio": float(ratio),
                "reason": (
                    f"its neighbour pairs with channel {large} are {ratio:.2f}x chance "
                    f"(>= merge_ratio {merge_ratio:g})"
                ),
            }
        )
    return events


def mutual_pairs(vectors: np.ndarray, k: int) -> np.ndarray:
    """The mutual pairs of the cosine k-NN graph of `(N, D)` vectors, as an `(N, k)` table.

    Slots of pairs that are not mutual point at the row itself (`channel_links` drops them).
    """
    return _mutual_only(cosine_neighbors(np.asarray(vectors).reshape(len(vectors), -1), k))


def _mutual_only(table: np.ndarray) -> np.ndarray:
    """`table` with the slots of pairs that are not mutual pointing at the row itself."""
    return np.where(mutual_mask(table), table, np.arange(len(table))[:, None])


def pixel_pairs(images: np.ndarray, k: int) -> np.ndarray:
    """`mutual_pairs` of the pixel graph, from `pixel_neighbors`'s per-process cache.

    A run whose neighbour pairs use the same images and k (`data.neighbors`
    == `pruning.neighbors`) computes the pixel graph once for both.
    """
    return _mutual_only(pixel_neighbors(images, k))


def feature_neighbors(model, images: np.ndarray, k: int) -> np.ndarray:
    """Mutual k-NN pairs in the encoder's trunk-feature space (see `mutual_pairs`)."""
    return mutual_pairs(model.features(as_float_images(images)), k)


class ChannelPruning(keras.callbacks.Callback):
    """Masks the channels the data does not support, at the start of chosen epochs.

    At the start of each epoch in `check_epochs` (0-based, as
    `training.restart_epoch`), it assigns every image of its sample (all the
    training images up to `sample_cap`, a fixed seeded sample of
    `sample_cap` above it) to its most likely channel, pairs those images by
    mutual k-NN (in pixel space, computed once, or in the encoder's current
    feature space) and applies
    `plan_pruning`: channels with too few images are masked,
    and two channels joined by at least `merge_ratio` times the neighbour
    pairs chance would give are merged. The mask changes through `self.model` (the
    model `fit` trains), so it reaches the train step on every backend, and is
    saved with the model: `evaluate`, `sample`, the figures and the projector
    see only the kept channels.

    Every masked channel is an entry of `events` (epoch, channel, action,
    into, ratio or usage, reason), kept in the run's `last.json` for resuming and in
    `metrics.json` as `pruning_events` with `kept_channels`.

    Args:
        images: uint8 or [0, 1] float `(N, H, W, C)` training images.
        check_epochs: list of int. Epochs at whose start the check runs.
        merge_ratio: float. See `plan_pruning`.
        min_usage: float. See `plan_pruning`.
        neighbors: int. k of the k-NN graph.
        graph: `"pixels"` (the images' own graph, which the encoder cannot
            reshape around its channels) or `"features"` (the trunk's).
        min_channels: int. Never keep fewer channels.
        sample_cap: int. Most images a check reads (`SAMPLE_CAP`).
        seed: int. Seed of the sample (the run's seed).
        log: function printing one message.

    Example:

    ```python
    pruning = ChannelPruning(x_train, check_epochs=[3, 4, 5, 6], merge_ratio=1.0, min_usage=0.01)
    model.fit(train_ds, epochs=15, callbacks=[pruning])
    pruning.events   # [{"epoch": 8, "channel": 13, "action": "merged", "into": 4, ...}, ...]
    ```
    """

    state_key = "pruning"

    def __init__(
        self,
        images,
        check_epochs,
        merge_ratio=1.0,
        min_usage=0.01,
        neighbors=20,
        graph="pixels",
        min_channels=1,
        sample_cap=SAMPLE_CAP,
        seed=0,
        log=print,
    ):
        super().__init__()
        if graph not in PRUNING_GRAPHS:
            raise ValueError(f"graph: {graph!r} is not one of {', '.join(PRUNING_GRAPHS)}")
        self.graph = graph
        self._pixel_pairs = None
        self.images = fixed_sample(images, cap=sample_cap, seed=seed)  # uint8 kept as uint8
        self.sampled = (
            ""
            if len(self.images) == len(images)
            else (f"; on a sample of {len(self.images)} of the {len(images)} images")
        )
        self.check_epochs = sorted(int(e) for e in check_epochs)
        self.merge_ratio = float(merge_ratio)
        self.min_usage = float(min_usage)
        self.neighbors = int(neighbors)
        self.min_channels = int(min_channels)
        self.log = log
        self.events: list[dict] = []
        self.checked: list[int] = []

    @property
    def complete(self) -> bool:
        """True once every check has run (gates early stopping and best checkpoints)."""
        return len(self.checked) >= len(self.check_epochs)

    def get_state(self) -> dict:
        return {"events": self.events, "checked": self.checked}

    def set_state(self, state: dict) -> None:
        self.events = list(state.get("events", []))
        self.checked = [int(e) for e in state.get("checked", [])]

    def on_epoch_begin(self, epoch, logs=None):
        if epoch not in self.check_epochs or epoch in self.checked:
            return
        t0 = time.perf_counter()
        model = self.model
        active = list(model.active_channels)
        assignments = model.encode(as_float_images(self.images))["channel"]
        if self.graph == "features":
            table = feature_neighbors(model, self.images, self.neighbors)
        else:
            if self._pixel_pairs is None:
                self._pixel_pairs = pixel_pairs(self.images, self.neighbors)
            table = self._pixel_pairs
        events = plan_pruning(
            assignments, table, active, self.merge_ratio, self.min_usage, self.min_channels
        )
        self.checked.append(int(epoch))
        masked = {e["channel"] for e in events}
        for event in events:
            event["epoch"] = int(epoch)
            self.events.append(event)
            self.log(
                f"channel pruning, epoch {epoch + 1}: channel {event['channel']} masked: {event['reason']}"
            )
        if masked:
            model.set_active_channels([c for c in active if c not in masked])
        self.log(
            f"channel pruning, epoch {epoch + 1}: {len(model.active_channels)} of "
            f"{model.num_channels} channels kept ({time.perf_counter() - t0:.1f} s{self.sampled})"
        )


__all__ = [
    "ChannelPruning",
    "channel_links",
    "plan_pruning",
    "feature_neighbors",
    "mutual_pairs",
    "pixel_pairs",
]
