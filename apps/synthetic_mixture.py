"""Writes a synthetic glyph mixture with a known number of clusters as an `mnist.npz`.

Usage:

    python apps/synthetic_mixture.py --clusters 5 --out data/glyphs5
        [--train 8000] [--test 2000] [--seed 0]

The folder then serves `kmixvae fit --data-dir data/glyphs5` (splits `train`
and `test`); the labels are the glyph of each image, so the number of
clusters a run keeps can be checked against a certain answer
(`kmixvae.data.synthetic.glyph_mixture`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clusters", type=int, required=True)
    parser.add_argument("--out", required=True, help="folder that receives mnist.npz")
    parser.add_argument("--train", type=int, default=8000)
    parser.add_argument("--test", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    from kmixvae.data.synthetic import glyph_mixture
    from kmixvae.utils.files import atomic_write

    if args.clusters < 1 or args.train < 1 or args.test < 1:
        print("error: --clusters, --train and --test must be >= 1", file=sys.stderr)
        return 2
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        print(f"error: --out {str(out)!r}: is a file, not a folder", file=sys.stderr)
        return 2
    x, y = glyph_mixture(args.clusters, args.train + args.test, seed=args.seed)
    out.mkdir(parents=True, exist_ok=True)
    n = args.train
    arrays = {"x_train": x[:n, ..., 0], "y_train": y[:n], "x_test": x[n:, ..., 0], "y_test": y[n:]}
    atomic_write(out / "mnist.npz", lambda tmp: np.savez(tmp, **arrays))
    print(f"wrote {out / 'mnist.npz'}: {args.clusters} clusters, {n} train, {args.test} test")
    return 0


if __name__ == "__main__":
    sys.exit(main())
