"""ChannelMask: which channels of a MixtureVAE are active, and the switches of its train step."""

from __future__ import annotations

import keras
import numpy as np


class ChannelMask:
    """The active channels and the terms that are on, of a `MixtureVAE` (a mixin).

    The model holds a non-trainable `channel_mask` weight (saved with it);
    this mixin keeps the Python-side tuple of active channels in step with
    it and retraces the compiled train step when what it compiles in
    changes: the number of decoded channels (`set_active_channels`), the
    views the objectives that are on read, and whether the ELBO decodes.

    The rest of the schedule is data, not graph: two more non-trainable
    weights (not saved: `start_epoch` sets them at every epoch, also on a
    resumed run) hold each objective's on/off switch (`term_switches`) and
    the weight of each candidate channel head in the terms
    (`head_weights`: 1/heads each before the head selection, 1 on the first
    head after it). Turning a term on or off, or keeping one head
    (`select_head`), assigns them and leaves the compiled step as it is,
    as long as the views drawn stay the same (with `configs/film_het.json`
    the view-consistency term and self-labelling read the same augmented
    view, so its phase change compiles nothing). Call each between epochs,
    through the model that `fit` trains.
    """

    def _make_channel_mask(self, active_channels):
        """Creates the `channel_mask` weight with `active_channels` on (None: all)."""
        if active_channels is None:
            active_channels = list(range(self.num_channels))
        self._active = self._check_channels(active_channels)
        mask = np.zeros((self.num_channels,), "float32")
        mask[list(self._active)] = 1.0
        self.channel_mask = self._constant_weight("channel_mask", mask)

    def _constant_weight(self, name, values):
        """A non-trainable float32 weight holding `values` (a 1-d numpy array)."""
        return self.add_weight(
            shape=values.shape,
            initializer=keras.initializers.Constant(values),
            trainable=False,
            name=name,
            dtype="float32",
        )

    def _make_term_switches(self):
        """Creates `term_switches` (one per objective) and `head_weights` (one per head)."""
        self.term_switches = self._constant_weight("term_switches", self._switch_values())
        self.head_weights = self._constant_weight("head_weights", self._head_weight_values())

    def _switch_values(self):
        """1 for each objective that is on, 0 for each that is off (one 0 without any)."""
        return np.asarray([1.0 if o.active else 0.0 for o in self.objectives] or [0.0], "float32")

    def _head_weight_values(self):
        heads = self.encoder.heads
        if self.candidate_heads_on:
            return np.full((heads,), 1.0 / heads, "float32")
        return np.eye(1, heads, dtype="float32")[0]

    def save_own_variables(self, store):
        # Only the mask is state; the switches follow the epoch (`start_epoch`), so a
        # model file is what it was before they existed.
        store["0"] = keras.ops.convert_to_numpy(self.channel_mask.value)

    def _check_channels(self, channels):
        chans = tuple(sorted({int(c) for c in channels}))
        if not chans:
            raise ValueError("at least one channel must be active")
        bad = [c for c in chans if not 0 <= c < self.num_channels]
        if bad:
            raise ValueError(f"channel {bad[0]} is out of range 0..{self.num_channels - 1}")
        return chans

    @property
    def active_channels(self) -> tuple[int, ...]:
        """Indices of the active (unlocked) channels."""
        return self._active

    def set_active_channels(self, channels) -> None:
        """Sets the active channels: the mask weight and the compiled step.

        On JAX, Keras holds the training state outside the variables during
        an epoch; call this between epochs (e.g. `on_epoch_begin`) through
        the model that `fit` trains, so the new mask reaches the train step.
        """
        self._active = self._check_channels(channels)
        mask = np.zeros((self.num_channels,), "float32")
        mask[list(self._active)] = 1.0
        self.channel_mask.assign(mask)
        # The number of decodes per image is static in the compiled step: retrace.
        if getattr(self, "train_function", None) is not None:
            self.make_train_function(force=True)
        self.test_function = None
        self.predict_function = None

    def _sync_active_from_mask(self):
        mask = np.asarray(keras.ops.convert_to_numpy(self.channel_mask.value))
        self._active = self._check_channels(np.nonzero(mask > 0.5)[0].tolist())

    def load_own_variables(self, store):
        self.channel_mask.assign(store["0"])
        self._sync_active_from_mask()

    def select_head(self, head: int, order=None) -> None:
        """Puts candidate channel head `head` first and trains only it from now on.

        `order` renumbers its channels (see `Encoder.copy_head`). Like
        `set_active_channels`, call it between epochs through the model that
        `fit` trains.
        """
        self.encoder.copy_head(int(head), order)
        self.candidate_heads_on = False
        self.head_weights.assign(self._head_weight_values())

    def start_epoch(self, epoch: int) -> None:
        """Turns on the terms whose epoch has come and off those whose stop epoch has.

        Sets the switches (`term_switches`, `head_weights`); the compiled
        train step is retraced only when what it draws changes: the views
        the objectives that are on read, or whether the ELBO decodes. Call
        it between epochs, through the model that `fit` trains (see
        `TermSchedule`).
        """
        views_before = self._views_read()
        candidates = self.encoder.heads > 1 and epoch < self.head_selection_epoch
        self.candidate_heads_on = candidates
        changed = False
        decode = epoch >= self.elbo.start_epoch
        if decode != self.decode_in_training:
            self.decode_in_training = decode
            changed = True
        for objective in self.objectives:
            objective.active = objective.is_on_at(epoch)
        self.term_switches.assign(self._switch_values())
        self.head_weights.assign(self._head_weight_values())
        changed = changed or self._views_read() != views_before
        if changed and getattr(self, "train_function", None) is not None:
            self.make_train_function(force=True)
