"""Tests of kmixvae.viz.report: the self-contained report.html of a run or a model.

The page is parsed: every image it references must exist (embedded PNG data
or a file beside it), every metric of the run's metrics files must appear,
and extra per-channel metrics show up as columns without code changes.
A headless chromium renders it to a PNG when chromium is installed.
"""

from __future__ import annotations

import base64
import csv
import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from kmixvae.config import from_dict, save_config
from kmixvae.models.factory import build_model
from kmixvae.viz.report import (
    build_report_html,
    extra_channel_columns,
    flatten_metrics,
    format_value,
    write_report,
)

K = 3
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TINY = {
    "name": "tiny",
    "data": {"source": "npz", "train_split": "train", "val_split": "test"},
    "model": {
        "num_channels": K,
        "decoder": {"filters": [8, 8]},
        "encoder": {"filters": [8], "dense_units": 16},
    },
}


class Page(HTMLParser):
    """Collects image sources, table cell texts and all text of a page."""

    def __init__(self):
        super().__init__()
        self.images: list[str] = []
        self.text: list[str] = []
        self.headers: list[str] = []
        self._in_th = False

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs).get("src", ""))
        self._in_th = tag == "th"

    def handle_endtag(self, tag):
        if tag == "th":
            self._in_th = False

    def handle_data(self, data):
        self.text.append(data)
        if self._in_th:
            self.headers.append(data.strip())


def parse(path: Path) -> Page:
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def assert_images_exist(page: Page, folder: Path):
    assert page.images
    for src in page.images:
        if src.startswith("data:image/png;base64,"):
            png = base64.b64decode(src.split(",", 1)[1])
            assert png[:8] == PNG_MAGIC and len(png) > 100
        else:
            assert (folder / src).is_file(), src


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
        "channels": [
            {"channel": c, "usage": 0.3, "sample_consistency": 0.71 + c / 100} for c in range(K)
        ],
        "generation": {"fid_like": 3.25, "consistency_per_channel": [0.5, 0.6, 0.7]},
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
    for column in ("sample_consistency", "generation.consistency_per_channel"):
        assert column in page.headers
    text = "".join(page.text)
    for c in range(K):
        assert format_value(0.71 + c / 100) in text
    for base in ("usage", "purity", "matched digit", "samples from its prior"):
        assert base in page.headers


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
    assert "resolved config" in "".join(page.text)


def test_masked_channels_have_no_samples(tmp_path):
    model = build_model(from_dict(TINY), (28, 28, 1))
    model.set_active_channels([0, 2])
    images, labels = synthetic(20)
    html = build_report_html(model, images, labels, title="t")
    assert html.count("samples of channel") == 2
    assert "masked" in html


def test_cli_report(run_dir, tmp_path):
    from tests.test_cli import run_cli, write_patterns

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
    assert "sample_consistency" in parse(out).headers
    _, _, err = run_cli("report", run_dir["run"] / "model.keras", "--data-dir", data, expect=2)
    assert err.startswith("error:") and "--out" in err


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(_chromium() is None, reason="chromium is not installed")
def test_report_renders_in_headless_chromium(report, tmp_path):
    shot = tmp_path / "report.png"
    subprocess.run(
        [
            _chromium(),
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            f"--screenshot={shot}",
            "--window-size=1400,3000",
            report.resolve().as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    png = shot.read_bytes()
    assert png[:8] == PNG_MAGIC
    from matplotlib.image import imread

    pixels = imread(shot)
    assert pixels.shape[0] >= 1000 and pixels.shape[1] >= 1000
    assert pixels[..., :3].std() > 0.05  # not a blank page
