"""apps/scale_figure.py: results merged by size (later file wins), exponents, a PNG written."""

import json

from tests.helpers.apps import load_app

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _row(n, graph, mutual=1.0, rss=100.0, rows="float32"):
    return {
        "images": n,
        "method": "hnsw",
        "graph_s": graph,
        "mutual_s": mutual,
        "peak_rss_mb": rss,
        "hnsw": {"rows": rows},
    }


def test_later_results_win_and_the_slope_is_the_growth_exponent(tmp_path):
    app = load_app("scale_figure")
    old = tmp_path / "old.json"
    new = tmp_path / "new.json"
    old.write_text(json.dumps([_row(1000, 1.0), _row(100_000, 999.0)]))
    new.write_text(json.dumps([_row(100_000, 100.0, rows="8-bit")]))
    rows = app.merged([old, new])
    assert [r["images"] for r in rows] == [1000, 100_000] and rows[1]["graph_s"] == 100.0
    assert abs(app.exponent(rows, "graph_s") - 1.0) < 1e-9  # 100x the images, 100x the time
    out = tmp_path / "fig" / "scale.png"
    assert app.main([str(old), str(new), "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == PNG_MAGIC


def test_one_size_is_an_error(tmp_path, capsys):
    one = tmp_path / "one.json"
    one.write_text(json.dumps([_row(1000, 1.0)]))
    assert load_app("scale_figure").main([str(one), "--out", str(tmp_path / "x.png")]) == 2
    assert capsys.readouterr().err.startswith("error: ")
