"""apps/records.py: a measuring app's JSON record, or one error line and exit 2."""

from __future__ import annotations

import json

from tests.helpers.apps import load_app


def test_the_record_is_written_whole(tmp_path):
    records = load_app("records")
    out = tmp_path / "r.json"
    assert records.json_folder_error(str(out)) == 0 and records.json_folder_error(None) == 0
    assert records.write_record(str(out), {"rows": [1, 2]}) == 0
    assert json.loads(out.read_text()) == {"rows": [1, 2]}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temporary file left


def test_a_missing_folder_or_an_unwritable_path_is_one_error_line(tmp_path, capsys):
    records = load_app("records")
    assert records.json_folder_error(str(tmp_path / "no" / "r.json")) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [f"error: --json: no folder {tmp_path / 'no'}"]
    taken = tmp_path / "a_folder"
    taken.mkdir()
    assert records.write_record(str(taken), {"x": 1}) == 2  # a folder where the file would go
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    assert taken.is_dir() and list(taken.iterdir()) == []
