"""Log-log figure of `apps/scale_benchmark.py` results: graph seconds, mutual-filter seconds, peak RSS.

```
python apps/scale_figure.py runs/scale_idle/scale_benchmark.json \\
    runs/scale_idle_sq/scale_benchmark.json --out docs/figures/scale_loglog.png
```

Several result files may be given; for a size measured in more than one, the
later file wins (e.g. a re-run with the library's newer index). Each curve is
labelled with its growth exponent between the smallest and the largest size
(the slope on the log-log axes).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

SERIES = (
    ("graph_s", "neighbour graph, s"),
    ("mutual_s", "mutual filter, s"),
    ("peak_rss_mb", "peak RSS, MB"),
)


def merged(paths: list[Path]) -> list[dict]:
    """One result a size, the later file winning, sorted by size."""
    by_size = {}
    for path in paths:
        for row in json.loads(Path(path).read_text()):
            by_size[int(row["images"])] = row
    return [by_size[n] for n in sorted(by_size)]


def exponent(rows: list[dict], key: str) -> float:
    """Slope of log(value) against log(images) between the first and the last row."""
    a, b = rows[0], rows[-1]
    return math.log(b[key] / a[key]) / math.log(b["images"] / a["images"])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", type=Path, help="scale_benchmark.json files")
    parser.add_argument("--out", required=True, type=Path, help="PNG to write")
    args = parser.parse_args(argv)
    rows = merged(args.results)
    if len(rows) < 2:
        print("error: need results at two sizes at least", file=sys.stderr)
        return 2
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    sizes = [r["images"] for r in rows]
    for key, label in SERIES:
        ax.loglog(
            sizes, [r[key] for r in rows], "o-", label=f"{label} (N^{exponent(rows, key):.2f})"
        )
    for r in rows:
        rows_kind = r.get("hnsw", {}).get("rows", "float32") if r["method"] == "hnsw" else "exact"
        ax.annotate(
            rows_kind,
            (r["images"], r["graph_s"]),
            textcoords="offset points",
            xytext=(4, -12),
            fontsize=7,
        )
    ax.set_xlabel("training images N")
    ax.set_title("kmixvae.data.neighbors at scale (k = 20)", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
