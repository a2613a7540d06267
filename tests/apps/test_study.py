"""apps/study.py end to end on a tiny synthetic grid: runs, report, figures, resumption."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.helpers.apps import load_app
from tests.helpers.runs import SMOKE, write_patterns


@pytest.fixture()
def study(tmp_path, monkeypatch):
    module = load_app("study")
    monkeypatch.setattr(module, "ROOT", tmp_path)
    return module


def read_hparams(log_dir: Path) -> dict:
    """What TensorBoard's own reader (the multiplexer its server uses) finds in an HParams folder.

    Returns:
        {"experiment": {"hparams": {name: domain values}, "metrics": [tags]},
         "sessions": {run: {"hparams": {...}, "status": int, "metrics": {tag: value}}}}
    """
    from tensorboard.backend.event_processing import plugin_event_multiplexer
    from tensorboard.plugins.hparams import metadata
    from tensorboard.util import tensor_util

    mux = plugin_event_multiplexer.EventMultiplexer()
    mux.AddRunsFromDirectory(str(log_dir))
    mux.Reload()
    content = mux.PluginRunToTagToContent(metadata.PLUGIN_NAME)
    out = {"experiment": None, "sessions": {}}
    for run, tags in content.items():
        if metadata.EXPERIMENT_TAG in tags:
            exp = metadata.parse_experiment_plugin_data(tags[metadata.EXPERIMENT_TAG])
            out["experiment"] = {
                "hparams": {
                    h.name: [
                        v.string_value or v.number_value or v.bool_value
                        for v in h.domain_discrete.values
                    ]  # fmt: skip
                    for h in exp.hparam_infos
                },
                "metrics": [m.name.tag for m in exp.metric_infos],
            }
        if metadata.SESSION_START_INFO_TAG in tags:
            start = metadata.parse_session_start_info_plugin_data(
                tags[metadata.SESSION_START_INFO_TAG]
            )
            end = metadata.parse_session_end_info_plugin_data(tags[metadata.SESSION_END_INFO_TAG])
            hparams = {}
            for name, value in start.hparams.items():
                kind = value.WhichOneof("kind")
                hparams[name] = getattr(value, kind)
            scalars = {
                tag: float(tensor_util.make_ndarray(mux.Tensors(run, tag)[-1].tensor_proto))
                for tag in mux.GetAccumulator(run).Tags()["tensors"]
                if not tag.startswith("_hparams_")
            }
            out["sessions"][run] = {
                "hparams": hparams,
                "group": start.group_name,
                "status": end.status,
                "metrics": scalars,
            }
    return out


def _fake_run(study, name: str, config: dict, ev: dict) -> None:
    run = study.ROOT / "study_runs" / "g" / name
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps(config))
    (run / "eval_metrics.json").write_text(json.dumps(ev))


def test_hparams_trials_are_what_tensorboard_reads(study, tmp_path):
    """Each finished run is an HParams session: its variant, seed, differing config values."""
    from tensorboard.plugins.hparams import api_pb2

    base = {"name": "x", "seed": 0, "output": {"saved_model": "a"}, "training": {"epochs": 3}}
    grid = {"name": "g", "seeds": [0, 1], "variants": {"film": {}, "concat": {}}}
    configs = {
        ("film", 0): {"decoder": {"conditioning": "film"}, "beta": 1.0},
        ("film", 1): {"decoder": {"conditioning": "film"}, "beta": 1.0},
        ("concat", 0): {"decoder": {"conditioning": "concat"}, "beta": 0.5},
    }
    results = {"film": [], "concat": []}
    for (variant, seed), model in configs.items():
        name = f"{variant}__seed{seed}"
        config = {**base, "name": name, "seed": seed, "model": model}
        ev = {"accuracy": 0.9 - 0.1 * seed, "nelbo": float("nan"), "recon_mse": 0.04}
        _fake_run(study, name, config, ev)
        results[variant].append(
            {
                **ev,
                "seed": seed,
                "run_dir": f"study_runs/g/{name}",
                "train_seconds": 12.0,
                "config": config,
                "started": 100.0,
                "finished": 200.0,
            }
        )
    log_dir = study.write_hparams(grid, results)
    assert log_dir == tmp_path / "study_runs" / "g" / "hparams"
    read = read_hparams(log_dir)
    exp = read["experiment"]
    assert exp["hparams"] == {
        "model.beta": [0.5, 1.0],
        "model.decoder.conditioning": ["concat", "film"],
        "seed": [0.0, 1.0],
        "variant": ["concat", "film"],
    }  # training.epochs (the same everywhere), name, seed's config copy, output.*: not hparams
    assert exp["metrics"] == [f"eval/{key}" for key, *_ in study.TABLE]
    sessions = read["sessions"]
    assert set(sessions) == {"film__seed0", "film__seed1", "concat__seed0"}
    concat = sessions["concat__seed0"]
    assert concat["hparams"] == {
        "variant": "concat",
        "seed": 0.0,
        "model.decoder.conditioning": "concat",
        "model.beta": 0.5,
    }
    assert concat["status"] == api_pb2.STATUS_SUCCESS
    # Final metrics as scalars of the session; a NaN or missing figure is left out.
    assert concat["metrics"] == pytest.approx(
        {"eval/accuracy": 0.9, "eval/recon_mse": 0.04, "eval/train_seconds": 12.0}
    )
    assert sessions["film__seed1"]["metrics"]["eval/accuracy"] == pytest.approx(0.8)
    # Rewriting (e.g. --report-only) replaces the folder: still one session per run.
    study.write_hparams(grid, {"film": results["film"][:1], "concat": []})
    assert set(read_hparams(log_dir)["sessions"]) == {"film__seed0"}


def test_a_finished_run_outlives_its_folder_as_a_committed_record(study, tmp_path):
    """A new checkout lacks study_runs/: the report keeps the runs it had, from their records."""
    grid = {"name": "g", "seeds": [0, 1, 2], "variants": {"a": {"config": "c.json"}}}

    def finished(seed, acc):
        _fake_run(study, f"a__seed{seed}", {"seed": seed}, {"accuracy": acc, "nelbo": 1.0})
        run = tmp_path / "study_runs" / "g" / f"a__seed{seed}"
        (run / "history.csv").write_text("epoch,train_seconds,val_cluster_acc\n1,5.0,0.8\n")

    finished(0, 0.9)
    finished(1, 0.7)
    first = study.collect(grid)["a"]
    assert [r["seed"] for r in first] == [0, 1] and not any(r["from_record"] for r in first)
    records = tmp_path / "docs" / "study_g" / "runs"
    assert sorted(p.name for p in records.iterdir()) == ["a__seed0.json", "a__seed1.json"]
    # The folders are gone (a fresh clone); seed 2 is run there; seed 1's folder is back too.
    import shutil

    shutil.rmtree(tmp_path / "study_runs")
    finished(1, 0.75)
    finished(2, 0.5)
    runs = study.collect(grid)["a"]
    assert [(r["seed"], r["accuracy"], r["from_record"]) for r in runs] == [
        (0, 0.9, True),
        (1, 0.75, False),  # a folder wins over its (older) record, and rewrites it
        (2, 0.5, False),
    ]
    assert runs[0]["history"] == first[0]["history"] and runs[0]["train_seconds"] == 5.0
    assert runs[0]["time_to_0.7"] == 5.0 and runs[0]["config"] == {"seed": 0}
    assert json.loads((records / "a__seed1.json").read_text())["evaluation"]["accuracy"] == 0.75
    grid.update(data_dir="d", train_split="train", eval_split="test")
    study._variant_figures = lambda *args: {}  # no model to draw: the records are the point
    report = study.write_report(grid, {"a": runs}, "cmd").read_text()
    assert "| `study_runs/g/a__seed0` *record* | 90.0 |" in report
    assert "| `study_runs/g/a__seed2` | 50.0 |" in report
    assert "| a | 3 | 71.7 +- 16.5 |" in report


def test_hparams_refuses_a_folder_it_did_not_write(tmp_path):
    from kmixvae.viz.tensorboard_hparams import Trial, write_hparams_trials

    (tmp_path / "mine.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="not an HParams folder kmixvae wrote"):
        write_hparams_trials(tmp_path, [Trial("a", {"x": 1}, {})], {"m": "m"})
    assert (tmp_path / "mine.txt").read_text() == "keep"


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
    # The grid in TensorBoard's HParams: the run is a session with its variant, seed, metrics.
    session = read_hparams(tmp_path / "study_runs" / "tiny" / "hparams")["sessions"]["smoke__seed0"]
    assert session["hparams"] == {"variant": "smoke", "seed": 0.0}
    assert session["metrics"]["eval/accuracy"] == pytest.approx(ev["accuracy"])
    assert session["metrics"]["eval/sample_consistency"] == pytest.approx(ev["sample_consistency"])
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
