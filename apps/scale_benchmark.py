"""Times the neighbour graph at scale: exact vs approximate (faiss HNSW), recall@k, peak RSS.

Usage:

    python apps/scale_benchmark.py --sizes 10000 60000 250000 --out runs/scale
        [--k 20] [--queries 1000] [--exact-max 10000] [--clusters 10] [--seed 0]
        [--fashion-dir ../shared/data/fashion-mnist-train] [--source auto] [--threshold N]

Each size runs in its own process (so its peak RSS is its own). Images are
real Fashion-MNIST training images (the first N of the 60,000 IDX images in
`--fashion-dir`) up to 60,000 and the synthetic glyph mixture
(`kmixvae.data.synthetic.glyph_mixture`, `--clusters` glyphs) above, or all
of one kind with `--source fashion|glyphs`. For each size it times the graph
`kmixvae.data.neighbors.cosine_neighbors` builds (exact up to
`EXACT_MAX_ROWS` rows, HNSW above) and the mutual filter, and measures
recall@k against the exact graph: the full exact graph when N <= `--exact-max`,
else the exact neighbours of `--queries` random rows against all N rows (its
time, scaled by N / queries, estimates the exact graph's). Writes
`scale_benchmark.json` and `scale_benchmark.md` (a table with the growth
exponent of the graph's time between consecutive sizes) to `--out`. Peak RSS is the
process's after the graph and the mutual filter, before the recall check.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import resource
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_FASHION = REPO.parent / "shared" / "data" / "fashion-mnist-train"
FASHION_ROWS = 60_000


def _read_idx_images(path: Path) -> np.ndarray:
    """uint8 `(N, H, W)` from a gzipped IDX image file (here, not through
    `kmixvae.data.sources`, whose package imports Keras and would add its
    memory to the peak RSS measured)."""
    raw = gzip.decompress(path.read_bytes())
    magic, n, h, w = struct.unpack(">4I", raw[:16])
    if magic != 0x00000803:
        raise ValueError(f"{path}: not an IDX image file (magic {magic:#010x})")
    return np.frombuffer(raw, np.uint8, offset=16).reshape(n, h, w)


def _images(n: int, source: str, fashion_dir: Path, clusters: int, seed: int):
    if source == "auto":
        found = (fashion_dir / "train-images-idx3-ubyte.gz").is_file()
        source = "fashion" if n <= FASHION_ROWS and found else "glyphs"
    if source == "fashion":
        path = fashion_dir / "train-images-idx3-ubyte.gz"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing (--fashion-dir)")
        images = _read_idx_images(path)
        if n > len(images):
            raise ValueError(f"--sizes {n}: Fashion-MNIST has {len(images)} images")
        return images[:n, ..., None], "Fashion-MNIST train"
    from kmixvae.data.synthetic import glyph_mixture

    return glyph_mixture(clusters, n, seed=seed)[0], f"glyph mixture (K={clusters})"


def _exact_rows(unit: np.ndarray, queries: np.ndarray, k: int, block: int = 128) -> np.ndarray:
    """Exact k nearest neighbours of rows `queries` among all rows (self excluded)."""
    out = np.empty((len(queries), k), "int64")
    for start in range(0, len(queries), block):
        q = queries[start : start + block]
        sim = unit[q] @ unit.T
        sim[np.arange(len(q)), q] = -np.inf
        out[start : start + block] = np.argpartition(-sim, k, axis=1)[:, :k]
    return out


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def measure(n, k, queries, exact_max, source, fashion_dir, clusters, seed) -> dict:
    """One size: the graph's time, the mutual filter's, recall@k and peak RSS."""
    from kmixvae.data import neighbors as nb

    t0 = time.perf_counter()
    images, name = _images(n, source, fashion_dir, clusters, seed)
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    graph = nb.cosine_neighbors(images.reshape(n, -1), k)
    graph_s = time.perf_counter() - t0
    method = "exact" if n <= nb.EXACT_MAX_ROWS else "hnsw"
    t0 = time.perf_counter()
    nb.mutual_neighbors(graph)
    mutual_s = time.perf_counter() - t0
    graph_rss = _peak_rss_mb()  # before the recall check's own copies
    unit = nb._unit_rows(images.reshape(n, -1))
    rng = np.random.default_rng(seed)
    if n <= exact_max:
        rows = np.arange(n)
        t0 = time.perf_counter()
        exact = nb.cosine_neighbors(images.reshape(n, -1), k, method="exact")
        exact_s, exact_how = time.perf_counter() - t0, "measured"
    else:
        rows = np.sort(rng.choice(n, size=min(queries, n), replace=False))
        t0 = time.perf_counter()
        exact = _exact_rows(unit, rows, k)
        exact_s = (time.perf_counter() - t0) * n / len(rows)
        exact_how = f"estimated from {len(rows)} rows"
    hits = [len(set(a) & set(e)) for a, e in zip(graph[rows], exact)]
    return {
        "images": n,
        "source": name,
        "k": k,
        "method": method,
        "load_s": round(load_s, 2),
        "graph_s": round(graph_s, 4),
        "mutual_s": round(mutual_s, 3),
        "exact_s": round(exact_s, 1),
        "exact_how": exact_how,
        "recall": round(float(np.sum(hits)) / (len(rows) * k), 4),
        "recall_rows": int(len(rows)),
        "hnsw": {
            "M": nb.HNSW_M,
            "efConstruction": nb.HNSW_EF_CONSTRUCTION,
            "efSearch": max(nb.HNSW_EF_SEARCH, k + 1),
            "threads": nb._faiss_threads(),
            "rows": "8-bit" if n >= nb.HNSW_SQ_MIN_ROWS else "float32",
        },
        "peak_rss_mb": round(graph_rss, 1),
        "peak_rss_mb_with_recall": round(_peak_rss_mb(), 1),
    }


def _exponents(results: list[dict], key: str) -> list:
    """The growth exponent log(cost ratio) / log(size ratio) between consecutive sizes.

    None where it cannot be measured: a cost that rounds to 0 s (tiny sizes)
    or two runs of the same size.
    """
    out = [None]
    for a, b in zip(results, results[1:]):
        if a[key] <= 0 or b[key] <= 0 or a["images"] == b["images"]:
            out.append(None)
            continue
        out.append(round(math.log(b[key] / a[key]) / math.log(b["images"] / a["images"]), 2))
    return out


def markdown(results: list[dict]) -> str:
    """The results as a Markdown table (growth exponent of the graph's time per step)."""
    lines = [
        "| images | data | graph | graph s | growth exp. | mutual s | exact s | recall@k (rows) | peak RSS MB |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r, exp in zip(results, _exponents(results, "graph_s")):
        exact = f"{r['exact_s']:g}" + ("" if r["exact_how"] == "measured" else " (est.)")
        lines.append(
            f"| {r['images']:,} | {r['source']} | {r['method']} | {r['graph_s']:g} | "
            f"{'' if exp is None else exp} | {r['mutual_s']:g} | {exact} | "
            f"{r['recall']:.4f} ({r['recall_rows']:,}) | {r['peak_rss_mb']:,.0f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 60_000, 250_000])
    parser.add_argument("--out", required=True, help="folder for scale_benchmark.json / .md")
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--exact-max", type=int, default=10_000)
    parser.add_argument("--clusters", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fashion-dir", type=Path, default=DEFAULT_FASHION)
    parser.add_argument("--source", choices=["auto", "fashion", "glyphs"], default="auto")
    parser.add_argument(
        "--threshold",
        type=int,
        default=None,
        help="EXACT_MAX_ROWS for this run (default: the library's, 10,000)",
    )
    parser.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if min(args.sizes) < 2 or args.k < 1 or args.queries < 1 or args.clusters < 1:
        print("error: --sizes must be >= 2, --k, --queries, --clusters >= 1", file=sys.stderr)
        return 2
    if args.k >= min(args.sizes):
        print(f"error: --k {args.k} must be below the smallest size", file=sys.stderr)
        return 2
    settings = (args.k, args.queries, args.exact_max, args.source, args.fashion_dir)
    if args.one is not None:  # the child process of one size
        if args.threshold is not None:
            from kmixvae.data import neighbors as nb

            nb.EXACT_MAX_ROWS = args.threshold
        try:
            result = measure(args.one, *settings, args.clusters, args.seed)
        except (FileNotFoundError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print("RESULT " + json.dumps(result), flush=True)
        return 0
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        print(f"error: --out {str(out)!r}: is a file, not a folder", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for n in sorted(args.sizes):
        child = [
            sys.executable,
            __file__,
            "--one",
            str(n),
            *(sys.argv[1:] if argv is None else argv),
        ]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        proc = subprocess.run(child, capture_output=True, text=True, env=env)
        line = [s for s in proc.stdout.splitlines() if s.startswith("RESULT ")]
        if proc.returncode != 0 or not line:
            err = [s for s in proc.stderr.splitlines() if s.startswith("error:")]
            print(
                err[-1] if err else f"error: size {n} failed: {proc.stderr[-500:]}", file=sys.stderr
            )
            return 2
        results.append(json.loads(line[-1][len("RESULT ") :]))
        print(json.dumps(results[-1]), flush=True)
        (out / "scale_benchmark.json").write_text(json.dumps(results, indent=2) + "\n")
        (out / "scale_benchmark.md").write_text(markdown(results))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
