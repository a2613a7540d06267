"""Times `kmixvae.data.neighbors.mutual_mask` against the sorted-pair-keys filter it replaced.

Both on the same int64 `(N, k)` tables: a random one (no locality: the
worst case for both) and a local one (each row's neighbours near it, many
mutual pairs). Prints seconds per filter and whether the masks agree.

```
python apps/mutual_filter_benchmark.py [--sizes 60000 1000000] [--k 20]
```
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from kmixvae.data.neighbors import mutual_mask


def sorted_keys_mask(neighbors: np.ndarray) -> np.ndarray:
    """The earlier filter: pair `(i, j)` as the key `i * N + j`, searchsorted of the reversed keys."""
    neighbors = np.asarray(neighbors, dtype="int64")
    n, k = neighbors.shape
    rows = np.repeat(np.arange(n, dtype="int64"), k)
    cols = neighbors.ravel()
    keys = np.sort(rows * n + cols)
    reverse = cols * n + rows
    at = np.searchsorted(keys, reverse)
    return (keys[np.minimum(at, len(keys) - 1)] == reverse).reshape(n, k)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[60_000, 1_000_000])
    parser.add_argument("--k", type=int, default=20)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    print("| table | N | sorted keys s | direct s | same mask | mutual share |")
    print("|---|---:|---:|---:|---|---:|")
    for kind in ("random", "local"):
        for n in args.sizes:
            if kind == "random":
                table = rng.integers(0, n, (n, args.k))
            else:
                offsets = rng.integers(1, 40, (n, args.k)) * rng.choice([-1, 1], (n, args.k))
                table = (np.arange(n)[:, None] + offsets) % n
            t = time.perf_counter()
            old = sorted_keys_mask(table)
            old_s = time.perf_counter() - t
            t = time.perf_counter()
            new = mutual_mask(table)
            new_s = time.perf_counter() - t
            same = bool((old == new).all())
            print(f"| {kind} | {n:,} | {old_s:.2f} | {new_s:.2f} | {same} | {new.mean():.4f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
