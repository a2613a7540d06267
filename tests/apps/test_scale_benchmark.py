"""apps/scale_benchmark.py at a tiny size: both graph paths, recall, the JSON and the table."""

from __future__ import annotations

import json

from tests.helpers.apps import load_app


def test_scale_benchmark_tiny(tmp_path, capsys):
    app = load_app("scale_benchmark")
    argv = ["--sizes", "200", "500", "--source", "glyphs", "--threshold", "300"]
    argv += ["--exact-max", "300", "--queries", "100", "--k", "5", "--out", str(tmp_path)]
    assert app.main(argv) == 0
    results = json.loads((tmp_path / "scale_benchmark.json").read_text())
    assert [r["images"] for r in results] == [200, 500]
    assert [r["method"] for r in results] == ["exact", "hnsw"]
    assert results[0]["recall"] == 1.0 and results[0]["exact_how"] == "measured"
    assert results[1]["recall"] >= 0.9 and results[1]["recall_rows"] == 100
    assert results[1]["exact_how"] == "estimated from 100 rows"
    assert all(r["peak_rss_mb"] > 0 and r["graph_s"] >= 0 for r in results)  # tiny: may round to 0
    table = (tmp_path / "scale_benchmark.md").read_text()
    assert "| 500 | glyph mixture (K=10) | hnsw |" in table


def test_scale_benchmark_rejects_bad_sizes(tmp_path, capsys):
    app = load_app("scale_benchmark")
    assert app.main(["--sizes", "10", "--k", "20", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:")
