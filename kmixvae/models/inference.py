"""MixtureInference: a trained MixtureVAE's compiled, batched numpy inference API."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops


class _InferenceCache:
    """Holds the compiled inference models, out of Keras' tracking."""

    def __init__(self):
        self.models = {}


class _AugmentedViews(keras.layers.Layer):
    """Draws one augmented view of each image; its `SeedGenerator` is compiled state."""

    def __init__(self, augmentation, seed: int, **kwargs):
        super().__init__(**kwargs)
        self.augmentation = augmentation
        self.generator = keras.random.SeedGenerator(seed)

    def call(self, x):
        return self.augmentation(x, self.generator)


class MixtureInference:
    """`encode`, `decode`, `reconstruct`, `sample`, ... of a `MixtureVAE`, on numpy arrays.

    A mixin of `MixtureVAE`: it reads the model's `encoder`, `decoder`,
    `prior`, `channel_mask`, `num_channels`, `latent_dim`, `seed` and
    active channels. Compiled inference: small functional models over the
    same layers, run with `predict_on_batch` (tf.function / jax.jit) on
    batches padded to one shape, so nothing recompiles batch to batch. They
    live in a plain object so that Keras does not track (or save) them.

    Example:

    ```python
    model = kmixvae.load_model("saved_models/mnist_film_het.keras")
    out = model.encode(x)                    # q, mu, var, channel
    images = model.sample(16, channel=3)["mean"]
    ```
    """

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
        return self._run_model(self._inference_model(name), arrays, batch_size)

    @staticmethod
    def _run_model(model, arrays, batch_size):
        """Runs `model.predict_on_batch` over arrays in batches padded to one shape."""
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
        return self._head_argmax(logits)

    def augmented_head_channels(self, x, seed: int, batch_size: int = 512):
        """argmax q(c|x) of every candidate head on images and on an augmented view of each.

        The views are drawn by the model's `augmentation` from a fresh
        `keras.random.SeedGenerator(seed)`, inside one compiled function with
        the heads (one compile for all the batches: on JAX the augmentation
        run op by op compiled each op on first use, ~1-3 s a run). The
        batches are padded to `batch_size` images, so a last partial batch
        draws its views at that size.

        Returns:
            `(plain, moved)`: int64 `(heads, N)` each, the channels of the
            images and of their views.
        """
        x_in = keras.Input(self.decoder.image_shape, name="x")
        views = _AugmentedViews(self.augmentation, seed)(x_in)
        outputs = [self.encoder.head_logits(self.encoder.features(t)) for t in (x_in, views)]
        model = keras.Model(x_in, outputs)
        plain, moved = self._run_model(model, [np.asarray(x, dtype="float32")], batch_size)
        return self._head_argmax(plain), self._head_argmax(moved)

    def _head_argmax(self, logits) -> np.ndarray:
        """`(N, heads, K)` logits -> int64 `(heads, N)` channels; locked channels never win."""
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
