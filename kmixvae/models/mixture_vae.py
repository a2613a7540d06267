"""MixtureVAE: the mixture-of-VAEs with decentralized latents, its exact ELBO and its inference API."""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from kmixvae.layers.mixture_prior import MixturePrior
from kmixvae.models.decoder import Decoder
from kmixvae.models.encoder import Encoder
from kmixvae.objectives import ElboConfig, Objective, ViewAugmentation
from kmixvae.objectives.usage_entropy import usage_entropy
from kmixvae.utils.replicas import scale_for_replicas

# The loss and the ELBO's parts the model logs every step (history curves, NaN checks).
LOSS_TERMS = ("loss", "nelbo", "recon", "kl_z", "kl_c", "usage_entropy")

# Constructor arguments of models saved before the clustering terms became objectives.
_PRE_OBJECTIVE_KEYS = ("diversity_weight", "neighbor_weight", "self_label_weight", "elbo_weight")


class _InferenceCache:
    """Holds the compiled inference models, out of Keras' tracking."""

    def __init__(self):
        self.models = {}


@keras.saving.register_keras_serializable(package="kmixvae")
class MixtureVAE(keras.Model):
    """A VAE whose prior is a mixture of K channels, each with its own latent space.

    The model is the generative model and its exact ELBO. The negative ELBO
    of the mixture is summed over the active channels, with every active
    channel decoded in one batched decoder call (B * k images for k active
    channels):

        L(x) = sum_c q(c|x) [ -log p(x|z_c, c) + KL(q(z|x,c) || p(z|c)) ]
               + KL(q(c|x) || p(c))

    The trained loss is `elbo.weight * mean_x L(x) + sum_o o.weight * o.term`
    over the clustering `objectives` that are on (`kmixvae.objectives`:
    usage entropy, neighbour agreement, self-labelling, ...), each reading
    the posteriors q(c|.) of the views it names. With
    `elbo.assignment_gradient=False` the ELBO's weights q(c|x) and the
    encoder trunk get no gradient from it; `elbo.subbatch` decodes only the
    first images of each batch; `elbo.start_epoch` skips decoding in
    training before that epoch (see `start_epoch`).

    A non-trainable `channel_mask` (saved with the model) marks the active
    channels; locked channels have q(c|x) exactly 0, are not decoded and get
    no gradient. Change it with `set_active_channels`, only where Keras
    re-reads the model state (between epochs, see `ChannelCurriculum`).

    Logs `nelbo`, `recon`, `kl_z`, `kl_c`, `usage_entropy` (H of the batch's
    mean q(c|x)), `confidence_entropy` (mean H(q(c|x))), `active_channels`,
    `usage_<c>`, and each objective's own metrics.

    Args:
        encoder: an `Encoder`.
        decoder: a `Decoder`.
        prior: a `MixturePrior`.
        elbo: an `ElboConfig` (or its dict): weight, subbatch,
            assignment_gradient, start_epoch.
        objectives: list of `Objective`s (or their serialised dicts), added
            to the loss in this order.
        augmentation: a `ViewAugmentation` drawing the augmented and
            neighbour views (default: 15 degrees, 10%).
        active_channels: list of int or None. Channels active at creation
            (None: all).
        seed: int. Seed of the reparameterisation noise (augmentation: seed + 1).
        head_selection_epoch: int. With an encoder of several candidate channel
            heads, the epoch (0-based) from which only the first head trains:
            before it, every objective that is on trains every head (each
            term the mean over the heads); at it, `select_head` puts the
            chosen head first (see `kmixvae.training.head_selection`).
        **kwargs: standard `keras.Model` arguments.

    Example:

    ```python
    model = build_model(load_config("configs/smoke.json"), image_shape=(28, 28, 1))
    model.compile(optimizer="adam")
    model.fit(train_ds, validation_data=val_ds, epochs=2)
    out = model.encode(x)                 # q, mu, var, channel
    x_hat = model.reconstruct(x)
    ```
    """

    def __init__(
        self,
        encoder,
        decoder,
        prior,
        elbo=None,
        objectives=(),
        augmentation=None,
        active_channels=None,
        seed=0,
        head_selection_epoch=0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.encoder = encoder
        self.decoder = decoder
        self.prior = prior
        self.num_channels = prior.num_channels
        self.latent_dim = prior.latent_dim
        if elbo is None:
            elbo = ElboConfig()
        self.elbo = ElboConfig.from_dict(elbo) if isinstance(elbo, dict) else elbo
        self.objectives = [
            keras.saving.deserialize_keras_object(o) if isinstance(o, dict) else o
            for o in objectives
        ]
        for o in self.objectives:
            if not isinstance(o, Objective):
                raise TypeError(f"objectives: {o!r} is not an Objective")
        if augmentation is None:
            augmentation = ViewAugmentation()
        elif isinstance(augmentation, dict):
            augmentation = ViewAugmentation.from_config(augmentation)
        self.augmentation = augmentation
        self.decode_in_training = self.elbo.start_epoch == 0
        self.seed = int(seed)
        self.head_selection_epoch = int(head_selection_epoch)
        if encoder.heads > 1 and self.head_selection_epoch < 1:
            raise ValueError(
                f"head_selection_epoch: {head_selection_epoch} must be at least 1 with "
                f"{encoder.heads} candidate channel heads"
            )
        self.candidate_heads_on = encoder.heads > 1
        self.augment_seed = keras.random.SeedGenerator(self.seed + 1)
        if active_channels is None:
            active_channels = list(range(self.num_channels))
        self._active = self._check_channels(active_channels)
        self.seed_generator = keras.random.SeedGenerator(self.seed)
        mask = np.zeros((self.num_channels,), "float32")
        mask[list(self._active)] = 1.0
        self.channel_mask = self.add_weight(
            shape=(self.num_channels,),
            initializer=keras.initializers.Constant(mask),
            trainable=False,
            name="channel_mask",
            dtype="float32",
        )
        names = ["nelbo", "recon", "kl_z", "kl_c", "usage_entropy", "confidence_entropy"]
        names.append("active_channels")
        for o in self.objectives:
            names.extend(m for m in o.metrics if m not in names)
        self.trackers = {name: keras.metrics.Mean(name=name) for name in names}
        self.usage_trackers = [
            keras.metrics.Mean(name=f"usage_{c}") for c in range(self.num_channels)
        ]

    # ------------------------------------------------------------------ state

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

    # ------------------------------------------------------------------ build

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        for layer, args in (
            (self.encoder, (input_shape,)),
            (self.prior, ()),
            (self.decoder, ((None, self.latent_dim), (None,))),
        ):
            if not layer.built:
                layer.build(*args)
        self.built = True

    # ------------------------------------------------------------------ forward

    def _posteriors(self, x, training=False, all_heads=False):
        """q(c|x) `(B, K)` (every candidate head's, `(B, heads, K)`, with `all_heads`)."""
        logits, mu, log_var = self.encoder(
            x,
            training=training,
            detach_latents=not self.elbo.assignment_gradient,
            all_heads=all_heads,
        )
        logits = ops.cast(logits, "float32")
        mask = ops.cast(self.channel_mask, "bool")
        masked = ops.where(mask, logits, ops.full_like(logits, -1e9))
        q = ops.softmax(masked, axis=-1) * ops.cast(mask, "float32")
        return q, ops.cast(mu, "float32"), ops.cast(log_var, "float32")

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

    def _select(self, t, channels):
        """Picks the given channels of a `(B, K or 1, d)` posterior tensor."""
        if t.shape[1] == 1:
            return ops.repeat(t, len(channels), axis=1)
        return ops.take(t, ops.convert_to_tensor(list(channels), dtype="int32"), axis=1)

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

    def _views_wanted(self, training, has_neighbors):
        """The extra views the objectives that are on read in this step, in batch order."""
        if not training:
            return ()
        read = {v for o in self.objectives if o.active for v in o.views}
        wanted = []
        if "augmented" in read:
            wanted.append("augmented")
        if "neighbor" in read and has_neighbors:
            wanted.append("neighbor")
        return tuple(wanted)

    def call(self, inputs, training=False):
        """Runs the stochastic forward pass; returns the per-image loss terms.

        `inputs` is a batch of images, or (training with neighbour pairs) a
        dict `{"x": images, "neighbor": neighbour images}`.
        """
        x_nbr = None
        if isinstance(inputs, dict):
            x, x_nbr = inputs["x"], inputs.get("neighbor")
        else:
            x = inputs
        x = ops.cast(x, "float32")
        active = self._active
        k = len(active)
        batch = ops.shape(x)[0]
        idx = ops.convert_to_tensor(list(active), dtype="int32")
        wanted = self._views_wanted(training, x_nbr is not None)
        images = {"augmented": x, "neighbor": x_nbr}
        # One encoder call over all views (batch norm sees them together).
        views = [x] + [
            self.augmentation(ops.cast(images[name], "float32"), self.augment_seed)
            for name in wanted
        ]
        candidates = training and self.candidate_heads_on
        q_all, mu, log_var = self._posteriors(
            ops.concatenate(views, axis=0) if len(views) > 1 else x, training, candidates
        )
        # With candidate heads, each view holds every head's posteriors, (B, heads, K).
        q_views = {"x": q_all[:batch]}
        for i, name in enumerate(wanted, start=1):
            q_views[name] = q_all[i * batch : (i + 1) * batch]
        q, mu, log_var = q_views["x"], mu[:batch], log_var[:batch]
        if candidates:
            q = q[:, 0]
        q_elbo = q if self.elbo.assignment_gradient else ops.stop_gradient(q)
        kl_c = self.prior.kl_c(q_elbo, self.channel_mask)
        out = {
            "q": q,
            "q_active": ops.take(q_elbo, idx, axis=1),
            "kl_c": kl_c,
            "views": q_views,
        }
        if training and not self.decode_in_training:
            zeros = ops.zeros((batch, k), "float32")
            return {**out, "nll": zeros, "kl_z": zeros}
        if self.elbo.subbatch is not None and training:
            # An unbiased estimate of the mean ELBO at a fraction of the decoder cost.
            n = self.elbo.subbatch
            x, q_elbo, mu, log_var = x[:n], q_elbo[:n], mu[:n], log_var[:n]
            batch = ops.shape(x)[0]
        mu_a, log_var_a = self._select(mu, active), self._select(log_var, active)
        if training and self.elbo.channels == "sampled":
            return {**out, **self._sampled_channel_terms(x, q_elbo, mu_a, log_var_a, idx)}
        eps = keras.random.normal(ops.shape(mu_a), seed=self.seed_generator)
        z = mu_a + ops.exp(0.5 * log_var_a) * eps
        channels = ops.tile(ops.convert_to_tensor(list(active), dtype="int32"), (batch,))
        params = self.decoder(ops.reshape(z, (-1, self.latent_dim)), channels)
        nll = self.decoder.head.nll(ops.repeat(x, k, axis=0), params)
        return {
            **out,
            "q_active": ops.take(q_elbo, idx, axis=1),
            "nll": ops.reshape(nll, (-1, k)),
            "kl_z": self.prior.kl_z(mu_a, log_var_a, channels=active),
        }

    def _sampled_channel_terms(self, x, q, mu_a, log_var_a, idx):
        """The ELBO's per-channel terms with one channel per image drawn from q(c|x).

        sum_c q(c|x) L_c(x) is estimated without bias by L_c'(x) with
        c' ~ q(c|x): one decode per image instead of one per active channel,
        so the ELBO can see the whole batch for less decoder work than the
        exact sum over a sub-batch. q(c|x) gets no gradient from the ELBO
        here (`elbo.assignment_gradient` is False), so the draw needs no
        gradient estimator.
        """
        k = len(self._active)
        q_a = ops.take(q, idx, axis=1)
        pick = keras.random.categorical(
            ops.log(ops.maximum(q_a, 1e-30)), 1, seed=self.seed_generator, dtype="int32"
        )[:, 0]
        onehot = ops.one_hot(pick, k)
        channels = ops.take(idx, pick, axis=0)
        mu = ops.sum(mu_a * onehot[:, :, None], axis=1)
        log_var = ops.sum(log_var_a * onehot[:, :, None], axis=1)
        eps = keras.random.normal(ops.shape(mu), seed=self.seed_generator)
        z = mu + ops.exp(0.5 * log_var) * eps
        nll = self.decoder.head.nll(x, self.decoder(z, channels))
        kl_z = self.prior.kl_z_at(mu, log_var, channels)
        return {"q_active": onehot, "nll": onehot * nll[:, None], "kl_z": onehot * kl_z[:, None]}

    def loss_terms(self, terms):
        """Reduces the per-image terms of `call` to the batch loss, its parts and the metrics."""
        q_a = terms["q_active"]
        recon = ops.sum(q_a * terms["nll"], axis=-1)
        kl_z = ops.sum(q_a * terms["kl_z"], axis=-1)
        kl_c = terms["kl_c"]
        q = terms["q"]
        per_image_entropy = -ops.sum(q * ops.log(ops.maximum(q, 1e-12)), axis=-1)
        nelbo = ops.mean(recon) + ops.mean(kl_z) + ops.mean(kl_c)
        loss = self.elbo.weight * (ops.mean(recon) + (ops.mean(kl_z) + ops.mean(kl_c)))
        out = {}
        for objective in self.objectives:
            if not objective.active or any(v not in terms["views"] for v in objective.views):
                continue  # its metrics log 0 (see compute_loss)
            term, metrics = self._objective_term(objective, terms["views"])
            loss = loss + objective.weight * term
            out.update(metrics)
        out.update(
            {
                "loss": loss,
                "nelbo": nelbo,
                "recon": ops.mean(recon),
                "kl_z": ops.mean(kl_z),
                "kl_c": ops.mean(kl_c),
                "usage_entropy": usage_entropy(q),
                "confidence_entropy": ops.mean(per_image_entropy),
                "usage": ops.mean(q, axis=0),
            }
        )
        return out

    @staticmethod
    def _objective_term(objective, views):
        """An objective's term and metrics: on `(B, K)` views, or the mean over the
        candidate heads of `(B, heads, K)` views."""
        if len(views["x"].shape) == 2:
            return objective.term(views)
        heads = views["x"].shape[1]
        parts = [objective.term({name: v[:, h] for name, v in views.items()}) for h in range(heads)]
        term = ops.mean(ops.stack([t for t, _ in parts]))
        metrics = {m: ops.mean(ops.stack([p[1][m] for p in parts])) for m in parts[0][1]}
        return term, metrics

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        parts = self.loss_terms(y_pred)
        for name, tracker in self.trackers.items():
            if name == "active_channels":
                tracker.update_state(ops.sum(self.channel_mask))
            else:
                # Terms that are off in this step (no neighbour pairs, self-labelling not
                # started) log 0: every tracker is updated in every step, so the compiled
                # step's state keeps one structure and never retraces.
                tracker.update_state(parts.get(name, 0.0))
        usage = parts["usage"]
        for c, tracker in enumerate(self.usage_trackers):
            tracker.update_state(usage[c])
        return scale_for_replicas(parts["loss"])

    # ------------------------------------------------------------------ inference

    # Compiled inference: small functional models over the same layers, run
    # with `predict_on_batch` (tf.function / jax.jit) on batches padded to one
    # shape, so nothing recompiles batch to batch. They live in a plain object
    # so that Keras does not track (or save) them.

    def _inference_model(self, name):
        cache = self.__dict__.setdefault("_inference", _InferenceCache())
        if name not in cache.models:
            if name == "encode":
                x_in = keras.Input(self.decoder.image_shape, name="x")
                logits, mu, log_var = self.encoder(x_in)
                cache.models[name] = keras.Model(x_in, [logits, mu, log_var])
            elif name == "heads":
                x_in = keras.Input(self.decoder.image_shape, name="x")
                h = self.encoder.features(x_in)
                cache.models[name] = keras.Model(x_in, self.encoder.head_logits(h))
            elif name == "features":
                x_in = keras.Input(self.decoder.image_shape, name="x")
                cache.models[name] = keras.Model(x_in, self.encoder.features(x_in))
            elif name == "decode":
                z_in = keras.Input((self.latent_dim,), name="z")
                c_in = keras.Input((), dtype="int32", name="channel")
                params = self.decoder(z_in, c_in)
                head = self.decoder.head
                sigma = head.sigma(params)
                outputs = [head.mean(params)] + ([sigma] if sigma is not None else [])
                cache.models[name] = keras.Model([z_in, c_in], outputs)
            elif name == "nll":
                z_in = keras.Input((self.latent_dim,), name="z")
                c_in = keras.Input((), dtype="int32", name="channel")
                x_in = keras.Input(self.decoder.image_shape, name="x")
                nll = self.decoder.head.nll(x_in, self.decoder(z_in, c_in))
                cache.models[name] = keras.Model([z_in, c_in, x_in], nll)
        return cache.models[name]

    def _run(self, name, arrays, batch_size):
        """Runs a compiled inference model over arrays in padded batches; returns numpy outputs."""
        model = self._inference_model(name)
        n = len(arrays[0])
        outs = None
        for start in range(0, n, batch_size):
            chunk = [a[start : start + batch_size] for a in arrays]
            m = len(chunk[0])
            size = batch_size if n > batch_size else m
            if m < size:
                chunk = [np.concatenate([a, np.repeat(a[-1:], size - m, axis=0)]) for a in chunk]
            res = model.predict_on_batch(chunk if len(chunk) > 1 else chunk[0])
            res = res if isinstance(res, (list, tuple)) else [res]
            res = [np.asarray(r)[:m] for r in res]
            outs = [[r] for r in res] if outs is None else [o + [r] for o, r in zip(outs, res)]
        return [np.concatenate(o) for o in outs]

    def encode(self, x, batch_size: int = 512) -> dict:
        """Posterior of the channel and of the latents, streamed in batches.

        Returns:
            dict of numpy arrays: `q` `(N, K)` = q(c|x) (0 on locked channels),
            `mu` and `var` `(N, K, d)` per-channel posterior means and
            variances, `channel` `(N,)` = argmax q(c|x).
        """
        x = np.asarray(x, dtype="float32")
        logits, mu, log_var = self._run("encode", [x], batch_size)
        mask = np.asarray(ops.convert_to_numpy(self.channel_mask)) > 0.5
        logits = np.where(mask[None], logits.astype("float64"), -np.inf)
        q = np.exp(logits - logits.max(axis=1, keepdims=True))
        q = (q / q.sum(axis=1, keepdims=True)).astype("float32")
        k = self.num_channels
        mu = np.broadcast_to(mu, (len(x), k, self.latent_dim)).astype("float32")
        var = np.exp(np.broadcast_to(log_var, (len(x), k, self.latent_dim))).astype("float32")
        return {"q": q, "mu": mu, "var": var, "channel": q.argmax(axis=1).astype("int64")}

    def head_channels(self, x, batch_size: int = 512) -> np.ndarray:
        """argmax q(c|x) of every candidate channel head: int64 `(heads, N)`.

        Locked channels are never chosen; head 0 is the one `encode` reads.
        """
        (logits,) = self._run("heads", [np.asarray(x, dtype="float32")], batch_size)
        mask = np.asarray(ops.convert_to_numpy(self.channel_mask)) > 0.5
        logits = np.where(mask[None, None], logits, -np.inf)
        return np.moveaxis(logits.argmax(axis=-1), 1, 0).astype("int64")

    def features(self, x, batch_size: int = 512) -> np.ndarray:
        """The encoder trunk's `(N, dense_units)` features of images in [0, 1]."""
        return self._run("features", [np.asarray(x, dtype="float32")], batch_size)[0]

    def decode(self, z, channels, batch_size: int = 512) -> dict:
        """Decodes latents `(N, d)` with channels `(N,)` (or one int).

        Returns:
            dict with `mean` `(N, H, W, C)` and, for heads with one, `sigma`.
        """
        z = np.asarray(z, "float32").reshape(-1, self.latent_dim)
        channels = np.ascontiguousarray(np.broadcast_to(np.asarray(channels, "int32"), (len(z),)))
        bad = channels[(channels < 0) | (channels >= self.num_channels)]
        if bad.size:
            raise ValueError(f"channel {int(bad[0])} is out of range 0..{self.num_channels - 1}")
        outs = self._run("decode", [z, channels], batch_size)
        out = {"mean": outs[0]}
        if len(outs) > 1:
            out["sigma"] = outs[1]
        return out

    def decode_nll(self, z, channels, x, batch_size: int = 2048) -> np.ndarray:
        """-log p(x | z, c) in nats per image, compiled; `z` `(N, d)`, `channels` `(N,)`, `x` `(N, H, W, C)`."""
        z = np.asarray(z, "float32").reshape(-1, self.latent_dim)
        channels = np.ascontiguousarray(np.broadcast_to(np.asarray(channels, "int32"), (len(z),)))
        return self._run("nll", [z, channels, np.asarray(x, "float32")], batch_size)[0]

    def _batches(self, x, batch_size):
        x = np.asarray(x, dtype="float32")
        for start in range(0, len(x), batch_size):
            yield x[start : start + batch_size]

    def reconstruct(self, x, batch_size: int = 512) -> dict:
        """Reconstructs images with their chosen channel and its posterior mean."""
        means, sigmas, chans = [], [], []
        for xb in self._batches(x, batch_size):
            enc = self.encode(xb, batch_size=batch_size)
            idx = np.arange(len(xb))
            z = enc["mu"][idx, enc["channel"]]
            dec = self.decode(z, enc["channel"], batch_size=batch_size)
            means.append(dec["mean"])
            if "sigma" in dec:
                sigmas.append(dec["sigma"])
            chans.append(enc["channel"])
        out = {"mean": np.concatenate(means), "channel": np.concatenate(chans)}
        if sigmas:
            out["sigma"] = np.concatenate(sigmas)
        return out

    def sample(self, n: int, channel: int | None = None, seed: int | None = None) -> dict:
        """Draws `n` images from the prior (of one channel, or of the mixture).

        Returns:
            dict with `mean` `(n, H, W, C)`, `channel` `(n,)` and, for heads with one, `sigma`.
        """
        rng = np.random.default_rng(self.seed if seed is None else seed)
        active = np.asarray(self._active)
        if channel is None:
            log_pi = ops.convert_to_numpy(self.prior.log_pi(self.channel_mask))
            p = np.exp(log_pi[active])
            channels = rng.choice(active, size=n, p=p / p.sum())
        else:
            if not 0 <= int(channel) < self.num_channels:
                raise ValueError(f"channel {channel} is out of range 0..{self.num_channels - 1}")
            channels = np.full((n,), int(channel))
        means = ops.convert_to_numpy(self.prior.prior_means)[channels]
        scales = np.exp(ops.convert_to_numpy(self.prior.prior_log_scales))[channels]
        z = means + scales * rng.standard_normal((n, self.latent_dim))
        out = self.decode(z, channels)
        out["channel"] = channels.astype("int64")
        return out

    # ------------------------------------------------------------------ reporting

    def describe(self) -> dict:
        """What was actually built, read off the layers (not off the config)."""
        dec = self.decoder
        head = dec.head
        info = {
            "num_channels": self.num_channels,
            "active_channels": list(self._active),
            "latent_dim": self.latent_dim,
            "latent_layout": self.encoder.layout,
            "decoder_conditioning": dec.conditioning,
            "film_init": dec.film_init,
            "film_input": dec.film_input,
            "film_layers": len(dec.films),
            "embedding_dim": dec.embedding_dim if dec.embedding is not None else 0,
            "decoder_filters": dec.filters,
            "decoder_block": dec.block,
            "encoder_filters": self.encoder.filters,
            "head": type(head).__name__,
            "likelihood": head.likelihood,
            "prior": {"pi": self.prior.pi, "means": self.prior.means, "scales": self.prior.scales},
            "elbo": self.elbo.to_dict(),
            "objectives": {o.section: o.get_config() for o in self.objectives},
            "augmentation": self.augmentation.get_config(),
            "encoder_batch_norm": self.encoder.batch_norm,
            "channel_heads": self.encoder.heads,
        }
        if hasattr(head, "sigma_min"):
            info["sigma_bounds"] = [head.sigma_min, head.sigma_max]
            info["nll_beta"] = head.nll_beta
        if hasattr(head, "fixed_sigma"):
            info["fixed_sigma"] = head.fixed_sigma
        if self.built:
            info["parameters"] = int(sum(math.prod(v.shape) for v in self.trainable_weights))
        return info

    def describe_text(self) -> str:
        """`describe()` as one readable line per item."""
        return "\n".join(f"  {key}: {value}" for key, value in self.describe().items())

    # ------------------------------------------------------------------ config

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "encoder": keras.layers.serialize(self.encoder),
                "decoder": keras.layers.serialize(self.decoder),
                "prior": keras.layers.serialize(self.prior),
                "elbo": self.elbo.to_dict(),
                "objectives": [keras.saving.serialize_keras_object(o) for o in self.objectives],
                "augmentation": self.augmentation.get_config(),
                "active_channels": list(self._active),
                "seed": self.seed,
                "head_selection_epoch": self.head_selection_epoch,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if any(key in config for key in _PRE_OBJECTIVE_KEYS):
            raise ValueError(
                "this model file predates kmixvae's clustering objectives "
                "(loss.<objective> config sections); retrain it with the current version"
            )
        for key in ("encoder", "decoder", "prior"):
            config[key] = keras.layers.deserialize(config[key])
        return cls(**config)


__all__ = ["MixtureVAE", "Encoder", "Decoder", "MixturePrior"]
