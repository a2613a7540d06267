"""The metrics that matter, grouped by kind, each figure once (the report page and the model card).

A run's metrics files say some figures under several names: `evaluate`
puts the judge's accuracy at the top level and again under `generation`,
`fit`'s `metrics.json` has the last epoch's `final.val_cluster_acc`
beside `evaluate`'s `accuracy` on the same split. `KEY_METRICS` names each
figure once, with every path it may be found under (best first); a
table built from it shows the first value found and counts every other
path as shown, so nothing is listed twice.

Example:

```python
rows = key_metric_rows([("eval_metrics.json", evaluation), ("metrics.json", fit_metrics)])
[(r.kind, r.label, r.text) for r in rows]
```
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

KINDS = ("clustering", "likelihood", "generation", "time")


@dataclass(frozen=True)
class KeyMetric:
    """One figure: its kind, its readable name, where it is found, how it is written.

    Attributes:
        kind: one of `KINDS`.
        label: the name a reader sees.
        paths: dotted paths in a metrics dict, best first (all name this figure).
        fmt: format of a float value.
        same_as: paths that hold the same figure in another form (e.g.
            `elbo_log_px` = -`nelbo`): never shown, never listed again.
    """

    kind: str
    label: str
    paths: tuple[str, ...]
    fmt: str = "{:.4f}"
    same_as: tuple[str, ...] = ()


KEY_METRICS = (
    KeyMetric("clustering", "accuracy (1-to-1)", ("accuracy", "final.val_cluster_acc"), "{:.2%}"),
    KeyMetric("clustering", "purity (many-to-1)", ("purity",)),
    KeyMetric("clustering", "NMI", ("nmi",)),
    KeyMetric("clustering", "ARI", ("ari",)),
    KeyMetric("clustering", "specialised channels", ("specialised_count",), "{}"),
    KeyMetric("clustering", "usage entropy (nats)", ("usage_entropy",), "{:.3f}"),
    KeyMetric(
        "likelihood",
        "negative ELBO (nats)",
        ("nelbo", "final.val_nelbo"),
        "{:.3f}",
        same_as=("elbo_log_px",),
    ),
    KeyMetric("likelihood", "reconstruction term (nats)", ("recon", "final.val_recon"), "{:.3f}"),
    KeyMetric("likelihood", "KL(z) (nats)", ("kl_z", "final.val_kl_z"), "{:.3f}"),
    KeyMetric("likelihood", "KL(c) (nats)", ("kl_c", "final.val_kl_c"), "{:.3f}"),
    KeyMetric("likelihood", "IWAE log p(x) (nats)", ("iwae_log_px",), "{:.3f}"),
    KeyMetric("likelihood", "bits per dimension", ("bits_per_dim",), "{:.4f}"),
    KeyMetric("likelihood", "reconstruction MSE", ("recon_mse", "generation.recon_mse"), "{:.5f}"),
    KeyMetric(
        "generation",
        "sample consistency",
        ("sample_consistency", "generation.sample_consistency"),
        "{:.3f}",
    ),
    KeyMetric(
        "generation",
        "sample consistency, matched channels",
        ("generation.sample_consistency_matched",),
        "{:.3f}",
    ),
    KeyMetric(
        "generation",
        "recon consistency",
        ("recon_consistency", "generation.recon_consistency"),
        "{:.3f}",
    ),
    KeyMetric(
        "generation",
        "judge accuracy on these images",
        ("judge_accuracy", "generation.judge_accuracy"),
        "{:.3f}",
    ),
    KeyMetric(
        "generation",
        "judge accuracy on its held-out share",
        ("judge_holdout_accuracy", "generation.judge_holdout_accuracy"),
        "{:.3f}",
    ),
    KeyMetric("time", "epochs", ("epochs",), "{}"),
    KeyMetric(
        "time",
        "training time (s)",
        ("final.train_seconds", "fit_wall_seconds_this_session"),
        "{:.0f}",
    ),
    KeyMetric("time", "evaluation time (s)", ("elapsed_s",), "{:.1f}"),
)


@dataclass(frozen=True)
class KeyValue:
    """A `KeyMetric` with the value found: `text` is what the table shows."""

    kind: str
    label: str
    text: str
    source: str
    path: str


def lookup(metrics: Mapping, path: str):
    """The value at a dotted path of a nested dict, or None."""
    value = metrics
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def format_value(value, fmt: str | None = None) -> str:
    """A metric value as a table shows it.

    Args:
        value: a number, None (`-`), a bool (`yes`/`no`), a list (each item
            formatted) or anything else (`str`).
        fmt: format of a number (e.g. `"{:.2%}"`); default: floats with 4
            significant digits, ints as they are. `nan` and `inf` show as
            they are whatever the format.

    Returns:
        The text.
    """
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return "[" + ", ".join(format_value(v, fmt) for v in value) + "]"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if not _is_number(value):
        return str(value)
    if fmt is None or (fmt == "{}" and isinstance(value, float)):
        return f"{value:.4g}" if isinstance(value, float) else str(value)
    return fmt.format(value)


def key_metric_rows(
    sources: Sequence[tuple[str, Mapping]], kinds: Iterable[str] = KINDS
) -> list[KeyValue]:
    """The `KEY_METRICS` of `kinds` that the sources hold, in `KEY_METRICS` order.

    Each figure takes the first number found: sources in the order given,
    and within a source its paths best first. A figure no source holds (or
    holds as None, e.g. bits per dimension for a continuous density) is
    left out.

    Args:
        sources: `(name, metrics dict)` pairs, most trusted first (e.g.
            `evaluate`'s before `fit`'s).
        kinds: the kinds to keep.

    Returns:
        list of `KeyValue`.
    """
    kinds = set(kinds)
    rows = []
    for metric in KEY_METRICS:
        if metric.kind not in kinds:
            continue
        for name, metrics in sources:
            found = next(
                ((p, lookup(metrics, p)) for p in metric.paths if _is_number(lookup(metrics, p))),
                None,
            )
            if found is not None:
                path, value = found
                text = format_value(value, metric.fmt)
                rows.append(KeyValue(metric.kind, metric.label, text, name, path))
                break
    return rows


def covered_paths(kinds: Iterable[str] = KINDS) -> set[str]:
    """Every path a `KEY_METRICS` figure of `kinds` may be found under."""
    kinds = set(kinds)
    return {p for m in KEY_METRICS if m.kind in kinds for p in (*m.paths, *m.same_as)}


def other_numbers(
    metrics: Mapping, skip: Iterable[str] = (), kinds: Iterable[str] = KINDS
) -> list[tuple[str, float]]:
    """The numbers of `metrics` (one level of nesting) that no key figure of `kinds` covers.

    Args:
        metrics: a metrics dict.
        skip: further paths (or top-level sections) to leave out, e.g.
            bookkeeping values such as `seed`.
        kinds: the kinds of key figures shown beside these numbers.

    Returns:
        `[(dotted path, value)]` in the dict's order.
    """
    skip = set(skip) | covered_paths(kinds)
    rows = []
    for key, value in metrics.items():
        if key in skip:
            continue
        if _is_number(value):
            rows.append((key, value))
        elif isinstance(value, Mapping):
            rows.extend(
                (f"{key}.{sub}", v)
                for sub, v in value.items()
                if _is_number(v) and f"{key}.{sub}" not in skip
            )
    return rows


__all__ = [
    "KEY_METRICS",
    "KINDS",
    "KeyMetric",
    "KeyValue",
    "covered_paths",
    "format_value",
    "key_metric_rows",
    "lookup",
    "other_numbers",
]
