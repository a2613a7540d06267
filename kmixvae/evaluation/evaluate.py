"""`evaluate_model`: clustering, channel specialisation and likelihood bounds on a split.

Everything streams over the images in batches: per batch the model decodes
at most `max_decodes` images at once, and only per-image scalars (channel,
confidence, bounds) are kept for the whole split, so memory does not grow
with K decodes of the dataset.

Example:

```python
x, y = load_split(config.data, "test")
metrics = evaluate_model(model, x, y, iwae_samples=100)
print(format_report(metrics))
write_metrics_json(metrics, "runs/demo/metrics.json")
```
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
from keras import ops
from scipy.special import logsumexp

from kmixvae.evaluation.generation import generation_metrics
from kmixvae.evaluation.metrics import (
    ari,
    channel_report,
    clustering_accuracy,
    nmi,
    purity,
)
from kmixvae.utils.files import atomic_write_text
from kmixvae.utils.images import as_float_images

_LOG_2PI = math.log(2.0 * math.pi)

IWAE_ESTIMATOR = (
    "IWAE bound with the joint proposal q(c,z|x) = q(c|x) q(z|x,c): k samples "
    "c ~ q(c|x) over the active channels, z ~ q(z|x,c); "
    "log w = log p(c) + log p(z|c) + log p(x|z,c) - log q(c|x) - log q(z|x,c); "
    "log p(x) >= E[logsumexp(log w) - log k]"
)


LABELS_SKIPPED = (
    "label metrics skipped (the data has no labels): clustering accuracy, purity, NMI, ARI, "
    "specialised channels, generation scores"
)


def _check_inputs(images, labels) -> tuple[np.ndarray, np.ndarray | None]:
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4:
        raise ValueError(f"images: expected [N, H, W, C], got shape {images.shape}")
    if labels is None:
        if images.shape[0] == 0:
            raise ValueError("images: no images to evaluate")
        return images, None
    labels = np.asarray(labels).reshape(-1)
    if labels.shape[0] != images.shape[0]:
        raise ValueError(f"labels: {labels.shape[0]} labels for {images.shape[0]} images")
    if images.shape[0] == 0:
        raise ValueError("images: no images to evaluate")
    return images, labels


def _log_normal(z, mean, log_scale):
    """log N(z; mean, diag exp(log_scale)^2), summed over the last axis."""
    u = (z - mean) * np.exp(-log_scale)
    return -0.5 * np.sum(u * u, axis=-1) - np.sum(log_scale, axis=-1) - 0.5 * z.shape[-1] * _LOG_2PI


def iwae_log_px(
    model,
    x: np.ndarray,
    num_samples: int,
    rng: np.random.Generator,
    enc: dict | None = None,
    max_decodes: int = 4096,
) -> np.ndarray:
    """Per-image IWAE estimate of log p(x) (nats) for one batch.

    Draws `num_samples` pairs (c, z) from q(c|x) q(z|x,c), restricted to the
    active channels, and returns `logsumexp(log w) - log k` per image (see
    `IWAE_ESTIMATOR`). Its expectation is a lower bound on log p(x) that is
    at least the ELBO and tightens as `num_samples` grows.

    Args:
        model: a `MixtureVAE`.
        x: float32 `(B, H, W, C)` images in [0, 1].
        num_samples: int. k, importance samples per image.
        rng: numpy generator for c and z.
        enc: optional `model.encode(x)` result, to skip re-encoding.
        max_decodes: int. Images decoded per decoder call (B * samples per chunk).

    Returns:
        float64 `(B,)` log p(x) estimates in nats.
    """
    if num_samples < 1:
        raise ValueError(f"num_samples: {num_samples} must be at least 1")
    b = x.shape[0]
    d = model.latent_dim
    enc = model.encode(x, batch_size=max(b, 1)) if enc is None else enc
    active = np.asarray(model.active_channels, dtype=np.int64)
    q = enc["q"].astype(np.float64)
    q_act = q[:, active]
    cdf = np.cumsum(q_act / q_act.sum(axis=1, keepdims=True), axis=1)
    mu = enc["mu"].astype(np.float64)
    log_sd_post = 0.5 * np.log(np.maximum(enc["var"].astype(np.float64), 1e-30))
    log_pi = np.asarray(ops.convert_to_numpy(model.prior.log_pi(model.channel_mask)), np.float64)
    prior_m = np.asarray(ops.convert_to_numpy(model.prior.prior_means), np.float64)
    prior_ls = np.asarray(ops.convert_to_numpy(model.prior.prior_log_scales), np.float64)
    rows = np.arange(b)[:, None]
    chunk = max(1, max_decodes // max(b, 1))
    log_w = []
    for start in range(0, num_samples, chunk):
        s = min(chunk, num_samples - start)
        u = rng.random((b, s))
        idx = np.minimum((u[..., None] > cdf[:, None, :]).sum(-1), len(active) - 1)
        c = active[idx]  # (b, s)
        mu_c, ls_c = mu[rows, c], log_sd_post[rows, c]  # (b, s, d)
        eps = rng.standard_normal((b, s, d))
        z = mu_c + np.exp(ls_c) * eps
        log_q_z = -0.5 * np.sum(eps * eps, axis=-1) - np.sum(ls_c, axis=-1) - 0.5 * d * _LOG_2PI
        log_p_z = _log_normal(z, prior_m[c], prior_ls[c])
        log_q_c = np.log(np.maximum(q[rows, c], 1e-30))
        nll = model.decode_nll(z.reshape(b * s, d), c.reshape(b * s), np.repeat(x, s, axis=0))
        log_px_z = -np.asarray(nll, np.float64).reshape(b, s)
        log_w.append(log_pi[c] + log_p_z + log_px_z - log_q_c - log_q_z)
    log_w = np.concatenate(log_w, axis=1)
    return logsumexp(log_w, axis=1) - math.log(num_samples)


def _is_discrete(head) -> bool:
    """The head's `discrete_likelihood` (False for a head that does not declare it)."""
    return bool(getattr(head, "discrete_likelihood", False))


def evaluate_model(
    model,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    batch_size: int = 256,
    iwae_samples: int = 100,
    usage_min: float = 0.02,
    purity_min: float = 0.8,
    seed: int = 0,
    max_decodes: int = 4096,
    judge=None,
    samples_per_channel: int = 200,
) -> dict:
    """Evaluates a `MixtureVAE` on labelled images, streamed in batches.

    Computes, over the whole split:

    - clustering of argmax q(c|x) against the labels: `accuracy` (best
      one-to-one matching), `purity` (many-to-one), `nmi`, `ari`;
    - the channel report (`channels`, `specialised_count`,
      `garbage_channels`; see `channel_report`) with each channel's
      `soft_usage` (mean q(c|x)), and `usage_entropy` H(mean q) in nats;
    - the negative ELBO and its terms (`nelbo` = `recon` + `kl_z` + `kl_c`)
      from `model(x)` and `model.loss_terms` (one reparameterised sample
      per channel, KL weight ignored), in nats per image;
    - `iwae_log_px`: the IWAE lower bound of log p(x) with `iwae_samples`
      joint samples (c, z) per image (`iwae_estimator` describes it);
    - `bits_per_dim` = -iwae_log_px / (D ln 2), only for a discrete
      likelihood (Bernoulli head); None for Gaussian densities;
    - `recon_mse`: mean squared error of `model.reconstruct`'s mean image;
    - with a `judge` (see `kmixvae.evaluation.generation`): `generation`
      (the whole `generation_metrics` result) and, at the top level,
      `sample_consistency`, `recon_consistency`, `judge_accuracy` and
      `judge_holdout_accuracy`; each channel entry gains its
      `sample_consistency` and `matched_label`.

    Every likelihood number is on the scale named by `likelihood_scale`
    (the head's `likelihood`): Gaussian densities are continuous and can be
    negative, so they are not comparable with Bernoulli numbers.

    Args:
        model: a built `MixtureVAE`.
        images: `(N, H, W, C)` uint8 pixels 0-255 or floats in [0, 1].
        labels: `(N,)` int true labels (evaluation only), or `None` for
            unlabelled data: every metric that needs labels (clustering,
            purity, specialised channels, generation) is then `None` and
            `labels_skipped` says so.
        batch_size: int. Images per batch.
        iwae_samples: int. k of the IWAE bound (0 skips it).
        usage_min: float. Usage threshold of a specialised channel.
        purity_min: float. Purity threshold of a specialised channel.
        seed: int. Seed of the IWAE samples.
        max_decodes: int. Most images decoded in one decoder call by the
            IWAE bound.
        judge: a `Judge` trained on another split, or None (no generation
            metrics).
        samples_per_channel: int. Prior draws per active channel scored by
            the judge.

    Returns:
        dict of JSON-ready numbers, lists and strings.

    Example:

    ```python
    metrics = evaluate_model(model, x_test, y_test, iwae_samples=100)
    metrics["accuracy"], metrics["iwae_log_px"], metrics["likelihood_scale"]
    ```
    """
    start_time = time.perf_counter()
    images, labels = _check_inputs(images, labels)
    n = images.shape[0]
    k_all = model.num_channels
    rng = np.random.default_rng(seed)
    channel = np.empty((n,), np.int64)
    confidence = np.empty((n,), np.float64)
    q_sum = np.zeros((k_all,), np.float64)
    sums = {"nelbo": 0.0, "recon": 0.0, "kl_z": 0.0, "kl_c": 0.0, "recon_mse": 0.0}
    iwae_sum = 0.0
    from kmixvae.utils.progress import track

    for lo in track(range(0, n, batch_size), total=n, step=batch_size, label="evaluate"):
        xb = as_float_images(images[lo : lo + batch_size])
        b = xb.shape[0]
        enc = model.encode(xb, batch_size=b)
        channel[lo : lo + b] = enc["channel"]
        confidence[lo : lo + b] = enc["q"].max(axis=1)
        q_sum += enc["q"].sum(axis=0)
        parts = model.loss_terms(model(ops.convert_to_tensor(xb), training=False))
        for key in ("nelbo", "recon", "kl_z", "kl_c"):
            sums[key] += float(ops.convert_to_numpy(parts[key])) * b
        rec = model.reconstruct(xb, batch_size=b)["mean"]
        sums["recon_mse"] += float(np.mean(np.square(xb - rec), axis=(1, 2, 3)).sum())
        if iwae_samples:
            log_px = iwae_log_px(model, xb, iwae_samples, rng, enc=enc, max_decodes=max_decodes)
            iwae_sum += float(log_px.sum())
    mean = {key: value / n for key, value in sums.items()}
    soft_usage = q_sum / n
    report = channel_report(
        np.zeros(n, np.int64) if labels is None else labels,
        channel,
        confidence,
        k_all,
        usage_min=usage_min,
        purity_min=purity_min,
        active_channels=model.active_channels,
    )
    if labels is None:  # usage and confidence stand; what needs labels is unknown
        for ch in report["channels"]:
            ch.update(purity=None, majority_label=None, specialised=None)
        report.update(specialised_count=None, specialised_channels=[], garbage_channels=[])
        judge = None
    for ch in report["channels"]:
        ch["soft_usage"] = float(soft_usage[ch["channel"]])
    p = soft_usage[soft_usage > 0]
    head = model.decoder.head
    dims = int(np.prod(images.shape[1:]))
    iwae = iwae_sum / n if iwae_samples else None
    discrete = _is_discrete(head)
    if discrete and iwae is not None:
        bpd = -iwae / (dims * math.log(2.0))
        bpd_note = "bits/dim = -iwae_log_px / (D ln 2), D = H*W*C"
    elif discrete:
        bpd = mean["nelbo"] / (dims * math.log(2.0))
        bpd_note = "bits/dim from the ELBO (no IWAE samples): nelbo / (D ln 2)"
    else:
        bpd = None
        bpd_note = "not reported: the likelihood is a continuous density, not a discrete one"
    generation = {}
    if judge is not None:
        gen = generation_metrics(
            model, judge, images, labels, n_per_channel=samples_per_channel, seed=seed
        )
        for ch, g in zip(report["channels"], gen["channels"]):
            ch["sample_consistency"] = g["sample_consistency"]
            ch["matched_label"] = g["matched_label"]
        generation = {
            "sample_consistency": gen["sample_consistency"],
            "recon_consistency": gen["recon_consistency"],
            "judge_accuracy": gen["judge_accuracy"],
            "judge_holdout_accuracy": gen["judge_holdout_accuracy"],
            "generation": gen,
        }
    if labels is None:
        clustering = {"accuracy": None, "purity": None, "nmi": None, "ari": None}
        clustering["labels_skipped"] = LABELS_SKIPPED
    else:
        clustering = {
            "accuracy": clustering_accuracy(labels, channel),
            "purity": purity(labels, channel),
            "nmi": nmi(labels, channel),
            "ari": ari(labels, channel),
        }
    return {
        "num_images": int(n),
        "image_shape": [int(s) for s in images.shape[1:]],
        "num_channels": int(k_all),
        "active_channels": [int(c) for c in model.active_channels],
        "latent_dim": int(model.latent_dim),
        **clustering,
        **report,
        "usage_entropy": float(-np.sum(p * np.log(p))),
        "likelihood_head": type(head).__name__,
        "likelihood_scale": str(head.likelihood),
        "likelihood_units": "nats per image",
        "nelbo": mean["nelbo"],
        "recon": mean["recon"],
        "kl_z": mean["kl_z"],
        "kl_c": mean["kl_c"],
        "elbo_log_px": -mean["nelbo"],
        "iwae_log_px": iwae,
        "iwae_samples": int(iwae_samples),
        "iwae_estimator": IWAE_ESTIMATOR,
        "bits_per_dim": bpd,
        "bits_per_dim_note": bpd_note,
        "recon_mse": mean["recon_mse"],
        **generation,
        "batch_size": int(batch_size),
        "seed": int(seed),
        "elapsed_s": round(time.perf_counter() - start_time, 3),
    }


def _fmt(value, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def format_report(metrics: dict) -> str:
    """Renders `evaluate_model`'s result as a readable text table.

    Args:
        metrics: the dict returned by `evaluate_model`.

    Returns:
        Multi-line string.
    """
    m = metrics
    lines = [
        f"Evaluation on {m['num_images']} images {tuple(m['image_shape'])}, "
        f"{len(m['active_channels'])}/{m['num_channels']} channels active, "
        f"latent dim {m['latent_dim']}",
        "",
    ]
    if m.get("labels_skipped"):
        lines.append(m["labels_skipped"])
    else:
        lines += [
            "Clustering (argmax q(c|x) vs labels)",
            f"  accuracy (1-to-1) {_fmt(m['accuracy'])}   purity (many-to-1) "
            f"{_fmt(m['purity'])}   NMI {_fmt(m['nmi'])}   ARI {_fmt(m['ari'])}",
        ]
    lines += [
        "",
        f"Channels (specialised: usage >= {m['usage_min']:g} and purity >= {m['purity_min']:g})",
        f"  {'ch':>3} {'active':>6} {'count':>7} {'usage':>7} {'q mean':>7} {'purity':>7} "
        f"{'label':>5} {'conf':>6}  status",
    ]
    for ch in m["channels"]:
        if ch["specialised"]:
            status = "specialised"
        elif ch["specialised"] is None and ch["active"]:
            status = "active"
        elif ch["active"]:
            status = "garbage"
        else:
            status = "locked"
        lines.append(
            f"  {ch['channel']:>3} {('yes' if ch['active'] else 'no'):>6} {ch['count']:>7} "
            f"{ch['usage']:>7.3f} {ch.get('soft_usage', 0.0):>7.3f} {_fmt(ch['purity'], 3):>7} "
            f"{_fmt(ch['majority_label']):>5} {_fmt(ch['confidence'], 3):>6}  {status}"
        )
    lines += [
        f"  specialised: {m['specialised_count']} {m['specialised_channels']}   "
        f"garbage: {m['garbage_channels']}   usage entropy {_fmt(m['usage_entropy'])} nats",
        "",
        f"Likelihood ({m['likelihood_units']}; scale: {m['likelihood_scale']})",
        f"  negative ELBO {_fmt(m['nelbo'], 3)} = recon {_fmt(m['recon'], 3)} "
        f"+ KL(z) {_fmt(m['kl_z'], 3)} + KL(c) {_fmt(m['kl_c'], 3)}",
        f"  IWAE log p(x) >= {_fmt(m['iwae_log_px'], 3)} (k = {m['iwae_samples']})",
        f"  bits/dim {_fmt(m['bits_per_dim'])} ({m['bits_per_dim_note']})",
        f"  reconstruction MSE (mean image) {_fmt(m['recon_mse'], 5)}",
    ]
    if m.get("generation"):
        g = m["generation"]
        j = g["judge"]
        lines += [
            "",
            f"Generation (judged by an MLP trained on {j['source'] or 'another split'}: "
            f"{j['train_images']} images, {_fmt(j['holdout_accuracy'], 3)} on its held-out share, "
            f"{_fmt(g['judge_accuracy'], 3)} on these images)",
            f"  sample consistency {_fmt(g['sample_consistency'], 3)} "
            f"({g['n_per_channel']} prior draws per active channel named as its matched label; "
            f"matched channels only {_fmt(g['sample_consistency_matched'], 3)})",
            f"  recon consistency {_fmt(g['recon_consistency'], 3)} "
            f"(reconstructions named as the original's label)",
            "  per channel: "
            + "  ".join(
                f"{ch['channel']}:{_fmt(ch['sample_consistency'], 2)}"
                f"{'' if ch['matched_label'] is None else '(' + str(ch['matched_label']) + ')'}"
                for ch in g["channels"]
                if ch["active"]
            ),
        ]
        if g["unmatched_channels"]:
            lines.append(f"  unmatched channels (score 0): {g['unmatched_channels']}")
    return "\n".join(lines)


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_metrics_json(metrics: dict, path: str | Path) -> Path:
    """Writes the metrics as indented JSON, atomically (non-finite numbers -> null).

    Args:
        metrics: the dict returned by `evaluate_model`.
        path: destination file.

    Returns:
        The path written.
    """
    path = Path(path)
    atomic_write_text(path, json.dumps(_jsonable(metrics), indent=2, sort_keys=False) + "\n")
    return path


__all__ = [
    "IWAE_ESTIMATOR",
    "evaluate_model",
    "format_report",
    "iwae_log_px",
    "write_metrics_json",
]
