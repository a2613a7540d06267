"""MixtureVAE: the mixture-of-VAEs with decentralized latents, its exact ELBO and its inference API."""

from __future__ import annotations

import keras
from keras import ops

from kmixvae.layers.mixture_prior import MixturePrior
from kmixvae.models.channel_mask import ChannelMask
from kmixvae.models.decoder import Decoder
from kmixvae.models.description import ModelDescription
from kmixvae.models.encoder import Encoder
from kmixvae.models.inference import MixtureInference
from kmixvae.models.learning_rate_schedule import attach_phase_variable
from kmixvae.models.mixture_loss import LOSS_TERMS, MixtureLoss
from kmixvae.objectives import VIEW_SOURCES, ElboConfig, Objective, ViewAugmentation

# Constructor arguments of models saved before the clustering terms became objectives.
_PRE_OBJECTIVE_KEYS = ("diversity_weight", "neighbor_weight", "self_label_weight", "elbo_weight")


@keras.saving.register_keras_serializable(package="kmixvae")
class MixtureVAE(ChannelMask, MixtureLoss, MixtureInference, ModelDescription, keras.Model):
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

    The model is assembled from one part per job: `ChannelMask` (the
    active channels and the train step's switches), `MixtureLoss` (the
    batch loss and the logged metrics: `nelbo`, `recon`, `kl_z`, `kl_c`,
    `usage_entropy`, `confidence_entropy`, `active_channels`, `usage_<c>`,
    each objective's own), `MixtureInference` (compiled numpy `encode`,
    `decode`, `reconstruct`, `sample`) and `ModelDescription`.

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
        self.seed_generator = keras.random.SeedGenerator(self.seed)
        self._make_channel_mask(active_channels)
        self._make_term_switches()
        self._make_trackers()

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

    def _select(self, t, channels):
        """Picks the given channels of a `(B, K or 1, d)` posterior tensor."""
        if t.shape[1] == 1:
            return ops.repeat(t, len(channels), axis=1)
        return ops.take(t, ops.convert_to_tensor(list(channels), dtype="int32"), axis=1)

    def _views_read(self):
        """The augmented views the objectives that are on read, in batch order."""
        read = {v for o in self.objectives if o.active for v in o.views}
        return tuple(v for v in VIEW_SOURCES if v in read)

    def _views_wanted(self, training, batch):
        """The extra views the objectives that are on read in this step, in batch order."""
        if not training:
            return ()
        return tuple(v for v in self._views_read() if batch.get(VIEW_SOURCES[v]) is not None)

    def call(self, inputs, training=False):
        """Runs the stochastic forward pass; returns the per-image loss terms.

        `inputs` is a batch of images, or a dict of them: `"x"`, and the
        entries the objectives' views are drawn from (`VIEW_SOURCES`, e.g.
        `"neighbor"` with neighbour pairs).
        """
        batch_images = dict(inputs) if isinstance(inputs, dict) else {"x": inputs}
        x = batch_images["x"] = ops.cast(batch_images["x"], "float32")
        active = self._active
        k = len(active)
        batch = ops.shape(x)[0]
        idx = ops.convert_to_tensor(list(active), dtype="int32")
        wanted = self._views_wanted(training, batch_images)
        # One encoder call over all views (batch norm sees them together).
        views = [x] + [
            self.augmentation(
                ops.cast(batch_images[VIEW_SOURCES[name]], "float32"), self.augment_seed
            )
            for name in wanted
        ]
        # Every candidate head is computed in training, before and after the selection:
        # `head_weights` says which count, so keeping one head compiles nothing.
        candidates = training and self.encoder.heads > 1
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

    def compile_from_config(self, config):
        """Keras' own, then the learning-rate phase variable of a saved phased schedule.

        A checkpoint's optimizer holds that variable after all the others
        (`attach_phase_variable`); adding it here, before Keras restores the
        optimizer's variables by position, keeps the two lists alike.
        """
        super().compile_from_config(config)
        if getattr(self, "optimizer", None) is not None and self.optimizer.built:
            attach_phase_variable(self.optimizer)

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


__all__ = ["LOSS_TERMS", "MixtureVAE", "Encoder", "Decoder", "MixturePrior"]
