"""Compare runs: the config keys that differ and the metrics, side by side."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from kmixvae.runs.folder import check_run_dir

METRIC_KEYS = (
    ("best epoch", ("best", "epoch")),
    ("val_loss", ("best", "values", "val_loss")),
    ("val_nelbo", ("best", "values", "val_nelbo")),
    ("val_recon", ("best", "values", "val_recon")),
    ("val_cluster_acc", ("final", "val_cluster_acc")),
    ("train_seconds", ("final", "train_seconds")),
    ("sample_consistency", ("generation", "sample_consistency")),
    ("recon_consistency", ("generation", "recon_consistency")),
)
EVAL_KEYS = (
    "accuracy",
    "nmi",
    "ari",
    "specialised_count",
    "nelbo",
    "iwae_log_px",
    "recon_mse",
    "sample_consistency",
    "recon_consistency",
    "judge_accuracy",
)


def _flatten(d, prefix=""):
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _dig(d, path):
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return None
        d = d[p]
    return d


def compare_runs(run_dirs) -> dict:
    """Reads runs; returns `{"runs": [...names], "rows": [(key, [values...]), ...]}`."""
    paths = [check_run_dir(p) for p in run_dirs]
    configs = [_flatten(json.loads((p / "config.json").read_text())) for p in paths]
    keys = sorted(set().union(*configs))
    rows = []
    for key in keys:
        values = [c.get(key) for c in configs]
        if key in ("output.saved_model", "output.runs_dir"):
            continue
        if len({json.dumps(v) for v in values}) > 1:
            rows.append((key, values))
    for label, path in METRIC_KEYS:
        values = []
        for p in paths:
            m = p / "metrics.json"
            values.append(_dig(json.loads(m.read_text()), path) if m.is_file() else None)
        rows.append((label, values))
    for key in EVAL_KEYS:
        values = []
        for p in paths:
            m = p / "eval_metrics.json"
            values.append(json.loads(m.read_text()).get(key) if m.is_file() else None)
        if any(v is not None for v in values):
            rows.append((f"eval {key}", values))
    return {"runs": [p.name for p in paths], "rows": rows}


def _fmt(v):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return json.dumps(v) if isinstance(v, (list, dict)) else str(v)


def to_markdown(table: dict) -> str:
    head = "| key | " + " | ".join(table["runs"]) + " |"
    sep = "|---|" + "---|" * len(table["runs"])
    lines = [head, sep] + [
        f"| {k} | " + " | ".join(_fmt(v) for v in vals) + " |" for k, vals in table["rows"]
    ]
    return "\n".join(lines)


def to_csv(table: dict) -> str:
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["key", *table["runs"]])
    for k, vals in table["rows"]:
        w.writerow([k, *[_fmt(v) for v in vals]])
    return out.getvalue()


__all__ = ["compare_runs", "to_markdown", "to_csv", "Path"]
