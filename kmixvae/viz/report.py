"""`write_report`: one self-contained HTML page that shows a run (or a model) at a glance.

The page holds, in order: one line on what the model is and how it was
trained, the summary cards, the channels (one row each: status, usage,
purity, the label the one-to-one matching gives it, what it holds (its
label mix), confidence, any extra per-channel metric found in the metrics
files, samples from its prior and its latent cloud; then the channel x
label table), reconstructions, the training curves, the metrics that
matter grouped by kind (`viz/key_metrics.py`), every metric of the run's
`metrics.json` (and of `eval_metrics.json` or a given metrics file) in a
collapsed section, and the config. Every figure is drawn by the same
functions as `kmixvae visualize`'s and TensorBoard's (`viz/figures.py`,
`viz/pictures.py`, `viz/grids.py`) and embedded as a base64 `data:` PNG,
so the one file can be mailed or opened anywhere.

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
import json
import re
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from kmixvae.evaluation.metrics import clustering_accuracy
from kmixvae.runs.model_files import load_model_file
from kmixvae.utils.files import atomic_write_text
from kmixvae.utils.images import as_float_images
from kmixvae.viz.figures import (
    channel_cloud_figure,
    channel_confusion_figure,
    channel_label_counts,
    collect_latents,
    figure_png,
    load_history,
    training_curves_figure,
)
from kmixvae.viz.grids import grid_png, image_grid
from kmixvae.viz.key_metrics import KINDS, format_value, key_metric_rows, lookup
from kmixvae.viz.pictures import channel_samples, reconstruction_grid

# Columns the channel table always shows; everything else per channel is "extra".
BASE_CHANNEL_KEYS = (
    "channel",
    "active",
    "count",
    "usage",
    "soft_usage",
    "purity",
    "majority_label",
    "matched_label",
    "confidence",
    "specialised",
)
CURVES = ("loss", "nelbo", "cluster_acc", "active_channels")
MAX_REPORT_IMAGES = 2000
SAMPLES_PER_CHANNEL = 8
# A label shows in a channel's "what it holds" cell from this share of its images.
LABEL_MIX_MIN_SHARE = 0.05


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


def extra_channel_columns(
    metric_sets: list[Mapping], num_channels: int, known: Mapping[str, list] | None = None
) -> dict[str, list]:
    """Per-channel metrics beyond the base columns, from any metrics dict.

    Finds (1) keys of `channels` entries other than `BASE_CHANNEL_KEYS`,
    (2) top-level lists of exactly K numbers, (3) top-level dicts keyed by
    channel index (`"0"`.. or `0`..), nested one level too (e.g.
    `{"generation": {"sample_consistency": [...]}}`). A column that repeats
    the values of an earlier one or of a `known` column is left out: it is
    the same figure under another name (e.g. `evaluate` writes each
    channel's sample consistency in `channels` and in `generation.channels`).

    Args:
        metric_sets: metrics dicts.
        num_channels: int. K.
        known: columns the table shows already (name -> K values).

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
    distinct: dict[str, list] = {}
    seen = [list(v) for v in (known or {}).values()]
    for name, values in columns.items():
        if values not in seen:
            distinct[name] = values
            seen.append(values)
    return distinct


def column_label(key: str) -> str:
    """A metrics key as a table header: words, not identifiers (`a.b_c` -> `b c (a)`)."""
    *section, name = key.split(".")
    label = name.replace("_", " ")
    return f"{label} ({' '.join(section).replace('_', ' ')})" if section else label


def label_mix(counts: np.ndarray, classes: np.ndarray) -> str:
    """The labels of one channel's images, largest share first (`4: 57%, 9: 38%`).

    Labels under `LABEL_MIX_MIN_SHARE` of the channel are left out.
    """
    total = int(counts.sum())
    if not total:
        return "no images"
    order = np.argsort(-counts, kind="stable")
    parts = [
        f"{classes[i].item()}: {counts[i] / total:.0%}"
        for i in order
        if counts[i] / total >= LABEL_MIX_MIN_SHARE
    ]
    return ", ".join(parts)


def _data_name(data: Mapping) -> str:
    """The TFDS name, or the folder or file local data came from."""
    if data.get("source", "tfds") != "tfds" and data.get("dir"):
        return str(data["dir"])
    return str(data.get("name", "the data"))


def model_line(model, config: Mapping | None, fit_metrics: Mapping | None) -> str:
    """One sentence: what the model is, and how it was trained (when the run says so).

    Args:
        model: a `MixtureVAE`.
        config: the run's resolved config (`config.json`), or None for a model file.
        fit_metrics: the run's `metrics.json`, or None.

    Returns:
        Plain text.
    """
    d = model.describe()
    head = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", d["head"]).lower().replace("gaussian", "Gaussian")
    what = (
        f"A mixture of {d['num_channels']} VAEs ({len(d['active_channels'])} active) with "
        f"{d['latent_dim']}-d latents, a {d['decoder_conditioning']}-conditioned decoder and "
        f"a {head} head"
    )
    if "parameters" in d:
        what += f", {d['parameters']:,} weights"
    if not config:
        return what + "; a model file records no training (a run folder's report shows it)."
    data, training = config.get("data", {}), config.get("training", {})
    epochs = lookup(fit_metrics or {}, "epochs")
    seconds = lookup(fit_metrics or {}, "final.train_seconds")
    how = (
        f"trained without labels on {_data_name(data)} "
        f"{data.get('train_split', '')!s} for {epochs or training.get('epochs', '?')} epochs"
    )
    if isinstance(seconds, (int, float)):
        how += f" ({seconds:.0f} s)"
    how += (
        f" with {training.get('optimizer', '?')} at learning rate {training.get('learning_rate')}"
    )
    if data.get("val_split"):
        how += f", validated on {data['val_split']}"
    return f"{what}; {how}."


# ---------------------------------------------------------------------------
# Page
# ---------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#222;
max-width:1320px}
h1{font-size:22px;margin-bottom:4px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}
h3{font-size:14px;margin:16px 0 6px}.lead{font-size:15px;margin:4px 0}
.sub{color:#666;font-size:13px}table{border-collapse:collapse;font-size:13px}
td,th{border:1px solid #ddd;padding:3px 7px;text-align:right;vertical-align:middle}
th{background:#f3f3f3;word-break:normal;overflow-wrap:normal;hyphens:none;vertical-align:bottom}
th.short{white-space:nowrap}td.k{text-align:left}.t{text-align:left;white-space:nowrap}
.scroll{overflow-x:auto;max-width:100%}
.cards{display:flex;gap:12px;flex-wrap:wrap}.card{border:1px solid #ddd;border-radius:6px;
padding:8px 14px;min-width:120px}.card b{display:block;font-size:20px}.card span{color:#666;
font-size:12px}.spec{color:#1a7f37}.garb{color:#b35900}.lock{color:#888}
pre{background:#f6f6f6;padding:10px;font-size:12px;overflow:auto;max-height:480px}
details{margin:8px 0}summary{cursor:pointer;font-weight:600}
img{image-rendering:pixelated;max-width:100%}
.cols{display:flex;gap:18px;flex-wrap:wrap;align-items:flex-start}
.cols th:first-child{text-align:left}
.mono{font-family:monospace}
"""
# Headers of at most this many characters never wrap; longer ones wrap between words.
SHORT_HEADER = 16


def _esc(value) -> str:
    return html.escape(str(value), quote=True)


def _th(label: str, key: str | None = None, colspan: int = 1) -> str:
    cls = " class='short'" if len(label) <= SHORT_HEADER else ""
    title = f" title='{_esc(key)}'" if key and key != label else ""
    span = f" colspan='{colspan}'" if colspan > 1 else ""
    return f"<th{cls}{title}{span}>{_esc(label)}</th>"


def _table(rows: list[tuple[str, object]], head=("metric", "value"), per_column: int = 32) -> str:
    """Key/value rows as side-by-side tables of at most `per_column` rows."""
    tables = []
    for lo in range(0, max(len(rows), 1), per_column):
        body = "".join(
            f"<tr><td class='k mono'>{_esc(k)}</td><td>{_esc(format_value(v))}</td></tr>"
            for k, v in rows[lo : lo + per_column]
        )
        tables.append(f"<table><tr>{_th(head[0])}{_th(head[1])}</tr>{body}</table>")
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


# Key figures the summary shows as cards (beside the page's own clustering cards).
CARD_FIGURES = (
    "negative ELBO (nats)",
    "IWAE log p(x) (nats)",
    "reconstruction MSE",
    "sample consistency",
)


def _key_rows(metric_files: Mapping[str, Mapping], page: Mapping) -> list:
    """`key_metric_rows` of the page: evaluate's files, then fit's `metrics.json`, then `page`."""
    order = sorted(metric_files, key=lambda name: name == "metrics.json")
    sources = [(name, metric_files[name]) for name in order] + [("this page", page)]
    return key_metric_rows(sources)


def _key_metric_tables(rows: list) -> str:
    """The metrics that matter, one small table per kind."""
    tables = []
    for kind in KINDS:
        body = "".join(
            f"<tr><td class='k'>{_esc(r.label)}</td><td>{_esc(r.text)}</td>"
            f"<td class='t sub' title='{_esc(r.path)}'>{_esc(r.source)}</td></tr>"
            for r in rows
            if r.kind == kind
        )
        if body:
            tables.append(f"<table><tr>{_th(kind)}{_th('value')}{_th('from')}</tr>{body}</table>")
    return "<div class='cols'>" + "".join(tables) + "</div>"


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
        config: the run's resolved config (shown as JSON, and in the first
            line); None for a model file (`model.describe()` is shown).
        split: name of the split the images come from.
        seed: seed of the samples.

    Returns:
        The HTML text.
    """
    metric_files = dict(metric_files or {})
    images = as_float_images(np.asarray(images)[:MAX_REPORT_IMAGES])
    labels = np.asarray(labels).reshape(-1)[: len(images)]
    k = int(model.num_channels)
    summary = collect_latents(model, images, labels, max_points=len(images))
    report = summary.report
    channel = summary.channel
    accuracy = clustering_accuracy(labels, channel)
    chans, classes, counts, matched = channel_label_counts(labels, channel, model.active_channels)
    mix = {c: label_mix(counts[row], classes) for row, c in enumerate(chans)}
    matched_column = [matched.get(c) for c in range(k)]
    extra = extra_channel_columns(
        list(metric_files.values()), k, known={"matched label": matched_column}
    )
    samples = channel_samples(model, SAMPLES_PER_CHANNEL, seed=seed)
    where = f"{len(images)} images" + (f" of {split}" if split else "")
    fit_metrics = metric_files.get("metrics.json") or {}

    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>kmixvae report: {_esc(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>kmixvae report: {_esc(title)}</h1>",
        f"<p class='lead' id='about'>{_esc(model_line(model, config, fit_metrics))}</p>",
        f"<div class='sub'>written {_esc(time.strftime('%Y-%m-%d %H:%M:%S'))}; "
        f"channel figures and the page's own scores from {_esc(where)}</div>",
    ]

    # Summary
    page = {"accuracy": accuracy, "specialised_count": report["specialised_count"]}
    key_rows = _key_rows(metric_files, page)
    cards = [
        _card("clustering accuracy (these images)", f"{100 * accuracy:.1f}%"),
        _card(
            "specialised channels",
            f"{report['specialised_count']} of {len(model.active_channels)} active",
        ),
    ]
    cards += [_card(r.label, r.text) for r in key_rows if r.label in CARD_FIGURES]
    parts += ["<h2 id='summary'>Summary</h2><div class='cards'>", *cards, "</div>"]

    # Channels
    extra_names = list(extra)
    head = [
        _th("channel"),
        _th("status"),
        _th("usage"),
        _th("mean q(c|x)"),
        _th("purity"),
        _th("matched label"),
        _th("what it holds"),
        _th("confidence"),
        *(_th(column_label(name), name) for name in extra_names),
        _th("samples from its prior"),
        _th("latent cloud"),
    ]
    parts += [
        "<h2 id='channels'>Channels</h2>",
        f"<p class='sub'>status, usage, purity and the labels are measured on {_esc(where)}; "
        f"specialised = usage &ge; {report['usage_min']:g} and purity &ge; "
        f"{report['purity_min']:g}; matched label = the one-to-one matching that scores the "
        f"accuracy; what it holds = the labels of its images (from "
        f"{LABEL_MIX_MIN_SHARE:.0%} of them); latent cloud = its images' posterior means, "
        "coloured by label. Extra columns come from the metrics files.</p>",
        "<div class='scroll'><table><tr>" + "".join(head) + "</tr>",
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
            _esc(f"{float(summary.soft_usage[c]):.3f}"),
            _esc(format_value(ch["purity"])),
            _esc(format_value(matched_column[c])),
            f"<span class='t'>{_esc(mix.get(c, '-'))}</span>",
            _esc(format_value(ch["confidence"])),
        ]
        cells += [_esc(format_value(extra[name][c])) for name in extra_names]
        if c in samples:
            strip = image_grid(samples[c], rows=2, pad=1)
            cells.append(_img(grid_png(strip, scale=2), f"samples of channel {c}"))
        else:
            cells.append("masked")
        cells.append(
            _img(figure_png(channel_cloud_figure(summary, c), dpi=72), f"latent cloud of {c}")
        )
        parts.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
    parts.append("</table></div>")
    parts += [
        "<h3>Channels and labels</h3>",
        f"<p class='sub'>images of {_esc(where)} per active channel (rows, by matched label) and "
        "label (columns): two dark cells in a row are two labels sharing a channel, two dark "
        "cells in a column a label split over two channels</p>",
        _img(
            figure_png(channel_confusion_figure(labels, channel, model.active_channels)),
            "channels and labels",
        ),
    ]

    # Reconstructions
    parts += [
        "<h2 id='reconstructions'>Reconstructions</h2>",
        f"<p class='sub'>top: 16 images of {_esc(split or 'the data')}; middle: their "
        "reconstruction by their chosen channel (posterior mean); bottom, for heads with one: "
        "the decoder's sigma (brightest = most uncertain)</p>",
        _img(grid_png(reconstruction_grid(model, images, n=16), scale=2), "reconstructions"),
    ]

    # Curves
    curves = training_curves_figure(history, CURVES, max_cols=4) if history else None
    if curves is not None:
        parts += ["<h2 id='curves'>Training curves</h2>", _img(figure_png(curves), "curves")]

    # Metrics that matter, then all of them
    parts += [
        "<h2 id='key-metrics'>Metrics</h2>",
        "<p class='sub'>each figure once, from the first file that holds it: evaluate's "
        "metrics files, then fit's metrics.json, then this page's images</p>",
        _key_metric_tables(key_rows),
        "<details id='full-metrics'><summary>all metrics: "
        + (
            ", ".join(
                f"{_esc(n)} ({len(flatten_metrics(m))} values)" for n, m in metric_files.items()
            )
            or "no metrics file (metrics.json, eval_metrics.json)"
        )
        + "</summary>",
    ]
    for name, m in metric_files.items():
        rows = flatten_metrics(m)
        parts += [f"<h3>{_esc(name)} ({len(rows)} values)</h3>", _table(rows)]
    parts.append("</details>")

    # Config
    cfg_text = json.dumps(config if config is not None else model.describe(), indent=2, default=str)
    what = "resolved config" if config is not None else "the model (model.describe())"
    parts += [
        "<h2 id='config'>Config</h2>",
        f"<details><summary>{what}</summary>",
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
    "column_label",
    "extra_channel_columns",
    "flatten_metrics",
    "format_value",
    "label_mix",
    "model_line",
    "write_report",
]
