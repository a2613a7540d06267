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
    candidate channel heads (`select_head`) and the terms whose start epoch
    has come (`start_epoch`). Call each between epochs, through the model
    that `fit` trains.
    """

    def _make_channel_mask(self, active_channels):
        """Creates the `channel_mask` weight with `active_channels` on (None: all)."""
        if active_channels is None:
            active_channels = list(range(self.num_channels))
        self._active = self._check_channels(active_channels)
        mask = np.zeros((self.num_channels,), "float32")
        mask[list(self._active)] = 1.0
        self.channel_mask = self.add_weight(
            shape=(self.num_channels,),
            initializer=keras.initializers.Constant(mask),
            trainable=False,
            name="channel_mask",
            dtype="float32",
        )

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
        super().load_own_variables(store)
        self._sync_active_from_mask()

    def select_head(self, head: int, order=None) -> None:
        """Puts candidate channel head `head` first and trains only it from now on.

        `order` renumbers its channels (see `Encoder.copy_head`). Like
        `set_active_channels`, call it between epochs through the model that
        `fit` trains.
        """
        self.encoder.copy_head(int(head), order)
        if self.candidate_heads_on:
            self.candidate_heads_on = False
            if getattr(self, "train_function", None) is not None:
                self.make_train_function(force=True)

    def start_epoch(self, epoch: int) -> None:
        """Turns on the terms whose start epoch has come (ELBO decoding, objectives).

        The terms that are on are static in the compiled train step: when
        one changes, the step is retraced. Call it between epochs, through
        the model that `fit` trains (see `TermSchedule`).
        """
        changed = False
        candidates = self.encoder.heads > 1 and epoch < self.head_selection_epoch
        if candidates != self.candidate_heads_on:
            self.candidate_heads_on = candidates
            changed = True
        decode = epoch >= self.elbo.start_epoch
        if decode != self.decode_in_training:
            self.decode_in_training = decode
            changed = True
        for objective in self.objectives:
            on = objective.is_on_at(epoch)
            if on != objective.active:
                objective.active = on
                changed = True
        if changed and getattr(self, "train_function", None) is not None:
            self.make_train_function(force=True)
