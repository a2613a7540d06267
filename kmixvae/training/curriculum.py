"""Channel curriculum: unlock the mixture's channels 1 -> K during training."""

from __future__ import annotations

import keras
import numpy as np

from kmixvae.choices import CURRICULUM_SCHEDULES as SCHEDULES
from kmixvae.choices import UNLOCK_INITS


class ChannelCurriculum(keras.callbacks.Callback):
    """Unlocks channels over training by driving the model's channel mask.

    The mask changes only in `on_epoch_begin`, through `self.model`: that is
    where Keras (on JAX too) re-reads the model's variables, so the new mask
    reaches the train step. The compiled step is rebuilt once per stage
    (k active channels cost k decodes per image).

    Schedules:
    - `"fixed"`: one more channel every `unlock_every` epochs, or at the
      listed `unlock_epochs` (0-based epochs at which the new channel is
      first active). The target count is a function of the epoch, so a
      resumed run lands on the same stage.
    - `"plateau"`: one more channel when `monitor` has not improved by
      `min_delta` for `patience` epochs (the best value resets at each stage:
      losses are not comparable across stages).

    A new channel starts `"fresh"` (its untouched initial weights) or
    `"split"`: it copies the busiest channel's channel logit, latent heads,
    decoder embedding and prior, plus noise of relative scale `split_noise`,
    so that the two can divide that channel's data.

    Args:
        max_channels: int. Channels active at the end.
        start_channels: int. Channels active at the start.
        schedule: `"fixed"` or `"plateau"`.
        unlock_every: int. Fixed schedule: epochs between unlocks.
        unlock_epochs: list of int or None. Fixed schedule: explicit epochs.
        monitor: str. Plateau schedule: the logged value to watch.
        patience: int. Plateau schedule: epochs without improvement.
        min_delta: float. Plateau schedule: the improvement that counts.
        unlock_init: `"fresh"` or `"split"`.
        split_noise: float. Relative noise added to a split copy.
        seed: int. Seed of the split noise.
        verbose: bool. Print unlock events.

    Example:

    ```python
    curriculum = ChannelCurriculum(max_channels=10, schedule="fixed", unlock_every=2)
    model.fit(train_ds, epochs=20, callbacks=[curriculum])
    curriculum.events  # [{"epoch": 2, "channel": 1, "reason": "fixed: every 2 epochs"}, ...]
    ```
    """

    def __init__(
        self,
        max_channels,
        start_channels=1,
        schedule="fixed",
        unlock_every=1,
        unlock_epochs=None,
        monitor="val_loss",
        patience=2,
        min_delta=0.0,
        unlock_init="fresh",
        split_noise=0.05,
        seed=0,
        verbose=True,
    ):
        super().__init__()
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule: {schedule!r} is not one of {', '.join(SCHEDULES)}")
        if unlock_init not in UNLOCK_INITS:
            raise ValueError(
                f"unlock_init: {unlock_init!r} is not one of {', '.join(UNLOCK_INITS)}"
            )
        self.max_channels = int(max_channels)
        self.start_channels = int(start_channels)
        self.schedule = schedule
        self.unlock_every = int(unlock_every)
        self.unlock_epochs = list(unlock_epochs) if unlock_epochs else None
        self.monitor = monitor
        self.patience = int(patience)
        self.min_delta = float(min_delta)
        self.unlock_init = unlock_init
        self.split_noise = float(split_noise)
        self.verbose = verbose
        self._rng = np.random.default_rng(seed)
        self.events: list[dict] = []
        self._best = None
        self._wait = 0
        self._pending = False
        self._last_usage = None

    # ---------------------------------------------------------------- state

    @property
    def complete(self) -> bool:
        """True once every channel is unlocked (gates early stopping, best checkpoints)."""
        return self.model is not None and len(self.model.active_channels) >= self.max_channels

    state_key = "curriculum"

    def get_state(self) -> dict:
        """JSON-ready state, saved with checkpoints so a resumed run continues it."""
        return {
            "events": self.events,
            "best": self._best,
            "wait": self._wait,
            "pending": self._pending,
        }

    def set_state(self, state: dict) -> None:
        self.events = list(state.get("events", []))
        self._best = state.get("best")
        self._wait = int(state.get("wait", 0))
        self._pending = bool(state.get("pending", False))

    def target_count(self, epoch: int) -> int:
        """Fixed schedule: channels active during `epoch` (0-based)."""
        if self.unlock_epochs is not None:
            n = sum(1 for e in self.unlock_epochs if e <= epoch)
        else:
            n = epoch // self.unlock_every
        return min(self.max_channels, self.start_channels + n)

    # ---------------------------------------------------------------- callback

    def on_train_begin(self, logs=None):
        if len(self.model.active_channels) > self.max_channels:
            raise ValueError(
                f"the model has {len(self.model.active_channels)} active channels, "
                f"more than curriculum max_channels={self.max_channels}"
            )

    def on_epoch_begin(self, epoch, logs=None):
        active = len(self.model.active_channels)
        if self.schedule == "fixed":
            wanted = self.target_count(epoch)
            reason = (
                f"fixed: unlock_epochs {self.unlock_epochs}"
                if self.unlock_epochs is not None
                else f"fixed: every {self.unlock_every} epochs"
            )
        else:
            wanted = min(self.max_channels, active + 1) if self._pending else active
            reason = f"plateau: {self.monitor} flat for {self.patience} epochs"
        new = []
        while len(self.model.active_channels) + len(new) < wanted:
            channel = self._next_locked(exclude=new)
            if channel is None:
                break
            new.append(channel)
        if new:
            for channel in new:
                source = self._init_channel(channel)
                event = {"epoch": int(epoch), "channel": int(channel), "reason": reason}
                if source is not None:
                    event["split_from"] = int(source)
                self.events.append(event)
                if self.verbose:
                    print(f"[curriculum] epoch {epoch + 1}: unlock channel {channel} ({reason})")
            self.model.set_active_channels(list(self.model.active_channels) + new)
            self._pending = False
            self._best, self._wait = None, 0

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        self._last_usage = self._usage_from(logs)
        unlocked = [e["channel"] for e in self.events if e["epoch"] == epoch]
        logs["unlocked_channel"] = float(unlocked[-1]) if unlocked else -1.0
        if self.schedule != "plateau" or self.complete:
            return
        current = logs.get(self.monitor)
        if current is None:
            raise ValueError(
                f"curriculum.monitor: {self.monitor!r} is not among the logged values "
                f"({', '.join(sorted(logs))})"
            )
        if self._best is None or current < self._best - self.min_delta:
            self._best, self._wait = float(current), 0
        else:
            self._wait += 1
            if self._wait >= self.patience:
                self._pending = True

    # ---------------------------------------------------------------- helpers

    def _next_locked(self, exclude=()):
        active = set(self.model.active_channels) | set(exclude)
        for c in range(self.model.num_channels):
            if c not in active:
                return c
        return None

    def _usage_from(self, logs):
        k = self.model.num_channels
        for prefix in ("val_usage_", "usage_"):
            if all(f"{prefix}{c}" in logs for c in range(k)):
                return np.array([logs[f"{prefix}{c}"] for c in range(k)], dtype="float64")
        return None

    def _init_channel(self, channel):
        if self.unlock_init == "fresh":
            return None
        active = list(self.model.active_channels)
        usage = self._last_usage
        if usage is None:
            source = active[0]
        else:
            source = max(active, key=lambda c: usage[c])
        split_channel(self.model, source, channel, self.split_noise, self._rng)
        return source


def _copy_slice(variable, axis, source, target, width, noise, rng):
    value = np.array(keras.ops.convert_to_numpy(variable.value))
    moved = np.moveaxis(value, axis, 0)
    src = moved[source * width : (source + 1) * width]
    scale = noise * (float(np.std(src)) + 1e-3)
    moved[target * width : (target + 1) * width] = src + scale * rng.standard_normal(src.shape)
    variable.assign(np.moveaxis(moved, 0, axis).astype(value.dtype))


def split_channel(model, source: int, target: int, noise: float, rng) -> None:
    """Makes channel `target` a noisy copy of channel `source`.

    Copies the channel logit (kernel column and bias), the decentralized
    latent heads, the decoder's channel embedding and the prior's per-channel
    parameters. With equal logits the two channels share the source's mass.
    """
    enc = model.encoder
    logits = enc.channel_logits
    _copy_slice(logits.kernel, 1, source, target, 1, noise, rng)
    _copy_slice(logits.bias, 0, source, target, 1, 0.0, rng)
    if enc.layout == "decentralized":
        d = enc.latent_dim
        for head in (enc.mu_head, enc.log_var_head):
            _copy_slice(head.kernel, 1, source, target, d, noise, rng)
            _copy_slice(head.bias, 0, source, target, d, 0.0, rng)
    emb = model.decoder.embedding
    if emb is not None:
        _copy_slice(emb.embeddings, 0, source, target, 1, noise, rng)
    prior = model.prior
    for var in (prior.prior_means, prior.prior_log_scales):
        _copy_slice(var, 0, source, target, 1, 0.0, rng)
    _copy_slice(prior.pi_logits, 0, source, target, 1, 0.0, rng)
