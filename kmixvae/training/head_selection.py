"""Choosing one of several candidate channel heads without labels: augmentation stability.

With `model.encoder.heads` > 1 every clustering objective trains that many
channel heads on the shared trunk until `model.encoder.head_selection_epoch`.
Heads started from different random weights settle on different partitions
of the data: on MNIST some cut a group of similar digits by slant or stroke
width instead of by digit. Such a cut is not invariant to the small
rotations and shifts the objectives already train with (`loss.augment`),
while a cut by what the images show is. So the rule keeps the head whose
channel, argmax q(c|x), changes least when an image is augmented, measured
on a fixed sample of training images; it uses no labels.
"""

from __future__ import annotations

import time

import keras
import numpy as np
from scipy.optimize import linear_sum_assignment

from kmixvae.data.sampling import SAMPLE_CAP, fixed_sample
from kmixvae.evaluation.metrics import clustering_accuracy
from kmixvae.utils.images import as_float_images

# Training images the rule scores (a fixed random sample when there are more).
SELECTION_SAMPLE = 8192


def _sample(images, seed, sample):
    n = len(images)
    pick = np.arange(n)
    if n > sample:
        pick = np.sort(np.random.default_rng(seed).choice(n, sample, replace=False))
    return as_float_images(np.asarray(images)[pick])


def matching_order(reference, assignments, num_channels: int) -> list[int]:
    """The renumbering of `assignments`' channels that best matches `reference`'s.

    Args:
        reference: int `(N,)` channels the model has been trained with.
        assignments: int `(N,)` channels of another head on the same images.
        num_channels: int. K.

    Returns:
        list of K ints, `order[c]`: the channel of `assignments` that becomes
        channel `c` (one-to-one, most images shared; Hungarian matching).
    """
    shared = np.zeros((num_channels, num_channels))
    np.add.at(shared, (np.asarray(reference), np.asarray(assignments)), 1)
    rows, cols = linear_sum_assignment(-shared)
    return [int(c) for c in cols[np.argsort(rows)]]


def augmentation_stability(model, images, seed: int = 0, sample: int = SELECTION_SAMPLE):
    """Per candidate head, the share of images whose channel survives an augmentation.

    Args:
        model: a `MixtureVAE` whose encoder has one or more channel heads.
        images: uint8 or [0, 1] float `(N, H, W, C)` training images.
        seed: int. Seed of the image sample and of the augmentation draw.
        sample: int. At most this many images are scored (a seeded sample).

    Returns:
        `(stability, channels)`: float64 `(heads,)`, for each head the mean
        over the images of `argmax q(c|x) == argmax q(c|augment(x))`; and
        int64 `(heads, n)`, each head's channels of the scored images.

    Example:

    ```python
    stability, _ = augmentation_stability(model, train_images)
    best = int(stability.argmax())
    ```
    """
    plain, moved = model.augmented_head_channels(_sample(images, seed, sample), seed)
    return (plain == moved).mean(axis=1), plain


class HeadSelection(keras.callbacks.Callback):
    """At epoch `model.head_selection_epoch`, keeps the most augmentation-stable head.

    Scores every candidate head with `augmentation_stability`, copies the
    best into the first head (`MixtureVAE.select_head`), its channels
    renumbered to match the first head's (`matching_order`: the decoder and
    the latent heads keep the channel numbers they trained with), and from then on
    only that head trains (`MixtureVAE.start_epoch` turns the others off).
    A run resumed after the selection finds the chosen head already first in
    its checkpoint and does nothing.

    Args:
        images: uint8 or [0, 1] float `(N, H, W, C)` training images.
        seed: int. The run's seed (sample and augmentation draw).
        log: function printing one message.
        val_images: optional held-out images with `val_labels`: each head's
            clustering accuracy on them is recorded beside the choice (to
            study the rule; the choice never reads them), on at most
            `SAMPLE_CAP` of them (`kmixvae.data.sampling.fixed_sample`).
        val_labels: optional int `(M,)` labels of `val_images`.
        sample_cap: int. Most held-out images recorded (`SAMPLE_CAP`).

    Attributes:
        events: list with the selection's record once it has run: the epoch
            (1-based), the chosen head, every head's stability, seconds, and
            with held-out labels every head's held-out accuracy.
    """

    def __init__(
        self, images, seed=0, log=print, val_images=None, val_labels=None, sample_cap=SAMPLE_CAP
    ):
        super().__init__()
        self.images = images
        self.seed = int(seed)
        self.log = log
        if val_labels is not None:  # a record only: a fixed sample of SAMPLE_CAP serves
            val_images, val_labels = fixed_sample(val_images, val_labels, cap=sample_cap, seed=seed)
        self.val_images = val_images
        self.val_labels = val_labels
        self.events = []

    def on_epoch_begin(self, epoch, logs=None):
        model = self.model
        if model.encoder.heads < 2 or epoch != model.head_selection_epoch:
            return
        t0 = time.perf_counter()
        stability, channels = augmentation_stability(model, self.images, seed=self.seed)
        best = int(np.argmax(stability))
        held_out = None
        if self.val_labels is not None:
            held_out = [
                round(clustering_accuracy(self.val_labels, channels_of_head), 4)
                for channels_of_head in model.head_channels(as_float_images(self.val_images))
            ]
        model.select_head(best, matching_order(channels[0], channels[best], model.num_channels))
        seconds = time.perf_counter() - t0
        event = {
            "epoch": epoch + 1,
            "head": best,
            "stability": [round(float(v), 4) for v in stability],
            "seconds": round(seconds, 2),
        }
        if self.val_labels is not None:
            # Scored before the copy: head `best` is still where it was trained.
            event["val_accuracy"] = held_out
        self.events.append(event)
        self.log(
            f"channel heads: kept head {best} of {len(stability)} at epoch {epoch + 1} "
            f"(augmentation stability {stability[best]:.3f}; the others "
            f"{np.delete(stability, best).min():.3f}-{np.delete(stability, best).max():.3f}; "
            f"{seconds:.1f} s)"
        )
