"""Peak memory and time of `evaluate_model` + `make_all_figures` on N synthetic images.

Builds the default model (untrained), makes N random 28x28 uint8 images with
random labels, evaluates them and draws every figure, then prints the peak
resident memory (ru_maxrss) and the elapsed time of each stage.

Usage:

    KERAS_BACKEND=tensorflow python apps/memory_check.py --n 70000 --iwae-samples 10
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MB (Linux ru_maxrss is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=70000, help="number of synthetic images")
    parser.add_argument("--iwae-samples", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--max-points", type=int, default=5000)
    parser.add_argument("--out", default=None, help="figures folder (default: a temp folder)")
    args = parser.parse_args(argv)

    import keras

    from kmixvae.config import from_dict
    from kmixvae.evaluation.evaluate import evaluate_model, format_report
    from kmixvae.models.factory import build_model
    from kmixvae.viz.figures import make_all_figures

    t0 = time.perf_counter()
    print(f"backend {keras.backend.backend()}, n={args.n}, iwae_samples={args.iwae_samples}")
    print(f"after imports: rss {rss_mb():.0f} MB, peak {peak_rss_mb():.0f} MB", flush=True)
    model = build_model(from_dict({}), (28, 28, 1))
    rng = np.random.default_rng(0)
    # Blobs of random strokes, uint8 like real MNIST (N*784 bytes).
    images = (rng.random((args.n, 28, 28, 1)) < 0.15).astype(np.uint8) * 255
    labels = rng.integers(0, 10, size=args.n)
    print(
        f"model + data ({images.nbytes / 2**20:.0f} MB of uint8 images): "
        f"rss {rss_mb():.0f} MB, peak {peak_rss_mb():.0f} MB",
        flush=True,
    )
    t1 = time.perf_counter()
    metrics = evaluate_model(
        model, images, labels, batch_size=args.batch_size, iwae_samples=args.iwae_samples
    )
    t2 = time.perf_counter()
    print(format_report(metrics))
    print(
        f"evaluate_model: {t2 - t1:.1f} s ({args.n / (t2 - t1):.0f} images/s), "
        f"rss {rss_mb():.0f} MB, peak {peak_rss_mb():.0f} MB",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out) if args.out else Path(tmp) / "figures"
        history = {k: [3.0, 2.0, 1.0] for k in ("loss", "recon", "kl_z", "kl_c")}
        paths = make_all_figures(
            model,
            images,
            labels,
            out,
            history=history,
            max_points=args.max_points,
            batch_size=args.batch_size,
        )
        t3 = time.perf_counter()
        print(
            f"make_all_figures: {len(paths)} PNGs in {t3 - t2:.1f} s, "
            f"rss {rss_mb():.0f} MB, peak {peak_rss_mb():.0f} MB"
        )
    print(
        f"TOTAL: n={args.n} peak RSS {peak_rss_mb():.0f} MB, elapsed {time.perf_counter() - t0:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
