"""`write_report`: one self-contained HTML page that shows a run (or a model) at a glance.

The page holds, in order: the headline numbers, every metric of the run's
`metrics.json` (and of `eval_metrics.json` or a given metrics file), the
training curves, one row per channel (status, usage, purity, the digit the
one-to-one matching gives it, its majority digit, confidence, then any
extra per-channel metric found in the metrics files, then samples from its
prior and its latent cloud), reconstructions, and the config. Every figure
is a PNG embedded as a base64 `data:` URI, so the one file can be mailed or
opened anywhere.

Per-channel metrics are found without code changes: any key of the
`channels` list of a metrics file (e.g. `sample_consistency` added by
`evaluate`), any top-level list of K numbers, and any top-level dict keyed
by channel index become columns of the channel table.

Example:

```python
from kmixvae.viz.report import write_report
write_report("runs/film_het__20261126_090000", images=x_val, labels=y_val)
```
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from kmixvae.evaluation.evaluate import as_float_images
from kmixvae.evaluation.metrics import channel_report, clustering_accuracy, contingency
from kmixvae.runs.model_files import load_model_file
from kmixvae.utils.files import atomic_write_text
from kmixvae.viz.figures import channel_confusion_figure

# Columns the channel table always shows; everything else per channel is "extra".
BASE_CHANNEL_KEYS = (
    "channel",
    "active",
    "count",
    "usage",
    "soft_usage",
    "purity",
    "majority_label",
    "confidence",
    "specialised",
)
CURVES = (
    ("loss", "loss"),
    ("nelbo", "-ELBO (nats)"),
    ("val_cluster_acc", "held-out accuracy"),
    ("active_channels", "active channels"),
)
MAX_REPORT_IMAGES = 2000
SAMPLES_PER_CHANNEL = 8


# ---------------------------------------------------------------------------
# Figures (PNG bytes)
# ---------------------------------------------------------------------------


def _png_figure(fig: Figure, dpi: int = 80) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    fig.clear()
    return buf.getvalue()


def _png_images(images: np.ndarray, rows: int = 1, scale: int = 2) -> bytes:
    """A strip or grid of `(N, H, W, C)` images in [0, 1] as one grey PNG, pixels enlarged."""
    from matplotlib.image import imsave

    images = np.clip(np.asarray(images, np.float32), 0.0, 1.0)
    n, h, w, c = images.shape
    cols = math.ceil(n / rows)
    grid = np.ones((rows * (h + 1) - 1, cols * (w + 1) - 1, c), np.float32)
    for i in range(n):
        r, q = divmod(i, cols)
        grid[r * (h + 1) : r * (h + 1) + h, q * (w + 1) : q * (w + 1) + w] = images[i]
    grid = np.repeat(np.repeat(grid, scale, axis=0), scale, axis=1)
    buf = io.BytesIO()
    if c == 1:
        imsave(buf, grid[..., 0], cmap="gray", vmin=0.0, vmax=1.0, format="png")
    else:
        imsave(buf, grid, format="png")
    return buf.getvalue()


def _curves_png(history: Mapping[str, list]) -> bytes | None:
    panels = [(k, t) for k, t in CURVES if k in history or f"val_{k}" in history]
    if not panels:
        return None
    fig = Figure(figsize=(3.4 * len(panels), 2.6))
    epochs = np.asarray(history.get("epoch", []), np.float64)
    for i, (key, title) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        for name, style, label in ((key, "-", "train"), (f"val_{key}", "--", "validation")):
            ys = np.asarray(history.get(name, []), np.float64)
            if ys.size and np.isfinite(ys).any():
                xs = epochs[: ys.size] if epochs.size >= ys.size else np.arange(1, ys.size + 1)
                ax.plot(xs, ys, style, marker=".", label=label)
        if key == "val_cluster_acc":
            ax.set_ylim(0, 1)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("epoch", fontsize=8)
        ax.tick_params(labelsize=7)
        if len(ax.lines) > 1:
            ax.legend(fontsize=7)
    fig.subplots_adjust(wspace=0.35)
    return _png_figure(fig)


def _cloud_png(points: np.ndarray, labels: np.ndarray, title: str) -> bytes:
    from kmixvae.viz.figures import pca_2d

    fig = Figure(figsize=(2.3, 2.3))
    ax = fig.add_subplot(1, 1, 1)
    if len(points):
        xy, _, _ = pca_2d(points)
        cmap = colormaps["tab10"]
        ax.scatter(xy[:, 0], xy[:, 1], s=3, c=[cmap(int(v) % 10) for v in labels], linewidths=0)
    else:
        ax.text(0.5, 0.5, "no images", ha="center", va="center", transform=ax.transAxes)
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
    return _png_figure(fig, dpi=72)


def _uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


# ---------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------


def flatten_metrics(metrics: Mapping, prefix: str = "") -> list[tuple[str, object]]:
    """Nested metrics -> `[(dotted.key, leaf value)]`; lists of numbers stay one value.

    Lists of dicts (e.g. the per-channel `channels`) are left out: the
    channel table shows them.
    """
    rows = []
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            rows.extend(flatten_metrics(value, name + "."))
        elif isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
            continue
        else:
            rows.append((name, value))
    return rows


def format_value(value) -> str:
    """A metric value as the page shows it (floats with 4 significant digits)."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.4g}"
    if isinstance(value, list):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    return str(value)


def extra_channel_columns(metric_sets: list[Mapping], num_channels: int) -> dict[str, list]:
    """Per-channel metrics beyond the base columns, from any metrics dict.

    Finds (1) keys of `channels` entries other than `BASE_CHANNEL_KEYS`,
    (2) top-level lists of exactly K numbers, (3) top-level dicts keyed by
    channel index (`"0"`.. or `0`..), nested one level too (e.g.
    `{"generation": {"sample_consistency": [...]}}`).

    Returns:
        dict of column name -> list of K values (None where missing).
    """
    columns: dict[str, list] = {}

    def add(name, values):
        if name not in columns:
            columns[name] = list(values)

    def scan(m: Mapping, prefix: str):
        for key, value in m.items():
            name = f"{prefix}{key}"
            if key == "channels" and isinstance(value, list):
                for entry in value:
                    if not isinstance(entry, Mapping) or "channel" not in entry:
                        continue
                    c = int(entry["channel"])
                    if not 0 <= c < num_channels:
                        continue
                    for k2, v2 in entry.items():
                        if k2 in BASE_CHANNEL_KEYS or isinstance(v2, (Mapping, list)):
                            continue
                        columns.setdefault(f"{prefix}{k2}", [None] * num_channels)[c] = v2
            elif (
                isinstance(value, list)
                and len(value) == num_channels
                and all(isinstance(v, (int, float)) or v is None for v in value)
                and not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
            ):
                add(name, value)
            elif isinstance(value, Mapping) and value:
                keys = [str(k) for k in value]
                if all(k.isdigit() and int(k) < num_channels for k in keys):
                    col = [None] * num_channels
                    for k, v in value.items():
                        col[int(k)] = v
                    add(name, col)
                elif not prefix:
                    scan(value, name + ".")

    for m in metric_sets:
        scan(m, "")
    return columns


def matched_digits(labels: np.ndarray, channel: np.ndarray, num_channels: int) -> list:
    """The label each channel gets under the best one-to-one matching (None if unmatched)."""
    from scipy.optimize import linear_sum_assignment

    counts, clusters, classes = contingency(labels, channel)
    rows, cols = linear_sum_assignment(counts, maximize=True)
    out = [None] * num_channels
    for r, c in zip(rows, cols):
        if counts[r, c] > 0:
            out[int(clusters[r])] = classes[c].item()
    return out


# ---------------------------------------------------------------------------
# Page
# ---------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#222;
max-width:1320px}
h1{font-size:22px;margin-bottom:2px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}
.sub{color:#666;font-size:13px}table{border-collapse:collapse;font-size:13px}
td,th{border:1px solid #ddd;padding:3px 7px;text-align:right;vertical-align:middle;
max-width:460px;overflow-wrap:anywhere}
th{background:#f3f3f3}td.k{text-align:left;font-family:monospace}
.cards{display:flex;gap:12px;flex-wrap:wrap}.card{border:1px solid #ddd;border-radius:6px;
padding:8px 14px;min-width:120px}.card b{display:block;font-size:20px}.card span{color:#666;
font-size:12px}.spec{color:#1a7f37}.garb{color:#b35900}.lock{color:#888}
pre{background:#f6f6f6;padding:10px;font-size:12px;overflow:auto;max-height:480px}
details{margin:8px 0}img{image-rendering:pixelated;max-width:100%}
.cols{display:flex;gap:18px;flex-wrap:wrap;align-items:flex-start}
"""


def _esc(value) -> str:
    return html.escape(str(value), quote=True)


def _table(rows: list[tuple[str, object]], head=("metric", "value"), per_column: int = 32) -> str:
    """Key/value rows as side-by-side tables of at most `per_column` rows."""
    tables = []
    for lo in range(0, max(len(rows), 1), per_column):
        body = "".join(
            f"<tr><td class='k'>{_esc(k)}</td><td>{_esc(format_value(v))}</td></tr>"
            for k, v in rows[lo : lo + per_column]
        )
        tables.append(
            f"<table><tr><th>{_esc(head[0])}</th><th>{_esc(head[1])}</th></tr>{body}</table>"
        )
    return "<div class='cols'>" + "".join(tables) + "</div>"


def _card(label: str, value: str) -> str:
    return f"<div class='card'><b>{_esc(value)}</b><span>{_esc(label)}</span></div>"


def _img(png: bytes, alt: str, width: int | None = None) -> str:
    w = f" width='{width}'" if width else ""
    return f"<img src='{_uri(png)}' alt='{_esc(alt)}'{w}>"


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def build_report_html(
    model,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    title: str,
    metric_files: Mapping[str, Mapping] | None = None,
    history: Mapping[str, list] | None = None,
    config: Mapping | None = None,
    split: str | None = None,
    seed: int = 0,
) -> str:
    """The report page as one HTML string (figures embedded).

    Args:
        model: a `MixtureVAE`.
        images: `(N, H, W, C)` images (uint8 or [0, 1] floats) to score and plot;
            at most `MAX_REPORT_IMAGES` are used.
        labels: `(N,)` their labels.
        title: page title (the run or model name).
        metric_files: file name -> metrics dict (e.g. `{"metrics.json": {...}}`);
            every leaf appears in the page.
        history: metric name -> list per epoch (`history.csv`).
        config: the resolved config (shown as JSON); default `model.describe()`.
        split: name of the split the images come from.
        seed: seed of the samples.

    Returns:
        The HTML text.
    """
    metric_files = dict(metric_files or {})
    images = as_float_images(np.asarray(images)[:MAX_REPORT_IMAGES])
    labels = np.asarray(labels).reshape(-1)[: len(images)]
    k = int(model.num_channels)
    enc = model.encode(images)
    channel = enc["channel"]
    report = channel_report(labels, channel, enc["q"], k, active_channels=model.active_channels)
    soft_usage = enc["q"].mean(axis=0)
    accuracy = clustering_accuracy(labels, channel)
    matched = matched_digits(labels, channel, k)
    extra = extra_channel_columns(list(metric_files.values()), k)
    rec = model.reconstruct(images[:16])["mean"]
    where = f"{len(images)} images" + (f" of {split}" if split else "")

    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>kmixvae report: {_esc(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>kmixvae report: {_esc(title)}</h1>",
        f"<div class='sub'>written {_esc(time.strftime('%Y-%m-%d %H:%M:%S'))}; "
        f"channel figures from {_esc(where)}</div>",
    ]
    # Headline
    final = (metric_files.get("metrics.json") or {}).get("final", {})
    cards = [
        _card(f"clustering accuracy ({where})", f"{100 * accuracy:.1f}%"),
        _card(
            "specialised channels",
            f"{report['specialised_count']} of {len(model.active_channels)} active",
        ),
        _card("active channels", f"{len(model.active_channels)} of {k}"),
    ]
    if "val_nelbo" in final:
        cards.append(_card("final validation -ELBO (nats)", format_value(final["val_nelbo"])))
    for m in metric_files.values():
        for key, label in (("iwae_log_px", "IWAE log p(x) (nats)"), ("recon_mse", "recon MSE")):
            if isinstance(m.get(key), (int, float)):
                cards.append(_card(label, format_value(m[key])))
    parts += ["<h2>Summary</h2><div class='cards'>", *cards, "</div>"]

    # Metrics tables
    parts.append("<h2>Metrics</h2>")
    if not metric_files:
        parts.append("<p class='sub'>no metrics file (metrics.json, eval_metrics.json)</p>")
    for name, m in metric_files.items():
        rows = flatten_metrics(m)
        parts.append(f"<h3>{_esc(name)} ({len(rows)} values)</h3>")
        parts.append(_table(rows))

    # Curves
    if history:
        png = _curves_png(history)
        if png is not None:
            parts += ["<h2>Training curves</h2>", _img(png, "training curves")]

    # Channels
    extra_names = list(extra)
    head = [
        "channel",
        "status",
        "usage",
        "mean q(c|x)",
        "purity",
        "matched digit",
        "majority digit",
        "confidence",
        *extra_names,
        "samples from its prior",
        "latent cloud (colour: label)",
    ]
    parts += [
        "<h2>Channels</h2>",
        f"<p class='sub'>status, usage, purity and the digits are measured on {_esc(where)}; "
        f"specialised = usage &ge; {report['usage_min']:g} and purity &ge; "
        f"{report['purity_min']:g}; matched digit = the one-to-one matching that scores the "
        "accuracy. Extra columns come from the metrics files.</p>",
        "<table><tr>" + "".join(f"<th>{_esc(h)}</th>" for h in head) + "</tr>",
    ]
    for ch in report["channels"]:
        c = ch["channel"]
        if ch["specialised"]:
            status = "<span class='spec'>specialised</span>"
        elif ch["active"]:
            status = "<span class='garb'>garbage</span>"
        else:
            status = "<span class='lock'>masked</span>"
        cells = [
            str(c),
            status,
            _esc(f"{ch['usage']:.1%}"),
            _esc(f"{float(soft_usage[c]):.3f}"),
            _esc(format_value(ch["purity"])),
            _esc(format_value(matched[c])),
            _esc(format_value(ch["majority_label"])),
            _esc(format_value(ch["confidence"])),
        ]
        cells += [_esc(format_value(extra[name][c])) for name in extra_names]
        if ch["active"]:
            samples = model.sample(SAMPLES_PER_CHANNEL, channel=c, seed=seed)["mean"]
            cells.append(_img(_png_images(samples), f"samples of channel {c}"))
        else:
            cells.append("masked")
        own = channel == c
        cells.append(
            _img(
                _cloud_png(enc["mu"][own, c], labels[own], f"channel {c}: {int(own.sum())} images"),
                f"latent cloud of channel {c}",
            )
        )
        parts.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
    parts.append("</table>")
    parts += [
        "<h2>Channels and labels</h2>",
        f"<p class='sub'>images of {_esc(where)} per active channel (rows, by matched label) and "
        "label (columns): two dark cells in a row are two labels sharing a channel, two dark "
        "cells in a column a label split over two channels</p>",
        _img(
            _png_figure(channel_confusion_figure(labels, channel, model.active_channels)),
            "channels and labels",
        ),
    ]

    # Reconstructions
    parts += [
        "<h2>Reconstructions</h2>",
        f"<p class='sub'>top: 16 images of {_esc(split or 'the data')}; bottom: their "
        "reconstruction by their chosen channel (posterior mean)</p>",
        _img(_png_images(np.concatenate([images[:16], rec]), rows=2, scale=2), "reconstructions"),
    ]

    # Config
    cfg_text = json.dumps(config if config is not None else model.describe(), indent=2, default=str)
    parts += [
        "<h2>Config</h2>",
        "<details open><summary>resolved config</summary>",
        f"<pre>{_esc(cfg_text)}</pre></details>",
        "</body></html>",
    ]
    return "\n".join(parts)


def write_report(
    source,
    out=None,
    *,
    model=None,
    images=None,
    labels=None,
    split: str | None = None,
    metric_files: Mapping[str, Mapping] | None = None,
) -> Path:
    """Writes `report.html` for a run folder (default `<run>/report.html`) or a model.

    For a run folder, reads `metrics.json`, `eval_metrics.json` (when
    `kmixvae evaluate` wrote it), `history.csv` and `config.json`, and loads
    its model unless `model` is given. Images default to the run's
    validation split (its training split without one).

    Args:
        source: run folder or `.keras` file.
        out: the HTML file (required for a model file).
        model: an already loaded model (skips loading).
        images: images to score and plot (default: the run's data).
        labels: their labels.
        split: name of the split of `images`.
        metric_files: extra metrics dicts, file name -> dict.

    Returns:
        The path written.
    """
    from kmixvae.errors import ConfigError

    source = Path(source)
    is_run = source.is_dir()
    if out is None:
        if not is_run:
            raise ConfigError("report: give --out FILE.html for a model file")
        out = source / "report.html"
    out = Path(out)
    files: dict[str, Mapping] = {}
    history = None
    config = None
    if is_run:
        for name in ("metrics.json", "eval_metrics.json"):
            m = _read_json(source / name)
            if isinstance(m, Mapping):
                files[name] = m
        if (source / "history.csv").is_file():
            from kmixvae.viz.figures import load_history

            history = load_history(source / "history.csv")
        config = _read_json(source / "config.json")
    files.update(metric_files or {})
    if model is None:
        model = load_model_file(source)
    if images is None:
        from kmixvae import config as config_lib
        from kmixvae.data import load_split

        cfg = config_lib.load_config(source / "config.json") if is_run else config_lib.Config()
        split = split or cfg.data.val_split or cfg.data.train_split
        images, labels = load_split(cfg.data, split)
    text = build_report_html(
        model,
        images,
        labels,
        title=source.name,
        metric_files=files,
        history=history,
        config=config,
        split=split,
    )
    atomic_write_text(out, text)
    return out


__all__ = [
    "build_report_html",
    "extra_channel_columns",
    "flatten_metrics",
    "format_value",
    "matched_digits",
    "write_report",
]
