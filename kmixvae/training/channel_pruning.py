"""Channel pruning: a run with `model.num_channels` as an upper bound keeps the channels the data supports.

A channel pays for itself when it holds images of its own: images whose
neighbours (mutual k-NN pairs in the encoder's feature space) fall in the same
channel. Two channels that share a large part of their neighbour pairs hold
one cluster between them, and the smaller one is merged into the larger (it
is masked with the model's channel mask, so its images move to their next
most likely channel, which is the one they are linked to); a channel that
holds almost no images is masked. Labels are never used.
"""

from __future__ import annotations

import time

import keras
import numpy as np

from kmixvae.data.neighbors import cosine_neighbors, mutual_mask
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
    merge_share: float,
    min_usage: float,
    min_channels: int = 1,
) -> list[dict]:
    """Decides which active channels to mask, and why.

    A channel holding less than `min_usage` of the images is masked
    (`"empty"`). Then, over pairs of active channels in decreasing order of
    shared links, channel `a` is merged into `b` when at least `merge_share`
    of the neighbour pairs that touch `a` (or `b`) join the two: the one
    holding fewer images is masked. A channel takes part in one merge per
    call (its links change once its partner absorbs it); the last
    `min_channels` channels are never masked.

    Args:
        assignments: int `(N,)` channel (argmax q(c|x)) of each image.
        neighbors: int `(N, k)` neighbour table.
        active: the active channels.
        merge_share: float in (0, 1]. Share of a channel's neighbour pairs
            that must join it to one other channel for the two to merge.
        min_usage: float in [0, 1). Share of images below which a channel is masked.
        min_channels: int. Never keep fewer channels.

    Returns:
        list of dicts, one per masked channel: `channel`, `action`
        (`"empty"` or `"merged"`), `into` (merged only), `share` (the link
        share or the usage) and `reason` (one readable sentence).
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
                    "share": float(usage[c]),
                    "reason": f"holds {usage[c]:.2%} of the images (< min_usage {min_usage:.2%})",
                }
            )
    links = channel_links(assignments, neighbors, k)
    total = links.sum(axis=1)
    candidates = []
    for i, a in enumerate(kept):
        for b in kept[i + 1 :]:
            if links[a, b] == 0:
                continue
            # Relative to both channels' pairs (geometric mean of the two directions), so that
            # a channel that has grown by merging does not attract every small neighbour.
            share = links[a, b] / max(np.sqrt(total[a] * total[b]), 1.0)
            candidates.append((share, a, b))
    busy: set[int] = set()
    for share, a, b in sorted(candidates, reverse=True):
        if share < merge_share or len(kept) <= min_channels:
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
                "share": float(share),
                "reason": (
                    f"{share:.0%} of its neighbour pairs join it to channel {large} "
                    f"(>= merge_share {merge_share:.0%})"
                ),
            }
        )
    return events


def feature_neighbors(model, images: np.ndarray, k: int) -> np.ndarray:
    """Mutual k-NN pairs in the encoder's feature space; rows without one keep none (-1 free)."""
    features = model.features(as_float_images(images))
    table = cosine_neighbors(features, k)
    mask = mutual_mask(table)
    # Non-mutual slots point at the row itself: self pairs are dropped by channel_links.
    return np.where(mask, table, np.arange(len(table))[:, None])


class ChannelPruning(keras.callbacks.Callback):
    """Masks the channels the data does not support, at the start of chosen epochs.

    At the start of each epoch in `check_epochs` (0-based, as
    `training.restart_epoch`), it assigns every training image to its most
    likely channel, pairs the images by mutual k-NN in the encoder's feature
    space and applies `plan_pruning`: channels with too few images are masked,
    and a channel sharing at least `merge_share` of its neighbour pairs with
    another is merged into it. The mask changes through `self.model` (the
    model `fit` trains), so it reaches the train step on every backend, and is
    saved with the model: `evaluate`, `sample`, the figures and the projector
    see only the kept channels.

    Every masked channel is an entry of `events` (epoch, channel, action,
    into, share, reason), kept in the run's `last.json` for resuming and in
    `metrics.json` as `pruning_events` with `kept_channels`.

    Args:
        images: uint8 or [0, 1] float `(N, H, W, C)` training images.
        check_epochs: list of int. Epochs at whose start the check runs.
        merge_share: float. See `plan_pruning`.
        min_usage: float. See `plan_pruning`.
        neighbors: int. k of the k-NN graph.
        min_channels: int. Never keep fewer channels.
        log: function printing one message.

    Example:

    ```python
    pruning = ChannelPruning(x_train, check_epochs=[8, 10, 12], merge_share=0.2, min_usage=0.01)
    model.fit(train_ds, epochs=15, callbacks=[pruning])
    pruning.events   # [{"epoch": 8, "channel": 13, "action": "merged", "into": 4, ...}, ...]
    ```
    """

    state_key = "pruning"

    def __init__(
        self,
        images,
        check_epochs,
        merge_share=0.2,
        min_usage=0.01,
        neighbors=20,
        min_channels=1,
        log=print,
    ):
        super().__init__()
        self.images = images
        self.check_epochs = sorted(int(e) for e in check_epochs)
        self.merge_share = float(merge_share)
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
        table = feature_neighbors(model, self.images, self.neighbors)
        events = plan_pruning(
            assignments, table, active, self.merge_share, self.min_usage, self.min_channels
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
            f"{model.num_channels} channels kept ({time.perf_counter() - t0:.1f} s)"
        )


__all__ = ["ChannelPruning", "channel_links", "plan_pruning", "feature_neighbors"]
