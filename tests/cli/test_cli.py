"""End-to-end tests of the `kmixvae` command line on a tiny synthetic npz data set.

`fit` writes a complete run folder; the inference commands work on it; a run
killed with SIGKILL after its first epoch resumes to the end; every bad input
ends with exit code 2, one `error:` line and nothing written.

Runs on the backend in KERAS_BACKEND (tensorflow or jax).
"""

from __future__ import annotations

import csv
import json
import os
import signal
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from tests.helpers.cli import assert_one_error_line, run_cli
from tests.helpers.processes import kill_when_ready
from tests.helpers.runs import (
    BATCH,
    N_TEST,
    N_TRAIN,
    PNG_MAGIC,
    SMOKE,
    fit_smoke,
    read_history,
    tiny_sets,
    write_patterns,
)


def files_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return write_patterns(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_dir):
    """`kmixvae fit` for 2 epochs with every channel active from the start."""
    tmp = tmp_path_factory.mktemp("fit")
    run, out, err = fit_smoke(tmp, data_dir, "training.epochs=2", "curriculum.enabled=false")
    return {"tmp": tmp, "run": run, "model": tmp / "m.keras", "out": out, "err": err}


# ---------------------------------------------------------------------- fit


def test_fit_writes_a_complete_run_folder(trained):
    run = trained["run"]
    assert run.name.startswith("smoke__")
    for name in (
        "config.json",
        "model_summary.txt",
        "history.csv",
        "metrics.json",
        "model.keras",
        "checkpoints/last.keras",
        "checkpoints/best.keras",
        "checkpoints/last.json",
    ):
        assert (run / name).is_file(), name
        assert (run / name).stat().st_size > 0, name
    assert (run / "tensorboard").is_dir()
    assert any(p.name.startswith("events.out.tfevents") for p in (run / "tensorboard").rglob("*"))
    assert trained["model"].is_file()
    # No temporary files are left behind by the atomic writes.
    assert not [p for p in run.rglob("*") if ".tmp" in p.name]


def test_fit_run_files_contents(trained):
    run = trained["run"]
    assert "decoder_conditioning: film" in (run / "model_summary.txt").read_text()
    rows = read_history(run / "history.csv")
    assert [int(float(r["epoch"])) for r in rows] == [1, 2]
    assert all(np.isfinite(float(r["loss"])) for r in rows)
    assert all(float(r["active_channels"]) == 3.0 for r in rows)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs"] == 2
    assert metrics["best"]["monitor"] == "val_loss"
    # The final model's generation, judged by a classifier of the training split.
    gen = metrics["generation"]
    assert gen["judge"]["source"] == "train" and gen["n_per_channel"] == 200
    assert 0.0 <= gen["sample_consistency"] <= 1.0 and 0.0 <= gen["recon_consistency"] <= 1.0
    assert "sample consistency" in trained["out"]
    state = json.loads((run / "checkpoints" / "last.json").read_text())
    assert state["epochs_done"] == 2
    assert state["iterations"] == 2 * (N_TRAIN // BATCH)
    config = json.loads((run / "config.json").read_text())
    assert config["training"]["epochs"] == 2
    assert config["data"]["source"] == "npz"
    assert config["data"]["shuffle_buffer"] == 10000  # every default resolved


def test_fit_prints_a_summary_and_one_short_line_per_epoch(trained):
    out = trained["out"]
    assert "resolved config:" not in out and "model (as built):" not in out
    lines = out.splitlines()
    assert all(len(line) < 160 for line in lines), max(lines, key=len)
    # The --data-dir notice first, then the run summary.
    assert lines[0].startswith("--data-dir: data.source=npz")
    assert lines[1].startswith("run: smoke (seed 0) -> ") and "config.json" in lines[1]
    assert any(line.startswith("model: K=3 channels") for line in lines)
    assert f"backend {keras.backend.backend()}" in out
    epochs = [line for line in lines if line.startswith("epoch ")]
    assert [line.split()[1] for line in epochs] == ["1/2", "2/2"]
    for line in epochs:
        assert "loss " in line and "-ELBO " in line and "(val " in line
        assert " acc " in line and "channels 3/3" in line and line.endswith(" s")
    # The --data-dir notice is normal output, printed once; stderr stays for errors.
    assert out.count("--data-dir: data.source=npz") == 1
    assert "data.source=npz" not in trained["err"]
    assert f"report: {trained['run'] / 'report.html'}" in out
    assert f"run folder: {trained['run']}" in out


def test_fit_writes_its_report(trained):
    from kmixvae.viz.report import flatten_metrics, format_value
    from tests.helpers.report_page import assert_images_exist, parse

    page = parse(trained["run"] / "report.html")
    assert_images_exist(page, trained["run"])
    assert "channel" in page.headers and "samples from its prior" in page.headers
    text = "".join(page.text)
    metrics = json.loads((trained["run"] / "metrics.json").read_text())
    for key, value in flatten_metrics(metrics):
        assert key in text and format_value(value) in text, key


def test_saved_model_loads_with_all_channels(trained):
    from kmixvae.runs import load_model_file

    model = load_model_file(trained["model"])
    assert model.active_channels == (0, 1, 2)
    assert model.decoder.conditioning == "film"
    same = load_model_file(trained["run"])  # a run folder loads its model.keras
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(same.prior.prior_means),
        keras.ops.convert_to_numpy(model.prior.prior_means),
    )


# ---------------------------------------------------------------------- inference


def test_sample(trained, tmp_path):
    out_png = tmp_path / "x.png"
    _, out, _ = run_cli("sample", trained["model"], "--channel", 1, "--n", 8, "--out", out_png)
    assert out_png.read_bytes()[:8] == PNG_MAGIC
    assert str(out_png) in out
    mixture = tmp_path / "mix.png"
    run_cli("sample", trained["run"], "--n", 4, "--out", mixture)
    assert mixture.read_bytes()[:8] == PNG_MAGIC


def test_reconstruct(trained, tmp_path):
    out_png = tmp_path / "r.png"
    run_cli("reconstruct", trained["run"], "--n", 6, "--out", out_png)
    assert out_png.read_bytes()[:8] == PNG_MAGIC


def test_encode(trained, data_dir, tmp_path):
    out_npz = tmp_path / "e.npz"
    _, out, _ = run_cli("encode", trained["run"], "--out", out_npz)
    with np.load(out_npz) as f:
        assert set(f.files) == {"q", "mu", "var", "channel", "label"}
        assert f["q"].shape == (N_TEST, 3)
        assert f["mu"].shape == (N_TEST, 3, 2)
        assert f["var"].shape == (N_TEST, 3, 2)
        assert f["channel"].shape == (N_TEST,)
        np.testing.assert_array_equal(f["label"], np.arange(N_TEST) % 3)
        np.testing.assert_allclose(f["q"].sum(axis=1), 1.0, atol=1e-5)
        assert np.all(f["var"] > 0)
        np.testing.assert_array_equal(f["channel"], f["q"].argmax(axis=1))
    assert f"{N_TEST} images of test" in out
    # A bare model file with --data-dir and a sliced split.
    sliced = tmp_path / "s.npz"
    run_cli(
        "encode", trained["model"], "--data-dir", data_dir, "--split", "train[:10]", "--out", sliced
    )
    with np.load(sliced) as f:
        assert f["q"].shape == (10, 3)
        np.testing.assert_array_equal(f["label"], np.arange(10) % 3)


def test_evaluate(trained, tmp_path):
    out_json = tmp_path / "metrics.json"
    _, out, _ = run_cli("evaluate", trained["run"], "--iwae-samples", 2, "--out", out_json)
    metrics = json.loads(out_json.read_text())
    assert metrics["split"] == "test"
    assert "accuracy" in metrics
    assert 0.0 <= metrics["accuracy"] <= 1.0
    assert str(out_json) in out
    # Generation metrics, judged by a classifier of the run's training split.
    gen = metrics["generation"]
    assert gen["judge"]["source"] == "train" and gen["judge"]["train_images"] > 0
    assert gen["n_per_channel"] == 200
    for key in ("sample_consistency", "recon_consistency", "judge_accuracy"):
        assert 0.0 <= metrics[key] <= 1.0 and metrics[key] == gen[key]
    assert metrics["judge_accuracy"] > 0.9  # three easy patterns
    assert "sample consistency" in out and "recon consistency" in out
    active = [ch for ch in metrics["channels"] if ch["active"]]
    assert all(0.0 <= ch["sample_consistency"] <= 1.0 for ch in active)


def test_evaluate_judge_options(trained, tmp_path):
    out_json = tmp_path / "m.json"
    run_cli(
        "evaluate",
        trained["run"],
        "--iwae-samples",
        1,
        "--samples-per-channel",
        0,
        "--out",
        out_json,
    )
    assert "generation" not in json.loads(out_json.read_text())
    # The judge may not learn from the images it scores: one error line, nothing written.
    bad = tmp_path / "bad.json"
    result, out, err = run_cli(
        "evaluate", trained["run"], "--judge-split", "test", "--out", bad, expect=None
    )
    assert_one_error_line(result, out, err, "--judge-split 'test'", "judge's training images")
    assert not bad.exists()
    result, out, err = run_cli(
        "evaluate", trained["run"], "--judge-split", "train[:10", "--out", bad, expect=None
    )
    assert_one_error_line(result, out, err, "train[:10")
    assert not bad.exists()


def test_visualize(trained, tmp_path):
    out_dir = tmp_path / "figs"
    _, out, _ = run_cli("visualize", trained["run"], "--out", out_dir, "--max-points", 48)
    pngs = sorted(out_dir.rglob("*.png"))
    assert pngs
    for p in pngs:
        assert p.read_bytes()[:8] == PNG_MAGIC
        assert str(p) in out


def test_export_projector(trained, tmp_path):
    out_dir = tmp_path / "proj"
    run_cli("export-projector", trained["run"], "--out", out_dir, "--max-samples", 24)
    assert (out_dir / "projector_config.pbtxt").is_file()
    assert any(p.suffix == ".tsv" for p in out_dir.rglob("*"))


# ---------------------------------------------------------------------- resume


@pytest.fixture(scope="module")
def resumed(tmp_path_factory, data_dir):
    """A 3-epoch curriculum run killed (SIGKILL) after its first epoch, then resumed."""
    tmp = tmp_path_factory.mktemp("resume")
    run = tmp / "run"
    cmd = [
        sys.executable,
        "-c",
        "import sys; from kmixvae.cli import main; sys.exit(main())",
        "fit",
        "--config",
        str(SMOKE),
        "--data-dir",
        str(data_dir),
        "--run-dir",
        str(run),
        *tiny_sets(
            tmp, "training.epochs=3", "curriculum.enabled=true", "curriculum.unlock_every=1"
        ),
    ]
    env = {**os.environ, "KERAS_BACKEND": keras.backend.backend(), "TF_CPP_MIN_LOG_LEVEL": "2"}
    state_file = run / "checkpoints" / "last.json"
    returncode = kill_when_ready(
        cmd, state_file.is_file, log_path=tmp / "killed.log", env=env, cwd=tmp, poll_s=0.1
    )
    killed_state = json.loads(state_file.read_text())
    killed_rows = read_history(run / "history.csv")
    _, out, err = run_cli("fit", "--resume", run, "--verbose")
    return {
        "run": run,
        "killed_state": killed_state,
        "killed_rows": killed_rows,
        "returncode": returncode,
        "out": out,
        "tmp": tmp,
    }


def test_kill_left_a_consistent_partial_run(resumed):
    assert resumed["returncode"] == -signal.SIGKILL
    done = resumed["killed_state"]["epochs_done"]
    assert 1 <= done < 3, "the run finished before it could be killed"
    assert len(resumed["killed_rows"]) == done


def test_resume_completes_all_epochs(resumed):
    run = resumed["run"]
    rows = read_history(run / "history.csv")
    # Integers throughout: the killed run's rows are rewritten as they were written.
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]
    # The curriculum stage continues where the killed run left it.
    assert [float(r["active_channels"]) for r in rows] == [1.0, 2.0, 3.0]
    # Rows of the killed run are kept as they were.
    for before, after in zip(resumed["killed_rows"], rows):
        assert before["loss"] == after["loss"]
    state = json.loads((run / "checkpoints" / "last.json").read_text())
    assert state["epochs_done"] == 3
    # The optimizer continued from the checkpoint: its step count did not restart.
    assert state["iterations"] == 3 * (N_TRAIN // BATCH)
    events = [(e["epoch"], e["channel"]) for e in state["curriculum"]["events"]]
    assert events == [(1, 1), (2, 2)]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs"] == 3
    assert [(e["epoch"], e["channel"]) for e in metrics["unlock_events"]] == [(1, 1), (2, 2)]
    # The curriculum is complete at epoch 3: the best checkpoint exists now.
    assert (run / "checkpoints" / "best.keras").is_file()
    assert state["best_epoch"] == 3
    assert (run / "model.keras").is_file()
    # The input continues where the killed run stopped reading, not at its first batch.
    start = resumed["killed_state"]["epochs_done"] * (N_TRAIN // BATCH)
    assert f"training batches continue at batch {start}," in resumed["out"]
    # --verbose: the full resolved config and the model as built.
    assert "resolved config:" in resumed["out"]
    assert "model (as built):" in resumed["out"]
    assert "decoder_conditioning: film" in resumed["out"]


def test_resumed_model_has_every_channel(resumed):
    from kmixvae.runs import load_model_file

    assert load_model_file(resumed["run"]).active_channels == (0, 1, 2)


def test_resume_of_a_finished_run_changes_nothing(resumed):
    run = resumed["run"]
    before = (run / "history.csv").read_text()
    run_cli("fit", "--resume", run)
    assert (run / "history.csv").read_text() == before


def test_compare(trained, resumed, tmp_path):
    out_csv = tmp_path / "out.csv"
    run_cli("evaluate", resumed["run"], "--iwae-samples", 1)  # writes <run>/eval_metrics.json
    _, out, _ = run_cli("compare", trained["run"], resumed["run"], "--csv", out_csv)
    assert trained["run"].name in out and resumed["run"].name in out
    with open(out_csv, newline="") as f:
        table = {row[0]: row[1:] for row in csv.reader(f)}
    assert table["key"] == [trained["run"].name, resumed["run"].name]
    assert table["training.epochs"] == ["2", "3"]
    assert table["curriculum.enabled"] == ["False", "True"]
    assert "val_loss" in table
    for key in ("sample_consistency", "recon_consistency"):  # from metrics.json
        assert all(0.0 <= float(v) <= 1.0 for v in table[key])
    for key in ("sample_consistency", "recon_consistency", "judge_accuracy"):
        assert table[f"eval {key}"][0] == "-" and 0.0 <= float(table[f"eval {key}"][1]) <= 1.0
    assert "output.runs_dir" not in table and "model.num_channels" not in table


# ---------------------------------------------------------------------- bad input


def _bad_cases(tmp: Path, data_dir: Path) -> dict:
    """name -> (args, needles); built in `tmp`."""
    (tmp / "folder.json").mkdir()
    (tmp / "empty_data").mkdir()
    (tmp / "empty_data" / "readme.txt").write_text("no data here")
    (tmp / "corrupt.keras").write_bytes(b"PK\x03\x04 this is not a keras archive" * 10)
    (tmp / "not_a_run").mkdir()
    (tmp / "not_a_run" / "notes.txt").write_text("x")
    sets = tiny_sets(tmp)
    return {
        "missing-config": (["fit", "--config", tmp / "missing.json", *sets], ["missing.json"]),
        "config-is-folder": (["fit", "--config", tmp / "folder.json", *sets], ["folder.json"]),
        "validate-config-is-folder": (["config", "validate", tmp / "folder.json"], ["folder.json"]),
        "data-dir-missing": (
            ["fit", "--config", SMOKE, "--data-dir", tmp / "nodata", *sets],
            ["nodata"],
        ),
        "data-dir-without-data": (
            ["fit", "--config", SMOKE, "--data-dir", tmp / "empty_data", *sets],
            ["empty_data", "mnist.npz"],
        ),
        "model-file-missing": (
            ["sample", tmp / "nope.keras", "--out", tmp / "x.png"],
            ["nope.keras", "does not exist"],
        ),
        "model-file-corrupt": (
            ["sample", tmp / "corrupt.keras", "--out", tmp / "x.png"],
            ["corrupt.keras"],
        ),
        "model-file-wrong-suffix": (
            ["sample", tmp / "not_a_run" / "notes.txt", "--out", tmp / "x.png"],
            ["notes.txt"],
        ),
        "encode-corrupt-model": (
            ["encode", tmp / "corrupt.keras", "--data-dir", data_dir, "--out", tmp / "e.npz"],
            ["corrupt.keras"],
        ),
        "evaluate-not-a-run": (["evaluate", tmp / "not_a_run"], ["not_a_run", "run folder"]),
        "resume-not-a-run": (["fit", "--resume", tmp / "not_a_run"], ["not_a_run"]),
        "resume-missing": (["fit", "--resume", tmp / "no_such_run"], ["no_such_run"]),
        "compare-not-a-run": (["compare", tmp / "not_a_run"], ["not_a_run"]),
        "set-unknown-key": (
            ["fit", "--config", SMOKE, *sets, "--set", "training.epoch=2"],
            ["training.epoch"],
        ),
        "set-without-equals": (
            ["fit", "--config", SMOKE, *sets, "--set", "training.epochs"],
            ["--set"],
        ),
        "fit-without-config": (["fit", *sets], ["--config"]),
        "sample-n-zero": (
            ["sample", tmp / "nope.keras", "--n", 0, "--out", tmp / "x.png"],
            ["--n"],
        ),
        "sample-out-not-png": (["sample", tmp / "nope.keras", "--out", tmp / "x.jpg"], [".png"]),
    }


BAD_NAMES = [
    "missing-config",
    "config-is-folder",
    "validate-config-is-folder",
    "data-dir-missing",
    "data-dir-without-data",
    "model-file-missing",
    "model-file-corrupt",
    "model-file-wrong-suffix",
    "encode-corrupt-model",
    "evaluate-not-a-run",
    "resume-not-a-run",
    "resume-missing",
    "compare-not-a-run",
    "set-unknown-key",
    "set-without-equals",
    "fit-without-config",
    "sample-n-zero",
    "sample-out-not-png",
]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_input_exits_2_and_writes_nothing(name, tmp_path, data_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cases = _bad_cases(tmp_path, data_dir)
    assert set(cases) == set(BAD_NAMES)
    args, needles = cases[name]
    before = files_under(tmp_path)
    result, out, err = run_cli(*args, expect=None)
    assert_one_error_line(result, out, err, *needles)
    assert files_under(tmp_path) == before


def test_bad_input_needing_a_trained_run(trained, tmp_path, data_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run, model = trained["run"], trained["model"]
    run_before = files_under(run)
    cases = {
        "channel-out-of-range": (
            ["sample", model, "--channel", 3, "--out", tmp_path / "x.png"],
            ["--channel", "out of range"],
        ),
        "channel-negative": (
            ["sample", model, "--channel", -1, "--out", tmp_path / "x.png"],
            ["--channel"],
        ),
        "resume-with-config": (["fit", "--resume", run, "--config", SMOKE], ["--resume"]),
        "resume-with-set": (
            ["fit", "--resume", run, "--set", "model.latent.dim=4"],
            ["--resume", "model.latent.dim"],
        ),
        "run-dir-not-empty": (
            [
                "fit",
                "--config",
                SMOKE,
                "--data-dir",
                data_dir,
                "--run-dir",
                run,
                *tiny_sets(tmp_path),
            ],
            ["already exists"],
        ),
        "out-is-a-folder": (["encode", run, "--out", tmp_path / "sub.npz"], ["is a folder"]),
    }
    (tmp_path / "sub.npz").mkdir()
    before = files_under(tmp_path)
    for name, (args, needles) in cases.items():
        result, out, err = run_cli(*args, expect=None)
        if name == "run-dir-not-empty":
            # The config is resolved and printed first; the error is the one stderr line.
            assert_one_error_line(result, "", err, *needles)
        else:
            assert_one_error_line(result, out, err, *needles)
        assert files_under(tmp_path) == before, name
    assert files_under(run) == run_before


def test_sample_of_a_masked_channel_is_refused(trained, tmp_path):
    from kmixvae.runs import load_model_file

    model = load_model_file(trained["model"])
    model.set_active_channels([0])
    model.save(tmp_path / "locked.keras")
    result, out, err = run_cli(
        "sample",
        tmp_path / "locked.keras",
        "--channel",
        2,
        "--out",
        tmp_path / "x.png",
        expect=None,
    )
    assert_one_error_line(result, out, err, "--channel", "masked")
    assert not (tmp_path / "x.png").exists()


def test_data_with_other_image_shape_is_refused(trained, tmp_path):
    small = write_patterns(tmp_path / "small", n_train=6, n_test=6, size=14)
    result, out, err = run_cli(
        "encode", trained["model"], "--data-dir", small, "--out", tmp_path / "e.npz", expect=None
    )
    assert_one_error_line(result, out, err, "shape")
    assert not (tmp_path / "e.npz").exists()
