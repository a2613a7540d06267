"""What `fit` prints: one short line per epoch, and a few lines about the run.

Keras' own progress bar prints every metric of an epoch on one line (about
40 of them with K = 10 usage trackers). `EpochLine` prints the figures a
person watches instead; every metric still goes to `history.csv` and
TensorBoard. `DropUncomputedValidation` removes the `val_` entries of terms
that the validation pass never computes (the objectives' training-only
metrics, e.g. neighbour agreement and self-labelling, which read augmented
views), so logs hold only measured values.

Example:

```python
callbacks = [DropUncomputedValidation(), *others, EpochLine(epochs=15, log=print)]
model.fit(train_ds, validation_data=val_ds, epochs=15, callbacks=callbacks, verbose=0)
# epoch  3/15  loss 12.31  -ELBO 40.12 (val 39.80)  acc 71.2%  channels 10/10  8.4 s
```
"""

from __future__ import annotations

import dataclasses
import math
import time

import keras

from kmixvae.objectives import training_only_metrics


class DropUncomputedValidation(keras.callbacks.Callback):
    """Deletes `val_<term>` for the training-only terms from the epoch logs.

    Put it first in the callback list: the logs dict is shared, so every
    later callback (history, TensorBoard, checkpoints) sees the cleaned logs.

    Args:
        terms: names of the training-only terms (default: the registered
            objectives' `training_only_metrics`).
    """

    def __init__(self, terms=None):
        super().__init__()
        self.terms = training_only_metrics() if terms is None else tuple(terms)

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        for term in self.terms:
            logs.pop(f"val_{term}", None)


def _number(value, fmt: str) -> str:
    if value is None or not math.isfinite(float(value)):
        return "-"
    return format(float(value), fmt)


def format_epoch_line(
    epoch: int, epochs: int, logs: dict, seconds: float, num_channels=None
) -> str:
    """One short line: epoch, loss, -ELBO (and its validation value), accuracy, channels, time.

    Args:
        epoch: int. The 1-based epoch.
        epochs: int. Total epochs of the run.
        logs: the epoch's logs (Keras names: `loss`, `nelbo`, `val_nelbo`,
            `val_cluster_acc`, `active_channels`).
        seconds: float. Wall time of the epoch.
        num_channels: int or None. K, shown as `channels a/K`.

    Returns:
        The line, without a newline.
    """
    width = len(str(epochs))
    parts = [f"epoch {epoch:>{width}}/{epochs}", f"loss {_number(logs.get('loss'), '.3f')}"]
    elbo = f"-ELBO {_number(logs.get('nelbo'), '.2f')}"
    if "val_nelbo" in logs:
        elbo += f" (val {_number(logs['val_nelbo'], '.2f')})"
    parts.append(elbo)
    if "val_cluster_acc" in logs:
        parts.append(f"acc {_number(100.0 * float(logs['val_cluster_acc']), '.1f')}%")
    if "active_channels" in logs:
        active = f"{int(round(float(logs['active_channels'])))}"
        parts.append(f"channels {active}" + (f"/{num_channels}" if num_channels else ""))
    parts.append(f"{seconds:.1f} s")
    return "  ".join(parts)


class EpochLine(keras.callbacks.Callback):
    """Prints `format_epoch_line` at the end of every epoch.

    Put it last in the callback list, so that the values other callbacks add
    (held-out accuracy) are in the logs.

    Args:
        epochs: int. Total epochs of the run.
        log: function printing one message.
    """

    def __init__(self, epochs: int, log=print):
        super().__init__()
        self.epochs = int(epochs)
        self.log = log
        self._t0 = None

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - (self._t0 or time.perf_counter())
        k = getattr(self.model, "num_channels", None)
        self.log(format_epoch_line(epoch + 1, self.epochs, logs or {}, seconds, k))


def _loss_summary(loss) -> str:
    """`loss.<section>` weights that are on, e.g. `elbo x1, neighbor x1, usage_entropy x-5`."""
    parts = []
    for f in dataclasses.fields(loss):
        weight = getattr(getattr(loss, f.name), "weight", None)
        if weight:
            parts.append(f"{f.name} x{weight:g}")
    if not loss.elbo.assignment_gradient:
        parts.append("ELBO detached from q(c|x)")
    return ", ".join(parts)


def summarize_config(config, run_dir=None) -> str:
    """A few lines that say what a run trains, on what, for how long.

    Args:
        config: a resolved `Config`.
        run_dir: the run folder (its `config.json` holds the full config).

    Returns:
        Multi-line string.
    """
    d, m, t, loss = config.data, config.model, config.training, config.loss
    where = f" in {d.dir}" if d.dir else ""
    source = f"tfds {d.name}" if d.source == "tfds" else d.source  # the name is TFDS's
    dec = m.decoder
    lines = [
        f"run: {config.name} (seed {config.seed})"
        + (f" -> {run_dir} (full config in config.json)" if run_dir else ""),
        f"data: {source}{where}, train {d.train_split!r}, validation {d.val_split!r}, "
        f"batch {d.batch_size}",
        f"model: K={m.num_channels} channels, latent d={m.latent.dim} ({m.latent.layout}), "
        f"{dec.conditioning} decoder, {dec.head} head",
        "loss: " + _loss_summary(loss),
        f"training: {t.epochs} epochs, {t.optimizer} lr {t.learning_rate:g} ({t.lr_schedule})"
        + (", channel curriculum" if config.curriculum.enabled else "")
        + (
            f", channel pruning (K={m.num_channels} an upper bound)"
            if config.pruning.enabled
            else ""
        )
        + f"; backend {keras.backend.backend()}",
    ]
    return "\n".join(lines)


__all__ = [
    "DropUncomputedValidation",
    "EpochLine",
    "format_epoch_line",
    "summarize_config",
]
