"""Generation metrics: does each channel draw its cluster, do reconstructions keep the label?

A *judge*, a classifier trained on labelled images of a split other
than the one evaluated, names the label of what the model generates. Labels
only score: they never train the model, and the judge never sees the
evaluated split while it learns.

- `sample_consistency`: of `n_per_channel` draws from each active channel's
  prior, the share the judge names as the label matched to that channel by
  the one-to-one (Hungarian) matching of `clustering_accuracy`, computed on
  the evaluated images (argmax q(c|x) against their labels);
- `recon_consistency`: the share of `model.reconstruct(x)["mean"]` the judge
  names as the original's label;
- `judge_accuracy`: the judge on the real evaluated images (the ceiling of
  both shares), beside `judge_holdout_accuracy`, its accuracy on the part of
  its own training split it held out.

Example:

```python
judge = load_or_train_judge(x_train, y_train, seed=0, cache_dir="~/.cache/kmixvae/judges")
gen = generation_metrics(model, judge, x_eval, y_eval, n_per_channel=200, seed=0)
gen["sample_consistency"], gen["recon_consistency"], gen["judge_accuracy"]
```
"""

from __future__ import annotations

import hashlib
import io
import pickle
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import sklearn
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier

from kmixvae.data.sampling import SAMPLE_CAP, fixed_sample
from kmixvae.evaluation.metrics import cluster_label_matching
from kmixvae.utils.files import atomic_write, cache_root

JUDGE_VERSION = 1
JUDGE_DEFAULTS = {
    "hidden_units": 256,
    "epochs": 20,
    "batch_size": 128,
    "learning_rate": 1e-3,
    "l2": 1e-4,
    "holdout_share": 0.1,
}
UNMATCHED_NOTE = (
    "an active channel without a matched label (it owns no evaluated image, or lost the "
    "one-to-one matching to another channel) scores 0 and counts in the overall share; "
    "inactive channels are not sampled and do not count"
)


def _as_flat_floats(images) -> np.ndarray:
    """uint8 0-255 or float images `(N, ...)` -> float32 `(N, D)` in [0, 1]."""
    x = np.asarray(images)
    x = x.astype("float32") / 255.0 if x.dtype == np.uint8 else x.astype("float32")
    return np.clip(x.reshape(len(x), -1), 0.0, 1.0)


def default_judge_cache_dir() -> Path:
    """`$KMIXVAE_CACHE_DIR/judges`, else `~/.cache/kmixvae/judges`."""
    return cache_root() / "judges"


@dataclass
class Judge:
    """A trained classifier and what it was trained on.

    Attributes:
        classifier: the fitted `sklearn.neural_network.MLPClassifier`.
        image_shape: shape of one image it reads (without the batch axis).
        classes: the labels it can name.
        holdout_accuracy: accuracy on the share of its training images it
            held out (never trained on).
        train_images: number of images it trained on.
        source: free text naming the split it was trained on.
        fingerprint: hash of the training images, labels and settings (the
            cache key).
        train_seconds: time its training took (for a cached judge, that of
            the original training).
        settings: the hyper-parameters it was trained with.
    """

    classifier: MLPClassifier
    image_shape: tuple
    classes: tuple
    holdout_accuracy: float
    train_images: int
    source: str
    fingerprint: str
    train_seconds: float
    settings: dict = field(default_factory=dict)

    def predict(self, images) -> np.ndarray:
        """The label the judge names for each image `(N, *image_shape)`."""
        x = np.asarray(images)
        if x.ndim == len(self.image_shape):
            x = x[None]
        if tuple(x.shape[1:]) != tuple(self.image_shape):
            x_shape = tuple(x.shape[1:])
            if int(np.prod(x_shape)) != int(np.prod(self.image_shape)):
                raise ValueError(
                    f"judge: images of shape {x_shape}, it was trained on {tuple(self.image_shape)}"
                )
        if len(x) == 0:
            return np.zeros((0,), dtype=np.asarray(self.classes).dtype)
        return self.classifier.predict(_as_flat_floats(x))

    def accuracy(self, images, labels) -> float:
        """Share of `images` the judge names as their `labels`."""
        labels = np.asarray(labels).reshape(-1)
        return float(np.mean(self.predict(images) == labels))

    def describe(self) -> dict:
        """JSON-ready summary (what metrics files record about the judge)."""
        return {
            "kind": f"sklearn MLPClassifier (1 hidden layer of {self.settings['hidden_units']})",
            "source": self.source,
            "train_images": int(self.train_images),
            "holdout_accuracy": float(self.holdout_accuracy),
            "fingerprint": self.fingerprint,
            "train_seconds": round(float(self.train_seconds), 3),
            "settings": dict(self.settings),
        }


def judge_fingerprint(images, labels, seed: int = 0, **settings) -> str:
    """sha256 of the training images, labels, seed, settings and sklearn version."""
    x = np.ascontiguousarray(np.asarray(images))
    y = np.ascontiguousarray(np.asarray(labels).reshape(-1))
    h = hashlib.sha256()
    for part in (str(x.shape), str(x.dtype), str(y.shape), str(y.dtype)):
        h.update(part.encode())
    h.update(x.tobytes())
    h.update(y.tobytes())
    merged = {**JUDGE_DEFAULTS, **settings}
    h.update(repr(sorted(merged.items())).encode())
    h.update(f"seed={int(seed)} v={JUDGE_VERSION} sklearn={sklearn.__version__}".encode())
    return h.hexdigest()[:24]


def train_judge(images, labels, seed: int = 0, source: str = "", **settings) -> Judge:
    """Trains the judge: a one-hidden-layer MLP, deterministic given `seed`.

    A seeded `holdout_share` of the images is held out to report the
    judge's own accuracy; the rest trains it for a fixed number of epochs
    (no early stopping, so the result depends only on the data and seed).
    8,000 MNIST images train in about 10 s on one core.

    Args:
        images: `(N, H, W[, C])` uint8 0-255 or floats in [0, 1].
        labels: `(N,)` labels.
        seed: int. Seed of the split, the initial weights and the shuffling.
        source: text naming the split (recorded in `describe()`).
        **settings: overrides of `JUDGE_DEFAULTS` (`hidden_units`, `epochs`,
            `batch_size`, `learning_rate`, `l2`, `holdout_share`).

    Returns:
        A `Judge`.
    """
    unknown = set(settings) - set(JUDGE_DEFAULTS)
    if unknown:
        raise ValueError(f"judge: unknown setting(s) {sorted(unknown)}")
    cfg = {**JUDGE_DEFAULTS, **settings}
    images = np.asarray(images)
    labels = np.asarray(labels).reshape(-1)
    if len(images) != len(labels):
        raise ValueError(f"judge: {len(labels)} labels for {len(images)} images")
    if len(np.unique(labels)) < 2:
        raise ValueError("judge: the training images must hold at least two labels")
    if not 0.0 < cfg["holdout_share"] < 1.0:
        raise ValueError(f"judge: holdout_share {cfg['holdout_share']} must lie in (0, 1)")
    start = time.perf_counter()
    x = _as_flat_floats(images)
    order = np.random.default_rng(seed).permutation(len(x))
    n_hold = max(1, int(round(cfg["holdout_share"] * len(x))))
    hold, train = order[:n_hold], order[n_hold:]
    clf = MLPClassifier(
        hidden_layer_sizes=(int(cfg["hidden_units"]),),
        alpha=float(cfg["l2"]),
        batch_size=min(int(cfg["batch_size"]), len(train)),
        learning_rate_init=float(cfg["learning_rate"]),
        max_iter=int(cfg["epochs"]),
        n_iter_no_change=int(cfg["epochs"]) + 1,
        tol=0.0,
        random_state=int(seed),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(x[train], labels[train])
    holdout = float(np.mean(clf.predict(x[hold]) == labels[hold]))
    return Judge(
        classifier=clf,
        image_shape=tuple(int(s) for s in images.shape[1:]),
        classes=tuple(v.item() for v in np.unique(labels)),
        holdout_accuracy=holdout,
        train_images=int(len(train)),
        source=str(source),
        fingerprint=judge_fingerprint(images, labels, seed, **settings),
        train_seconds=time.perf_counter() - start,
        settings={**cfg, "seed": int(seed)},
    )


def load_or_train_judge(
    images, labels, seed: int = 0, source: str = "", cache_dir=None, **settings
) -> Judge:
    """`train_judge`, cached on disk by `judge_fingerprint` so repeated evaluations don't retrain.

    Args:
        images, labels, seed, source, **settings: as `train_judge`.
        cache_dir: folder of cached judges (None: no cache). A cached judge
            whose file cannot be read is retrained and rewritten.

    Returns:
        A `Judge` (`source` is the one given now, also for a cached judge).
    """
    if cache_dir is None:
        return train_judge(images, labels, seed=seed, source=source, **settings)
    key = judge_fingerprint(images, labels, seed, **settings)
    path = Path(cache_dir).expanduser() / f"judge_{key}.pkl"
    if path.is_file():
        try:
            judge = pickle.loads(path.read_bytes())
            if isinstance(judge, Judge) and judge.fingerprint == key:
                judge.source = str(source)
                return judge
        except Exception:  # noqa: BLE001 - a broken cache entry is retrained, never fatal
            pass
    judge = train_judge(images, labels, seed=seed, source=source, **settings)
    buf = io.BytesIO()
    pickle.dump(judge, buf, protocol=pickle.HIGHEST_PROTOCOL)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda tmp: Path(tmp).write_bytes(buf.getvalue()))
    except OSError as exc:
        warnings.warn(f"judge cache not written ({path}): {exc}", stacklevel=2)
    return judge


def check_disjoint(train_images, eval_images, max_shared: float = 0.01, chunk: int = 8192) -> None:
    """Raises `ValueError` when the judge's images overlap the evaluated ones.

    Images are compared exactly (by their bytes after conversion to [0, 1]
    floats); a data set's own rare duplicates are tolerated up to
    `max_shared` of the evaluated images. The training images are streamed
    `chunk` at a time: memory grows with the evaluated images only.

    Args:
        train_images: the judge's training images.
        eval_images: the evaluated images.
        max_shared: float. Largest tolerated share of evaluated images that
            also appear among the training images.
        chunk: int. Images converted to floats at once.
    """
    evaluated: dict[bytes, int] = {}
    for lo in range(0, len(eval_images), chunk):
        for row in _as_flat_floats(eval_images[lo : lo + chunk]):
            key = row.tobytes()
            evaluated[key] = evaluated.get(key, 0) + 1
    found: set[bytes] = set()
    for lo in range(0, len(train_images), chunk):
        found.update(
            key
            for key in (row.tobytes() for row in _as_flat_floats(train_images[lo : lo + chunk]))
            if key in evaluated
        )
    shared = sum(evaluated[key] for key in found)
    total = len(eval_images)
    if shared > max_shared * total:
        raise ValueError(
            f"{shared} of the {total} evaluated images are among the judge's training images"
        )


def end_of_run_generation(
    model, data, source: str, seed: int = 0, n_per_channel: int = 200, sample_cap: int = SAMPLE_CAP
) -> dict:
    """Generation metrics of a finished fit, for its `metrics.json`.

    The judge learns from the run's training images and labels (cached in
    `default_judge_cache_dir()`), and scores the validation split; labels
    train nothing else. Both are fixed samples of at most `sample_cap`
    images (`kmixvae.data.sampling.fixed_sample`: every image up to the
    cap), so the cost does not grow with the data; the validation sample
    is checked against every training image.

    Args:
        model: the trained `MixtureVAE`.
        data: the run's `DataBundle` (with validation images and labels).
        source: the training split's name (recorded with the judge).
        seed: int. Seed of the judge and of the prior draws.
        n_per_channel: int. Prior draws per active channel.
        sample_cap: int. Most training images the judge learns from, and
            most validation images scored (`SAMPLE_CAP`).

    Returns:
        The `generation_metrics` dict, or `{"skipped": reason}` when the
        run has no validation split, it shares images with the training
        split, or the training labels cannot train a judge.
    """
    if data.val_images is None or data.val_labels is None or len(data.val_images) == 0:
        return {"skipped": "no validation split to score"}
    val_x, val_y = fixed_sample(data.val_images, data.val_labels, cap=sample_cap, seed=seed)
    try:
        check_disjoint(data.train_images, val_x)
    except ValueError as e:
        return {"skipped": f"validation split vs training split: {e}"}
    train_x, train_y = fixed_sample(data.train_images, data.train_labels, cap=sample_cap, seed=seed)
    try:
        judge = load_or_train_judge(
            train_x,
            train_y,
            seed=seed,
            source=source,
            cache_dir=default_judge_cache_dir(),
        )
    except ValueError as e:  # e.g. a training split of one label: nothing to judge with
        return {"skipped": str(e)}
    return generation_metrics(model, judge, val_x, val_y, n_per_channel=n_per_channel, seed=seed)


def _channel_seed(seed: int, channel: int) -> int:
    return int(np.random.SeedSequence([int(seed), int(channel)]).generate_state(1)[0] >> 1)


def generation_metrics(
    model,
    judge: Judge,
    x_eval,
    y_eval,
    n_per_channel: int = 200,
    seed: int = 0,
    batch_size: int = 512,
) -> dict:
    """Scores what the model generates and reconstructs with the judge.

    Args:
        model: a `MixtureVAE` (or anything with `num_channels`,
            `active_channels`, `encode`, `reconstruct` and `sample` like it).
        judge: a `Judge` trained on a split other than `x_eval`'s.
        x_eval: `(N, H, W, C)` evaluated images (uint8 0-255 or [0, 1] floats).
        y_eval: `(N,)` their labels (they score, they train nothing).
        n_per_channel: int. Prior draws per active channel.
        seed: int. Seed of the draws (channel c uses a seed derived from
            `(seed, c)`), so the result is deterministic given `seed`.
        batch_size: int. Images per encode/reconstruct batch.

    Returns:
        dict with `sample_consistency` (all active channels' draws pooled:
        the mean of the per-channel shares), `sample_consistency_matched`
        (the same over matched channels only), `channels` (one entry per
        channel: `channel`, `active`, `matched_label`, `sample_consistency`,
        `judged_label` (the label the judge names most often among its draws)
        and `judged_share`; None for inactive channels), `unmatched_channels`,
        `recon_consistency`, `recon_mse`, `judge_accuracy` (on `x_eval`),
        `judge_holdout_accuracy`, `judge` (its `describe()`),
        `n_per_channel`, `seed`, `unmatched_note`.
    """
    if n_per_channel < 1:
        raise ValueError(f"n_per_channel: {n_per_channel} must be at least 1")
    y_eval = np.asarray(y_eval).reshape(-1)
    x = np.asarray(x_eval)
    if x.ndim == 3:
        x = x[..., None]
    if len(x) != len(y_eval) or len(x) == 0:
        raise ValueError(f"generation_metrics: {len(y_eval)} labels for {len(x)} images")
    x = x.astype("float32") / 255.0 if x.dtype == np.uint8 else x.astype("float32")
    start = time.perf_counter()
    enc = model.encode(x, batch_size=batch_size)
    matching = cluster_label_matching(y_eval, np.asarray(enc["channel"]))
    active = [int(c) for c in model.active_channels]
    channels, shares, unmatched = [], [], []
    for c in range(int(model.num_channels)):
        entry = {"channel": c, "active": c in active, "matched_label": matching.get(c)}
        if c not in active:
            entry.update(sample_consistency=None, judged_label=None, judged_share=None)
            channels.append(entry)
            continue
        drawn = model.sample(n_per_channel, channel=c, seed=_channel_seed(seed, c))["mean"]
        named = judge.predict(drawn)
        values, counts = np.unique(named, return_counts=True)
        top = int(counts.argmax())
        if entry["matched_label"] is None:
            share = 0.0
            unmatched.append(c)
        else:
            share = float(np.mean(named == entry["matched_label"]))
        entry.update(
            sample_consistency=share,
            judged_label=values[top].item(),
            judged_share=float(counts[top] / len(named)),
        )
        shares.append(share)
        channels.append(entry)
    matched_shares = [
        ch["sample_consistency"]
        for ch in channels
        if ch["active"] and ch["channel"] not in unmatched
    ]
    rec = model.reconstruct(x, batch_size=batch_size)["mean"]
    recon_named = judge.predict(rec)
    return {
        "sample_consistency": float(np.mean(shares)) if shares else None,
        "sample_consistency_matched": float(np.mean(matched_shares)) if matched_shares else None,
        "channels": channels,
        "unmatched_channels": unmatched,
        "unmatched_note": UNMATCHED_NOTE,
        "recon_consistency": float(np.mean(recon_named == y_eval)),
        "recon_mse": float(np.mean(np.square(x.reshape(len(x), -1) - rec.reshape(len(x), -1)))),
        "judge_accuracy": judge.accuracy(x, y_eval),
        "judge_holdout_accuracy": float(judge.holdout_accuracy),
        "judge": judge.describe(),
        "n_per_channel": int(n_per_channel),
        "seed": int(seed),
        "elapsed_s": round(time.perf_counter() - start, 3),
    }


__all__ = [
    "JUDGE_DEFAULTS",
    "Judge",
    "UNMATCHED_NOTE",
    "check_disjoint",
    "default_judge_cache_dir",
    "end_of_run_generation",
    "generation_metrics",
    "judge_fingerprint",
    "load_or_train_judge",
    "train_judge",
]
