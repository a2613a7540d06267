"""The two reference VAEs of issue 14, trained and scored with the generation judge.

Both use the keras-io VAE architecture (https://keras.io/examples/generative/vae/):
encoder Conv2D(32, 3, stride 2) -> Conv2D(64, 3, stride 2) -> Dense(16) ->
a 2-D Gaussian latent; decoder Dense(7*7*64) -> Conv2DTranspose(64) ->
Conv2DTranspose(32) -> Conv2DTranspose(1, sigmoid); loss: binary
cross-entropy summed over pixels + KL to N(0, I); Adam 1e-3, batch 128.

- `unconditional`: no labels anywhere (what a plain VAE reconstructs);
- `conditional`: the one-hot label is concatenated to the encoder's
  flattened features and to z before the decoder (a conditional VAE: the
  labels are given, so this bounds what a channel can generate when it
  knows its digit perfectly).

Scored as `kmixvae evaluate` scores a MixtureVAE, with the same cached judge
(`kmixvae.evaluation.generation`, trained on the training split's labels):
recon MSE and recon consistency of `decoder(z_mean)` on the evaluated
images; for the conditional VAE, sample consistency: of `--samples-per-class`
draws z ~ N(0, I) decoded with label c, the share the judge names c. The
unconditional VAE has no channel to match: its samples' judged-label
histogram is reported instead.

Usage:

    python apps/reference_vae.py --variant unconditional [--epochs 15]
        [--data-dir ../shared/data/mnist-10k] [--train-split 'test[:80%]']
        [--eval-split 'test[80%:]'] [--seed 0] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import keras
import numpy as np
from keras import layers, ops

NUM_CLASSES = 10
VARIANTS = ("unconditional", "conditional")


class ReferenceVAE(keras.Model):
    """keras-io's VAE, optionally conditioned on a one-hot label (encoder and decoder).

    Args:
        conditional: bool. Feed the label to the encoder and the decoder.
        latent_dim: int. Size of z (keras-io: 2).
        num_classes: int. Width of the one-hot label.
        image_shape: shape of one image (height and width divisible by 4).
        seed: int. Seed of the reparameterisation noise.
    """

    def __init__(
        self,
        conditional: bool,
        latent_dim: int = 2,
        num_classes: int = NUM_CLASSES,
        image_shape=(28, 28, 1),
        seed: int = 0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.conditional = bool(conditional)
        self.latent_dim = int(latent_dim)
        self.num_classes = int(num_classes)
        self.image_shape = tuple(image_shape)
        h, w, c = self.image_shape
        self.convs = [
            layers.Conv2D(32, 3, activation="relu", strides=2, padding="same"),
            layers.Conv2D(64, 3, activation="relu", strides=2, padding="same"),
            layers.Flatten(),
        ]
        self.enc_dense = layers.Dense(16, activation="relu")
        self.z_mean = layers.Dense(self.latent_dim, name="z_mean")
        self.z_log_var = layers.Dense(self.latent_dim, name="z_log_var")
        self.dec_layers = [
            layers.Dense((h // 4) * (w // 4) * 64, activation="relu"),
            layers.Reshape((h // 4, w // 4, 64)),
            layers.Conv2DTranspose(64, 3, activation="relu", strides=2, padding="same"),
            layers.Conv2DTranspose(32, 3, activation="relu", strides=2, padding="same"),
            layers.Conv2DTranspose(c, 3, activation="sigmoid", padding="same"),
        ]
        self.seed_generator = keras.random.SeedGenerator(seed)

    def _split(self, inputs):
        if self.conditional:
            x, onehot = inputs
            return x, onehot
        return inputs, None

    def encode(self, inputs):
        x, onehot = self._split(inputs)
        h = x
        for layer in self.convs:
            h = layer(h)
        if onehot is not None:
            h = ops.concatenate([h, ops.cast(onehot, h.dtype)], axis=-1)
        h = self.enc_dense(h)
        return self.z_mean(h), self.z_log_var(h)

    def decode(self, z, onehot=None):
        h = z
        if self.conditional:
            h = ops.concatenate([h, ops.cast(onehot, h.dtype)], axis=-1)
        for layer in self.dec_layers:
            h = layer(h)
        return h

    def call(self, inputs, training=False):
        _, onehot = self._split(inputs)
        mean, log_var = self.encode(inputs)
        eps = keras.random.normal(ops.shape(mean), seed=self.seed_generator)
        z = mean + ops.exp(0.5 * log_var) * eps
        return self.decode(z, onehot), mean, log_var

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        images, _ = self._split(x)
        recon, mean, log_var = y_pred
        eps = 1e-7
        p = ops.clip(recon, eps, 1.0 - eps)
        bce = -(images * ops.log(p) + (1.0 - images) * ops.log(1.0 - p))
        rec = ops.sum(ops.reshape(bce, (ops.shape(bce)[0], -1)), axis=1)
        kl = -0.5 * ops.sum(1.0 + log_var - ops.square(mean) - ops.exp(log_var), axis=1)
        return ops.mean(rec + kl)


def _onehot(labels, num_classes=NUM_CLASSES):
    return np.eye(num_classes, dtype="float32")[np.asarray(labels, dtype=np.int64)]


def _inputs(vae, x, y):
    return [x, _onehot(y, vae.num_classes)] if vae.conditional else x


def train_reference_vae(
    x, y, conditional: bool, epochs: int = 15, batch_size: int = 128, seed: int = 0, verbose=2
):
    """Trains a `ReferenceVAE` on float images `x` in [0, 1] (labels `y` only if conditional)."""
    keras.utils.set_random_seed(seed)
    vae = ReferenceVAE(conditional, image_shape=x.shape[1:], seed=seed)
    vae.compile(optimizer=keras.optimizers.Adam(1e-3))
    data = _inputs(vae, x, y)
    vae.fit(data, epochs=epochs, batch_size=batch_size, shuffle=True, verbose=verbose)
    return vae


def _predict(fn, arrays, batch_size=500):
    outs = []
    n = len(arrays[0])
    for lo in range(0, n, batch_size):
        outs.append(ops.convert_to_numpy(fn(*[a[lo : lo + batch_size] for a in arrays])))
    return np.concatenate(outs)


def score_reference_vae(vae, judge, x, y, samples_per_class: int = 200, seed: int = 0) -> dict:
    """Recon MSE/consistency, -ELBO and (conditional) sample consistency of a trained VAE."""
    y = np.asarray(y).reshape(-1)
    onehot = _onehot(y, vae.num_classes)
    if vae.conditional:
        mean = _predict(lambda a, b: vae.encode([a, b])[0], [x, onehot])
        recon = _predict(lambda z, b: vae.decode(z, b), [mean, onehot])
    else:
        mean = _predict(lambda a: vae.encode(a)[0], [x])
        recon = _predict(lambda z: vae.decode(z), [mean])
    out = {
        "variant": "conditional" if vae.conditional else "unconditional",
        "num_images": int(len(x)),
        "recon_mse": float(np.mean(np.square(x - recon))),
        "recon_consistency": float(np.mean(judge.predict(recon) == y)),
        "judge_accuracy": judge.accuracy(x, y),
        "judge_holdout_accuracy": float(judge.holdout_accuracy),
        "judge": judge.describe(),
    }
    rng = np.random.default_rng(seed)
    if vae.conditional:
        per_class = {}
        for c in range(vae.num_classes):
            z = rng.standard_normal((samples_per_class, vae.latent_dim)).astype("float32")
            labels = np.full((samples_per_class,), c)
            drawn = _predict(lambda a, b: vae.decode(a, b), [z, _onehot(labels, vae.num_classes)])
            per_class[c] = float(np.mean(judge.predict(drawn) == c))
        out["sample_consistency"] = float(np.mean(list(per_class.values())))
        out["sample_consistency_per_class"] = per_class
    else:
        n = samples_per_class * vae.num_classes
        z = rng.standard_normal((n, vae.latent_dim)).astype("float32")
        named = judge.predict(_predict(lambda a: vae.decode(a), [z]))
        values, counts = np.unique(named, return_counts=True)
        out["sample_consistency"] = None
        out["sample_judged_labels"] = {int(v): float(c / n) for v, c in zip(values, counts)}
    out["samples_per_class"] = int(samples_per_class)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", choices=VARIANTS, required=True)
    parser.add_argument("--data-dir", default="../shared/data/mnist-10k")
    parser.add_argument("--train-split", default="test[:80%]")
    parser.add_argument("--eval-split", default="test[80%:]")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--samples-per-class", type=int, default=200)
    parser.add_argument("--json", default=None, help="write the scores to this JSON file")
    args = parser.parse_args(argv)

    from kmixvae.data.sources import load_split
    from kmixvae.errors import KmixvaeError
    from kmixvae.evaluation.generation import (
        check_disjoint,
        default_judge_cache_dir,
        load_or_train_judge,
    )
    from kmixvae.runs import folder_data

    try:
        if args.epochs < 1 or args.batch_size < 1 or args.samples_per_class < 1:
            raise ValueError("--epochs, --batch-size and --samples-per-class must be at least 1")
        data = folder_data(args.data_dir)
        x_train, y_train = load_split(data, args.train_split)
        x_eval, y_eval = load_split(data, args.eval_split)
        check_disjoint(x_train, x_eval)
    except (KmixvaeError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    judge = load_or_train_judge(
        x_train, y_train, seed=0, source=args.train_split, cache_dir=default_judge_cache_dir()
    )
    x_train = x_train.astype("float32") / 255.0
    x_eval = x_eval.astype("float32") / 255.0
    t0 = time.perf_counter()
    vae = train_reference_vae(
        x_train,
        y_train,
        args.variant == "conditional",
        epochs=args.epochs,
        batch_size=args.batch_size,
        seed=args.seed,
    )
    seconds = time.perf_counter() - t0
    scores = score_reference_vae(
        vae, judge, x_eval, y_eval, samples_per_class=args.samples_per_class, seed=args.seed
    )
    scores.update(
        train_split=args.train_split,
        eval_split=args.eval_split,
        epochs=args.epochs,
        seed=args.seed,
        train_seconds=round(seconds, 1),
        backend=keras.backend.backend(),
    )
    sc = scores["sample_consistency"]
    print(
        f"{args.variant}: recon MSE {scores['recon_mse']:.4f}, recon consistency "
        f"{scores['recon_consistency']:.4f}, sample consistency "
        f"{'-' if sc is None else f'{sc:.4f}'}, judge {scores['judge_accuracy']:.4f} on "
        f"{args.eval_split} ({scores['judge_holdout_accuracy']:.4f} held out), "
        f"{seconds:.0f} s training"
    )
    if args.json:
        from kmixvae.utils.files import atomic_write_text

        atomic_write_text(args.json, json.dumps(scores, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
