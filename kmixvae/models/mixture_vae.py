"""MixtureVAE: the mixture-of-VAEs with decentralized latents, its loss and its inference API."""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from kmixvae.layers.film import FiLM
from kmixvae.layers.mixture_prior import MixturePrior
from kmixvae.models.decoder import Decoder
from kmixvae.models.encoder import Encoder


def _iic_mutual_information(q, q_aug):
    """I(c; c') of the symmetrised joint of two views' channel posteriors (IIC, Ji et al. 2019)."""
    n = ops.cast(ops.shape(q)[0], "float32")
    joint = ops.matmul(ops.transpose(q), q_aug) / n
    joint = _mean_over_replicas(joint)
    joint = 0.5 * (joint + ops.transpose(joint))
    joint = ops.maximum(joint, 1e-8)
    p_i = ops.sum(joint, axis=1, keepdims=True)
    p_j = ops.sum(joint, axis=0, keepdims=True)
    return ops.sum(joint * (ops.log(joint) - ops.log(p_i) - ops.log(p_j)))


def _self_label_loss(q, q_aug, threshold):
    """Class-balanced cross-entropy of q(c|aug x) against confident argmax q(c|x).

    Images whose max q(c|x) exceeds `threshold` are pseudo-labelled with their
    argmax (no gradient through the target); each pseudo-class is weighted by
    the inverse of its count so that large channels do not swallow small ones
    (SCAN's self-labelling step, Van Gansbeke et al. 2020).
    """
    target_q = ops.stop_gradient(q)
    k = q.shape[-1]
    confident = ops.cast(ops.max(target_q, axis=-1) > threshold, "float32")
    onehot = ops.one_hot(ops.argmax(target_q, axis=-1), k)
    counts = ops.sum(onehot * confident[:, None], axis=0)
    weight = ops.sum(onehot * (1.0 / ops.maximum(counts, 1.0))[None, :], axis=-1)
    n_conf = ops.maximum(ops.sum(confident), 1.0)
    weight = weight / ops.maximum(ops.sum(weight * confident), 1e-6) * n_conf
    ce = -ops.sum(onehot * ops.log(ops.maximum(q_aug, 1e-8)), axis=-1)
    loss = ops.sum(confident * weight * ce) / n_conf
    return loss, ops.mean(confident)


LOSS_SETTINGS = (
    "diversity_weight",
    "confidence_weight",
    "elbo_weight",
    "elbo_subbatch",
    "iic_weight",
    "neighbor_weight",
    "self_label_weight",
    "self_label_threshold",
    "elbo_assignment_gradient",
    "augment_rotation",
    "augment_shift",
)


class _InferenceCache:
    """Holds the compiled inference models, out of Keras' tracking."""

    def __init__(self):
        self.models = {}


def _scale_for_replicas(value):
    """Divides a per-replica loss by the replica count under `tf.distribute`."""
    from keras.src.losses.loss import scale_loss_for_distribution

    return scale_loss_for_distribution(value)


def _mean_over_replicas(value):
    """Averages a batch statistic over replicas (TF strategies); identity elsewhere."""
    from kmixvae.training.distribution import mean_across_replicas

    return mean_across_replicas(value)


@keras.saving.register_keras_serializable(package="kmixvae")
class MixtureVAE(keras.Model):
    """A VAE whose prior is a mixture of K channels, each with its own latent space.

    The loss is the exact negative ELBO of the mixture, summed over the
    active channels, with every active channel decoded in one batched decoder
    call (B * k images for k active channels):

        L(x) = sum_c q(c|x) [ -log p(x|z_c, c) + w_kl KL(q(z|x,c) || p(z|c)) ]
               + w_kl KL(q(c|x) || p(c))

    Batch objective: `mean_x L(x) + diversity_weight * H(p_bar)`, with p_bar
    the batch mean of q(c|x), plus `confidence_weight * mean_x H(q(c|x))`
    (zero by default). `w_kl` is 1 unless a KL warm-up callback lowers it.

    A non-trainable `channel_mask` (saved with the model) marks the active
    channels; locked channels have q(c|x) exactly 0, are not decoded and get
    no gradient. Change it with `set_active_channels`, only where Keras
    re-reads the model state (between epochs, see `ChannelCurriculum`).

    Args:
        encoder: an `Encoder`.
        decoder: a `Decoder`.
        prior: a `MixturePrior`.
        diversity_weight: float. Weight on the batch usage entropy H(p_bar).
        confidence_weight: float. Weight on the mean per-image entropy H(q(c|x)).
        active_channels: list of int or None. Channels active at creation
            (None: all).
        seed: int. Seed of the reparameterisation noise.
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
        diversity_weight=0.0,
        confidence_weight=0.0,
        elbo_weight=1.0,
        elbo_subbatch=None,
        iic_weight=0.0,
        neighbor_weight=0.0,
        self_label_weight=0.0,
        self_label_threshold=0.9,
        elbo_assignment_gradient=True,
        augment_rotation=15.0,
        augment_shift=0.1,
        active_channels=None,
        seed=0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.encoder = encoder
        self.decoder = decoder
        self.prior = prior
        self.num_channels = prior.num_channels
        self.latent_dim = prior.latent_dim
        self.diversity_weight = float(diversity_weight)
        self.confidence_weight = float(confidence_weight)
        self.elbo_weight = float(elbo_weight)
        self.elbo_subbatch = int(elbo_subbatch) if elbo_subbatch else None
        self.iic_weight = float(iic_weight)
        self.neighbor_weight = float(neighbor_weight)
        self.self_label_weight = float(self_label_weight)
        self.self_label_threshold = float(self_label_threshold)
        self.self_labelling = False
        self.elbo_assignment_gradient = bool(elbo_assignment_gradient)
        self.decode_in_training = True
        self.augment_rotation = float(augment_rotation)
        self.augment_shift = float(augment_shift)
        self.seed = int(seed)
        # Random rotation + shift of the paired views, with keras.ops (one code path on
        # every backend; Keras' preprocessing layers retrace the JAX step every batch).
        self.augment = (
            self.iic_weight > 0 or self.neighbor_weight > 0 or self.self_label_weight > 0
        ) and (self.augment_rotation > 0 or self.augment_shift > 0)
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
        self.kl_weight = self.add_weight(
            shape=(), initializer="ones", trainable=False, name="kl_weight", dtype="float32"
        )
        self.trackers = {
            name: keras.metrics.Mean(name=name)
            for name in (
                "nelbo",
                "recon",
                "kl_z",
                "kl_c",
                "usage_entropy",
                "confidence_entropy",
                "active_channels",
            )
            + (("iic_mi",) if self.iic_weight > 0 else ())
            + (("neighbor_agreement",) if self.neighbor_weight > 0 else ())
            + (("self_label_share",) if self.self_label_weight > 0 else ())
        }
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

    def _posteriors(self, x, training=False):
        logits, mu, log_var = self.encoder(
            x, training=training, detach_latents=not self.elbo_assignment_gradient
        )
        logits = ops.cast(logits, "float32")
        mask = ops.cast(self.channel_mask, "bool")
        masked = ops.where(mask[None, :], logits, ops.full_like(logits, -1e9))
        q = ops.softmax(masked, axis=-1) * ops.cast(mask, "float32")[None, :]
        return q, ops.cast(mu, "float32"), ops.cast(log_var, "float32")

    def _select(self, t, channels):
        """Picks the given channels of a `(B, K or 1, d)` posterior tensor."""
        if t.shape[1] == 1:
            return ops.repeat(t, len(channels), axis=1)
        return ops.take(t, ops.convert_to_tensor(list(channels), dtype="int32"), axis=1)

    def _augment(self, x):
        """Random rotation (+- augment_rotation degrees) and shift (+- augment_shift of the size)."""
        n = ops.shape(x)[0]
        h, w = x.shape[1], x.shape[2]
        rot = math.radians(self.augment_rotation)
        angle = keras.random.uniform((n,), -rot, rot, seed=self.augment_seed)
        tx = (
            keras.random.uniform(
                (n,), -self.augment_shift, self.augment_shift, seed=self.augment_seed
            )
            * w
        )
        ty = (
            keras.random.uniform(
                (n,), -self.augment_shift, self.augment_shift, seed=self.augment_seed
            )
            * h
        )
        cos, sin = ops.cos(angle), ops.sin(angle)
        cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
        zero = ops.zeros_like(cos)
        transform = ops.stack(
            [
                cos,
                sin,
                cx - cos * cx - sin * cy - tx,
                -sin,
                cos,
                cy + sin * cx - cos * cy - ty,
                zero,
                zero,
            ],
            axis=1,
        )
        return ops.image.affine_transform(
            x, transform, interpolation="bilinear", fill_mode="constant", fill_value=0.0
        )

    def _set_step_flag(self, name: str, enabled: bool) -> None:
        """Sets a Python flag that the compiled train step reads, and retraces it."""
        enabled = bool(enabled)
        if enabled != getattr(self, name):
            setattr(self, name, enabled)
            if getattr(self, "train_function", None) is not None:
                self.make_train_function(force=True)

    def set_self_labelling(self, enabled: bool) -> None:
        """Turns the self-labelling term on (from a given epoch, see `SelfLabelStart`)."""
        self._set_step_flag("self_labelling", enabled)

    def set_decode_in_training(self, enabled: bool) -> None:
        """Turns the ELBO's decoding off (or on) in training steps; evaluation always decodes."""
        self._set_step_flag("decode_in_training", enabled)

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
        views = [x]
        want_aug = training and (
            self.iic_weight > 0 or (self.self_labelling and self.self_label_weight > 0)
        )
        want_nbr = training and self.neighbor_weight > 0 and x_nbr is not None
        if want_aug:
            views.append(self._augment(x))
        if want_nbr:
            views.append(self._augment(ops.cast(x_nbr, "float32")))
        q_all, mu, log_var = self._posteriors(
            ops.concatenate(views, axis=0) if len(views) > 1 else x, training
        )
        q, mu, log_var = q_all[:batch], mu[:batch], log_var[:batch]
        extra = {}
        view = 1
        if want_aug:
            extra["q_all_active"] = ops.take(q, idx, axis=1)
            extra["q_aug_active"] = ops.take(q_all[view * batch : (view + 1) * batch], idx, axis=1)
            view += 1
        if want_nbr:
            extra["q_self_active"] = ops.take(q, idx, axis=1)
            extra["q_nbr_active"] = ops.take(q_all[view * batch : (view + 1) * batch], idx, axis=1)
        q_elbo = q if self.elbo_assignment_gradient else ops.stop_gradient(q)
        kl_c = self.prior.kl_c(q_elbo, self.channel_mask)
        q_full = q
        if training and not self.decode_in_training:
            zeros = ops.zeros((batch, k), "float32")
            return {
                "q": q_full,
                "q_active": ops.take(q_elbo, idx, axis=1),
                "nll": zeros,
                "kl_z": zeros,
                "kl_c": kl_c,
                **extra,
            }
        q = q_elbo
        if self.elbo_subbatch is not None and training:
            # An unbiased estimate of the mean ELBO at a fraction of the decoder cost.
            n = self.elbo_subbatch
            x, q, mu, log_var = x[:n], q[:n], mu[:n], log_var[:n]
            batch = ops.shape(x)[0]
        mu_a, log_var_a = self._select(mu, active), self._select(log_var, active)
        eps = keras.random.normal(ops.shape(mu_a), seed=self.seed_generator)
        z = mu_a + ops.exp(0.5 * log_var_a) * eps
        channels = ops.tile(ops.convert_to_tensor(list(active), dtype="int32"), (batch,))
        params = self.decoder(ops.reshape(z, (-1, self.latent_dim)), channels)
        nll = self.decoder.head.nll(ops.repeat(x, k, axis=0), params)
        return {
            "q": q_full,
            "q_active": ops.take(q, idx, axis=1),
            "nll": ops.reshape(nll, (-1, k)),
            "kl_z": self.prior.kl_z(mu_a, log_var_a, channels=active),
            "kl_c": kl_c,
            **extra,
        }

    def loss_terms(self, terms):
        """Reduces the per-image terms of `call` to the batch loss and its parts."""
        q_a = terms["q_active"]
        w = ops.cast(self.kl_weight, "float32")
        recon = ops.sum(q_a * terms["nll"], axis=-1)
        kl_z = ops.sum(q_a * terms["kl_z"], axis=-1)
        kl_c = terms["kl_c"]
        p_bar = _mean_over_replicas(ops.mean(terms["q"], axis=0))
        usage_entropy = -ops.sum(p_bar * ops.log(ops.maximum(p_bar, 1e-12)))
        q_full = terms["q"]
        per_image_entropy = -ops.sum(q_full * ops.log(ops.maximum(q_full, 1e-12)), axis=-1)
        nelbo = ops.mean(recon) + ops.mean(kl_z) + ops.mean(kl_c)
        loss = (
            self.elbo_weight * (ops.mean(recon) + w * (ops.mean(kl_z) + ops.mean(kl_c)))
            + self.diversity_weight * usage_entropy
            + self.confidence_weight * ops.mean(per_image_entropy)
        )
        out = {}
        if "q_aug_active" in terms and self.iic_weight > 0:
            mi = _iic_mutual_information(terms["q_all_active"], terms["q_aug_active"])
            loss = loss - self.iic_weight * mi
            out["iic_mi"] = mi
        if "q_aug_active" in terms and self.self_labelling and self.self_label_weight > 0:
            sl, share = _self_label_loss(
                terms["q_all_active"], terms["q_aug_active"], self.self_label_threshold
            )
            loss = loss + self.self_label_weight * sl
            out["self_label_share"] = share
        if "q_nbr_active" in terms:
            agreement = ops.sum(terms["q_self_active"] * terms["q_nbr_active"], axis=-1)
            loss = loss + self.neighbor_weight * ops.mean(-ops.log(agreement + 1e-7))
            out["neighbor_agreement"] = ops.mean(agreement)
        out.update(
            {
                "loss": loss,
                "nelbo": nelbo,
                "recon": ops.mean(recon),
                "kl_z": ops.mean(kl_z),
                "kl_c": ops.mean(kl_c),
                "usage_entropy": usage_entropy,
                "confidence_entropy": ops.mean(per_image_entropy),
                "usage": ops.mean(terms["q"], axis=0),
            }
        )
        return out

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
        return _scale_for_replicas(parts["loss"])

    @property
    def metrics(self):
        return super().metrics

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
        films = [layer for layer in dec._flatten_layers() if isinstance(layer, FiLM)]
        head = dec.head
        info = {
            "num_channels": self.num_channels,
            "active_channels": list(self._active),
            "latent_dim": self.latent_dim,
            "latent_layout": self.encoder.layout,
            "decoder_conditioning": dec.conditioning,
            "film_layers": len(films),
            "embedding_dim": dec.embedding_dim if dec.embedding is not None else 0,
            "decoder_filters": dec.filters,
            "decoder_block": dec.block,
            "encoder_filters": self.encoder.filters,
            "head": type(head).__name__,
            "likelihood": head.likelihood,
            "prior": {"pi": self.prior.pi, "means": self.prior.means, "scales": self.prior.scales},
            **self._loss_settings(),
            "encoder_batch_norm": self.encoder.batch_norm,
        }
        if hasattr(head, "sigma_min"):
            info["sigma_bounds"] = [head.sigma_min, head.sigma_max]
            info["nll_beta"] = head.nll_beta
        if hasattr(head, "fixed_sigma"):
            info["fixed_sigma"] = head.fixed_sigma
        if self.built:
            info["parameters"] = int(sum(math.prod(v.shape) for v in self.trainable_weights))
        return info

    def _loss_settings(self) -> dict:
        """The loss's constructor arguments (saved by `get_config`, shown by `describe`)."""
        return {name: getattr(self, name) for name in LOSS_SETTINGS}

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
                **self._loss_settings(),
                "active_channels": list(self._active),
                "seed": self.seed,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("encoder", "decoder", "prior"):
            config[key] = keras.layers.deserialize(config[key])
        return cls(**config)


__all__ = ["MixtureVAE", "Encoder", "Decoder", "MixturePrior"]
