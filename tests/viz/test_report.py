"""Tests of kmixvae.viz.report: the self-contained report.html of a run or a model.

The page is parsed: every image it references must exist (embedded PNG data
or a file beside it), every metric of the run's metrics files must appear,
the sections come in the page's order, and extra per-channel metrics show up
as columns without code changes. Headless Chromium (when installed) renders
it: the channels come before the full metrics, and no header cell is
narrower than its longest word.
"""

from __future__ import annotations

import csv
import html as html_lib
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from kmixvae.config import from_dict, save_config
from kmixvae.models.factory import build_model
from kmixvae.viz.report import (
    build_report_html,
    column_label,
    extra_channel_columns,
    flatten_metrics,
    format_value,
    label_mix,
    write_report,
)
from tests.helpers.cli import run_cli
from tests.helpers.report_page import assert_images_exist, parse
from tests.helpers.runs import PNG_MAGIC, write_patterns

K = 3
TINY = {
    "name": "tiny",
    "data": {"source": "npz", "train_split": "train", "val_split": "test"},
    "model": {
        "num_channels": K,
        "decoder": {"filters": [8, 8]},
        "encoder": {"filters": [8], "dense_units": 16},
    },
}


def synthetic(n=60, seed=0):
    rng = np.random.default_rng(seed)
    images = ((rng.random((n, 28, 28, 1)) < 0.2) * 255).astype(np.uint8)
    return images, rng.integers(0, 10, size=n)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run-shaped folder: config, model, history, metrics, eval metrics with an extra column."""
    run = tmp_path_factory.mktemp("run")
    cfg = from_dict(TINY)
    save_config(cfg, run / "config.json")
    model = build_model(cfg, (28, 28, 1))
    model.save(run / "model.keras")
    rows = [
        {
            "epoch": e,
            "loss": 5.0 - e,
            "nelbo": 9.0 - e,
            "val_nelbo": 9.5 - e,
            "val_cluster_acc": 0.2 * e,
            "active_channels": K,
        }
        for e in (1, 2, 3)
    ]
    with open(run / "history.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    metrics = {
        "epochs": 3,
        "final": rows[-1],
        "best": {"monitor": "val_loss", "epoch": 2, "values": rows[1]},
        "fit_wall_seconds_this_session": 12.5,
    }
    (run / "metrics.json").write_text(json.dumps(metrics))
    evaluation = {
        "accuracy": 0.4321,
        "recon_mse": 0.0567,
        "judge_accuracy": 0.8771,
        "channels": [
            {"channel": c, "usage": 0.3, "sample_consistency": 0.71 + c / 100} for c in range(K)
        ],
        "generation": {
            "fid_like": 3.25,
            "judge_accuracy": 0.8771,
            "consistency_per_channel": [0.5, 0.6, 0.7],
            # evaluate repeats each channel's sample consistency here: one column, not two
            "channels": [{"channel": c, "sample_consistency": 0.71 + c / 100} for c in range(K)],
        },
    }
    (run / "eval_metrics.json").write_text(json.dumps(evaluation))
    return {"run": run, "model": model, "metrics": metrics, "evaluation": evaluation}


@pytest.fixture(scope="module")
def report(run_dir):
    images, labels = synthetic()
    path = write_report(
        run_dir["run"], model=run_dir["model"], images=images, labels=labels, split="test"
    )
    return path


def test_report_is_written_in_the_run(report, run_dir):
    assert report == run_dir["run"] / "report.html"
    assert report.stat().st_size > 10_000


def test_every_referenced_figure_exists(report):
    page = parse(report)
    assert_images_exist(page, report.parent)
    # curves, K sample strips, K latent clouds, channels x labels, reconstructions
    assert len(page.images) == 1 + K + K + 1 + 1
    assert "Channels and labels" in "".join(page.text)


def test_every_metric_of_the_metrics_files_appears(report, run_dir):
    text = "".join(parse(report).text)
    for source in (run_dir["metrics"], run_dir["evaluation"]):
        rows = flatten_metrics(source)
        assert rows
        for key, value in rows:
            assert key in text, key
            assert format_value(value) in text, (key, value)


def test_per_channel_extras_become_columns(report):
    page = parse(report)
    for key in ("sample_consistency", "generation.consistency_per_channel"):
        assert key in page.header_keys  # the metrics key, as the header's tooltip
        assert column_label(key) in page.headers
    assert column_label("generation.consistency_per_channel") == (
        "consistency per channel (generation)"
    )
    # The same values under generation.channels are the same figure: no second column.
    assert "generation.sample_consistency" not in page.header_keys
    text = "".join(page.text)
    for c in range(K):
        assert format_value(0.71 + c / 100) in text
    for base in ("usage", "purity", "matched label", "what it holds", "samples from its prior"):
        assert base in page.headers


def test_sections_come_in_the_page_order(report):
    ids = parse(report).ids
    order = ["about", "summary", "channels", "reconstructions", "curves", "key-metrics"]
    order += ["full-metrics", "config"]
    assert [i for i in ids if i in order] == order
    html = report.read_text(encoding="utf-8")
    assert "<details id='full-metrics'>" in html  # collapsed: no `open`


def test_key_metrics_list_each_figure_once(report):
    html = report.read_text(encoding="utf-8")
    key = html.split("id='key-metrics'", 1)[1].split("id='full-metrics'", 1)[0]
    # evaluate's accuracy wins over the page's own, and over fit's final.val_cluster_acc
    assert "<td class='k'>accuracy (1-to-1)</td><td>43.21%</td>" in key
    # the judge's accuracy is in eval_metrics.json twice (top level and generation): once here
    assert key.count("judge accuracy on these images") == 1 and "0.877" in key
    assert key.count("negative ELBO (nats)") == 1  # eval has none: fit's final.val_nelbo
    assert "<td class='k'>negative ELBO (nats)</td><td>6.500</td>" in key
    for kind in ("clustering", "likelihood", "generation", "time"):
        assert f">{kind}</th>" in key


def test_first_line_says_what_the_model_is_and_how_it_was_trained(report):
    html = report.read_text(encoding="utf-8")
    line = html.split("id='about'>", 1)[1].split("</p>", 1)[0]
    assert f"A mixture of {K} VAEs ({K} active)" in line
    assert "trained without labels on mnist train for 3 epochs" in line
    assert "validated on test" in line


def test_label_mix_lists_the_labels_a_channel_holds():
    assert label_mix(np.array([2, 57, 0, 41]), np.array([1, 4, 7, 9])) == "4: 57%, 9: 41%"
    assert label_mix(np.array([0, 0]), np.array([1, 2])) == "no images"


def test_extra_channel_columns_shapes():
    cols = extra_channel_columns(
        [
            {"channels": [{"channel": 1, "usage": 0.5, "new_score": 2.0}]},
            {"per_ch": {"0": 1.0, "2": 3.0}, "counts": [1, 2, 3], "scores": [0.1, None, 0.3]},
            {"not_k": [0.1, 0.2]},
        ],
        K,
    )
    assert cols["new_score"] == [None, 2.0, None]
    assert cols["per_ch"] == [1.0, None, 3.0]
    assert cols["scores"] == [0.1, None, 0.3]
    assert "counts" not in cols  # lists of ints are counts or ids, not per-channel scores
    assert "not_k" not in cols and "usage" not in cols


def test_report_of_a_model_file_needs_out(run_dir, tmp_path):
    from kmixvae.errors import ConfigError

    images, labels = synthetic(20)
    with pytest.raises(ConfigError, match="--out"):
        write_report(run_dir["run"] / "model.keras", images=images, labels=labels)
    out = write_report(
        run_dir["run"] / "model.keras", tmp_path / "m.html", images=images, labels=labels
    )
    page = parse(out)
    assert_images_exist(page, tmp_path)
    text = "".join(page.text)
    assert "model.describe()" in text and "a model file records no training" in text


def test_masked_channels_have_no_samples(tmp_path):
    model = build_model(from_dict(TINY), (28, 28, 1))
    model.set_active_channels([0, 2])
    images, labels = synthetic(20)
    html = build_report_html(model, images, labels, title="t")
    assert html.count("samples of channel") == 2
    assert "masked" in html


def test_cli_report(run_dir, tmp_path):
    data = write_patterns(tmp_path / "data", n_train=12, n_test=12)
    out = tmp_path / "r.html"
    _, stdout, _ = run_cli(
        "report",
        run_dir["run"] / "model.keras",
        "--data-dir",
        data,
        "--split",
        "test",
        "--metrics",
        run_dir["run"] / "eval_metrics.json",
        "--out",
        out,
    )
    assert str(out) in stdout
    assert "sample_consistency" in parse(out).header_keys
    _, _, err = run_cli("report", run_dir["run"] / "model.keras", "--data-dir", data, expect=2)
    assert err.startswith("error:") and "--out" in err


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


# Run in the rendered page: each header cell's width against its longest word (each word
# measured in the cell's own font, unbreakable), and where the sections start.
MEASURE = """<script>
window.addEventListener("load", () => {
  const narrow = [];
  const ths = document.querySelectorAll("th");
  for (const th of ths) {
    const style = getComputedStyle(th);
    const inner = th.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
    for (const word of th.textContent.split(/\\s+/).filter(Boolean)) {
      const probe = document.createElement("span");
      probe.style.cssText = "position:absolute;visibility:hidden;white-space:nowrap";
      probe.textContent = word;
      th.appendChild(probe);
      const width = probe.getBoundingClientRect().width;
      th.removeChild(probe);
      if (width > inner + 0.5) narrow.push([th.textContent, word, width, inner]);
    }
  }
  const top = (id) => document.getElementById(id).getBoundingClientRect().top + window.scrollY;
  const out = document.createElement("pre");
  out.id = "measured";
  out.textContent = JSON.stringify({
    headers: ths.length, narrow,
    channels: top("channels"), full_metrics: top("full-metrics"),
  });
  document.body.appendChild(out);
});
</script>"""


def _render(page: Path, *args: str) -> str:
    result = subprocess.run(
        [_chromium(), "--headless=new", "--no-sandbox", "--disable-gpu", *args, page.as_uri()],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return result.stdout


@pytest.mark.skipif(_chromium() is None, reason="chromium is not installed")
def test_report_renders_in_headless_chromium(report, tmp_path):
    shot = tmp_path / "report.png"
    _render(report.resolve(), f"--screenshot={shot}", "--window-size=1280,3000")
    png = shot.read_bytes()
    assert png[:8] == PNG_MAGIC
    from matplotlib.image import imread

    pixels = imread(shot)
    assert pixels.shape[0] >= 1000 and pixels.shape[1] >= 1000
    assert pixels[..., :3].std() > 0.05  # not a blank page


@pytest.mark.skipif(_chromium() is None, reason="chromium is not installed")
@pytest.mark.parametrize("width", [1280, 900])
def test_rendered_headers_hold_their_words_and_channels_come_first(report, tmp_path, width):
    page = tmp_path / "measured.html"
    page.write_text(report.read_text(encoding="utf-8").replace("</body>", MEASURE + "</body>"))
    dom = _render(page, "--dump-dom", "--virtual-time-budget=10000", f"--window-size={width},1000")
    measured = json.loads(
        html_lib.unescape(dom.split('<pre id="measured">', 1)[1].split("</pre>")[0])
    )
    assert measured["headers"] > 20
    assert measured["narrow"] == [], "header cells narrower than a word they hold"
    assert measured["channels"] < measured["full_metrics"]
