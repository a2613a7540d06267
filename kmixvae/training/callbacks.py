"""Training callbacks: loss-term start epochs, gated early stopping, atomic checkpoints and history,
NaN guard, held-out clustering accuracy, learning-rate logging and stopping on a signal."""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path

import keras
import numpy as np

from kmixvae import choices
from kmixvae.data.neighbors import (
    agreed_neighbors,
    cosine_neighbors,
    input_neighbors,
    mutual_neighbors,
)
from kmixvae.evaluation.metrics import clustering_accuracy
from kmixvae.models.mixture_loss import LOSS_TERMS
from kmixvae.runs import interrupts
from kmixvae.runs.history import rows_to_csv
from kmixvae.runs.model_files import save_model_atomic
from kmixvae.utils.files import atomic_write, atomic_write_text
from kmixvae.utils.images import as_float_images
from kmixvae.utils.keras_adapter import learning_rate_schedule


def restore_states(callbacks, state: dict) -> None:
    """Gives each callback with a `state_key` its part of a saved `last.json` state.

    A callback that must survive a restart keeps its own state (as Keras'
    `BackupAndRestore` does): `state_key` names it in `last.json`,
    `get_state()` returns it JSON-ready and `set_state(value)` takes it back.
    `Checkpointer` saves every such callback's state after each epoch.
    """
    for callback in callbacks:
        key = getattr(callback, "state_key", None)
        if key and key in state:
            callback.set_state(state[key])


class TermSchedule(keras.callbacks.Callback):
    """Turns each loss term on at its start epoch (`loss.<term>.start_epoch`).

    Calls `model.start_epoch(epoch)` at the start of every epoch (0-based),
    which retraces the train step when a term turns on or off. It keeps no
    state: a resumed run sets the terms from the epoch it resumes at.
    """

    def on_epoch_begin(self, epoch, logs=None):
        self.model.start_epoch(epoch)


class OptimizerRestart(keras.callbacks.Callback):
    """Starts the optimizer afresh at epoch `start` (0-based): a warm restart.

    Zeroes every optimizer variable (moments and the step count, so Adam's
    bias correction starts over) and moves the `PhasedLearningRate` schedule
    to its next phase: assigned variables, so the compiled step stays (a
    schedule without its phase variable retraces it once). A run resumed
    after the restart keeps its saved optimizer state and only selects the
    phase.

    Args:
        start: int. The first epoch of the second phase.
    """

    def __init__(self, start):
        super().__init__()
        self.start = int(start)

    def on_epoch_begin(self, epoch, logs=None):
        # Under mixed float16 the loss-scale wrapper keeps its scale; its inner optimizer restarts.
        optimizer = getattr(self.model.optimizer, "inner_optimizer", self.model.optimizer)
        schedule = learning_rate_schedule(optimizer)
        phase = 1 if epoch >= self.start else 0
        if getattr(schedule, "phase", phase) == phase:
            return
        if epoch == self.start:
            for variable in optimizer.variables:
                variable.assign(keras.ops.zeros(variable.shape, variable.dtype))
        schedule.set_phase(phase)
        if schedule.phase_variable is None:
            self.model.make_train_function(force=True)


FEATURE_CHUNK = 8192
"""Images `image_features` converts to floats at once (a multiple of the 512-image inference batch)."""


def image_features(model, images, chunk: int = FEATURE_CHUNK) -> np.ndarray:
    """`model.features` of every image, in one pass of `chunk` images at a time.

    Linear in N, and besides the float32 `(N, F)` features it holds only
    `chunk` float images at once: the images stay uint8. The chunks are cut
    on the inference batches of `model.features` (a final chunk of one
    batch or less joins the one before), so every batch, and every
    feature, is what one call on all the images gives.

    Args:
        model: a `MixtureVAE`.
        images: uint8 or [0, 1] float `(N, H, W, C)` images.
        chunk: int. Images per chunk; a multiple of 512.

    Returns:
        float32 `(N, F)` trunk features.
    """
    n = len(images)
    bounds = list(range(0, n, chunk)) + [n]
    if len(bounds) > 2 and bounds[-1] - bounds[-2] <= 512:
        del bounds[-2]
    out = None
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        part = model.features(as_float_images(images[lo:hi]))
        if out is None:
            out = np.empty((n,) + tuple(part.shape[1:]), np.float32)
        out[lo:hi] = part
    return out


class NeighborRefresh(keras.callbacks.Callback):
    """Re-pairs the training images by the encoder's own features at epoch `start`.

    At the start of that epoch (0-based) it computes the `k` nearest
    neighbours of every training image in the trunk's feature space
    (`model.features`, cosine; one batched pass, `image_features`) and assigns them to the `tf.Variable` the
    neighbour dataset draws from. The graph is saved to `path` first; a run
    resumed after the refresh loads it instead of recomputing it.

    Args:
        start: int. The first epoch that trains on the new pairs.
        images: uint8 or [0, 1] float `(N, H, W, C)` training images.
        table: int64 `tf.Variable` `(N, k)` read by the neighbour dataset.
        path: `.npy` file that keeps the refreshed graph.
        k: int. Neighbours per image (default: the table's width).
        mutual: bool. Keep only mutual pairs (`mutual_neighbors`).
        graph: `"features"` (the features' graph) or `"agreement"` (only its
            pairs that the input-space graph, `input_neighbors`, also lists:
            `agreed_neighbors`).
        space: the input space of that graph (`kmixvae.choices.NEIGHBOR_SPACES`).
        log: function printing one message.
    """

    def __init__(
        self,
        start,
        images,
        table,
        path,
        k=None,
        mutual=False,
        graph="features",
        space="pixels",
        log=print,
    ):
        super().__init__()
        if graph not in choices.REFRESH_GRAPHS:
            raise ValueError(f"graph: {graph!r} is not one of {choices.REFRESH_GRAPHS}")
        self.k = int(k or table.shape[1])
        self.mutual = bool(mutual)
        self.graph = graph
        self.space = space
        self.start = int(start)
        self.images = images
        self.table = table
        self.path = Path(path)
        self.log = log
        self.done = False

    def on_epoch_begin(self, epoch, logs=None):
        if self.done or epoch < self.start:
            return
        if self.path.is_file():
            neighbors = np.load(self.path)
            how = f"loaded from {self.path}"
        else:
            t0 = time.perf_counter()
            features = image_features(self.model, self.images)
            neighbors = cosine_neighbors(features, self.k)
            if self.graph == "agreement":
                inputs = input_neighbors(self.images, self.k, space=self.space)
                neighbors = agreed_neighbors(neighbors, inputs, mutual=self.mutual)
            elif self.mutual:
                neighbors = mutual_neighbors(neighbors)
            atomic_write(self.path, lambda tmp: np.save(tmp, neighbors))
            source = "encoder features" + (
                f" agreed with {self.space}" if self.graph == "agreement" else ""
            )
            how = f"{source}, {time.perf_counter() - t0:.1f} s"
        self.table.assign(neighbors.astype("int64"))
        self.done = True
        self.log(f"neighbour pairs: k={self.k} refreshed at epoch {epoch + 1} ({how})")


class LearningRateLogger(keras.callbacks.Callback):
    """Adds the optimizer's current learning rate to the epoch logs."""

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        opt = self.model.optimizer
        lr = opt.learning_rate
        if callable(lr) and not isinstance(lr, keras.Variable):
            lr = lr(opt.iterations)
        logs["learning_rate"] = float(keras.ops.convert_to_numpy(lr))


class CurriculumGate:
    """Tells whether the losses of successive epochs are comparable yet.

    They are not while the channel mask may still change: before the
    curriculum has unlocked every channel, or channel pruning has made its
    last check.
    """

    def __init__(self, curriculum=None, pruning=None):
        self.curriculum = curriculum
        self.pruning = pruning

    def open(self) -> bool:
        return all(stage is None or stage.complete for stage in (self.curriculum, self.pruning))


class GatedEarlyStopping(keras.callbacks.EarlyStopping):
    """`EarlyStopping` that only counts epochs once every channel is unlocked.

    Before that, the monitored loss is not comparable across curriculum stages.
    Its state in `last.json` (`state_key`) says whether it stopped the run and
    after which epoch, which is how `fit --resume` knows an early-stopped run
    is complete; it must come before the `Checkpointer` in the callbacks, so
    that the epoch it stops at is recorded with that epoch. With a `val_`
    monitor it counts only the epochs that ran the validation pass
    (`training.validation_freq`): its patience is in validations.
    """

    state_key = "early_stopping"

    def __init__(self, gate: CurriculumGate, **kwargs):
        super().__init__(**kwargs)
        self.gate = gate

    def get_state(self) -> dict:
        """`{"stopped_early": bool, "stopped_epoch": 1-based epoch or None}`."""
        stopped = self.stopped_epoch > 0  # Keras sets it (0-based) only when it stops, never at 0
        return {
            "stopped_early": stopped,
            "stopped_epoch": self.stopped_epoch + 1 if stopped else None,
        }

    def set_state(self, state) -> None:
        """Nothing to restore: Keras restarts the patience count at every `fit`."""

    def on_epoch_end(self, epoch, logs=None):
        if not self.gate.open():
            self.wait = 0
            self.best = None
            self.best_weights = None
            return
        if self.monitor.startswith("val_") and "val_loss" not in (logs or {}):
            return  # no validation pass this epoch (`training.validation_freq`): nothing to count
        # `best=None` counts the first gated epoch as an improvement (Keras 3).
        super().on_epoch_end(epoch, logs)


class NaNGuard(keras.callbacks.Callback):
    """Stops training at the first non-finite loss and names the term that went bad.

    The last checkpoint (written only after finite epochs) is kept.
    """

    def __init__(self):
        super().__init__()
        self.failure: str | None = None

    def _check(self, logs, where):
        if not logs or "loss" not in logs:
            return
        if math.isfinite(float(logs["loss"])):
            return
        bad = [k for k in LOSS_TERMS[1:] if k in logs and not math.isfinite(float(logs[k]))]
        self.failure = f"loss became {logs['loss']} at {where}" + (
            f" (non-finite terms: {', '.join(bad)})"
            if bad
            else " (every term finite: the total overflowed)"
        )
        self.model.stop_training = True

    def on_train_batch_end(self, batch, logs=None):
        if self.failure is None:
            self._check(logs, f"batch {batch + 1} of epoch {self._epoch + 1}")

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if self.failure is None:
            self._check(logs, f"the end of epoch {epoch + 1}")


class HeldOutClustering(keras.callbacks.Callback):
    """Logs held-out clustering accuracy and cumulative training seconds every epoch.

    `val_cluster_acc` is the accuracy of argmax q(c|x) under the best
    one-to-one matching to the labels (labels are only read here, never by
    training). `train_seconds` is the wall time spent in `fit` so far,
    validation included, this callback's own time excluded.

    Args:
        images: held-out images.
        labels: their labels.
        max_images: int. Cap on the images scored each epoch.
    """

    state_key = "train_seconds"

    def __init__(self, images, labels, max_images=2000, start_seconds=0.0):
        super().__init__()
        # The model expects floats in [0, 1]; uint8 pixels are scaled here.
        self.images = as_float_images(images[:max_images])
        self.labels = labels[:max_images]
        self.seconds = float(start_seconds)

    def get_state(self) -> float:
        return self.seconds

    def set_state(self, seconds) -> None:
        self.seconds = float(seconds)

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds += time.perf_counter() - self._t0
        channels = self.model.encode(self.images)["channel"]
        if logs is not None:
            logs["val_cluster_acc"] = float(clustering_accuracy(self.labels, channels))
            logs["train_seconds"] = self.seconds


class HistoryWriter(keras.callbacks.Callback):
    """Rewrites `history.csv` atomically after every epoch (all keys, one row an epoch).

    Args:
        path: the CSV file.
        rows: earlier rows (a resumed run continues them).
    """

    def __init__(self, path, rows=None):
        super().__init__()
        self.path = Path(path)
        self.rows = list(rows or [])

    def on_epoch_end(self, epoch, logs=None):
        row = {"epoch": epoch + 1}
        row.update({k: float(v) for k, v in (logs or {}).items() if np.ndim(v) == 0})
        self.rows = [r for r in self.rows if int(r["epoch"]) < epoch + 1] + [row]
        atomic_write_text(self.path, rows_to_csv(self.rows))


class Checkpointer(keras.callbacks.Callback):
    """Writes `last.keras` every epoch and `best.keras` on improvement, atomically.

    `best.keras` is a copy of that epoch's `last.keras` (one serialisation an
    epoch, not two).

    `last.json` beside `last.keras` records the completed epoch and the
    state of every callback with a `state_key` (its own best value included;
    see `restore_states`). Best checkpoints wait for the curriculum gate
    (losses of earlier stages are not comparable). A Ctrl-C or SIGTERM that
    arrives while they are written takes effect once they are
    (`kmixvae.runs.interrupts.deferred`), so `last.keras` and `last.json`
    always describe the same epoch.

    Args:
        folder: the `checkpoints/` folder.
        gate: a `CurriculumGate`.
        monitor: str. The value that defines "best" (lower is better).
        callbacks: the run's callbacks, whose states are saved with `last`.
    """

    state_key = "best"

    def __init__(self, folder, gate, monitor="val_loss", callbacks=()):
        super().__init__()
        self.folder = Path(folder)
        self.gate = gate
        self.monitor = monitor
        self.callbacks = callbacks
        self.best = None
        self.best_epoch = None

    def get_state(self):
        return self.best

    def set_state(self, best) -> None:
        self.best = best

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if not math.isfinite(float(logs.get("loss", 0.0))):
            return  # keep the last good checkpoint
        with interrupts.deferred():  # Ctrl-C or SIGTERM: last.keras and last.json agree
            self._save(epoch, logs)

    def _save(self, epoch, logs):
        last = self.folder / "last.keras"
        save_model_atomic(self.model, last)
        current = logs.get(self.monitor)
        if self.gate.open() and current is not None and math.isfinite(current):
            if self.best is None or current < self.best:
                self.best, self.best_epoch = float(current), epoch + 1
                # The same model as last.keras: a copy of its bytes, not a second serialisation.
                atomic_write(self.folder / "best.keras", lambda tmp: shutil.copyfile(last, tmp))
        state = {
            "epochs_done": epoch + 1,
            "best": self.best,
            "best_epoch": self.best_epoch,
            "iterations": int(keras.ops.convert_to_numpy(self.model.optimizer.iterations)),
        }
        for callback in self.callbacks:
            key = getattr(callback, "state_key", None)
            if key and callback is not self:
                state[key] = callback.get_state()
        atomic_write_text(self.folder / "last.json", json.dumps(state, indent=2))


class StopOnSignal(keras.callbacks.Callback):
    """Stops training at the end of the current batch after Ctrl-C or SIGTERM.

    `fit_run` trains inside `kmixvae.runs.interrupts.deferred`, which holds
    the signal back; this raises it (`Interrupted`) at the end of a training
    or validation batch, or of an epoch. Put it last, after the
    `Checkpointer`, so that a completed epoch is saved before the run stops.
    """

    def on_train_batch_end(self, batch, logs=None):
        interrupts.raise_pending()

    def on_test_batch_end(self, batch, logs=None):
        interrupts.raise_pending()

    def on_epoch_end(self, epoch, logs=None):
        interrupts.raise_pending()


class PeriodicCallback(keras.callbacks.Callback):
    """Calls `fn(model, epoch)` every `every` epochs and after the last one."""

    def __init__(self, fn, every, epochs):
        super().__init__()
        self.fn, self.every, self.epochs = fn, int(every), int(epochs)

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every == 0 or epoch + 1 == self.epochs:
            self.fn(self.model, epoch + 1)
