"""`EpochTiming`: where an epoch's wall time goes (steps, validation, the rest).

An epoch of `kmixvae fit` is more than its training steps: the input
pipeline between steps, the validation pass, the held-out clustering, the
neighbour refresh, checkpoints and the other callbacks. `EpochTiming`
measures each epoch's wall time against the sum of its step times, so the
overhead around the steps can be measured (`apps/epoch_overhead.py`) rather
than guessed.

Example:

```python
from kmixvae.training.epoch_timing import EpochTiming
from kmixvae.training.fit import fit_run

timing = EpochTiming()
fit_run(config, callbacks=[timing])
for row in timing.epochs:
    print(row["epoch"], row["wall_s"], row["step_s"], row["validation_s"])
```
"""

from __future__ import annotations

import statistics
import time

import keras


class EpochTiming(keras.callbacks.Callback):
    """Records, for each epoch, its wall time and the time of its steps.

    An epoch's wall time runs from the end of the previous epoch (for the
    first, the start of training) to this callback's `on_epoch_end`: every
    callback's epoch work before it, the steps, the data read between them
    and the validation pass are inside it. Put it after the callbacks whose
    cost should count (`fit_run(callbacks=[...])` puts it after the run's
    own, checkpointing included).

    A step's time runs from `on_train_batch_begin` to `on_train_batch_end`
    (a train step, with its first call's trace and compile; on TensorFlow
    the batch is read inside the step, on JAX before it). Keras converts the
    step's logs to numbers at each batch end when a callback such as this
    one is present, so the time includes waiting for the device.

    Attributes:
        epochs: list of dicts, one per finished epoch: `epoch` (1-based),
            `steps`, `wall_s`, `step_s` (sum of the step times),
            `step_median_s`, `first_step_s`, `validation_s` and `other_s`
            (`wall_s - step_s - validation_s`).
    """

    def __init__(self):
        super().__init__()
        self.epochs: list[dict] = []
        self._mark = None
        self._steps: list[float] = []
        self._step_start = None
        self._validation = 0.0
        self._test_start = None

    def on_train_begin(self, logs=None):
        self._mark = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self._steps = []
        self._validation = 0.0

    def on_train_batch_begin(self, batch, logs=None):
        self._step_start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self._steps.append(time.perf_counter() - self._step_start)

    def on_test_begin(self, logs=None):
        self._test_start = time.perf_counter()

    def on_test_end(self, logs=None):
        self._validation += time.perf_counter() - self._test_start

    def on_epoch_end(self, epoch, logs=None):
        now = time.perf_counter()
        wall = now - self._mark
        self._mark = now
        step_s = sum(self._steps)
        self.epochs.append(
            {
                "epoch": epoch + 1,
                "steps": len(self._steps),
                "wall_s": wall,
                "step_s": step_s,
                "step_median_s": statistics.median(self._steps) if self._steps else 0.0,
                "first_step_s": self._steps[0] if self._steps else 0.0,
                "validation_s": self._validation,
                "other_s": wall - step_s - self._validation,
            }
        )
