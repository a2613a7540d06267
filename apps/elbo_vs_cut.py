"""Does the held-out ELBO tell a good channel cut from a bad one? (issue 27 item 3)

Reads the per-run tables of the committed study reports (`docs/study_*.md`,
written by `apps/study.py`): for every variant with at least `--min-runs`
seeds it ranks the runs by held-out clustering accuracy and by held-out
ELBO (-ELBO column, lower is better) and prints Spearman's rank
correlation, the accuracy of the run a "keep the best ELBO" rule would
pick, and the variant's mean accuracy. A split/merge move judged by the
ELBO, or restarts kept by it, can only repair cuts if the correlation is
reliably positive where the accuracies differ.

```
python apps/elbo_vs_cut.py [--min-runs 4] [--min-spread 2.0]
```

`--min-spread`: only variants whose runs' accuracies span at least this many
points (where there is a bad cut to find).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from scipy.stats import spearmanr

ROOT = Path(__file__).resolve().parents[1]


def per_run(report: str) -> dict[str, list[tuple[float, float]]]:
    """`{variant: [(accuracy %, -ELBO), ...]}` from a study report's "Per run" table."""
    if "Per run:" not in report:
        return {}
    groups: dict[str, list[tuple[float, float]]] = {}
    for line in report.split("Per run:", 1)[1].splitlines():
        if not line.startswith("| `"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        variant = cells[0].strip("`").split("/")[-1].split("__")[0]
        try:
            groups.setdefault(variant, []).append((float(cells[1]), float(cells[5])))
        except (ValueError, IndexError):
            continue
    return groups


def rows(reports: dict[str, str], min_runs: int, min_spread: float) -> list[dict]:
    out = []
    for name, text in sorted(reports.items()):
        for variant, points in per_run(text).items():
            accs = [a for a, _ in points]
            if len(points) < min_runs or max(accs) - min(accs) < min_spread:
                continue
            nelbo = [e for _, e in points]
            out.append(
                {
                    "study": name,
                    "variant": variant,
                    "runs": len(points),
                    "acc_min": min(accs),
                    "acc_max": max(accs),
                    "spearman": float(spearmanr(accs, [-e for e in nelbo]).correlation),
                    "best_elbo_acc": accs[nelbo.index(min(nelbo))],
                    "mean_acc": sum(accs) / len(accs),
                }
            )
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min-runs", type=int, default=4)
    parser.add_argument("--min-spread", type=float, default=2.0)
    args = parser.parse_args(argv)
    reports = {p.stem[len("study_") :]: p.read_text() for p in sorted(ROOT.glob("docs/study_*.md"))}
    table = rows(reports, args.min_runs, args.min_spread)
    print(
        "| study | variant | runs | accuracy range % | Spearman(acc, ELBO) | best-ELBO run % | mean % |"
    )
    print("|---|---|---:|---|---:|---:|---:|")
    for r in table:
        print(
            f"| {r['study']} | {r['variant']} | {r['runs']} | {r['acc_min']:.1f}-{r['acc_max']:.1f} "
            f"| {r['spearman']:+.2f} | {r['best_elbo_acc']:.1f} | {r['mean_acc']:.1f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
