"""How many training steps an epoch is: the rule that lets the epoch schedule follow the data size.

Every schedule of a run counts epochs: the learning-rate phases
(`training.restart_epoch`, the cosine decay), the loss terms' start epochs,
the head selection, the neighbour refresh, the pruning checks. They were
chosen on 8,000 training images; were an epoch always one pass, 60,000
images would make every phase 7.5x the steps. So an epoch is
`training.epoch_images` images (10,000 by default) or one pass over the N
training images, whichever is fewer: on up to 10,000 images nothing changes
(one pass an epoch, as before), on more an epoch costs what a 10,000-image
epoch costs and the run sees min(N, epoch_images) x epochs images, new
ones every epoch. `fit` reads the training data as one pass after another
without end (each pass reshuffled on its own), so an epoch shorter than a
pass simply continues the stream where the last epoch stopped, on both
input pipelines.

`training.steps_per_epoch` sets the steps directly instead; setting
`training.epoch_images` as well is a config error (`training.epoch_images`
is switched off while `training.steps_per_epoch` is set).

Example:

```python
epoch_steps(num_train=50_000, batch_size=256, epoch_images=10_000)  # 40
epoch_steps(num_train=8_000, batch_size=256, epoch_images=10_000)   # 32: one pass
```
"""

from __future__ import annotations

import math
from typing import Optional

from kmixvae.data.batching import batches_per_pass


def epoch_steps(
    num_train: int,
    batch_size: int,
    epoch_images: Optional[int] = None,
    steps_per_epoch: Optional[int] = None,
    drop_remainder: bool = False,
) -> int:
    """Training steps in one epoch.

    Args:
        num_train: int. Training images N.
        batch_size: int. Images per step.
        epoch_images: int or None. Images an epoch trains on at most
            (`training.epoch_images`); None = one pass over the N images.
        steps_per_epoch: int or None. Steps an epoch, when set
            (`training.steps_per_epoch`); it takes the place of the rule.
        drop_remainder: bool. Only full batches (`data.drop_remainder`):
            `floor` instead of `ceil` below.

    Returns:
        `steps_per_epoch` when set, else
        `ceil(min(N, epoch_images) / batch_size)` (`ceil(N / batch_size)`,
        one pass, without `epoch_images`; `floor` with `drop_remainder`,
        at least 1).
    """
    if steps_per_epoch is not None:
        return int(steps_per_epoch)
    images = int(num_train) if epoch_images is None else min(int(num_train), int(epoch_images))
    return max(1, batches_per_pass(images, int(batch_size), drop_remainder))


def describe_epoch(num_train: int, batch_size: int, steps: int) -> str:
    """One line saying what an epoch is, e.g. "40 steps of 256 images (10,240 of the 50,000)"."""
    if steps == math.ceil(num_train / batch_size):
        return f"{steps} steps of {batch_size} images (one pass over the {num_train:,})"
    return f"{steps} steps of {batch_size} images ({steps * batch_size:,} of the {num_train:,})"


__all__ = ["describe_epoch", "epoch_steps"]
