"""apps/scale_fit.py: the whole run at several sizes, end to end on a tiny config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers.apps import load_app
from tests.helpers.passes import once_in_tensorflow_pass

SMOKE = Path(__file__).resolve().parents[2] / "configs" / "smoke.json"


def _row(n, run_s, graph_s, epoch_s, rss):
    return {"images": n, "run_s": run_s, "graph_s": graph_s, "epoch_s": epoch_s, "peak_rss_mb": rss}


def test_growth_exponents_and_the_graph_line():
    app = load_app("scale_fit")
    rows = [_row(1000, 10.0, 1.0, 2.0, 100.0), _row(4000, 40.0, 16.0, 2.0, None)]
    assert app.exponents(rows, "run_s") == [1.0]
    assert app.exponents(rows, "graph_s") == [2.0]
    assert app.exponents(rows, "epoch_s") == [0.0]
    assert app.exponents(rows, "peak_rss_mb") == [None]
    log = ["data: ...", "neighbour pairs: k=20 mutual in pixel space (7.1 s)"]
    assert app.graph_seconds(log) == 7.1
    assert app.graph_seconds(["neighbour pairs: k=20 refreshed at epoch 11 (x, 1.0 s)"]) is None


@pytest.mark.slow
@once_in_tensorflow_pass("the app only times a fit_run, covered on both backends by test_fit")
def test_scale_fit_tiny_end_to_end(tmp_path, capsys):
    app = load_app("scale_fit")
    argv = ["--sizes", "300", "150", "--clusters", "3", "--test", "96", "--out", str(tmp_path)]
    argv += ["--config", str(SMOKE), "--data-root", str(tmp_path / "data")]
    for o in (
        "training.epochs=2",
        "curriculum.enabled=false",
        "data.neighbors=5",
        "data.neighbor_mutual=true",
        "loss.neighbor.weight=1.0",
        "data.batch_size=48",
    ):
        argv += ["--set", o]
    assert app.main(argv) == 0
    result = json.loads((tmp_path / "scale_fit.json").read_text())
    rows = result["rows"]
    assert [r["images"] for r in rows] == [150, 300]  # in order of size
    assert all(r["epochs"] == 2 and r["peak_rss_mb"] > 100 and r["run_s"] > 0 for r in rows)
    assert all(r["graph_s"] is not None and 0.0 <= r["accuracy"] <= 1.0 for r in rows)
    assert [r["images_per_epoch"] for r in rows] == [192, 336]  # whole batches of 48
    assert all(r["data_s"] is not None for r in rows)
    assert (tmp_path / "data" / "glyphs3_n300" / "mnist.npz").is_file()
    table = (tmp_path / "scale_fit.md").read_text()
    assert "| 300 |" in table and "growth exponent of `run_s`" in table
    # The data folders are kept: a second run reuses them.
    assert app.main(argv[:1] + ["150"] + argv[3:]) == 0
    again = json.loads((tmp_path / "scale_fit.json").read_text())["rows"]
    assert again[0]["data_s"] is None and "| reused |" in (tmp_path / "scale_fit.md").read_text()


@once_in_tensorflow_pass("a config error is reported before any fit; no backend part")
def test_scale_fit_reports_a_bad_setting_in_one_line(tmp_path, capsys):
    app = load_app("scale_fit")
    argv = ["--sizes", "40", "--clusters", "2", "--test", "8", "--out", str(tmp_path)]
    argv += ["--config", str(SMOKE), "--data-root", str(tmp_path / "data")]
    assert app.main(argv + ["--set", "training.epochs=-1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "training.epochs" in err[0]
