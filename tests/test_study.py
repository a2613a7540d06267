"""apps/study.py end to end on a tiny synthetic grid: runs, report, figures, resumption."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.helpers.apps import load_app
from tests.test_cli import write_patterns

REPO_ROOT = Path(__file__).resolve().parents[1]
SMOKE = REPO_ROOT / "configs" / "smoke.json"


@pytest.fixture()
def study(tmp_path, monkeypatch):
    module = load_app("study")
    monkeypatch.setattr(module, "ROOT", tmp_path)
    return module


def test_prepare_makes_missing_data_once_and_reports_failure(study, tmp_path, capsys):
    make = ["python", "-c", "import pathlib; pathlib.Path('made').mkdir()"]
    grid = {"data_dir": "made", "prepare": make}
    assert study.prepare_data(grid)
    assert (tmp_path / "made").is_dir()
    assert study.prepare_data(grid)  # already there: not run again (mkdir would fail)
    assert study.prepare_data({"data_dir": "elsewhere"})  # no prepare: nothing to do
    failing = {"data_dir": "other", "prepare": ["python", "-c", "raise SystemExit(3)"]}
    assert not study.prepare_data(failing)
    assert "error: grid 'prepare' command failed" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow",
    reason="the study app only orchestrates CLI runs (covered on both backends by test_cli); "
    "once, in the TensorFlow pass",
)
def test_study_runs_reports_and_resumes(study, tmp_path, capsys):
    grid = {
        "name": "tiny",
        "data_dir": str(write_patterns(tmp_path / "data")),
        "train_split": "train",
        "eval_split": "test",
        "seeds": [0],
        "iwae_samples": 2,
        "variants": {
            "smoke": {
                "config": str(SMOKE),
                "set": ["training.epochs=1", "data.batch_size=48", "curriculum.enabled=false"],
            }
        },
    }
    path = tmp_path / "grid.json"
    path.write_text(json.dumps(grid))
    assert study.main(["--grid", str(path)]) == 0
    run = tmp_path / "study_runs" / "tiny" / "smoke__seed0"
    assert (run / "eval_metrics.json").is_file() and (run / "model.keras").is_file()
    report = (tmp_path / "docs" / "study_tiny.md").read_text()
    assert "| smoke | 1 |" in report and f"--grid {path}" in report
    assert "`study_runs/tiny/smoke__seed0`" in report
    # Generation metrics: columns in both tables, judged on the training split.
    assert "| sample consistency | recon consistency | judge acc |" in report
    ev = json.loads((run / "eval_metrics.json").read_text())
    assert ev["generation"]["judge"]["source"] == "train"
    shares = " ".join(
        f"{ch['channel']}:{ch['sample_consistency']:.2f}" for ch in ev["generation"]["channels"]
    )
    assert shares.split()[0] in report
    for name in ("accuracy_vs_time.png", "smoke/core/model_reconstructions.png"):
        assert (tmp_path / "docs" / "study_tiny" / name).is_file()
        assert f"(study_tiny/{name})" in report
    stamp = (run / "model.keras").stat().st_mtime_ns
    capsys.readouterr()
    assert study.main(["--grid", str(path)]) == 0
    assert "done already: smoke__seed0" in capsys.readouterr().out
    assert (run / "model.keras").stat().st_mtime_ns == stamp


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "does not exist"),
        ("{not json", "is not valid JSON"),
        ('{"name": "x"}', "lacks data_dir"),
    ],
)
def test_bad_grid_files_are_one_line_errors(study, tmp_path, capsys, content, message):
    path = tmp_path / "grid.json"
    if content is not None:
        path.write_text(content)
    assert study.main(["--grid", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: grid file") and message in err and len(err.splitlines()) == 1


@pytest.mark.parametrize(
    "args, message",
    [
        (["--only", "nope"], "error: --only 'nope' is not a variant"),
        (["--seeds", "7"], "error: --seeds 7 is not a seed"),
    ],
)
def test_unknown_variant_or_seed_is_a_one_line_error(study, tmp_path, capsys, args, message):
    grid = {
        "name": "x",
        "data_dir": "d",
        "train_split": "train",
        "eval_split": "test",
        "seeds": [0],
        "variants": {"a": {"config": "c.json"}},
    }
    path = tmp_path / "grid.json"
    path.write_text(json.dumps(grid))
    assert study.main(["--grid", str(path), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and len(err.splitlines()) == 1
    assert not (tmp_path / "study_runs").exists()


def test_a_run_locked_by_a_live_process_is_skipped(study, tmp_path, capsys):
    grid = {"name": "g", "variants": {"a": {"config": "c.json"}}}
    lock = tmp_path / "study_runs" / "g" / "a__seed0.lock"
    lock.parent.mkdir(parents=True)
    lock.write_text("1")  # pid 1 is alive
    assert study.run_one(grid, "a", 0) is None
    assert "running in another process: a__seed0" in capsys.readouterr().out
    assert lock.read_text() == "1"
    # A stale lock (no such process) is taken over, and released when the run ends.
    lock.write_text("999999999")
    called = []
    study._fit_and_evaluate = lambda *args: called.append(lock.read_text()) or "done"
    assert study.run_one(grid, "a", 0) == "done"
    assert called == [str(os.getpid())] and not lock.exists()
