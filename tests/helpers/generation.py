"""Ten classes of synthetic 12x12 images and a fake model whose channels own chosen classes.

Class k is a bright 3x3 block at its own place plus noise; `FakeModel`'s
channels draw, reconstruct and own chosen classes, so generation scores are
known in advance.
"""

from __future__ import annotations

import numpy as np

NUM_CLASSES = 10
SIDE = 12
IDENTITY = {k: k for k in range(NUM_CLASSES)}


def class_images(classes, seed: int) -> np.ndarray:
    """Float images `(N, 12, 12, 1)`: class k lights a 3x3 block at its own place."""
    classes = np.asarray(classes)
    rng = np.random.default_rng(seed)
    x = rng.normal(0.1, 0.08, size=(len(classes), SIDE, SIDE, 1))
    for i, k in enumerate(classes):
        r, c = divmod(int(k), 4)
        x[i, 3 * r + 1 : 3 * r + 4, 3 * c : 3 * c + 3, 0] += 0.8
    return np.clip(x, 0.0, 1.0).astype("float32")


def read_class(images) -> np.ndarray:
    """The class whose block is brightest (how the fake encoder "sees")."""
    x = np.asarray(images).reshape(-1, SIDE, SIDE)
    scores = [
        x[:, 3 * r + 1 : 3 * r + 4, 3 * c : 3 * c + 3].sum(axis=(1, 2))
        for r, c in (divmod(k, 4) for k in range(NUM_CLASSES))
    ]
    return np.stack(scores, axis=1).argmax(axis=1)


class FakeModel:
    """A stand-in MixtureVAE.

    Args:
        owner: class -> channel that encodes it (argmax q(c|x)).
        draws: channel -> class its prior draws.
        recon: class -> class its reconstruction shows.
        active: active channels.
    """

    def __init__(self, owner, draws, recon=None, active=None, num_channels=NUM_CLASSES):
        self.owner = dict(owner)
        self.draws = dict(draws)
        self.recon = dict(recon or {k: k for k in range(NUM_CLASSES)})
        self.num_channels = num_channels
        self.active_channels = tuple(range(num_channels) if active is None else active)
        self.sampled = []

    def encode(self, x, batch_size=512):
        cls = read_class(x)
        return {"channel": np.array([self.owner[int(k)] for k in cls], dtype=np.int64)}

    def reconstruct(self, x, batch_size=512):
        cls = read_class(x)
        shown = [self.recon[int(k)] for k in cls]
        return {"mean": class_images(shown, seed=99), "channel": self.encode(x)["channel"]}

    def sample(self, n, channel=None, seed=None):
        assert channel in self.active_channels, "an inactive channel was sampled"
        self.sampled.append(channel)
        return {"mean": class_images([self.draws[channel]] * n, seed=seed)}
